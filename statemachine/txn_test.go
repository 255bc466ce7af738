package statemachine

import (
	"strings"
	"testing"
)

func TestTxn(t *testing.T) {
	kv := NewKV()
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("a"), Value: []byte("1")}) // rev 1
	txn := func(r KVRequest) KVResponse {
		t.Helper()
		r.Op = KVTxn
		dec, err := DecodeKVRequest(r.Encode())
		if err != nil {
			t.Fatalf("%+v does not decode: %v", r, err)
		}
		return apply(t, kv, dec)
	}
	put := func(k, v string) KVRequest { return KVRequest{Op: KVPut, Key: []byte(k), Value: []byte(v)} }
	get := func(k string) KVRequest { return KVRequest{Op: KVGet, Key: []byte(k)} }
	// Then: both writes in one revision, and the read after them sees the
	// first.
	r := txn(KVRequest{
		If:   []KVCompare{{Key: []byte("a"), Target: CmpValue, Result: CmpEqual, Value: []byte("1")}, {Key: []byte("b"), Target: CmpExists, Result: CmpEqual, Num: 0}},
		Then: []KVRequest{put("a", "2"), get("a"), put("b", "x")},
		Else: []KVRequest{get("a")},
	})
	if !r.Succeeded || len(r.Responses) != 3 || r.Rev != 2 || kv.Rev() != 2 {
		t.Fatalf("txn that holds: %+v; want Then run at revision 2", r)
	}
	if g := r.Responses[1]; string(g.Value) != "2" || g.Rev != 2 || g.Version != 2 || g.Revision != 2 {
		t.Fatalf("the get inside the txn: %+v; want a=2 at revision 2, version 2", g)
	}
	// Else: comparisons on versions, revisions and a missing key.
	for _, c := range []KVCompare{
		{Key: []byte("a"), Target: CmpVersion, Result: CmpGreater, Num: 5},
		{Key: []byte("a"), Target: CmpMod, Result: CmpLess, Num: 2},
		{Key: []byte("b"), Target: CmpCreate, Result: CmpNotEqual, Num: 2},
		{Key: []byte("nope"), Target: CmpValue, Result: CmpEqual, Value: []byte("")},
		{Key: []byte("nope"), Target: CmpExists, Result: CmpEqual, Num: 1},
	} {
		r := txn(KVRequest{If: []KVCompare{c}, Then: []KVRequest{put("a", "bad")}, Else: []KVRequest{get("a")}})
		if r.Succeeded || len(r.Responses) != 1 || string(r.Responses[0].Value) != "2" || kv.Rev() != 2 {
			t.Fatalf("comparison %+v held, or Else did not run: %+v", c, r)
		}
	}
	for _, c := range []KVCompare{
		{Key: []byte("nope"), Target: CmpValue, Result: CmpNotEqual, Value: []byte("x")},
		{Key: []byte("nope"), Target: CmpVersion, Result: CmpEqual, Num: 0},
		{Key: []byte("b"), Target: CmpCreate, Result: CmpEqual, Num: 2},
	} {
		if r := txn(KVRequest{If: []KVCompare{c}}); !r.Succeeded {
			t.Fatalf("comparison %+v did not hold", c)
		}
	}
	if kv.Rev() != 2 {
		t.Fatalf("transactions without writes moved the revision to %d", kv.Rev())
	}
	// Refused before anything runs.
	for _, tc := range []struct {
		r    KVRequest
		want string
	}{
		{KVRequest{Op: KVTxn, Then: []KVRequest{put("a", "1"), put("a", "2")}}, "a second time"},
		{KVRequest{Op: KVTxn, Then: []KVRequest{{Op: KVCompareAndSwap, Key: []byte("a"), Old: []byte("1"), Value: []byte("2")}}}, "inside a txn"},
		{KVRequest{Op: KVTxn, Else: []KVRequest{{Op: KVTxn}}}, "a txn inside a txn"},
		{KVRequest{Op: KVTxn, If: []KVCompare{{Key: []byte("a"), Target: CmpVersion, Result: CmpEqual, Value: []byte("x")}}}, "mixes a value and a number"},
		{KVRequest{Op: KVTxn, Then: []KVRequest{put("ab", "1"), {Op: KVDeleteRange, Key: []byte("a")}}}, "written and deleted by a range"},
		{KVRequest{Op: KVTxn, If: []KVCompare{{Key: []byte("a"), Target: CmpExists, Result: CmpNotEqual}}}, "existence is equal to 0 or 1"},
	} {
		if _, err := DecodeKVRequest(tc.r.Encode()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("txn %+v: %v; want refused, saying %q", tc.r, err, tc.want)
		}
	}
}

// A transaction's reads share one bound, so its answer stays within a few
// MiB however many big values it reads; a delete's old value is not
// returned in it.
func TestTxnAnswerIsBounded(t *testing.T) {
	kv := NewKV()
	apply(t, kv, KVRequest{Op: KVPut, Key: []byte("big"), Value: make([]byte, MaxValueSize)})
	var gets []KVRequest
	for range 70 {
		gets = append(gets, KVRequest{Op: KVGet, Key: []byte("big")})
	}
	gets = append(gets, KVRequest{Op: KVRange, Key: []byte("b")}, KVRequest{Op: KVDelete, Key: []byte("big")})
	b := kv.Apply(0, KVRequest{Op: KVTxn, Then: gets}.Encode())
	if len(b) > MaxRangeBytes+64<<10 {
		t.Fatalf("a transaction of 70 gets of 1 MiB answered %d bytes", len(b))
	}
	r, err := DecodeKVResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	served, refused := 0, 0
	for _, or := range r.Responses[:70] {
		switch or.Status {
		case KVOK:
			served++
		case KVBadRequest:
			refused++
			if !strings.Contains(or.Err, "outside it") {
				t.Fatalf("refusal %q does not say what to do", or.Err)
			}
		}
	}
	if served != 3 || refused != 67 || len(r.Responses[70].Pairs) != 0 || !r.Responses[70].More || r.Responses[71].Status != KVOK || len(r.Responses[71].Value) != 0 {
		t.Fatalf("served %d gets, refused %d, range %+v, delete %+v", served, refused, r.Responses[70].Pairs, r.Responses[71].Status)
	}
}
