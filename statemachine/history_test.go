package statemachine

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// state is every key's value and revisions, as a full range reads them.
type state map[string]KVPair

func readState(t *testing.T, kv *KV, rev uint64) state {
	t.Helper()
	r := apply(t, kv, KVRequest{Op: KVRange, Key: nil, Rev: rev})
	if r.Status != KVOK || r.More {
		t.Fatalf("range at revision %d: %+v", rev, r)
	}
	st := state{}
	for _, p := range r.Pairs {
		p.Value = bytes.Clone(p.Value)
		st[string(p.Key)] = p
	}
	return st
}

// watchAll reads every change of keys with prefix from revision rev on, one
// answer at a time, as a client resuming after each answer would.
func watchAll(t *testing.T, kv *KV, prefix string, rev uint64) []KVEvent {
	t.Helper()
	var out []KVEvent
	w := KVWatch{Key: []byte(prefix), Rev: rev}
	for {
		ans, _, _ := kv.Watch(w.Encode())
		r, err := DecodeKVWatchResponse(ans)
		if err != nil || r.Status != KVOK {
			t.Fatalf("watch %+v: %+v, %v", w, r, err)
		}
		for _, e := range r.Events {
			e.Key, e.Value = bytes.Clone(e.Key), bytes.Clone(e.Value)
			out = append(out, e)
		}
		if len(r.Events) == 0 {
			return out
		}
		w.Rev, w.Skip = r.NextRev, r.NextSkip
	}
}

