package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/paxosd/paxosd/paxos"
)

func sampleMessages() []paxos.Message {
	b := paxos.Ballot{Round: 7, Node: 2}
	v := paxos.EncodeBatch([]paxos.Command{{Session: 9, Seq: 1, Data: []byte("put a 1")}})
	return []paxos.Message{
		{Type: paxos.MsgPrepare, From: 2, To: 1, Ballot: b, Slot: 5},
		{Type: paxos.MsgPromise, From: 1, To: 2, Ballot: b, Slot: 5, Entries: []paxos.Entry{{Slot: 5, Ballot: paxos.Ballot{Round: 3, Node: 1}, Value: v}, {Slot: 6, Ballot: paxos.Ballot{Round: 3, Node: 1}}}},
		{Type: paxos.MsgAccept, From: 2, To: 3, Ballot: b, Slot: 1 << 40, Value: v},
		{Type: paxos.MsgAccepted, From: 3, To: 2, Ballot: b, Slot: 12},
		{Type: paxos.MsgNack, From: 3, To: 2, Ballot: paxos.Ballot{Round: 1 << 63, Node: 1 << 62}},
		{Type: paxos.MsgDecide, From: 2, To: 1, Ballot: b, Entries: []paxos.Entry{{Slot: 1, Value: v}}},
		{Type: paxos.MsgHeartbeat, From: 2, To: 1, Ballot: b, Commit: 99},
		{Type: paxos.MsgCatchUp, From: 1, To: 3, Slot: 4},
		{Type: paxos.MsgCatchUpReply, From: 3, To: 1, Commit: 10, Entries: []paxos.Entry{{Slot: 4}, {Slot: 5, Value: v}}},
		{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{{Session: 1, Seq: 2, Data: []byte("x")}, {}}},
		{Type: paxos.MsgSnapshotted, From: 1, To: 2, Slot: 1 << 33},
		{Type: paxos.MsgSnapshotOffer, From: 3, To: 1, Slot: 700, Commit: 812},
		{Type: paxos.MsgSnapshotPull, From: 1, To: 3, Slot: 700, Offset: 1 << 20},
		{Type: paxos.MsgSnapshotChunk, From: 3, To: 1, Slot: 700, Offset: 1 << 20, Size: 5 << 20, Sum: 0xfedcba98, Value: v},
		{Type: paxos.MsgSnapshotChunk, From: 3, To: 1, Slot: 700},
	}
}

// normalize treats nil and empty byte strings alike, as the wire does, and
// drops the receiver, which is not on the wire.
func normalize(m paxos.Message) paxos.Message {
	m.To = 0
	if len(m.Value) == 0 {
		m.Value = nil
	}
	es := make([]paxos.Entry, len(m.Entries))
	for i, e := range m.Entries {
		if len(e.Value) == 0 {
			e.Value = nil
		}
		es[i] = e
	}
	m.Entries = es
	cs := make([]paxos.Command, len(m.Cmds))
	for i, c := range m.Cmds {
		if len(c.Data) == 0 {
			c.Data = nil
		}
		cs[i] = c
	}
	m.Cmds = cs
	return m
}

func messagesEqual(a, b paxos.Message) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func decodeMessage(body []byte) (paxos.Message, error) {
	var m paxos.Message
	err := NewDecoder().Decode(body, &m)
	return m, err
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		frame := Append(nil, &m)
		body, err := ReadFrame(bytes.NewReader(frame), DefaultMaxFrame, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMessage(body)
		if err != nil {
			t.Fatalf("decode %v: %v", m, err)
		}
		if got.To != 0 {
			t.Fatalf("decoded To %d: the receiver is not on the wire", got.To)
		}
		if !messagesEqual(got, m) {
			t.Fatalf("round trip of %+v: got %+v", m, got)
		}
	}
}

// TestMinimumSizes checks that no struct encodes in fewer bytes than the
// decoder assumes when it bounds an array's length.
func TestMinimumSizes(t *testing.T) {
	for _, v := range []any{&paxos.Ballot{}, &paxos.Entry{}, &paxos.Command{}, &paxos.Message{}, &Hello{}} {
		size := len(Append(nil, v)) - HeaderSize
		if p := planOf(v); size < p.min {
			t.Errorf("the zero %T encodes in %d bytes, but the decoder assumes at least %d", v, size, p.min)
		}
	}
}

