package statemachine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

func init() {
	Register("kv", func() Machine { return NewKV() })
}

// KVOp is a key-value operation.
type KVOp uint8

// The operations. Values are part of the command encoding: append, never
// renumber.
const (
	_ KVOp = iota
	KVPut
	KVGet
	KVDelete
	KVCompareAndSwap
	KVRange
	// KVDeleteRange deletes every key a range names, in one revision.
	KVDeleteRange
	// KVTxn compares, then runs one list of operations or the other, in
	// one revision (txn.go).
	KVTxn
	// KVCompact drops the history up to revision Rev (history.go). It
	// changes no key and takes no revision.
	KVCompact
	// KVLeaseGrant grants a lease of TTL seconds, numbered Lease (0: the
	// next free number); KVLeaseRevoke revokes lease Lease, deleting its
	// keys in one revision; KVLeaseList lists the leases (leases.go).
	KVLeaseGrant
	KVLeaseRevoke
	KVLeaseList
)

func (o KVOp) String() string {
	switch o {
	case KVPut:
		return "put"
	case KVGet:
		return "get"
	case KVDelete:
		return "delete"
	case KVCompareAndSwap:
		return "cas"
	case KVRange:
		return "range"
	case KVDeleteRange:
		return "delete-range"
	case KVTxn:
		return "txn"
	case KVCompact:
		return "compact"
	case KVLeaseGrant:
		return "lease-grant"
	case KVLeaseRevoke:
		return "lease-revoke"
	case KVLeaseList:
		return "lease-list"
	}
	return fmt.Sprintf("KVOp(%d)", uint8(o))
}

// KVStatus is the outcome of a KV operation.
type KVStatus uint8

// The statuses.
const (
	_ KVStatus = iota
	// KVOK: the operation took effect (or, for reads, found what it read).
	KVOK
	// KVNotFound: the key does not exist (get, delete).
	KVNotFound
	// KVCompareFailed: a compare-and-swap found another value; Value and Rev
	// describe what it found (Rev 0 when the key is absent).
	KVCompareFailed
	// KVBadRequest: the command did not decode or was out of limits; Err
	// says why. Nothing changed.
	KVBadRequest
	// KVCompacted: the revision asked for (a range's Rev, a compaction's)
	// is compacted; Rev is the newest revision compacted. Nothing changed.
	KVCompacted
)

func (s KVStatus) String() string {
	switch s {
	case KVOK:
		return "ok"
	case KVNotFound:
		return "not found"
	case KVCompareFailed:
		return "compare failed"
	case KVBadRequest:
		return "bad request"
	case KVCompacted:
		return "compacted"
	}
	return fmt.Sprintf("KVStatus(%d)", uint8(s))
}

// Limits of the KV machine.
const (
	MaxKeySize   = 4 << 10
	MaxValueSize = 1 << 20
	// MaxRangeLimit is the most pairs one range returns; a range with more
	// matches says so with More.
	MaxRangeLimit = 10000
	// MaxRangeBytes bounds the keys and values one range answer holds (at
	// least one pair is always returned): a bigger range pages (More).
	MaxRangeBytes = 4 << 20
)

// KVRequest is one command for the KV machine.
type KVRequest struct {
	Op    KVOp
	Key   []byte // for KVRange and KVDeleteRange: the prefix, or with Ranged the first key
	Value []byte // KVPut, KVCompareAndSwap: the new value
	// Old is the value a compare-and-swap expects, unless ExpectAbsent.
	Old          []byte
	ExpectAbsent bool
	// Limit caps a range; 0 means MaxRangeLimit.
	Limit uint64
	// Ranged makes a range or delete-range name the keys from Key up to
	// End, End excluded (an empty End: every key from Key on), instead of
	// the keys that start with Key.
	Ranged bool
	End    []byte
	// KeysOnly answers a range without values; CountOnly with the number
	// of matching keys alone (Count).
	KeysOnly, CountOnly bool
	// Rev makes a range read the state as of that past revision, while
	// the history keeps it (0: the current state); for KVCompact it is the
	// revision to compact up to.
	Rev uint64
	// Lease attaches a put's key to that lease (0: none; a put without
	// one detaches the key from its lease), or names the lease to grant
	// or revoke. TTL is a grant's, in seconds.
	Lease, TTL uint64
	// If, Then and Else make a KVTxn: when every comparison of If holds,
	// the operations of Then run, in order, and otherwise those of Else.
	If         []KVCompare
	Then, Else []KVRequest
}

