package statemachine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func apply(t *testing.T, kv *KV, r KVRequest) KVResponse {
	t.Helper()
	resp, err := DecodeKVResponse(kv.Apply(1, r.Encode()))
	if err != nil {
		t.Fatalf("Apply(%+v): answer does not decode: %v", r, err)
	}
	return resp
}

func TestKVOperations(t *testing.T) {
	kv := NewKV()
	for i, tc := range []struct {
		req  KVRequest
		want KVResponse
	}{
		{KVRequest{Op: KVGet, Key: []byte("a")}, KVResponse{Status: KVNotFound}},
		{KVRequest{Op: KVPut, Key: []byte("a"), Value: []byte("1")}, KVResponse{Status: KVOK, Rev: 1}},
		{KVRequest{Op: KVGet, Key: []byte("a")}, KVResponse{Status: KVOK, Rev: 1, Value: []byte("1")}},
		{KVRequest{Op: KVCompareAndSwap, Key: []byte("a"), Old: []byte("x"), Value: []byte("2")}, KVResponse{Status: KVCompareFailed, Rev: 1, Value: []byte("1")}},
		{KVRequest{Op: KVCompareAndSwap, Key: []byte("a"), Old: []byte("1"), Value: []byte("2")}, KVResponse{Status: KVOK, Rev: 2}},
		{KVRequest{Op: KVCompareAndSwap, Key: []byte("a"), ExpectAbsent: true, Value: []byte("3")}, KVResponse{Status: KVCompareFailed, Rev: 2, Value: []byte("2")}},
		{KVRequest{Op: KVCompareAndSwap, Key: []byte("b"), ExpectAbsent: true, Value: []byte("b1")}, KVResponse{Status: KVOK, Rev: 3}},
		{KVRequest{Op: KVCompareAndSwap, Key: []byte("c"), Old: []byte(""), Value: []byte("c1")}, KVResponse{Status: KVCompareFailed}},
		{KVRequest{Op: KVPut, Key: []byte("ab"), Value: nil}, KVResponse{Status: KVOK, Rev: 4}},
		{KVRequest{Op: KVRange, Key: []byte("a")}, KVResponse{Status: KVOK, Pairs: []KVPair{{Key: []byte("a"), Value: []byte("2"), Rev: 2}, {Key: []byte("ab"), Value: []byte{}, Rev: 4}}}},
		{KVRequest{Op: KVRange, Key: []byte(""), Limit: 2}, KVResponse{Status: KVOK, More: true, Pairs: []KVPair{{Key: []byte("a"), Value: []byte("2"), Rev: 2}, {Key: []byte("ab"), Value: []byte{}, Rev: 4}}}},
		{KVRequest{Op: KVDelete, Key: []byte("a")}, KVResponse{Status: KVOK, Rev: 5, Value: []byte("2")}},
		{KVRequest{Op: KVDelete, Key: []byte("a")}, KVResponse{Status: KVNotFound}},
		{KVRequest{Op: KVGet, Key: []byte("ab")}, KVResponse{Status: KVOK, Rev: 4, Value: []byte{}}},
	} {
		got := apply(t, kv, tc.req)
		// NB: the store revision, create revisions and versions are
		// TestRevisions's.
		got.Revision, got.CreateRev, got.Version, got.Count = 0, 0, 0, 0
		for i := range got.Pairs {
			got.Pairs[i].CreateRev, got.Pairs[i].Version = 0, 0
		}
		if !reflect.DeepEqual(normalize(got), normalize(tc.want)) {
			t.Fatalf("step %d: %v(%q): got %+v, want %+v", i, tc.req.Op, tc.req.Key, got, tc.want)
		}
	}
	if kv.Rev() != 5 || kv.Len() != 2 {
		t.Fatalf("rev %d, %d keys; want 5 and 2", kv.Rev(), kv.Len())
	}
}

// normalize maps empty slices to nil so that DeepEqual compares contents.
func normalize(r KVResponse) KVResponse {
	if len(r.Value) == 0 {
		r.Value = nil
	}
	for i := range r.Pairs {
		if len(r.Pairs[i].Value) == 0 {
			r.Pairs[i].Value = nil
		}
	}
	return r
}

func TestKVKeepsNoCallerBytes(t *testing.T) {
	kv := NewKV()
	cmd := KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte("value")}.Encode()
	kv.Apply(1, cmd)
	for i := range cmd {
		cmd[i] = 'X'
	}
	if got := apply(t, kv, KVRequest{Op: KVGet, Key: []byte("k")}); string(got.Value) != "value" {
		t.Fatalf("the machine kept the caller's bytes: got %q after they changed", got.Value)
	}
}

