package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
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