// Range flags, in the encoding.
const (
	rangeKeysOnly = 1 << iota
	rangeCountOnly
	rangeRanged
	rangeAtRev
)

// KVPair is one key of a range answer, with its revisions as in
// KVResponse.
type KVPair struct {
	Key, Value []byte
	Rev        uint64
	CreateRev  uint64
	Version    uint64
}

// KVResponse is the KV machine's answer.
type KVResponse struct {
	Status KVStatus
	// Rev is the key's revision: the one written (put, swap, delete), read
	// (get) or found by a failed swap: its mod_revision.
	Rev   uint64
	Value []byte
	Pairs []KVPair // KVRange
	More  bool     // KVRange: more keys match than were returned
	Err   string   // KVBadRequest
	// Revision is the store's revision once the command was applied:
	// every write advances it by one.
	Revision uint64
	// CreateRev is the revision that created the key (the write after
	// which it existed, since its last delete), and Version how many
	// writes it had since then (1 after the one that created it). Both
	// describe the key Rev describes; zero when there is none.
	CreateRev uint64
	Version   uint64
	// Count is how many keys a range matched (all of them, not only those
	// returned), or a delete-range deleted.
	Count uint64
	// Succeeded says a KVTxn ran Then (its comparisons held), and
	// Responses answer the operations it ran, in order.
	Succeeded bool
	Responses []KVResponse
	// Lease and TTL answer a lease grant (the lease's number and TTL in
	// seconds) or revoke (Lease); Leases a lease list.
	Lease, TTL uint64
	Leases     []KVLease
}

// ErrBadKVRequest reports bytes that are not a KV request.
var ErrBadKVRequest = errors.New("statemachine: malformed kv request")

// Encode returns the command bytes of r.
func (r KVRequest) Encode() []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(r.Key)+len(r.Value)+len(r.Old))
	b = append(b, byte(r.Op))
	b = appendBytes(b, r.Key)
	switch r.Op {
	case KVPut:
		b = appendBytes(b, r.Value)
		if r.Lease != 0 {
			b = binary.AppendUvarint(b, r.Lease)
		}
	case KVLeaseGrant:
		b = binary.AppendUvarint(b, r.TTL)
		b = binary.AppendUvarint(b, r.Lease)
	case KVLeaseRevoke:
		b = binary.AppendUvarint(b, r.Lease)
	case KVCompareAndSwap:
		var flags byte
		if r.ExpectAbsent {
			flags = 1
		}
		b = append(b, flags)
		b = appendBytes(b, r.Old)
		b = appendBytes(b, r.Value)
	case KVTxn:
		b = appendTxn(b, r)
	case KVRange, KVDeleteRange:
		b = binary.AppendUvarint(b, r.Limit)
		var flags byte
		if r.KeysOnly {
			flags |= rangeKeysOnly
		}
		if r.CountOnly {
			flags |= rangeCountOnly
		}
		if r.Ranged {
			flags |= rangeRanged
		}
		if r.Rev != 0 {
			flags |= rangeAtRev
		}
		if flags != 0 || r.Op == KVDeleteRange {
			// NB: a plain prefix range keeps the older, shorter encoding.
			b = append(b, flags)
			b = appendBytes(b, r.End)
			if r.Rev != 0 {
				b = binary.AppendUvarint(b, r.Rev)
			}
		}
	case KVCompact:
		b = binary.AppendUvarint(b, r.Rev)
	}
	return b
}

// DecodeKVRequest decodes command bytes made by KVRequest.Encode. The slices
// of the result alias b.
func DecodeKVRequest(b []byte) (KVRequest, error) { return decodeKVRequest(b, false) }