func TestKVBadCommands(t *testing.T) {
	kv := NewKV()
	for _, cmd := range [][]byte{
		nil,
		{0},
		{byte(KVPut)},
		{byte(KVPut), 1, 'k'},    // no value
		{byte(KVGet), 5, 'k'},    // key shorter than declared
		{byte(KVGet), 1, 'k', 0}, // trailing byte
		{byte(KVCompareAndSwap), 1, 'k', 7, 0, 0},
		{byte(KVCompareAndSwap), 1, 'k', 1, 1, 'x', 0}, // absent and an old value
		{byte(KVRange), 0, 0xff, 0xff, 0x03},           // limit above the maximum
		{99, 0},
	} {
		resp, err := DecodeKVResponse(kv.Apply(1, cmd))
		if err != nil || resp.Status != KVBadRequest || resp.Err == "" {
			t.Errorf("Apply(%x): %+v, %v; want a bad-request answer saying why", cmd, resp, err)
		}
	}
	if kv.Rev() != 0 || kv.Len() != 0 {
		t.Fatal("a bad command changed state")
	}
	if _, err := kv.Query(KVRequest{Op: KVPut, Key: []byte("k")}.Encode()); !errors.Is(err, ErrBadKVRequest) {
		t.Fatalf("Query of a put: %v, want ErrBadKVRequest", err)
	}
	big := KVRequest{Op: KVPut, Key: bytes.Repeat([]byte("k"), MaxKeySize+1)}.Encode()
	if resp, _ := DecodeKVResponse(kv.Apply(1, big)); resp.Status != KVBadRequest {
		t.Fatalf("oversized key: %+v, want bad request", resp)
	}
}

func TestKVSnapshotRoundTrip(t *testing.T) {
	kv := NewKV()
	for _, k := range []string{"z", "a", "m", "b"} {
		apply(t, kv, KVRequest{Op: KVPut, Key: []byte(k), Value: []byte("v-" + k)})
	}
	apply(t, kv, KVRequest{Op: KVDelete, Key: []byte("m")})
	var s1, s2 bytes.Buffer
	if err := kv.Snapshot(&s1); err != nil {
		t.Fatal(err)
	}
	restored := NewKV()
	if err := restored.Restore(bytes.NewReader(s1.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := restored.Snapshot(&s2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1.Bytes(), s2.Bytes()) {
		t.Fatal("snapshot of a restored machine differs: the encoding is not deterministic")
	}
	if restored.Rev() != kv.Rev() || restored.Len() != 3 {
		t.Fatalf("restored rev %d with %d keys, want %d and 3", restored.Rev(), restored.Len(), kv.Rev())
	}
	// Every proper prefix of a snapshot is refused and leaves the state alone.
	for n := range s1.Len() {
		if err := restored.Restore(bytes.NewReader(s1.Bytes()[:n])); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("restore of a %d-byte prefix: %v, want ErrBadSnapshot", n, err)
		}
	}
	if restored.Len() != 3 {
		t.Fatal("a failed restore changed state")
	}
}

func TestSessionsSnapshotIncludesTable(t *testing.T) {
	s := NewSessions(NewKV())
	put := KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte("v")}.Encode()
	id := s.Open(0)
	first, _, _ := s.Apply(1, id, 1, put)
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := NewSessions(NewKV())
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	again, dup, _ := r.Apply(2, id, 1, put)
	if !dup || !bytes.Equal(again, first) {
		t.Fatalf("retry after restore: dup=%v answer %x; want the recorded answer %x", dup, again, first)
	}
	if r.Machine().(*KV).Rev() != 1 {
		t.Fatal("the retry was applied again after restore")
	}
	if _, dup, _ := r.Apply(3, 0, 0, put); dup {
		t.Fatal("a command without a session was deduplicated")
	}
}

func TestRegistry(t *testing.T) {
	m, err := New("kv")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*KV); !ok {
		t.Fatalf("New(\"kv\") = %T", m)
	}
	if _, err := New("nope"); !errors.Is(err, ErrUnknownMachine) || !strings.Contains(err.Error(), "kv") {
		t.Fatalf("New(\"nope\"): %v; want ErrUnknownMachine listing the registered names", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
	}()
	Register("kv", func() Machine { return NewKV() })
}

