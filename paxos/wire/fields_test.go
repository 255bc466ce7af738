package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
)

// The tests here set every field by reflection, so that a field added to a
// message later is covered without anyone remembering to add it.

// framed lists every type that travels in a frame.
func framed() []any {
	return []any{&paxos.Message{}, &Hello{}, &clientapi.Request{}, &clientapi.Response{}}
}

type valid interface{ Valid() bool }

// fill sets every field of v, recursively, to a non-zero value derived from
// *n, which it advances, so that two fills with different n differ in every
// field. Slices get two elements, pointers a filled target.
func fill(v reflect.Value, n *uint64) {
	*n++
	switch v.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := *n%(1<<min(v.Type().Bits(), 16)-1) + 1
		v.SetUint(u)
		if vv, ok := v.Interface().(valid); ok {
			// Enums: the first valid value at or after u, wrapping.
			for i := uint64(0); !vv.Valid() && i < 256; i++ {
				v.SetUint((u+i)%256 + 1)
				vv = v.Interface().(valid)
			}
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(fmt.Sprintf("b%d", *n)))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), n)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("msgpack") != "-" {
				fill(v.Field(i), n)
			}
		}
	default:
		panic(fmt.Sprintf("fill: unsupported %v", v.Type()))
	}
}

func roundTrip(t *testing.T, v any) any {
	t.Helper()
	frame := Append(nil, v)
	body, err := ReadFrame(bytes.NewReader(frame), DefaultMaxFrame, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	if err := NewDecoder().Decode(body, got); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return got
}

// TestEveryFieldRoundTrips sets every field of every framed type and checks
// that all of them come back.
func TestEveryFieldRoundTrips(t *testing.T) {
	for _, v := range framed() {
		n := uint64(0)
		fill(reflect.ValueOf(v).Elem(), &n)
		if got := roundTrip(t, v); !reflect.DeepEqual(got, v) {
			t.Errorf("%T round trip:\n got %+v\nwant %+v", v, got, v)
		}
	}
}

// TestEachFieldAloneRoundTrips sets one wire field at a time (and the enums
// a frame needs to be valid), so that every optional field is seen both
// present with the others absent.
func TestEachFieldAloneRoundTrips(t *testing.T) {
	for _, v := range framed() {
		full := reflect.New(reflect.TypeOf(v).Elem()).Elem()
		n := uint64(0)
		fill(full, &n)
		for _, path := range leafPaths(full.Type(), nil) {
			one := reflect.New(full.Type())
			validEnums(one.Elem())
			setPath(one.Elem(), full, path)
			if got := roundTrip(t, one.Interface()); !reflect.DeepEqual(got, one.Interface()) {
				t.Errorf("%T with only %s set: got %+v, want %+v", v, strings.Join(pathNames(full.Type(), path), "."), got, one.Interface())
			}
		}
	}
}

// validEnums sets every top-level enum of v that is invalid at zero to its
// first valid value.
func validEnums(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		if e, ok := f.Interface().(valid); ok && !e.Valid() && f.CanSet() {
			for u := uint64(1); u < 256 && !f.Interface().(valid).Valid(); u++ {
				f.SetUint(u)
			}
		}
	}
}

// TestSameSeesEveryField checks Same, which the transport uses to
// encode a broadcast once: a copy that differs in any one wire field, at
// any depth, is not the same, and a copy that differs only off the wire is.
func TestSameSeesEveryField(t *testing.T) {
	for _, v := range framed() {
		base := reflect.ValueOf(v).Elem()
		n := uint64(0)
		fill(base, &n)
		for _, path := range leafPaths(base.Type(), nil) {
			other := reflect.New(base.Type())
			other.Elem().Set(base) // shares slices and pointers with base
			if !Same(v, other.Interface()) {
				t.Fatalf("%T: a shallow copy is not Same", v)
			}
			alt := reflect.New(base.Type()).Elem()
			n2 := uint64(1000)
			fill(alt, &n2)
			setPath(other.Elem(), alt, path)
			if leaf := other.Elem().FieldByIndex(path); reflect.DeepEqual(leaf.Interface(), base.FieldByIndex(path).Interface()) {
				nextValid(leaf) // an enum with few values drew the same one
			}
			name := fmt.Sprintf("%T.%s", v, strings.Join(pathNames(base.Type(), path), "."))
			if Same(v, other.Interface()) {
				t.Errorf("%s differs, but Same says the encodings are alike", name)
			}
			if bytes.Equal(Append(nil, v), Append(nil, other.Interface())) {
				t.Errorf("%s differs, but the encodings are equal: the field is not on the wire", name)
			}
		}
	}
	// The receiver is not on the wire: a broadcast shares one frame.
	a := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Slot: 3, Value: paxos.Value("v")}
	b := a
	b.To = 3
	if !Same(&a, &b) || !bytes.Equal(Append(nil, &a), Append(nil, &b)) {
		t.Error("messages that differ only in To should share a frame")
	}
	// Equal bytes in other memory: Same may say no, never a wrong yes.
	b.Value = paxos.Value("v")
	if Same(&a, &b) {
		t.Error("Same looked inside the value")
	}
}