// decodeKVRequest decodes a request, or with nested one operation of a
// transaction, which may not be a transaction itself.
func decodeKVRequest(b []byte, nested bool) (KVRequest, error) {
	d := decoder{b: b}
	r := KVRequest{Op: KVOp(d.byte())}
	r.Key = d.bytes(MaxKeySize, "key")
	switch r.Op {
	case KVTxn:
		if nested {
			d.fail("a txn inside a txn")
			break
		}
		decodeTxn(&d, &r)
	case KVGet, KVDelete:
	case KVCompact:
		if r.Rev = d.uvarint("revision"); r.Rev == 0 && d.err == nil {
			d.fail("compact needs a revision")
		}
	case KVPut:
		r.Value = d.bytes(MaxValueSize, "value")
		if len(d.b) > 0 {
			if r.Lease = d.uvarint("lease"); r.Lease == 0 && d.err == nil {
				d.fail("a put with lease 0, which is written as none")
			}
		}
	case KVLeaseGrant:
		r.TTL, r.Lease = d.uvarint("TTL"), d.uvarint("lease")
	case KVLeaseRevoke:
		if r.Lease = d.uvarint("lease"); r.Lease == 0 && d.err == nil {
			d.fail("revoke of lease 0")
		}
	case KVLeaseList:
	case KVCompareAndSwap:
		switch f := d.byte(); f {
		case 0:
		case 1:
			r.ExpectAbsent = true
		default:
			d.fail(fmt.Sprintf("cas flags %#x", f))
		}
		r.Old = d.bytes(MaxValueSize, "old value")
		r.Value = d.bytes(MaxValueSize, "value")
		if r.ExpectAbsent && len(r.Old) != 0 {
			d.fail("cas expects the key absent and also an old value")
		}
	case KVRange, KVDeleteRange:
		r.Limit = d.uvarint("limit")
		if r.Limit > MaxRangeLimit {
			d.fail(fmt.Sprintf("range limit %d above %d", r.Limit, MaxRangeLimit))
		}
		if len(d.b) > 0 || r.Op == KVDeleteRange {
			flags := d.byte()
			if flags&^(rangeKeysOnly|rangeCountOnly|rangeRanged|rangeAtRev) != 0 {
				d.fail(fmt.Sprintf("range flags %#x", flags))
			}
			r.KeysOnly, r.CountOnly, r.Ranged = flags&rangeKeysOnly != 0, flags&rangeCountOnly != 0, flags&rangeRanged != 0
			r.End = d.bytes(MaxKeySize, "range end")
			if flags&rangeAtRev != 0 {
				if r.Rev = d.uvarint("revision"); r.Rev == 0 && d.err == nil {
					d.fail("a range at revision 0")
				}
				if r.Op == KVDeleteRange {
					d.fail("a delete-range at a past revision")
				}
			}
			if !r.Ranged && len(r.End) > 0 {
				d.fail("a range end without the ranged flag")
			}
			if r.Op == KVDeleteRange && (r.KeysOnly || r.CountOnly || r.Limit != 0) {
				d.fail("a delete-range takes no limit, keys-only or count-only")
			}
			if r.CountOnly && (r.KeysOnly || r.Limit != 0) {
				d.fail("a count-only range takes no limit or keys-only")
			}
			if r.Op == KVRange && flags == 0 && len(r.End) == 0 {
				d.fail("a plain range has the short encoding")
			}
		}
	default:
		d.fail(fmt.Sprintf("unknown op %d", r.Op))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return KVRequest{}, fmt.Errorf("%w: %s", ErrBadKVRequest, d.err)
	}
	return r, nil
}

// Encode returns the answer bytes of r.
func (r KVResponse) Encode() []byte {
	b := []byte{byte(r.Status)}
	b = binary.AppendUvarint(b, r.Rev)
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Pairs)))
	for _, p := range r.Pairs {
		b = appendBytes(b, p.Key)
		b = appendBytes(b, p.Value)
		b = binary.AppendUvarint(b, p.Rev)
	}
	if r.More {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendBytes(b, []byte(r.Err))
	// The revisions added later come last, so that answers recorded
	// before (in session tables) still decode.
	b = binary.AppendUvarint(b, r.Revision)
	b = binary.AppendUvarint(b, r.CreateRev)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendUvarint(b, r.Count)
	for _, p := range r.Pairs {
		b = binary.AppendUvarint(b, p.CreateRev)
		b = binary.AppendUvarint(b, p.Version)
	}
	switch {
	case r.Succeeded || len(r.Responses) > 0:
		b = appendTxnResponse(b, r)
	case r.Lease != 0 || r.TTL != 0 || len(r.Leases) > 0:
		b = appendLeaseResponse(b, r)
	}
	return b
}

// DecodeKVResponse decodes answer bytes made by KVResponse.Encode. The
// slices of the result alias b.
func DecodeKVResponse(b []byte) (KVResponse, error) { return decodeKVResponse(b, false) }