func FuzzDecodeKVRequest(f *testing.F) {
	for _, r := range []KVRequest{
		{Op: KVPut, Key: []byte("k"), Value: []byte("v")},
		{Op: KVGet, Key: []byte("k")},
		{Op: KVDelete, Key: []byte("k")},
		{Op: KVCompareAndSwap, Key: []byte("k"), Old: []byte("o"), Value: []byte("n")},
		{Op: KVCompareAndSwap, Key: []byte("k"), ExpectAbsent: true, Value: []byte("n")},
		{Op: KVRange, Key: []byte("p"), Limit: 10},
		{Op: KVRange, Key: []byte("a"), Ranged: true, End: []byte("b"), KeysOnly: true, Limit: 3},
		{Op: KVRange, Key: []byte(""), CountOnly: true},
		{Op: KVDeleteRange, Key: []byte("p")},
		{Op: KVDeleteRange, Key: []byte("a"), Ranged: true, End: []byte("c")},
		{Op: KVTxn, If: []KVCompare{{Key: []byte("k"), Target: CmpValue, Result: CmpEqual, Value: []byte("v")}},
			Then: []KVRequest{{Op: KVPut, Key: []byte("k"), Value: []byte("w")}}, Else: []KVRequest{{Op: KVGet, Key: []byte("k")}}},
	} {
		f.Add(r.Encode())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeKVRequest(data)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Encode(), data) {
			t.Fatalf("decode(%x) = %+v encodes as %x", data, r, r.Encode())
		}
		// Whatever decodes must apply without panicking.
		NewKV().Apply(1, data)
	})
}

func FuzzDecodeKVResponse(f *testing.F) {
	for _, r := range []KVResponse{
		{Status: KVOK, Rev: 3, Value: []byte("v")},
		{Status: KVNotFound},
		{Status: KVOK, Pairs: []KVPair{{Key: []byte("a"), Value: []byte("1"), Rev: 1, CreateRev: 1, Version: 1}}, More: true, Revision: 4},
		{Status: KVBadRequest, Err: "why"},
		{Status: KVOK, Succeeded: true, Rev: 5, Responses: []KVResponse{{Status: KVOK, Rev: 5}, {Status: KVNotFound}}},
	} {
		f.Add(r.Encode())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeKVResponse(data)
		if err != nil {
			return
		}
		r2, err := DecodeKVResponse(r.Encode())
		if err != nil || !reflect.DeepEqual(normalize(r), normalize(r2)) {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

func FuzzRestore(f *testing.F) {
	s := NewSessions(NewKV())
	s.Advance(1000)
	s.Apply(1, s.Open(0), 1, KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte("v")}.Encode())
	s.Apply(2, s.Open(time.Minute), 4, KVRequest{Op: KVPut, Key: []byte("j"), Value: []byte("w")}.Encode())
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		f.Fatal(err)
	}
	f.Add(snap.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewSessions(NewKV())
		if err := r.Restore(bytes.NewReader(data)); err != nil {
			return
		}
		// A restored state snapshots to bytes that restore to the same.
		var a, b bytes.Buffer
		if err := r.Snapshot(&a); err != nil {
			t.Fatal(err)
		}
		r2 := NewSessions(NewKV())
		if err := r2.Restore(bytes.NewReader(a.Bytes())); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if err := r2.Snapshot(&b); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("snapshot not stable across restore: %v", err)
		}
	})
}

// A frozen KV writes the state as of Freeze, whatever is applied after it,
// and the writes after it do not see the snapshot's shards change.
func TestKVFreeze(t *testing.T) {
	kv := NewKV()
	put := func(k, v string) {
		kv.Apply(0, KVRequest{Op: KVPut, Key: []byte(k), Value: []byte(v)}.Encode())
	}
	for i := range 2000 {
		put(fmt.Sprintf("k%d", i), "old")
	}
	var want bytes.Buffer
	if err := kv.Snapshot(&want); err != nil {
		t.Fatal(err)
	}
	write := kv.Freeze()
	for i := range 3000 {
		put(fmt.Sprintf("k%d", i), "new")
	}
	kv.Apply(0, KVRequest{Op: KVDelete, Key: []byte("k7")}.Encode())
	var got bytes.Buffer
	if err := write(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the frozen snapshot changed with writes applied after Freeze")
	}
	if kv.Len() != 2999 {
		t.Fatalf("Len after the writes = %d, want 2999", kv.Len())
	}
	r := NewKV()
	if err := r.Restore(&got); err != nil || r.Len() != 2000 {
		t.Fatalf("restored %d keys (%v), want 2000", r.Len(), err)
	}
}