// diff is the changes from a to b, as events at revision rev, in key order.
func diff(a, b state, rev uint64) []KVEvent {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var out []KVEvent
	for _, k := range sortedKeys(keys) {
		pa, ina := a[k]
		pb, inb := b[k]
		switch {
		case inb && (!ina || pb.Rev != pa.Rev):
			out = append(out, KVEvent{Key: []byte(k), Value: pb.Value, Rev: rev, CreateRev: pb.CreateRev, Version: pb.Version})
		case ina && !inb:
			out = append(out, KVEvent{Delete: true, Key: []byte(k), Rev: rev})
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

func randomWrite(rng *rand.Rand, step int) KVRequest {
	key := func() []byte { return []byte(fmt.Sprintf("k%d", rng.IntN(6))) }
	val := []byte(fmt.Sprintf("v%d", step))
	switch rng.IntN(6) {
	case 0, 1:
		return KVRequest{Op: KVPut, Key: key(), Value: val}
	case 2:
		return KVRequest{Op: KVDelete, Key: key()}
	case 3:
		return KVRequest{Op: KVDeleteRange, Key: []byte("k"), Ranged: true, End: []byte(fmt.Sprintf("k%d", rng.IntN(6)))}
	case 4:
		return KVRequest{Op: KVCompareAndSwap, Key: key(), ExpectAbsent: true, Value: val}
	}
	a, b := key(), key()
	if bytes.Equal(a, b) {
		b = append(b, 'x')
	}
	return KVRequest{Op: KVTxn, If: []KVCompare{{Key: a, Target: CmpExists, Result: CmpEqual, Num: 1}},
		Then: []KVRequest{{Op: KVPut, Key: a, Value: val}, {Op: KVDelete, Key: b}},
		Else: []KVRequest{{Op: KVPut, Key: b, Value: val}, {Op: KVGet, Key: a}}}
}

// Every write's events are exactly the difference it made to the state, a
// watch reports them in revision order, and a range at any past revision
// reads the state as it was then: checked against full reads taken after
// each write, so the history is not checked against itself.
func TestHistoryMatchesTheStates(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	kv := NewKV()
	states := []state{{}}
	var want []KVEvent
	for step := 0; step < 400; step++ {
		before := kv.Rev()
		apply(t, kv, randomWrite(rng, step))
		st := readState(t, kv, 0)
		if kv.Rev() != before {
			want = append(want, diff(states[len(states)-1], st, kv.Rev())...)
			states = append(states, st)
		} else if !reflect.DeepEqual(st, states[len(states)-1]) {
			t.Fatalf("step %d changed the state without a revision", step)
		}
	}
	// NB: within a revision, a transaction's changes come in the order of
	// its operations, and the diff's in key order.
	got := watchAll(t, kv, "", 1)
	if !reflect.DeepEqual(normEvents(got), normEvents(want)) {
		t.Fatalf("watch from 1:\ngot  %v\nwant %v", got, want)
	}
	want = got
	for rev := uint64(1); rev <= kv.Rev(); rev++ {
		if got := readState(t, kv, rev); !reflect.DeepEqual(got, states[rev]) {
			t.Fatalf("range at revision %d:\ngot  %v\nwant %v", rev, got, states[rev])
		}
	}
	// A watch from the middle of a revision resumes after the changes it
	// passes over.
	for i, e := range want {
		skip := uint64(0)
		for j := i - 1; j >= 0 && want[j].Rev == e.Rev; j-- {
			skip++
		}
		w := KVWatch{Rev: e.Rev, Skip: skip}
		ans, _, ready := kv.Watch(w.Encode())
		r, _ := DecodeKVWatchResponse(ans)
		if !ready || len(r.Events) == 0 || !reflect.DeepEqual(normEvents(r.Events[:1]), normEvents(want[i:i+1])) {
			t.Fatalf("watch from revision %d skip %d: %+v, want first %+v", e.Rev, skip, r, want[i])
		}
	}
}

// normEvents orders each revision's events by key and maps empty values to
// nil, for DeepEqual.
func normEvents(es []KVEvent) []KVEvent {
	out := make([]KVEvent, len(es))
	for i, e := range es {
		if len(e.Value) == 0 {
			e.Value = nil
		}
		out[i] = e
	}
	slices.SortStableFunc(out, func(a, b KVEvent) int {
		return cmp.Or(cmp.Compare(a.Rev, b.Rev), bytes.Compare(a.Key, b.Key))
	})
	return out
}

// A watch of a prefix sees only its keys; one from now on waits, and one
// whose answer is empty moves past what it looked at.
func TestWatchWaitsAndFilters(t *testing.T) {
	kv := NewKV()
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("other"), Value: []byte("1")})
	ans, _, ready := kv.Watch(KVWatch{Key: []byte("a/")}.Encode())
	r, _ := DecodeKVWatchResponse(ans)
	if !ready || r.NextRev != 2 || len(r.Events) != 0 {
		t.Fatalf("watch from now: %+v ready %v; want to start at revision 2 at once", r, ready)
	}
	q := KVWatch{Key: []byte("a/"), Rev: 2}.Encode()
	if _, next, ready := kv.Watch(q); ready || !bytes.Equal(next, q) {
		t.Fatal("a watch with nothing new was ready, or moved")
	}
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("other"), Value: []byte("2")})
	_, next, ready := kv.Watch(q)
	if w, _ := DecodeKVWatch(next); ready || w.Rev != 3 {
		t.Fatalf("after an unrelated write: ready %v, next %+v; want to wait from revision 3", ready, w)
	}
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("a/x"), Value: []byte("3")})
	ans, _, ready = kv.Watch(next)
	r, _ = DecodeKVWatchResponse(ans)
	if !ready || len(r.Events) != 1 || string(r.Events[0].Key) != "a/x" || r.Events[0].Rev != 3 || r.NextRev != 4 {
		t.Fatalf("after a write of a/x: %+v", r)
	}
}

