package statemachine

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Leases: a key put with a lease is deleted when the lease is revoked. A
// client grants a lease with a TTL and keeps it alive; the machine itself
// has no clock for them. The cluster's leader tracks each lease's deadline
// and, when one passes without a keep-alive, proposes its revocation
// through the log (Leaser), so every learner deletes the same keys at the
// same slot.

// Lease limits, rules of the replicated machine.
const (
	// MaxLeases bounds the leases granted at once.
	MaxLeases = 100_000
	// MinLeaseTTL and MaxLeaseTTL bound a lease's TTL.
	MinLeaseTTL = time.Second
	MaxLeaseTTL = 1_000_000 * time.Second
)

// KVLease describes one lease: its ID, TTL in seconds, and how many keys are
// attached to it.
type KVLease struct {
	ID, TTL, Keys uint64
}

type kvLease struct {
	ttl  uint64 // seconds
	keys map[string]struct{}
}

// Leaser is implemented by machines whose leases expire unless kept alive
// (the KV machine's). The leader tracks their deadlines and, when one
// passes, proposes RevokeCommand(id) through the log.
type Leaser interface {
	// LeaseTTL returns the TTL of lease id, false if it is not granted.
	LeaseTTL(id uint64) (time.Duration, bool)
	// EachLease calls f for every lease granted, in ID order.
	EachLease(f func(id uint64, ttl time.Duration))
	// LeaseGen changes whenever a lease is granted or revoked, so that a
	// tracker knows when to look again.
	LeaseGen() uint64
	// RevokeCommand returns the command that revokes lease id.
	RevokeCommand(id uint64) []byte
}

// LeaseTTL implements Leaser.
func (kv *KV) LeaseTTL(id uint64) (time.Duration, bool) {
	l, ok := kv.leases[id]
	if !ok {
		return 0, false
	}
	return time.Duration(l.ttl) * time.Second, true
}

// EachLease implements Leaser.
func (kv *KV) EachLease(f func(id uint64, ttl time.Duration)) {
	for _, id := range slices.Sorted(maps.Keys(kv.leases)) {
		f(id, time.Duration(kv.leases[id].ttl)*time.Second)
	}
}

// LeaseGen implements Leaser.
func (kv *KV) LeaseGen() uint64 { return kv.leaseGen }

// RevokeCommand implements Leaser.
func (kv *KV) RevokeCommand(id uint64) []byte {
	return KVRequest{Op: KVLeaseRevoke, Lease: id}.Encode()
}

// grant grants a lease of ttl seconds, numbered id (0: the next free
// number).
func (kv *KV) grant(id, ttl uint64) KVResponse {
	switch {
	case ttl < uint64(MinLeaseTTL/time.Second) || ttl > uint64(MaxLeaseTTL/time.Second):
		return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("lease TTL of %ds is outside %v to %v", ttl, MinLeaseTTL, MaxLeaseTTL)}
	case len(kv.leases) >= MaxLeases:
		return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("%d leases are granted, the limit; revoke some first", MaxLeases)}
	case id != 0 && kv.leases[id] != nil:
		return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("lease %d is granted already", id)}
	}
	if id == 0 {
		for kv.leases[kv.nextLease] != nil || kv.nextLease == 0 {
			kv.nextLease++
		}
		id = kv.nextLease
		kv.nextLease++
	}
	if kv.leases == nil {
		kv.leases = map[uint64]*kvLease{}
	}
	kv.leases[id] = &kvLease{ttl: ttl, keys: map[string]struct{}{}}
	kv.leaseGen++
	return KVResponse{Status: KVOK, Lease: id, TTL: ttl}
}

// revoke revokes lease id and deletes its keys, in key order, stamping the
// deletes with revision rev. It reports whether it deleted any.
func (kv *KV) revoke(id, rev uint64) (KVResponse, bool) {
	l, ok := kv.leases[id]
	if !ok {
		return KVResponse{Status: KVNotFound, Lease: id}, false
	}
	keys := slices.Sorted(maps.Keys(l.keys))
	for _, k := range keys {
		e, _ := kv.lookup([]byte(k))
		delete(kv.writable(k), k)
		kv.n--
		kv.record(k, rev, false, kvEntry{}, true, e)
	}
	delete(kv.leases, id)
	kv.leaseGen++
	return KVResponse{Status: KVOK, Lease: id, Count: uint64(len(keys)), Rev: revIf(len(keys) > 0, rev)}, len(keys) > 0
}

func revIf(ok bool, rev uint64) uint64 {
	if ok {
		return rev
	}
	return 0
}