// decodeKVResponse decodes an answer, or with nested the answer to one
// operation of a transaction, which holds no answers of its own.
func decodeKVResponse(b []byte, nested bool) (KVResponse, error) {
	d := decoder{b: b}
	r := KVResponse{Status: KVStatus(d.byte())}
	if r.Status < KVOK || r.Status > KVCompacted {
		d.fail(fmt.Sprintf("unknown status %d", r.Status))
	}
	r.Rev = d.uvarint("revision")
	r.Value = d.bytes(MaxValueSize, "value")
	n := d.uvarint("pair count")
	// A pair takes at least three bytes.
	if n > uint64(len(d.b)/3) || n > MaxRangeLimit {
		d.fail(fmt.Sprintf("%d pairs in %d bytes", n, len(d.b)))
		n = 0
	}
	if n > 0 {
		r.Pairs = make([]KVPair, n)
		for i := range r.Pairs {
			r.Pairs[i] = KVPair{Key: d.bytes(MaxKeySize, "key"), Value: d.bytes(MaxValueSize, "value"), Rev: d.uvarint("revision")}
		}
	}
	switch d.byte() {
	case 0:
	case 1:
		r.More = true
	default:
		d.fail("bad more flag")
	}
	r.Err = string(d.bytes(1<<16, "error"))
	if d.err == nil && len(d.b) != 0 {
		r.Revision, r.CreateRev, r.Version, r.Count = d.uvarint("store revision"), d.uvarint("create revision"), d.uvarint("version"), d.uvarint("count")
		for i := range r.Pairs {
			r.Pairs[i].CreateRev, r.Pairs[i].Version = d.uvarint("create revision"), d.uvarint("version")
		}
		if d.err == nil && len(d.b) != 0 {
			switch {
			case nested:
				d.fail("a txn answer inside a txn answer")
			case d.b[0] == leaseSection:
				decodeLeaseResponse(&d, &r)
			default:
				decodeTxnResponse(&d, &r)
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return KVResponse{}, fmt.Errorf("statemachine: malformed kv response: %s", d.err)
	}
	return r, nil
}

// KV is the key-value machine: put, get, delete, compare-and-swap and prefix
// range over byte-string keys. A global revision counts every write; each
// key carries the revision of its last write.
//
// Keys are spread over kvShards maps so that Freeze is cheap: a frozen shard
// is shared with the snapshot being written and copied on its next write,
// which costs one shard, not the whole state.
//
// TODO: range sorts the matching keys on every call, O(n log n) in the keys
// that match; an ordered index can replace the maps when ranges get hot.
type KV struct {
	shards [kvShards]map[string]kvEntry
	// frozen[i]: shards[i] is shared with a snapshot being written and must
	// be copied before it changes.
	frozen [kvShards]bool
	rev    uint64
	n      int // keys in all shards
	hist   history
	// leases are the leases granted, nextLease the next number to try,
	// and leaseGen counts grants and revokes (leases.go).
	leases              map[uint64]*kvLease
	nextLease, leaseGen uint64
	// legacy: the state came from a version 1 snapshot or from commands
	// written before protocol version 7, so the keys' create revisions
	// and versions depend on where each member began; Normalize makes
	// them the same everywhere (see Normalizer).
	legacy bool
}

const kvShards = 256

type kvEntry struct {
	value []byte // Invariant: never modified in place (a snapshot may share it)
	rev   uint64 // mod_revision: the last write's
	// create is the revision of the write that created the key, version
	// the writes since (1 after that one).
	create, version uint64
	lease           uint64 // the lease the key is attached to (0: none)
}

// NewKV returns an empty KV machine.
func NewKV() *KV {
	kv := &KV{}
	for i := range kv.shards {
		kv.shards[i] = map[string]kvEntry{}
	}
	return kv
}

// shard returns the shard key k lives in (FNV-1a).
func shard(k string) int {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h = (h ^ uint32(k[i])) * 16777619
	}
	return int(h % kvShards)
}

func (kv *KV) lookup(k []byte) (kvEntry, bool) {
	e, ok := kv.shards[shard(string(k))][string(k)]
	return e, ok
}

// writable returns key k's shard, copied first if a snapshot shares it.
func (kv *KV) writable(k string) map[string]kvEntry {
	i := shard(k)
	if kv.frozen[i] {
		kv.shards[i] = maps.Clone(kv.shards[i])
		kv.frozen[i] = false
	}
	return kv.shards[i]
}

// Rev returns the global revision: the number of writes applied.
func (kv *KV) Rev() uint64 { return kv.rev }

// Len returns the number of keys.
func (kv *KV) Len() int { return kv.n }

// Apply executes an encoded KVRequest and returns an encoded KVResponse.
func (kv *KV) Apply(_ uint64, cmd []byte) []byte {
	req, err := DecodeKVRequest(cmd)
	if err != nil {
		return KVResponse{Status: KVBadRequest, Err: err.Error(), Revision: kv.rev}.Encode()
	}
	resp := kv.apply(req)
	resp.Revision = kv.rev
	return resp.Encode()
}

// apply runs one command as one change: its writes, if any, take the next
// revision.
func (kv *KV) apply(r KVRequest) KVResponse {
	if r.Op == KVTxn {
		resp := kv.txn(r)
		kv.trim()
		return resp
	}
	switch r.Op {
	case KVCompact:
		return kv.compact(r.Rev)
	case KVLeaseGrant:
		return kv.grant(r.Lease, r.TTL)
	case KVLeaseList:
		return kv.listLeases()
	case KVLeaseRevoke:
		resp, wrote := kv.revoke(r.Lease, kv.rev+1)
		if wrote {
			kv.rev++
			kv.trim()
		}
		return resp
	}
	resp, wrote := kv.do(r, kv.rev+1)
	if wrote {
		kv.rev++
		kv.trim()
	}
	return resp
}

// do runs operation r, stamping a write with revision rev, and reports
// whether it wrote.
func (kv *KV) do(r KVRequest, rev uint64) (KVResponse, bool) {
	switch r.Op {
	case KVPut:
		if r.Lease != 0 && kv.leases[r.Lease] == nil {
			return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("lease %d is not granted (it expired, was revoked, or never existed)", r.Lease)}, false
		}
		return kv.put(r.Key, r.Value, rev, r.Lease), true
	case KVGet:
		return kv.get(r.Key), false
	case KVDelete:
		e, ok := kv.lookup(r.Key)
		if !ok {
			return KVResponse{Status: KVNotFound}, false
		}
		delete(kv.writable(string(r.Key)), string(r.Key))
		kv.n--
		kv.attach(string(r.Key), e.lease, 0)
		kv.record(string(r.Key), rev, false, kvEntry{}, true, e)
		return KVResponse{Status: KVOK, Rev: rev, Value: e.value, CreateRev: e.create, Version: e.version}, true
	case KVCompareAndSwap:
		e, ok := kv.lookup(r.Key)
		if r.ExpectAbsent != !ok || (ok && !bytes.Equal(e.value, r.Old)) {
			return KVResponse{Status: KVCompareFailed, Value: e.value, Rev: e.rev, CreateRev: e.create, Version: e.version}, false
		}
		return kv.put(r.Key, r.Value, rev, 0), true
	case KVRange:
		return kv.rangeKeys(r), false
	case KVDeleteRange:
		keys := kv.items(r)
		if len(keys) == 0 {
			return KVResponse{Status: KVOK}, false
		}
		for _, it := range keys {
			delete(kv.writable(it.k), it.k)
			kv.attach(it.k, it.e.lease, 0)
			kv.record(it.k, rev, false, kvEntry{}, true, it.e)
		}
		kv.n -= len(keys)
		return KVResponse{Status: KVOK, Rev: rev, Count: uint64(len(keys))}, true
	}
	return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("unknown op %d", r.Op)}, false
}

