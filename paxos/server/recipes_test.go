package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// The mutex lets one holder in at a time, hands out growing fencing
// tokens, and passes to the next when a holder's lease is lost; the
// election follows its leader.
func TestMutexAndElection(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	inside, last := 0, uint64(0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			h, err := c.NewHolder(ctx, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close(ctx)
			for range 3 {
				m := client.NewMutex(h, "job")
				token, err := m.Lock(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 || token <= last {
					t.Errorf("worker %d: %d inside, token %d after %d", w, inside, token, last)
				}
				last = token
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	// A holder whose lease is revoked loses the lock to the one waiting.
	a, err := c.NewHolder(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.NewHolder(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	ta, err := client.NewMutex(a, "job").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	go func() {
		tb, err := client.NewMutex(b, "job").Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- tb
	}()
	select {
	case <-got:
		t.Fatal("b took the lock while a held it")
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.Revoke(ctx, a.Lease()); err != nil { // as if a died and its lease expired
		t.Fatal(err)
	}
	if tb := <-got; tb <= ta {
		t.Fatalf("token %d after %d", tb, ta)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a's holder did not notice its lease was gone")
	}

	// Election: the first campaigner leads; when it resigns, the next.
	e := c.NewElection("primary")
	obs := e.Observe(ctx)
	if ev := <-obs; ev.Term != 0 {
		t.Fatalf("first observation: %+v, want nobody", ev)
	}
	h1, _ := c.NewHolder(ctx, 5*time.Second)
	h2, _ := c.NewHolder(ctx, 5*time.Second)
	defer h1.Close(ctx)
	defer h2.Close(ctx)
	term1, err := e.Campaign(ctx, h1, []byte("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-obs; string(ev.Value) != "n1" || ev.Term != term1 {
		t.Fatalf("observed %+v, want n1 at term %d", ev, term1)
	}
	e2 := c.NewElection("primary")
	won := make(chan uint64, 1)
	go func() {
		term, err := e2.Campaign(ctx, h2, []byte("n2"))
		if err != nil {
			t.Error(err)
		}
		won <- term
	}()
	time.Sleep(200 * time.Millisecond)
	if v, _, err := e.Leader(ctx); err != nil || string(v) != "n1" {
		t.Fatalf("leader %q, %v; want n1", v, err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if term2 := <-won; term2 <= term1 {
		t.Fatalf("term %d after %d", term2, term1)
	}
	if ev := <-obs; string(ev.Value) != "n2" {
		t.Fatalf("observed %+v after the resignation, want n2", ev)
	}
}