// TestTagRules checks that a type breaking the tag rules is refused when
// its plan is built, not silently sent without a field.
func TestTagRules(t *testing.T) {
	type untagged struct{ A uint64 }
	type dup struct {
		A uint64 `msgpack:"a"`
		B uint64 `msgpack:"a"`
	}
	type badOption struct {
		A uint64 `msgpack:"a,inline"`
	}
	type unsupported struct {
		A int64 `msgpack:"a"`
	}
	for _, v := range []any{&untagged{}, &dup{}, &badOption{}, &unsupported{}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%T was accepted", v)
				}
			}()
			Append(nil, v)
		}()
	}
}

func TestFrameLimit(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<31)
	_, err := ReadFrame(bytes.NewReader(hdr[:]), 1<<20, nil)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("2 GiB frame against a 1 MiB limit: got %v, want ErrFrameTooLarge", err)
	}
	// A frame that declares more than it holds is a truncation, not a
	// success, and costs only what was sent.
	binary.BigEndian.PutUint32(hdr[:], 900<<10)
	_, err = ReadFrame(io.MultiReader(bytes.NewReader(hdr[:]), strings.NewReader("abc")), 1<<20, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: got %v, want io.ErrUnexpectedEOF", err)
	}
	// A sender that declares 60 MiB and sends ten bytes costs one read
	// chunk, not the declared size.
	binary.BigEndian.PutUint32(hdr[:], 60<<20)
	used := measureAlloc(func() {
		_, _ = ReadFrame(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10))), 64<<20, nil) // NB: only the cost matters
	})
	if used > 4*ReadChunk {
		t.Fatalf("a declared 60 MiB frame with 10 bytes sent allocated %d bytes", used)
	}
	// Reading a frame that fits reuses the buffer.
	buf := make([]byte, 0, 64)
	body, err := ReadFrame(bytes.NewReader(Append(nil, &sampleMessages()[0])), 1<<20, buf)
	if err != nil || &body[0] != &buf[:1][0] {
		t.Fatalf("small frame: err %v, buffer reused %v", err, err == nil && &body[0] == &buf[:1][0])
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Append(nil, &sampleMessages()[1])[HeaderSize:]
	ballot := map[string]any{"r": 1, "n": 1}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x93, 1, 2, 3}},
		{"truncated", good[:len(good)-3]},
		{"trailing bytes", append(append([]byte{}, good...), 0xc0)},
		{"unknown type", mustBody(t, map[string]any{"t": 99, "f": 1, "b": ballot})},
		{"unknown key", mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot, "zz": 1})},
		{"receiver on the wire", mustBody(t, map[string]any{"t": 1, "f": 1, "o": 2, "b": ballot})},
		{"missing ballot", mustBody(t, map[string]any{"t": 1, "f": 1})},
		{"missing ballot round", mustBody(t, map[string]any{"t": 1, "f": 1, "b": map[string]any{"n": 1}})},
		{"wrong value type", mustBody(t, map[string]any{"t": "x", "f": 1, "b": ballot})},
		{"checksum above 32 bits", mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot, "k": uint64(1) << 32})},
		{"type above 8 bits", mustBody(t, map[string]any{"t": 257, "f": 1, "b": ballot})},
		{"nil sender", mustBody(t, map[string]any{"t": 1, "f": nil, "b": ballot})},
		{"negative slot", mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot, "s": -5})},
		{"nil value", mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot, "v": nil})},
		{"nil entries", mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot, "e": nil})},
		{"nil ballot", mustBody(t, map[string]any{"t": 1, "f": 1, "b": nil})},
		{"repeated key", append(append([]byte{0x84}, mustBody(t, map[string]any{"t": 1})[1:]...), mustBody(t, map[string]any{"t": 1, "f": 1, "b": ballot})[1:]...)},
		// A bin32 that claims 4 GiB in a 20-byte body.
		{"length bomb bytes", []byte{0x84, 0xa1, 't', 3, 0xa1, 'f', 1, 0xa1, 's', 2, 0xa1, 'v', 0xc6, 0xff, 0xff, 0xff, 0xff, 0}},
		// An array that claims 4 billion entries.
		{"length bomb array", []byte{0x81, 0xa1, 'e', 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"length bomb map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := decodeMessage(tc.body); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("Decode(%x) = %v, %v; want ErrBadFrame", tc.body, m, err)
			}
		})
	}
}