func (kv *KV) put(key, value []byte, rev, lease uint64) KVResponse {
	m := kv.writable(string(key))
	prev, ok := m[string(key)]
	e := prev
	if !ok {
		kv.n++
		e = kvEntry{create: rev}
	}
	e.value, e.rev, e.version = bytes.Clone(value), rev, e.version+1
	k := string(key)
	kv.attach(k, e.lease, lease)
	e.lease = lease
	m[k] = e
	kv.record(k, rev, true, e, ok, prev)
	return KVResponse{Status: KVOK, Rev: rev, CreateRev: e.create, Version: e.version}
}

func (kv *KV) get(key []byte) KVResponse {
	e, ok := kv.lookup(key)
	if !ok {
		return KVResponse{Status: KVNotFound}
	}
	return KVResponse{Status: KVOK, Value: e.value, Rev: e.rev, CreateRev: e.create, Version: e.version}
}

// kvItem is one key and its entry.
type kvItem struct {
	k string
	e kvEntry
}

// items returns, in key order, the keys a range or delete-range names and
// their entries.
func (kv *KV) items(r KVRequest) []kvItem {
	var out []kvItem
	for _, m := range kv.shards {
		for k, e := range m {
			if covers(r, k) {
				out = append(out, kvItem{k, e})
			}
		}
	}
	slices.SortFunc(out, func(a, b kvItem) int { return strings.Compare(a.k, b.k) })
	return out
}