// One revision with more changes than an answer holds is split across
// answers, none lost or repeated.
func TestWatchPagesWithinARevision(t *testing.T) {
	kv := NewKV()
	n := 2*MaxWatchEvents + 10
	for i := 0; i < n; i++ {
		apply(t, kv, KVRequest{Op: KVPut, Key: []byte(fmt.Sprintf("k%05d", i))})
	}
	apply(t, kv, KVRequest{Op: KVDeleteRange, Key: []byte("k")})
	got := watchAll(t, kv, "", uint64(n)+1)
	if len(got) != n {
		t.Fatalf("%d deletes reported, want %d", len(got), n)
	}
	for i, e := range got {
		if !e.Delete || string(e.Key) != fmt.Sprintf("k%05d", i) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
}

// A range at the store's revision inside a transaction reads the state
// before the transaction's own writes.
func TestTxnRangeAtTheCurrentRevision(t *testing.T) {
	kv := NewKV()
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte("v1")})
	r := apply(t, kv, KVRequest{Op: KVTxn, Then: []KVRequest{{Op: KVPut, Key: []byte("k"), Value: []byte("v2")}, {Op: KVRange, Key: []byte("k"), Rev: 1}}})
	if p := r.Responses[1].Pairs; len(p) != 1 || string(p[0].Value) != "v1" || p[0].Rev != 1 {
		t.Fatalf("range at revision 1 after a put in the same transaction: %+v", r.Responses[1])
	}
}

func TestCompaction(t *testing.T) {
	kv := NewKV()
	for i := 0; i < 10; i++ {
		apply(t, kv, KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte{byte('0' + i)}})
	}
	if r := apply(t, kv, KVRequest{Op: KVCompact, Rev: 11}); r.Status != KVBadRequest || !strings.Contains(r.Err, "at revision 10") {
		t.Fatalf("compact past the store: %+v", r)
	}
	if r := apply(t, kv, KVRequest{Op: KVCompact, Rev: 5}); r.Status != KVOK || kv.Rev() != 10 {
		t.Fatalf("compact 5: %+v, revision %d; want ok and no new revision", r, kv.Rev())
	}
	if r := apply(t, kv, KVRequest{Op: KVCompact, Rev: 4}); r.Status != KVCompacted || r.Rev != 5 {
		t.Fatalf("compact 4 after 5: %+v", r)
	}
	if r := apply(t, kv, KVRequest{Op: KVRange, Key: []byte("k"), Rev: 4}); r.Status != KVCompacted || r.Rev != 5 || !strings.Contains(r.Err, "revision 4 is compacted") {
		t.Fatalf("range at 4: %+v", r)
	}
	if st := readState(t, kv, 5); string(st["k"].Value) != "4" {
		t.Fatalf("range at the compacted revision itself: %v, want k=4", st)
	}
	ans, _, ready := kv.Watch(KVWatch{Rev: 5}.Encode())
	if r, _ := DecodeKVWatchResponse(ans); !ready || r.Status != KVCompacted || r.Compacted != 5 {
		t.Fatalf("watch from 5: %+v", r)
	}
	if got := watchAll(t, kv, "", 6); len(got) != 5 || got[0].Rev != 6 {
		t.Fatalf("watch from 6: %+v", got)
	}
	if r := apply(t, kv, KVRequest{Op: KVRange, Rev: 11}); r.Status != KVBadRequest || !strings.Contains(r.Err, "future") {
		t.Fatalf("range in the future: %+v", r)
	}
	// A compaction cannot hide in a transaction.
	txn := KVRequest{Op: KVTxn, Then: []KVRequest{{Op: KVCompact, Rev: 6}}}
	if _, err := DecodeKVRequest(txn.Encode()); err == nil {
		t.Fatal("a compact inside a txn decoded")
	}
}

