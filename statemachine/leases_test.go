package statemachine

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLeases(t *testing.T) {
	kv := NewKV()
	g := apply(t, kv, KVRequest{Op: KVLeaseGrant, TTL: 10})
	if g.Status != KVOK || g.Lease != 1 || g.TTL != 10 || kv.Rev() != 0 {
		t.Fatalf("grant: %+v at revision %d; want lease 1, TTL 10, no revision", g, kv.Rev())
	}
	if r := apply(t, kv, KVRequest{Op: KVLeaseGrant, TTL: 0}); r.Status != KVBadRequest || !strings.Contains(r.Err, "outside") {
		t.Fatalf("grant with TTL 0: %+v", r)
	}
	if r := apply(t, kv, KVRequest{Op: KVLeaseGrant, TTL: 5, Lease: 1}); r.Status != KVBadRequest || !strings.Contains(r.Err, "granted already") {
		t.Fatalf("grant of a taken number: %+v", r)
	}
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("a"), Value: []byte("1"), Lease: 1})
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("b"), Value: []byte("2"), Lease: 1})
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("c"), Value: []byte("3"), Lease: 1})
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("c"), Value: []byte("4")}) // detached
	apply(t, kv, KVRequest{Op: KVDelete, Key: []byte("b")})
	if r := apply(t, kv, KVRequest{Op: KVPut, Key: []byte("d"), Value: []byte("x"), Lease: 9}); r.Status != KVBadRequest || !strings.Contains(r.Err, "lease 9 is not granted") {
		t.Fatalf("put with an unknown lease: %+v", r)
	}
	if l := apply(t, kv, KVRequest{Op: KVLeaseList}); len(l.Leases) != 1 || l.Leases[0] != (KVLease{ID: 1, TTL: 10, Keys: 1}) {
		t.Fatalf("list: %+v; want lease 1 with key a alone", l.Leases)
	}
	// A snapshot keeps the leases and which keys they hold.
	var snap bytes.Buffer
	if err := kv.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	restored := NewKV()
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*KV{kv, restored} {
		before := m.Rev()
		r := apply(t, m, KVRequest{Op: KVLeaseRevoke, Lease: 1})
		if r.Status != KVOK || r.Count != 1 || m.Rev() != before+1 || r.Rev != before+1 {
			t.Fatalf("revoke: %+v, revision %d after %d", r, m.Rev(), before)
		}
		if g := apply(t, m, KVRequest{Op: KVGet, Key: []byte("a")}); g.Status != KVNotFound {
			t.Fatalf("a survived its lease's revocation: %+v", g)
		}
		if g := apply(t, m, KVRequest{Op: KVGet, Key: []byte("c")}); g.Status != KVOK {
			t.Fatalf("c, detached, was deleted: %+v", g)
		}
		if r := apply(t, m, KVRequest{Op: KVLeaseRevoke, Lease: 1}); r.Status != KVNotFound || m.Rev() != before+1 {
			t.Fatalf("second revoke: %+v", r)
		}
		evs := watchAll(t, m, "a", before+1)
		if len(evs) != 1 || !evs[0].Delete {
			t.Fatalf("the revocation's change: %+v", evs)
		}
	}
	if _, ok := kv.LeaseTTL(1); ok {
		t.Fatal("a revoked lease still has a TTL")
	}
	g = apply(t, kv, KVRequest{Op: KVLeaseGrant, TTL: 3})
	if ttl, ok := kv.LeaseTTL(g.Lease); !ok || ttl != 3*time.Second || g.Lease == 1 {
		t.Fatalf("a new lease: %+v, TTL %v", g, ttl)
	}
	// Lease operations cannot hide in a transaction.
	for _, op := range []KVRequest{{Op: KVLeaseGrant, TTL: 5}, {Op: KVLeaseRevoke, Lease: 2}, {Op: KVLeaseList}} {
		if _, err := DecodeKVRequest(KVRequest{Op: KVTxn, Then: []KVRequest{op}}.Encode()); err == nil {
			t.Fatalf("a txn with %s decoded", op.Op)
		}
	}
	// A put with a lease inside a transaction attaches the key.
	apply(t, kv, KVRequest{Op: KVTxn, Then: []KVRequest{{Op: KVPut, Key: []byte("t"), Lease: g.Lease}}})
	if l := apply(t, kv, KVRequest{Op: KVLeaseList}); len(l.Leases) != 1 || l.Leases[0].Keys != 1 {
		t.Fatalf("after a txn put with the lease: %+v", l.Leases)
	}
	// A snapshot naming a lease no one granted is refused.
	var bad bytes.Buffer
	noLeases := NewKV()
	noLeases.shards = kv.shards
	noLeases.rev, noLeases.n = kv.rev, kv.n
	if err := noLeases.Snapshot(&bad); err != nil {
		t.Fatal(err)
	}
	if err := NewKV().Restore(&bad); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Fatalf("restore of keys with an unknown lease: %v", err)
	}
}

// A transaction whose put names a lease not granted applies nothing.
func TestTxnWithAMissingLeaseAppliesNothing(t *testing.T) {
	kv := NewKV()
	r := apply(t, kv, KVRequest{Op: KVTxn, Then: []KVRequest{{Op: KVPut, Key: []byte("a")}, {Op: KVPut, Key: []byte("b"), Lease: 99}}})
	if r.Status != KVBadRequest || !strings.Contains(r.Err, "lease 99") || kv.Rev() != 0 || kv.Len() != 0 {
		t.Fatalf("txn with a missing lease: %+v, revision %d, %d keys; want refused whole", r, kv.Rev(), kv.Len())
	}
}