// mustBody encodes v with msgpack's own reflection, for hand-made bad
// inputs.
func mustBody(t *testing.T, v map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// allocBound is how much decoding a body of n bytes may allocate: a small
// multiple of n plus a constant for the decoder's fixed costs.
func allocBound(n int) uint64 { return uint64(8*n) + 2048 }

// measureAlloc returns the bytes f allocated on the heap. Other goroutines
// (the fuzzing engine's among them) allocate too, so it takes the least of a
// few runs: noise only ever adds.
func measureAlloc(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(Append(nil, &m)[HeaderSize:])
	}
	f.Add([]byte{0x81, 0xa1, 'e', 0xdd, 0x00, 0x10, 0x00, 0x00})
	// Arrays that declare as many elements as there are bytes left: the
	// decoder must not pay a whole element per byte.
	f.Add(append([]byte{0x81, 0xa1, 'e', 0xdc, 0x01, 0x00}, make([]byte, 256)...))
	f.Add(append([]byte{0x81, 0xa1, 'x', 0xdc, 0x01, 0x00}, make([]byte, 256)...))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, body []byte) {
		var m paxos.Message
		var err error
		used := measureAlloc(func() { err = d.Decode(body, &m) })
		if used > allocBound(len(body)) {
			t.Fatalf("decoding %d bytes allocated %d bytes (bound %d)", len(body), used, allocBound(len(body)))
		}
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		var m2 paxos.Message
		if err := d.Decode(Append(nil, &m)[HeaderSize:], &m2); err != nil || !messagesEqual(m, m2) {
			t.Fatalf("round trip of %+v: got %+v, %v", m, m2, err)
		}
	})
}

func BenchmarkAppendFrame(b *testing.B) {
	m := sampleMessages()[2] // an Accept with a small value
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = Append(buf[:0], &m)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	body := Append(nil, &sampleMessages()[1])[HeaderSize:] // a Promise with two entries
	d := NewDecoder()
	b.ReportAllocs()
	var m paxos.Message
	for b.Loop() {
		if err := d.Decode(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHelloSkipsUnknownKeys: a Hello from a later version, with a key this
// one does not know, still decodes, so the version can be told; every other
// frame refuses unknown keys.
func TestHelloSkipsUnknownKeys(t *testing.T) {
	body := mustBody(t, map[string]any{"k": 1, "v": 9, "f": 2, "zz": "a new key", "zy": -3, "zx": uint64(1) << 40})
	var h Hello
	if err := NewDecoder().Decode(body, &h); err != nil || h.Version != 9 || h.From != 2 {
		t.Fatalf("a later Hello: %+v, %v", h, err)
	}
	// An unknown key's value is bounded like every other: a string that
	// claims more than the frame holds is refused, and so is a value the
	// skip does not read (a map).
	for _, bad := range [][]byte{
		{0x83, 0xa1, 'k', 1, 0xa1, 'v', 4, 0xa2, 'z', 'z', 0xdb, 0x7f, 0xff, 0xff, 0xff},
		mustBody(t, map[string]any{"k": 1, "v": 4, "zz": map[string]any{"a": 1}}),
	} {
		if err := NewDecoder().Decode(bad, &h); !errors.Is(err, ErrBadFrame) {
			t.Fatalf("Hello %x: %v, want ErrBadFrame", bad, err)
		}
	}
	var m paxos.Message
	if err := NewDecoder().Decode(mustBody(t, map[string]any{"t": 1, "f": 1, "b": map[string]any{"r": 1, "n": 1}, "zz": 1}), &m); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("a Message with an unknown key: %v, want ErrBadFrame", err)
	}
}

// TestReadFrameKnowsTLS reads the first bytes of a TLS handshake and of a
// TLS alert as a frame: the error must say the other side speaks TLS, not
// that a frame is too large.
func TestReadFrameKnowsTLS(t *testing.T) {
	for _, b := range [][]byte{{0x16, 0x03, 0x01, 0x02, 0x00}, {0x15, 0x03, 0x03, 0x00, 0x02}} {
		if _, err := ReadFrame(bytes.NewReader(b), MaxHelloFrame, nil); !errors.Is(err, ErrTLS) {
			t.Errorf("ReadFrame(% x) = %v, want ErrTLS", b, err)
		}
	}
	// A frame as large that does not start like TLS is only too large.
	if _, err := ReadFrame(bytes.NewReader([]byte{0x17, 0x03, 0x01, 0x02}), MaxHelloFrame, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("got %v, want ErrFrameTooLarge", err)
	}
}