func (kv *KV) rangeKeys(r KVRequest) KVResponse {
	resp, _ := kv.rangeWithin(r, MaxRangeBytes, true)
	return resp
}

// rangeWithin answers a range with at most budget bytes of keys and values
// (and, with atLeastOne, one pair whatever its size), and returns the bytes
// it used.
func (kv *KV) rangeWithin(r KVRequest, budget int, atLeastOne bool) (KVResponse, int) {
	limit := r.Limit
	if limit == 0 {
		limit = MaxRangeLimit
	}
	if resp, ok := kv.checkRev(r.Rev); !ok {
		return resp, 0
	}
	keys := kv.itemsAt(r, r.Rev)
	resp := KVResponse{Status: KVOK, Count: uint64(len(keys))}
	if r.CountOnly {
		return resp, 0
	}
	if uint64(len(keys)) > limit {
		keys, resp.More = keys[:limit], true
	}
	size := 0
	for i, it := range keys {
		e := it.e
		p := KVPair{Key: []byte(it.k), Rev: e.rev, CreateRev: e.create, Version: e.version}
		if !r.KeysOnly {
			p.Value = e.value
		}
		if next := size + len(p.Key) + len(p.Value); next > budget && (i > 0 || !atLeastOne) {
			resp.More = true
			break
		} else {
			size = next
		}
		resp.Pairs = append(resp.Pairs, p)
	}
	return resp, size
}

// Query answers a get or range without changing state.
func (kv *KV) Query(q []byte) ([]byte, error) {
	r, err := DecodeKVRequest(q)
	if err != nil {
		return nil, err
	}
	if r.Op != KVGet && r.Op != KVRange && r.Op != KVLeaseList {
		return nil, fmt.Errorf("%w: %s is not a read", ErrBadKVRequest, r.Op)
	}
	resp := kv.apply(r)
	resp.Revision = kv.rev
	return resp.Encode(), nil
}

const (
	kvMagic = "PXKV"
	// Version 1 kept each key's value and revision; version 2 also its
	// create revision and version, and whether the state is legacy (a
	// flags uvarint after the revision); version 3 (written now) the
	// history after the keys.
	kvVersion = 3
)

// Snapshot writes the revision and every key in key order.
func (kv *KV) Snapshot(w io.Writer) error {
	return writeKV(w, kv.rev, kv.n, kv.legacy, kv.shards, kv.hist, kv.leaseTable())
}

// MarkLegacy and Normalize make KV a Normalizer: keys touched before the
// first batch of the current format get create revision = their mod
// revision and version 1, at that batch's slot, on every member alike.
func (kv *KV) MarkLegacy() { kv.legacy = true }

// Normalize gives every key of a legacy state create revision = mod
// revision and version 1, and starts its history afresh; it does nothing to
// a current one.
func (kv *KV) Normalize() {
	if !kv.legacy {
		return
	}
	for i := range kv.shards {
		if kv.frozen[i] {
			kv.shards[i] = maps.Clone(kv.shards[i])
			kv.frozen[i] = false
		}
		for k, e := range kv.shards[i] {
			e.create, e.version = e.rev, 1
			kv.shards[i][k] = e
		}
	}
	// NB: members that began at different places hold different
	// histories too: they all start here.
	kv.hist.drop(len(kv.hist.events))
	kv.hist.bytes, kv.hist.compacted = 0, kv.rev
	kv.legacy = false
}

// Freeze captures the state for a snapshot written later, from another
// goroutine, while Apply goes on (Freezer). It costs nothing now; each shard
// is copied on its first write after it.
func (kv *KV) Freeze() func(w io.Writer) error {
	shards, rev, n, legacy, hist, leases := kv.shards, kv.rev, kv.n, kv.legacy, kv.hist, kv.leaseTable()
	for i := range kv.frozen {
		kv.frozen[i] = true
	}
	return func(w io.Writer) error { return writeKV(w, rev, n, legacy, shards, hist, leases) }
}

