package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// ErrCompacted wraps the error of a watch, or of a read at a past revision,
// whose revision the cluster no longer keeps. Read the current state and
// watch from its revision on.
var ErrCompacted = errors.New("client: revision compacted")

// Event is one change a watch reports: a put of Key (Value and the key's
// revisions as after the write) or, with Delete, its deletion. ModRevision
// and Revision are the change's revision. Err, set on the last event before
// the channel closes, says why the watch ended.
type Event struct {
	Delete bool
	KeyValue
	Err error
}

// WatchOptions say which keys a watch follows and from where.
type WatchOptions struct {
	// Prefix follows the keys that start with the key given. Otherwise
	// the watch follows the keys from the key given up to End, End
	// excluded; an empty End with a non-empty Ranged follows every key
	// from the key given on; and neither follows the key alone.
	Prefix bool
	End    string
	Ranged bool
	// Rev is the first revision to report (0: the changes after the
	// current one). A revision the cluster no longer keeps ends the watch
	// with ErrCompacted.
	Rev uint64
	// Wait is how long a member holds one request while nothing changes
	// (0: 2s).
	Wait time.Duration
}

// query returns the watch query for key.
func (o WatchOptions) query(key string) statemachine.KVWatch {
	q := statemachine.KVWatch{Key: []byte(key), Rev: o.Rev}
	switch {
	case o.Prefix:
	case o.End != "" || o.Ranged:
		q.Ranged, q.End = true, []byte(o.End)
	default:
		// One key: the range [key, key+"\x00").
		q.Ranged, q.End = true, append([]byte(key), 0)
	}
	return q
}

// WatchCursor is how far a watch has come: each answer it takes moves it
// to where the next request continues, so a watch resumed from it at any
// member reports every change once. The Client's Watch drives one over TCP;
// the simulator drives the same cursor over its network. Not safe for
// concurrent use.
type WatchCursor struct {
	q       statemachine.KVWatch
	wait    time.Duration
	started bool
}

// NewWatchCursor returns the cursor of a new watch of key.
func NewWatchCursor(key string, o WatchOptions) *WatchCursor {
	if o.Wait <= 0 {
		o.Wait = 2 * time.Second
	}
	return &WatchCursor{q: o.query(key), wait: o.Wait, started: o.Rev != 0}
}

// Next returns the place the next request continues from: revision rev,
// passing over its first skip changes (rev 0 before the first answer of a
// watch from now on).
func (w *WatchCursor) Next() (rev, skip uint64) { return w.q.Rev, w.q.Skip }

// Request returns the next request to send.
func (w *WatchCursor) Request() clientapi.Request {
	return clientapi.Request{Kind: clientapi.ReqWatch, Data: w.q.Encode(), Wait: uint32(w.wait / time.Millisecond)}
}

// Take reads the answer to the last request and returns its events,
// moving the cursor past them. An error wrapping ErrCompacted or
// ErrNotApplied ends the watch; any other leaves the cursor where it was,
// and the request may be sent again, to any member.
func (w *WatchCursor) Take(data []byte) ([]Event, error) {
	r, err := statemachine.DecodeKVWatchResponse(data)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	switch r.Status {
	case statemachine.KVCompacted:
		return nil, fmt.Errorf("%w: watch from revision %d: %s", ErrCompacted, w.q.Rev, r.Err)
	case statemachine.KVBadRequest:
		return nil, fmt.Errorf("%w: watch refused by the state machine: %s", ErrNotApplied, r.Err)
	}
	// NB: a member never answers behind the place asked for; one that
	// did would repeat changes, so its answer is not taken.
	from := w.q.Rev
	if r.NextRev < from || (r.NextRev == from && r.NextSkip < w.q.Skip) {
		return nil, fmt.Errorf("watch: a member answered from revision %d, behind the %d asked for", r.NextRev, from)
	}
	evs := make([]Event, 0, len(r.Events))
	for _, e := range r.Events {
		if e.Rev < from || e.Rev > r.NextRev {
			return nil, fmt.Errorf("watch: a member reported revision %d outside %d..%d", e.Rev, from, r.NextRev)
		}
		from = e.Rev
		kv := KeyValue{Key: []byte(string(e.Key)), ModRevision: e.Rev, Revision: e.Rev}
		if !e.Delete {
			kv.Value, kv.CreateRevision, kv.Version = append([]byte{}, e.Value...), e.CreateRev, e.Version
		}
		evs = append(evs, Event{Delete: e.Delete, KeyValue: kv})
	}
	w.q.Rev, w.q.Skip, w.started = r.NextRev, r.NextSkip, true
	return evs, nil
}

// Watch follows the changes of key (or of a range, as o says) and sends
// them on the channel it returns, in revision order, each once. It resumes
// by itself from where it was after a broken connection, a member's crash
// or a new leader, at any member. The channel closes when ctx ends, or
// after an event whose Err says why the watch cannot go on (ErrCompacted:
// the changes asked for are no longer kept). A receiver that stops reading
// holds the watch where it is; the members keep nothing for it.
func (c *Client) Watch(ctx context.Context, key string, o WatchOptions) <-chan Event {
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		cur := NewWatchCursor(key, o)
		pause := minBackoff
		for ctx.Err() == nil {
			resp, err := c.call(ctx, cur.Request())
			var evs []Event
			if err == nil {
				evs, err = cur.Take(resp.Data)
			}
			// NB: a call that ran out of time ends with ErrNotApplied
			// too, but wrapping the context's error; only a refusal is
			// final.
			refused := errors.Is(err, ErrNotApplied) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrCompacted) || refused {
				select {
				case ch <- Event{Err: err}:
				case <-ctx.Done():
				}
				return
			}
			if err != nil {
				// Nothing answered within the client's timeout, or an
				// answer made no sense: try again, from the same place.
				select {
				case <-time.After(pause):
				case <-ctx.Done():
					return
				}
				pause = min(2*pause, maxBackoff)
				continue
			}
			pause = minBackoff
			for _, e := range evs {
				select {
				case ch <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}
