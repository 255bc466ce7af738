package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paxosd/paxosd/statemachine"
)

// Recipes on leases, transactions and watches: a mutex whose holders get
// fencing tokens, and leader election. Each participant puts one key under
// the recipe's prefix, attached to its Holder's lease, and the key with the
// lowest create revision holds the lock (or leads). A participant that
// dies loses its lease, hence its key, and the next in line takes over.

// Holder is a lease kept alive in the background, on whose behalf locks
// and elections hold their keys. If the lease is lost (the process could
// not reach the cluster for its TTL), Done closes: whatever it held is
// gone.
type Holder struct {
	c      *Client
	lease  LeaseID
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// NewHolder grants a lease of ttl and keeps it alive until Close.
func (c *Client) NewHolder(ctx context.Context, ttl time.Duration) (*Holder, error) {
	asked := time.Now()
	id, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	h := &Holder{c: c, lease: id, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		// NB: the lease's end is known from the grant: a first keep-alive
		// that cannot get through gives up by then, not after the
		// client's timeout (seen when the cluster went away at once).
		for ev := range c.keepAlive(kctx, id, asked.Add(ttl)) {
			if ev.Err != nil {
				h.err = ev.Err
			}
		}
	}()
	return h, nil
}

// Lease returns the holder's lease.
func (h *Holder) Lease() LeaseID { return h.lease }

// Done closes when the holder's lease is lost or the holder is closed.
func (h *Holder) Done() <-chan struct{} { return h.done }

// Err says why Done closed: ErrLeaseNotFound when the lease was lost.
func (h *Holder) Err() error {
	select {
	case <-h.done:
		return h.err
	default:
		return nil
	}
}

// Close stops keeping the lease alive and revokes it, releasing everything
// held with it.
func (h *Holder) Close(ctx context.Context) error {
	h.cancel()
	<-h.done
	if err := h.c.Revoke(ctx, h.lease); err != nil && !errors.Is(err, ErrLeaseNotFound) {
		return err
	}
	return nil
}

// queue is a participant's place under a prefix: its key and the revision
// that created it.
type queue struct {
	h      *Holder
	prefix string
	key    string
	rev    uint64
}

// join puts the participant's key under prefix with value, unless it is
// there already, and returns its place.
func join(ctx context.Context, h *Holder, prefix string, value []byte) (*queue, error) {
	q := &queue{h: h, prefix: prefix, key: fmt.Sprintf("%s%016x", prefix, uint64(h.lease))}
	r, err := h.c.Txn().If(KeyMissing(q.key)).Then(OpPutWithLease(q.key, value, h.lease)).Else(OpGet(q.key)).Commit(ctx)
	if err != nil {
		return nil, err
	}
	q.rev = r.Revision
	if !r.Succeeded {
		q.rev = r.Results[0].KV.CreateRevision
	}
	return q, nil
}

// first returns the participant with the lowest create revision and the
// store revision of the read.
func (q *queue) first(ctx context.Context) (KeyValue, uint64, error) {
	// NB: one page: a recipe's participants are a few keys, not thousands.
	req := RangeOptions{Prefix: true}.request(statemachine.KVRange, q.prefix)
	r, err := q.h.c.kv(ctx, "range", req)
	if err != nil {
		return KeyValue{}, 0, err
	}
	var head KeyValue
	for _, p := range r.Pairs {
		if head.Key == nil || p.CreateRev < head.CreateRevision {
			head = pairValue(p, r.Revision)
		}
	}
	return head, r.Revision, nil
}

// waitFirst waits until the participant's key is the oldest under the
// prefix.
func (q *queue) waitFirst(ctx context.Context) error {
	for {
		head, rev, err := q.first(ctx)
		if err != nil {
			return err
		}
		if head.Key == nil {
			return fmt.Errorf("%w: the key %s is gone (its lease expired?)", ErrLeaseNotFound, q.key)
		}
		if string(head.Key) == q.key {
			return nil
		}
		// Wait for the one ahead to go, then look again.
		wctx, cancel := context.WithCancel(ctx)
		for ev := range q.h.c.Watch(wctx, string(head.Key), WatchOptions{Rev: rev + 1}) {
			if ev.Err != nil || ev.Delete {
				break
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.h.Done():
			return fmt.Errorf("waiting for %s: %w", q.prefix, ErrLeaseNotFound)
		default:
		}
	}
}

// Mutex is a lock named by a key prefix, held with a Holder's lease.
type Mutex struct {
	h      *Holder
	prefix string
	q      *queue
}

// NewMutex returns the mutex name, held with h. A holder holds each name
// once: two Mutexes of one name on one Holder share its key.
func NewMutex(h *Holder, name string) *Mutex { return &Mutex{h: h, prefix: "lock/" + name + "/"} }

// Lock waits until it holds the lock and returns a fencing token: the
// revision that created its key. Tokens only grow from one holder to the
// next, so a resource that remembers the highest token it saw can refuse a
// holder that lost the lock (its lease expired) and does not know yet.
func (m *Mutex) Lock(ctx context.Context) (uint64, error) {
	return acquire(ctx, m.h, m.prefix, nil, &m.q)
}

// Unlock releases the lock (or gives up waiting for it).
func (m *Mutex) Unlock(ctx context.Context) error { return leave(ctx, m.h.c, &m.q) }

// acquire joins the queue under prefix, recording the place in *q, and
// waits until it is first; it returns the revision of the place. On error
// it leaves the queue.
func acquire(ctx context.Context, h *Holder, prefix string, value []byte, q **queue) (uint64, error) {
	var err error
	if *q, err = join(ctx, h, prefix, value); err != nil {
		return 0, err
	}
	if err := (*q).waitFirst(ctx); err != nil {
		leave(context.WithoutCancel(ctx), h.c, q)
		return 0, err
	}
	return (*q).rev, nil
}

// leave deletes the place *q holds, if any.
func leave(ctx context.Context, c *Client, q **queue) error {
	if *q == nil {
		return nil
	}
	_, err := c.Delete(ctx, (*q).key)
	*q = nil
	return err
}

// Election is a leader election named by a key prefix.
type Election struct {
	c      *Client
	prefix string
	q      *queue
}

// NewElection returns the election name.
func (c *Client) NewElection(name string) *Election {
	return &Election{c: c, prefix: "elect/" + name + "/"}
}

// Campaign waits until h's candidate leads the election, announcing value,
// and returns the revision that made it a candidate (a term number that
// only grows).
func (e *Election) Campaign(ctx context.Context, h *Holder, value []byte) (uint64, error) {
	return acquire(ctx, h, e.prefix, value, &e.q)
}

// Resign gives up leading, or campaigning.
func (e *Election) Resign(ctx context.Context) error { return leave(ctx, e.c, &e.q) }

// Leader returns the leader's value and term (0 when nobody leads).
func (e *Election) Leader(ctx context.Context) ([]byte, uint64, error) {
	head, _, err := (&queue{h: &Holder{c: e.c}, prefix: e.prefix}).first(ctx)
	if err != nil || head.Key == nil {
		return nil, 0, err
	}
	return head.Value, head.CreateRevision, nil
}

// LeaderEvent is who leads: Value and Term (0: nobody), or Err.
type LeaderEvent struct {
	Value []byte
	Term  uint64
	Err   error
}

// Observe sends the leader each time it changes, starting with the
// current one, until ctx ends.
func (e *Election) Observe(ctx context.Context) <-chan LeaderEvent {
	ch := make(chan LeaderEvent, 1)
	go func() {
		defer close(ch)
		var last uint64 = ^uint64(0)
		q := &queue{h: &Holder{c: e.c}, prefix: e.prefix}
		for ctx.Err() == nil {
			head, rev, err := q.first(ctx)
			if err != nil {
				if ctx.Err() == nil {
					select {
					case ch <- LeaderEvent{Err: err}:
					case <-ctx.Done():
					}
				}
				return
			}
			if head.CreateRevision != last {
				last = head.CreateRevision
				select {
				case ch <- LeaderEvent{Value: head.Value, Term: head.CreateRevision}:
				case <-ctx.Done():
					return
				}
			}
			// Wait for any change under the prefix.
			wctx, cancel := context.WithCancel(ctx)
			<-e.c.Watch(wctx, e.prefix, WatchOptions{Prefix: true, Rev: rev + 1})
			cancel()
		}
	}()
	return ch
}
