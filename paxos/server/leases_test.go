package server

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
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

// The leader's deadlines: a keep-alive renews one, an expired lease is
// revoked through the log, and a member that becomes leader gives every
// lease its TTL and the grace from then.
func TestLeaseDeadlines(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.m.cfg.LeaseGrace = 500 * time.Millisecond
	h.lead()
	var b inbox
	seq := uint64(0)
	do := func(cmd []byte) statemachine.KVResponse {
		t.Helper()
		seq++
		b.got = nil
		h.m.Handle(&b, clientapi.Request{ID: seq, Kind: clientapi.ReqCommand, Session: 1, Seq: seq, Data: cmd})
		h.flush()
		return kvAnswer(t, b.got[0])
	}
	g := do(statemachine.KVRequest{Op: statemachine.KVLeaseGrant, TTL: 2}.Encode())
	do(statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte("k"), Lease: g.Lease}.Encode())
	present := func() bool {
		b.got = nil
		h.m.Handle(&b, clientapi.Request{ID: 99, Kind: clientapi.ReqQuery, Data: get("k")})
		return kvAnswer(t, b.got[0]).Status == statemachine.KVOK
	}
	step := func(d time.Duration) {
		h.now = h.now.Add(d)
		h.m.Sweep()
		h.flush()
	}
	step(0) // the leader starts tracking the lease: 2 s from now
	step(1500 * time.Millisecond)
	b.got = nil
	h.m.Handle(&b, clientapi.Request{ID: 7, Kind: clientapi.ReqKeepAlive, Data: binary.AppendUvarint(nil, g.Lease)})
	if len(b.got) != 1 || len(b.got[0].Data) == 0 {
		t.Fatalf("keep-alive: %+v", b.got)
	}
	step(1900 * time.Millisecond)
	if !present() {
		t.Fatal("the key went 1.9 s after a keep-alive of a 2 s lease")
	}
	// As if leadership moved here now: the TTL and the grace from now.
	h.m.leases = leaseTracker{}
	step(0)
	step(2400 * time.Millisecond)
	if !present() {
		t.Fatal("the key went within TTL + grace of a change of leader")
	}
	step(200 * time.Millisecond)
	if present() {
		t.Fatal("the key outlived its lease by TTL + grace and more")
	}
	b.got = nil
	h.m.Handle(&b, clientapi.Request{ID: 8, Kind: clientapi.ReqKeepAlive, Data: binary.AppendUvarint(nil, g.Lease)})
	if len(b.got) != 1 || b.got[0].Code != clientapi.CodeOK || len(b.got[0].Data) != 0 {
		t.Fatalf("keep-alive of the revoked lease: %+v; want ok and no TTL", b.got)
	}
}

// A Holder cut off from the cluster for longer than its lease's TTL gives
// up the lease rather than believe it still holds it.
func TestHolderGivesUpWhenCutOff(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := c.NewHolder(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for id := paxos.NodeID(1); id <= 3; id++ {
		if err := l.StopMember(id); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.Done():
		if !errors.Is(h.Err(), client.ErrLeaseNotFound) {
			t.Fatalf("the holder stopped with %v", h.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a holder cut off for 5 s still believes its 1 s lease lives")
	}
}
