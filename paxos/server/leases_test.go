package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// Leases through the Go client: a kept-alive lease keeps its keys; one left
// alone expires at the leader, which revokes it through the log; a new
// leader gives leases their TTL again.
func TestLeasesThroughTheClient(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kept, err := c.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	left, err := c.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutWithLease(ctx, "svc/kept", []byte("up"), kept); err != nil {
		t.Fatal(err)
	}
	if err := c.PutWithLease(ctx, "svc/left", []byte("up"), left); err != nil {
		t.Fatal(err)
	}
	if err := c.PutWithLease(ctx, "svc/none", []byte("up"), 999); err == nil {
		t.Fatal("a put with a lease nobody granted succeeded")
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls) != 2 || ls[0].Keys != 1 || ls[0].TTL != time.Second {
		t.Fatalf("leases: %+v, %v", ls, err)
	}
	kctx, stopKeeping := context.WithCancel(ctx)
	defer stopKeeping()
	alive := c.KeepAlive(kctx, kept)
	if ev := <-alive; ev.Err != nil || ev.TTL != time.Second {
		t.Fatalf("first keep-alive: %+v", ev)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Get(ctx, "svc/left")
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("svc/left outlived its lease: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.KeepAliveOnce(ctx, left); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
	// The leader goes away; the kept lease survives the change.
	if err := l.StopMember(leaderOf(t, c, l)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if v, err := c.Get(ctx, "svc/kept"); err != nil || string(v) != "up" {
		t.Fatalf("svc/kept after a leader change, kept alive all along: %q, %v", v, err)
	}
	stopKeeping()
	if err := c.Revoke(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "svc/kept"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("svc/kept after revoke: %v", err)
	}
	if err := c.Revoke(ctx, kept); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}
