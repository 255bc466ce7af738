package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// A watch through the Go client reports every change of its prefix once, in
// revision order, while the member it watches at stops and another takes
// over; past revisions read as they were; a compacted one is refused.
func TestWatchThroughTheClient(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Put(ctx, "cfg/a", []byte("0")); err != nil {
		t.Fatal(err)
	}
	start, err := c.GetKeyValue(ctx, "cfg/a")
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Watch(ctx, "cfg/", client.WatchOptions{Prefix: true, Rev: start.Revision + 1, Wait: 200 * time.Millisecond})
	const n = 60
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if i == n/2 {
				// The leader goes away: the watch and the writes go on
				// elsewhere.
				if err := l.StopMember(leaderOf(t, c, l)); err != nil {
					done <- err
					return
				}
			}
			if err := c.Put(ctx, "other", []byte("x")); err != nil {
				done <- err
				return
			}
			if err := c.Put(ctx, fmt.Sprintf("cfg/%c", 'a'+i%3), fmt.Appendf(nil, "%d", i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var last uint64
	for i := 1; i <= n; i++ {
		e, ok := <-ch
		if !ok || e.Err != nil {
			t.Fatalf("event %d: closed %v, %v", i, !ok, e.Err)
		}
		if want := fmt.Sprintf("cfg/%c=%d", 'a'+i%3, i); string(e.Key)+"="+string(e.Value) != want || e.ModRevision <= last {
			t.Fatalf("event %d: %s=%s at %d after %d; want %s later", i, e.Key, e.Value, e.ModRevision, last, want)
		}
		last = e.ModRevision
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ch:
		t.Fatalf("an extra event: %+v", e)
	case <-time.After(500 * time.Millisecond):
	}
	// The state at the watch's start, read from the history.
	var got []string
	for kv, err := range c.Range(ctx, "cfg/", client.RangeOptions{Prefix: true, Rev: start.Revision}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(kv.Key)+"="+string(kv.Value))
	}
	if len(got) != 1 || got[0] != "cfg/a=0" {
		t.Fatalf("range at revision %d: %v", start.Revision, got)
	}
	// Every page of a range at a past revision reads that revision.
	got = got[:0]
	for kv, err := range c.Range(ctx, "cfg/", client.RangeOptions{Prefix: true, Rev: start.Revision + 6, PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.Revision))
	}
	if want := fmt.Sprintf("[cfg/a=3@%[1]d cfg/b=1@%[1]d cfg/c=2@%[1]d]", start.Revision+6); fmt.Sprint(got) != want {
		t.Fatalf("range at revision %d in pages of 1: %v, want %s", start.Revision+6, got, want)
	}
	if err := c.Compact(ctx, last-1); err != nil {
		t.Fatal(err)
	}
	for _, err := range c.Range(ctx, "cfg/", client.RangeOptions{Prefix: true, Rev: start.Revision}) {
		if !errors.Is(err, client.ErrCompacted) {
			t.Fatalf("range at a compacted revision: %v", err)
		}
	}
	e := <-c.Watch(ctx, "cfg/", client.WatchOptions{Prefix: true, Rev: start.Revision})
	if !errors.Is(e.Err, client.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %+v", e)
	}
}

// A member that knows no leader sends watchers elsewhere, rather than hold
// them while it may be cut off; one that leads holds a watch until its
// wait ends and answers with the place to continue.
func TestWatchNeedsALeader(t *testing.T) {
	h := newHarness(t, paxos.Uniform(3), 1)
	var b inbox
	q := statemachine.KVWatch{Key: []byte("k"), Rev: 1}.Encode()
	h.m.Handle(&b, clientapi.Request{ID: 1, Kind: clientapi.ReqWatch, Data: q, Wait: 1000})
	if len(b.got) != 1 || b.got[0].Code != clientapi.CodeUnavailable || !strings.Contains(b.got[0].Message, "knows no leader") {
		t.Fatalf("watch at a member without a leader: %+v", b.got)
	}
	h = newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	b.got = nil
	h.m.Handle(&b, clientapi.Request{ID: 2, Kind: clientapi.ReqWatch, Data: q, Wait: 500})
	if len(b.got) != 0 {
		t.Fatalf("a watch with nothing to report was answered at once: %+v", b.got)
	}
	h.now = h.now.Add(600 * time.Millisecond)
	h.m.Sweep()
	if len(b.got) != 1 || b.got[0].Code != clientapi.CodeOK {
		t.Fatalf("after the wait: %+v", b.got)
	}
	r, err := statemachine.DecodeKVWatchResponse(b.got[0].Data)
	if err != nil || len(r.Events) != 0 || r.NextRev < 1 {
		t.Fatalf("the answer after the wait: %+v, %v", r, err)
	}
}
