package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// Sessions and reads across separate processes: a client's session expires
// by the leader's clock once idle past its timeout, on every member; its next
// write, refused in the expired session, goes through in a new one; and
// linearizable reads take no slot, and see the last write after the leader
// is SIGKILLed.
func TestSessionsExpireAndReadsSkipTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	c.leader()
	eps := c.endpoints()
	cl, err := client.NewWithConfig(client.Config{Endpoints: strings.Split(eps, ","), Timeout: 20 * time.Second, SessionTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.converged(1, 2, 3)
	// Past the timeout, another client's write carries the leader's clock
	// into the log: every member expires the first session at its slot,
	// and holds only the new client's.
	time.Sleep(1500 * time.Millisecond)
	mustCLI(t, 0, "put", "--endpoints", eps, "other", "x")
	waitUntil(t, "every member to hold one session", 20*time.Second, func() bool {
		for _, r := range status(t, eps) {
			if r.Error != "" || r.Sessions != 1 {
				return false
			}
		}
		return true
	})
	if err := cl.Put(ctx, "k", []byte("2")); err != nil {
		t.Fatalf("a write after the client's session expired: %v", err)
	}
	// Reads take no slot: the applied slot stands still under them.
	before := c.converged(1, 2, 3)[0].Applied
	for range 20 {
		if out := mustCLI(t, 0, "get", "--endpoints", eps, "k"); out != "2\n" {
			t.Fatalf("get k printed %q, want 2", out)
		}
	}
	if after := c.converged(1, 2, 3)[0].Applied; after != before {
		t.Fatalf("20 linearizable gets moved the applied slot from %d to %d; they should not go through the log", before, after)
	}
	old := c.leader()
	c.member(old).kill()
	if out := mustCLI(t, 0, "get", "--endpoints", eps, "--timeout", "15s", "k"); out != "2\n" {
		t.Fatalf("after SIGKILL of leader %d, get k printed %q, want 2", old, out)
	}
	if now := c.leader(); now == old {
		t.Fatalf("member %d still leads after its SIGKILL", old)
	}
}