// The history keeps at most MaxHistoryBytes, and nothing older than
// HistoryAge by the log's time, dropping whole revisions.
func TestHistoryBounds(t *testing.T) {
	kv := NewKV()
	kv.Advance(uint64(time.Hour.Milliseconds()))
	big := make([]byte, MaxValueSize)
	for i := 0; i < 40; i++ {
		apply(t, kv, KVRequest{Op: KVPut, Key: []byte{byte(i)}, Value: big})
	}
	if kv.hist.bytes > MaxHistoryBytes || kv.Compacted() == 0 {
		t.Fatalf("history holds %d bytes, compacted at %d; want at most %d", kv.hist.bytes, kv.Compacted(), MaxHistoryBytes)
	}
	kv = NewKV()
	kv.Advance(1000)
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("old")})
	kv.Advance(1000 + uint64(HistoryAge.Milliseconds()))
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("new")})
	if kv.Compacted() != 0 {
		t.Fatalf("compacted at %d with nothing older than the bound", kv.Compacted())
	}
	kv.Advance(1001 + uint64(HistoryAge.Milliseconds()))
	if kv.Compacted() != 1 || len(kv.hist.events) != 1 {
		t.Fatalf("after the first change aged out: compacted %d, %d events", kv.Compacted(), len(kv.hist.events))
	}
}

// Snapshots carry the history: a restored machine answers watches and past
// reads as the original does, from a frozen copy too.
func TestHistorySnapshot(t *testing.T) {
	kv := NewKV()
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 200; i++ {
		apply(t, kv, randomWrite(rng, i))
	}
	apply(t, kv, KVRequest{Op: KVCompact, Rev: 50})
	write := kv.Freeze()
	for i := 0; i < 50; i++ {
		apply(t, kv, randomWrite(rng, 1000+i)) // NB: changes after the freeze
	}
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		t.Fatal(err)
	}
	restored := NewKV()
	if err := restored.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if restored.Compacted() != 50 {
		t.Fatalf("restored compacted at %d", restored.Compacted())
	}
	for i := 0; i < 50; i++ {
		apply(t, restored, randomWrite(rand.New(rand.NewPCG(uint64(i), 1)), 1000+i))
	}
	// Replay the same writes on a copy of the original taken the slow way.
	again := NewKV()
	if err := again.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		apply(t, again, randomWrite(rand.New(rand.NewPCG(uint64(i), 1)), 1000+i))
	}
	if !reflect.DeepEqual(watchAll(t, restored, "", 51), watchAll(t, again, "", 51)) {
		t.Fatal("two restores of one snapshot answer watches differently")
	}
	for rev := uint64(50); rev <= restored.Rev(); rev++ {
		if !reflect.DeepEqual(readState(t, restored, rev), readState(t, again, rev)) {
			t.Fatalf("reads at %d differ", rev)
		}
	}
	var a, b bytes.Buffer
	restored.Snapshot(&a)
	again.Snapshot(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("snapshots of equal states differ")
	}
	// Every truncation of the snapshot is refused, never a panic.
	for i := 0; i < buf.Len(); i += 1 + buf.Len()/300 {
		if err := NewKV().Restore(bytes.NewReader(buf.Bytes()[:i])); err == nil {
			t.Fatalf("a snapshot cut at %d of %d bytes restored", i, buf.Len())
		}
	}
}

func TestWatchEncodings(t *testing.T) {
	w := KVWatch{Key: []byte("a"), End: []byte("b"), Ranged: true, Rev: 7, Skip: 2}
	if got, err := DecodeKVWatch(w.Encode()); err != nil || !reflect.DeepEqual(got, w) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []KVWatch{{End: []byte("b")}, {Skip: 1}} {
		if _, err := DecodeKVWatch(bad.Encode()); err == nil {
			t.Fatalf("%+v decoded", bad)
		}
	}
	r := KVWatchResponse{Status: KVOK, Events: []KVEvent{{Key: []byte("k"), Value: []byte("v"), Rev: 3, CreateRev: 2, Version: 2}, {Delete: true, Key: []byte("k"), Rev: 4}}, NextRev: 5, Revision: 4}
	b := r.Encode()
	if got, err := DecodeKVWatchResponse(b); err != nil || got.NextRev != 5 || len(got.Events) != 2 || !got.Events[1].Delete {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range b {
		if _, err := DecodeKVWatchResponse(b[:i]); err == nil {
			t.Fatalf("a response cut at %d bytes decoded", i)
		}
	}
}