func writeKV(w io.Writer, rev uint64, n int, legacy bool, shards [kvShards]map[string]kvEntry, hist history, leases leaseTable) error {
	bw := bufio.NewWriter(w)
	err := writeHeader(bw, kvMagic, kvVersion)
	if err == nil {
		err = putUvarint(bw, rev)
	}
	if err == nil {
		flags := uint64(0)
		if legacy {
			flags = 1
		}
		err = putUvarint(bw, flags)
	}
	if err == nil {
		err = putUvarint(bw, uint64(n))
	}
	keys := make([]string, 0, n)
	for _, m := range shards {
		for k := range m {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err != nil {
			break
		}
		e := shards[shard(k)][k]
		if err = putBytes(bw, []byte(k)); err == nil {
			if err = putBytes(bw, e.value); err == nil {
				for _, x := range []uint64{e.rev, e.create, e.version, e.lease} {
					if err == nil {
						err = putUvarint(bw, x)
					}
				}
			}
		}
	}
	if err == nil {
		err = writeHistory(bw, hist)
	}
	if err == nil {
		err = writeLeases(bw, leases)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("statemachine: write kv snapshot: %w", err)
	}
	return nil
}

// Restore replaces the state with a snapshot written by Snapshot. On error
// the state is unchanged.
func (kv *KV) Restore(r io.Reader) error {
	br := asBufioReader(r)
	version, err := readHeaderFrom(br, kvMagic, 1, kvVersion)
	if err != nil {
		return err
	}
	rev, err := readUvarint(br, "revision")
	if err != nil {
		return err
	}
	legacy := version < 2
	if version >= 2 {
		flags, err := readUvarint(br, "flags")
		if err != nil {
			return err
		}
		if flags > 1 {
			return fmt.Errorf("%w: kv flags %#x", ErrBadSnapshot, flags)
		}
		legacy = flags == 1
	}
	n, err := readUvarint(br, "key count")
	if err != nil {
		return err
	}
	var shards [kvShards]map[string]kvEntry
	for i := range shards {
		shards[i] = map[string]kvEntry{}
	}
	var prev []byte
	for i := uint64(0); i < n; i++ {
		k, err := readBytes(br, MaxKeySize, "key")
		if err != nil {
			return err
		}
		if i > 0 && bytes.Compare(k, prev) <= 0 {
			return fmt.Errorf("%w: key %q out of order after %q", ErrBadSnapshot, k, prev)
		}
		prev = k
		v, err := readBytes(br, MaxValueSize, "value")
		if err != nil {
			return err
		}
		kr, err := readUvarint(br, "key revision")
		if err != nil {
			return err
		}
		if kr == 0 || kr > rev {
			return fmt.Errorf("%w: key %q at revision %d, snapshot at %d", ErrBadSnapshot, k, kr, rev)
		}
		e := kvEntry{value: v, rev: kr, create: kr, version: 1} // NB: what version 1 did not keep
		if version >= 2 {
			if e.create, err = readUvarint(br, "create revision"); err != nil {
				return err
			}
			if e.version, err = readUvarint(br, "version"); err != nil {
				return err
			}
			if version >= 3 {
				if e.lease, err = readUvarint(br, "lease"); err != nil {
					return err
				}
			}
			if e.create == 0 || e.create > kr || e.version == 0 || e.version > kr-e.create+1 {
				return fmt.Errorf("%w: key %q created at revision %d, written at %d, version %d", ErrBadSnapshot, k, e.create, kr, e.version)
			}
		}
		shards[shard(string(k))][string(k)] = e
	}
	var hist history
	var leases map[uint64]*kvLease
	var nextLease uint64
	if version >= 3 {
		if hist, err = readHistory(br, rev); err != nil {
			return err
		}
		if leases, nextLease, err = readLeases(br, &shards); err != nil {
			return err
		}
	} else {
		// NB: an older snapshot kept no history: it starts here.
		hist.compacted = rev
	}
	kv.shards, kv.rev, kv.n, kv.legacy, kv.hist = shards, rev, int(n), legacy, hist
	kv.leases, kv.nextLease = leases, nextLease
	kv.leaseGen++
	kv.frozen = [kvShards]bool{}
	return nil
}

// uvarintLen is the length of the shortest encoding of x; decoders refuse
// longer ones so that every value has exactly one encoding.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// decoder reads the KV encodings; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(x) {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes(limit uint64, what string) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > limit || n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("%s of %d bytes (limit %d, %d left)", what, n, limit, len(d.b)))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}