// The store revision counts every write; each key carries the revision that
// created it, the one that last wrote it and how many writes it had since it
// was created, and a delete starts it again.
func TestRevisions(t *testing.T) {
	kv := NewKV()
	do := func(r KVRequest) KVResponse {
		t.Helper()
		resp, err := DecodeKVResponse(kv.Apply(0, r.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	put := func(k, v string) KVResponse { return do(KVRequest{Op: KVPut, Key: []byte(k), Value: []byte(v)}) }
	get := func(k string) KVResponse { return do(KVRequest{Op: KVGet, Key: []byte(k)}) }
	put("a", "1")      // rev 1
	put("b", "1")      // rev 2
	r := put("a", "2") // rev 3
	if r.Rev != 3 || r.CreateRev != 1 || r.Version != 2 || r.Revision != 3 {
		t.Fatalf("second put of a: %+v; want rev 3, created at 1, version 2, store at 3", r)
	}
	if g := get("a"); g.Rev != 3 || g.CreateRev != 1 || g.Version != 2 || g.Revision != 3 {
		t.Fatalf("get a: %+v", g)
	}
	do(KVRequest{Op: KVDelete, Key: []byte("a")}) // rev 4
	if g := get("a"); g.Status != KVNotFound || g.Revision != 4 {
		t.Fatalf("get a after delete: %+v; want not found at store revision 4", g)
	}
	if r := put("a", "3"); r.Rev != 5 || r.CreateRev != 5 || r.Version != 1 {
		t.Fatalf("put a after delete: %+v; want created again at 5, version 1", r)
	}
	rg := do(KVRequest{Op: KVRange, Key: []byte("")})
	if len(rg.Pairs) != 2 || rg.Pairs[1].Key[0] != 'b' || rg.Pairs[1].CreateRev != 2 || rg.Pairs[1].Version != 1 || rg.Revision != 5 {
		t.Fatalf("range: %+v", rg)
	}
	// Snapshots carry them; a version 1 snapshot restores with what it had.
	var snap bytes.Buffer
	if err := kv.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r2 := NewKV()
	if err := r2.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if g, _ := DecodeKVResponse(r2.Apply(0, KVRequest{Op: KVGet, Key: []byte("a")}.Encode())); g.CreateRev != 5 || g.Rev != 5 || g.Version != 1 {
		t.Fatalf("get a after a snapshot round trip: %+v", g)
	}
	var v1 bytes.Buffer
	w := bufio.NewWriter(&v1)
	writeHeader(w, kvMagic, 1)
	for _, x := range []uint64{7, 1} {
		putUvarint(w, x)
	}
	putBytes(w, []byte("k"))
	putBytes(w, []byte("v"))
	putUvarint(w, 6)
	w.Flush()
	old := NewKV()
	if err := old.Restore(&v1); err != nil {
		t.Fatal(err)
	}
	if g, _ := DecodeKVResponse(old.Apply(0, KVRequest{Op: KVGet, Key: []byte("k")}.Encode())); g.Rev != 6 || g.CreateRev != 6 || g.Version != 1 || g.Revision != 7 {
		t.Fatalf("a key of a version 1 snapshot: %+v; want rev 6, created at 6, version 1", g)
	}
	// An answer recorded before revisions were added still decodes.
	legacy := KVResponse{Status: KVOK, Rev: 3, Value: []byte("v")}.Encode()
	legacy = legacy[:len(legacy)-4] // without the four zero uvarints of the trailer
	if g, err := DecodeKVResponse(legacy); err != nil || g.Rev != 3 || g.Revision != 0 {
		t.Fatalf("an answer without the trailer: %+v, %v", g, err)
	}
}

// Ranges by prefix or by [start, end), keys only, counts, limits and the
// byte bound that pages big answers; delete-range in one revision.
func TestRanges(t *testing.T) {
	kv := NewKV()
	for _, k := range []string{"a", "ab", "b", "c"} {
		apply(t, kv, KVRequest{Op: KVPut, Key: []byte(k), Value: []byte("v" + k)})
	}
	keys := func(r KVResponse) string {
		var out []string
		for _, p := range r.Pairs {
			out = append(out, string(p.Key)+"="+string(p.Value))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		req   KVRequest
		want  string
		count uint64
		more  bool
	}{
		{KVRequest{Op: KVRange, Key: []byte("a")}, "a=va ab=vab", 2, false},
		{KVRequest{Op: KVRange, Key: []byte("a"), Ranged: true, End: []byte("b")}, "a=va ab=vab", 2, false},
		{KVRequest{Op: KVRange, Key: []byte("ab"), Ranged: true}, "ab=vab b=vb c=vc", 3, false},
		{KVRequest{Op: KVRange, Key: []byte(""), Limit: 3}, "a=va ab=vab b=vb", 4, true},
		{KVRequest{Op: KVRange, Key: []byte("b"), Ranged: true, KeysOnly: true}, "b= c=", 2, false},
		{KVRequest{Op: KVRange, Key: []byte(""), CountOnly: true}, "", 4, false},
	} {
		// Through the encoding, as commands travel.
		dec, err := DecodeKVRequest(tc.req.Encode())
		if err != nil {
			t.Fatalf("%+v does not decode: %v", tc.req, err)
		}
		r := apply(t, kv, dec)
		if got := keys(r); got != tc.want || r.Count != tc.count || r.More != tc.more {
			t.Errorf("range %+v: %q, count %d, more %v; want %q, %d, %v", tc.req, got, r.Count, r.More, tc.want, tc.count, tc.more)
		}
	}
	big := NewKV()
	for i := range 6 {
		apply(t, big, KVRequest{Op: KVPut, Key: []byte{byte('a' + i)}, Value: make([]byte, MaxValueSize)})
	}
	if r := apply(t, big, KVRequest{Op: KVRange, Key: []byte("")}); len(r.Pairs) != 3 || !r.More || r.Count != 6 {
		t.Fatalf("a range of 6 MiB: %d pairs, more %v, count %d; want 3 pairs within %d bytes and more", len(r.Pairs), r.More, r.Count, MaxRangeBytes)
	}
	before := kv.Rev()
	if r := apply(t, kv, KVRequest{Op: KVDeleteRange, Key: []byte("a")}); r.Count != 2 || r.Rev != before+1 {
		t.Fatalf("delete-range of prefix a: %+v; want 2 deleted in one revision, %d", r, before+1)
	}
	if r := apply(t, kv, KVRequest{Op: KVDeleteRange, Key: []byte("x"), Ranged: true}); r.Count != 0 || kv.Rev() != before+1 {
		t.Fatalf("delete-range of nothing: %+v, revision %d; want nothing deleted and no new revision", r, kv.Rev())
	}
	if kv.Len() != 2 {
		t.Fatalf("%d keys left, want b and c", kv.Len())
	}
}

// Members that began from different old snapshots, or from old commands,
// agree on every key's create revision and version once the first batch of
// the current format is applied (the learner calls Normalize there).
func TestLegacyStateNormalizes(t *testing.T) {
	put := KVRequest{Op: KVPut, Key: []byte("k"), Value: []byte("v")}
	a := NewKV() // replayed the old commands from the start
	a.MarkLegacy()
	apply(t, a, put)
	apply(t, a, put)
	var v1 bytes.Buffer // b restored an old snapshot taken after both
	w := bufio.NewWriter(&v1)
	writeHeader(w, kvMagic, 1)
	putUvarint(w, 2)
	putUvarint(w, 1)
	putBytes(w, []byte("k"))
	putBytes(w, []byte("v"))
	putUvarint(w, 2)
	w.Flush()
	b := NewKV()
	if err := b.Restore(&v1); err != nil {
		t.Fatal(err)
	}
	// Saved mid-way, a legacy state stays legacy across a snapshot.
	var mid bytes.Buffer
	if err := a.Snapshot(&mid); err != nil {
		t.Fatal(err)
	}
	c := NewKV()
	if err := c.Restore(&mid); err != nil {
		t.Fatal(err)
	}
	var snaps [3]bytes.Buffer
	for i, m := range []*KV{a, b, c} {
		m.Normalize()
		if err := m.Snapshot(&snaps[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(snaps[0].Bytes(), snaps[1].Bytes()) || !bytes.Equal(snaps[0].Bytes(), snaps[2].Bytes()) {
		t.Fatal("members that began from old commands, an old snapshot and a legacy new snapshot differ after Normalize")
	}
	if g := apply(t, a, KVRequest{Op: KVGet, Key: []byte("k")}); g.CreateRev != 2 || g.Version != 1 {
		t.Fatalf("after Normalize: %+v; want created at 2 (its mod revision), version 1", g)
	}
	// A current state is left alone.
	d := NewKV()
	apply(t, d, put)
	apply(t, d, put)
	d.Normalize()
	if g := apply(t, d, KVRequest{Op: KVGet, Key: []byte("k")}); g.CreateRev != 1 || g.Version != 2 {
		t.Fatalf("Normalize changed a current state: %+v", g)
	}
}