// attach moves key k from lease from to lease to (0: none).
func (kv *KV) attach(k string, from, to uint64) {
	if from == to {
		return
	}
	if l := kv.leases[from]; l != nil {
		delete(l.keys, k)
	}
	if l := kv.leases[to]; l != nil {
		l.keys[k] = struct{}{}
	}
}

// listLeases answers a KVLeaseList.
func (kv *KV) listLeases() KVResponse {
	resp := KVResponse{Status: KVOK}
	for _, id := range slices.Sorted(maps.Keys(kv.leases)) {
		l := kv.leases[id]
		resp.Leases = append(resp.Leases, KVLease{ID: id, TTL: l.ttl, Keys: uint64(len(l.keys))})
	}
	return resp
}

// leaseTable is what a snapshot keeps of the leases: their TTLs (the keys
// name their leases themselves) and the next free number.
type leaseTable struct {
	ttls map[uint64]uint64
	next uint64
}

func (kv *KV) leaseTable() leaseTable {
	t := leaseTable{ttls: make(map[uint64]uint64, len(kv.leases)), next: kv.nextLease}
	for id, l := range kv.leases {
		t.ttls[id] = l.ttl
	}
	return t
}

func writeLeases(bw *bufio.Writer, t leaseTable) error {
	err := putUvarint(bw, t.next)
	if err == nil {
		err = putUvarint(bw, uint64(len(t.ttls)))
	}
	for _, id := range slices.Sorted(maps.Keys(t.ttls)) {
		if err == nil {
			err = putUvarint(bw, id)
		}
		if err == nil {
			err = putUvarint(bw, t.ttls[id])
		}
	}
	return err
}

// readLeases reads what writeLeases wrote and attaches the keys of shards
// to their leases.
func readLeases(br *bufio.Reader, shards *[kvShards]map[string]kvEntry) (map[uint64]*kvLease, uint64, error) {
	next, err := readUvarint(br, "next lease")
	if err != nil {
		return nil, 0, err
	}
	n, err := readUvarint(br, "lease count")
	if err != nil {
		return nil, 0, err
	}
	if n > MaxLeases {
		return nil, 0, fmt.Errorf("%w: %d leases, above the limit of %d", ErrBadSnapshot, n, MaxLeases)
	}
	leases := map[uint64]*kvLease{}
	var prev uint64
	for i := uint64(0); i < n; i++ {
		id, err := readUvarint(br, "lease")
		if err != nil {
			return nil, 0, err
		}
		ttl, err := readUvarint(br, "lease TTL")
		if err != nil {
			return nil, 0, err
		}
		if id == 0 || (i > 0 && id <= prev) {
			return nil, 0, fmt.Errorf("%w: lease %d out of order after %d", ErrBadSnapshot, id, prev)
		}
		prev = id
		leases[id] = &kvLease{ttl: ttl, keys: map[string]struct{}{}}
	}
	for _, m := range shards {
		for k, e := range m {
			if e.lease == 0 {
				continue
			}
			l := leases[e.lease]
			if l == nil {
				return nil, 0, fmt.Errorf("%w: key %q is attached to lease %d, which is not granted", ErrBadSnapshot, k, e.lease)
			}
			l.keys[k] = struct{}{}
		}
	}
	return leases, next, nil
}

// leaseSection marks the lease part of an answer, where a transaction's
// part would begin with its 0 or 1.
const leaseSection = 2

func appendLeaseResponse(b []byte, r KVResponse) []byte {
	b = append(b, leaseSection)
	b = binary.AppendUvarint(b, r.Lease)
	b = binary.AppendUvarint(b, r.TTL)
	b = binary.AppendUvarint(b, uint64(len(r.Leases)))
	for _, l := range r.Leases {
		b = binary.AppendUvarint(b, l.ID)
		b = binary.AppendUvarint(b, l.TTL)
		b = binary.AppendUvarint(b, l.Keys)
	}
	return b
}

func decodeLeaseResponse(d *decoder, r *KVResponse) {
	d.byte()
	r.Lease, r.TTL = d.uvarint("lease"), d.uvarint("TTL")
	n := d.uvarint("lease count")
	// A lease takes at least three bytes.
	if n > MaxLeases || n > uint64(len(d.b)/3) {
		d.fail(fmt.Sprintf("%d leases in %d bytes", n, len(d.b)))
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Leases = append(r.Leases, KVLease{ID: d.uvarint("lease"), TTL: d.uvarint("TTL"), Keys: d.uvarint("key count")})
	}
	if d.err == nil && r.Lease == 0 && r.TTL == 0 && len(r.Leases) == 0 {
		d.fail("an empty lease part, which is written as none")
	}
}