// nextValid changes v, an enum or a flag, to its next valid value.
func nextValid(v reflect.Value) {
	if v.Kind() == reflect.Bool {
		v.SetBool(!v.Bool())
		return
	}
	u := v.Uint()
	for i := uint64(1); i < 256; i++ {
		v.SetUint((u + i) % 256)
		if v.Interface().(valid).Valid() {
			return
		}
	}
}

// leafPaths lists the index paths of every wire field of t, descending into
// nested structs (not through slices or pointers, which Same compares as
// whole memory).
func leafPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("msgpack") == "-" {
			continue
		}
		p := append(append([]int{}, prefix...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leafPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func setPath(dst, src reflect.Value, path []int) {
	dst.FieldByIndex(path).Set(src.FieldByIndex(path))
}

func pathNames(t reflect.Type, path []int) []string {
	var names []string
	for _, i := range path {
		f := t.Field(i)
		names = append(names, f.Name)
		t = f.Type
	}
	return names
}

// FuzzDecodeClientFrames feeds the same bytes to every decoder of a
// connection: nothing may panic, and no decoder may allocate beyond a small
// multiple of the input.
func FuzzDecodeClientFrames(f *testing.F) {
	f.Add(Append(nil, &Hello{Kind: HelloClient, Version: 1})[HeaderSize:])
	f.Add(Append(nil, &clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Data: []byte("x")})[HeaderSize:])
	f.Add(Append(nil, &clientapi.Response{Status: &clientapi.Status{Members: []clientapi.MemberInfo{{ID: 1}}}})[HeaderSize:])
	f.Add(memberBomb(1 << 10))
	for _, v := range framed() {
		n := uint64(0)
		fill(reflect.ValueOf(v).Elem(), &n)
		f.Add(Append(nil, v)[HeaderSize:])
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range framed() {
			used := measureAlloc(func() {
				_ = d.Decode(body, v) // errors are expected; only cost and panics matter here
			})
			if used > allocBound(len(body)) {
				t.Fatalf("decoding %d bytes as %T allocated %d bytes (bound %d)", len(body), v, used, allocBound(len(body)))
			}
		}
	})
}

// memberBomb is a Response whose status lists n members, each the
// smallest map the decoder accepts: four bytes of input for a 48-byte
// struct.
func memberBomb(n int) []byte {
	b := []byte{0x82, 0xa1, 'i', 0x00, 0xa1, 'S', 0x81, 0xa1, 'M', 0xdd}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for range n {
		b = append(b, 0x81, 0xa1, 'i', 0x00) // {"i":0}
	}
	return b
}

// TestSmallElementsDoNotAmplify: an array's length is held to the memory
// its elements take, not only to their smallest encoding. A member list
// declared far longer than the bytes sent, of four-byte entries that are 48
// bytes in memory, once cost 12 times the input.
func TestSmallElementsDoNotAmplify(t *testing.T) {
	body := memberBomb(1 << 16)
	var r clientapi.Response
	used := measureAlloc(func() { _ = NewDecoder().Decode(body, &r) })
	if used > allocBound(len(body)) {
		t.Fatalf("decoding %d bytes allocated %d (bound %d)", len(body), used, allocBound(len(body)))
	}
}
