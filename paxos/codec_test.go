package paxos

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
)

func sampleMessages() []Message {
	b := Ballot{Round: 7, Node: 2}
	v := EncodeBatch([]Command{{Session: 9, Seq: 1, Data: []byte("put a 1")}})
	return []Message{
		{Type: MsgPrepare, From: 2, To: 1, Ballot: b, Slot: 5},
		{Type: MsgPromise, From: 1, To: 2, Ballot: b, Slot: 5, Entries: []Entry{{Slot: 5, Ballot: Ballot{3, 1}, Value: v}, {Slot: 6, Ballot: Ballot{3, 1}}}},
		{Type: MsgAccept, From: 2, To: 3, Ballot: b, Slot: 1 << 40, Value: v},
		{Type: MsgAccepted, From: 3, To: 2, Ballot: b, Slot: 12},
		{Type: MsgNack, From: 3, To: 2, Ballot: Ballot{Round: 1 << 63, Node: 1 << 62}},
		{Type: MsgDecide, From: 2, To: 1, Ballot: b, Entries: []Entry{{Slot: 1, Value: v}}},
		{Type: MsgHeartbeat, From: 2, To: 1, Ballot: b, Commit: 99},
		{Type: MsgCatchUp, From: 1, To: 3, Slot: 4},
		{Type: MsgCatchUpReply, From: 3, To: 1, Commit: 10, Entries: []Entry{{Slot: 4}, {Slot: 5, Value: v}}},
		{Type: MsgPropose, From: 1, To: 1, Cmds: []Command{{Session: 1, Seq: 2, Data: []byte("x")}, {}}},
		{Type: MsgSnapshotted, From: 1, To: 2, Slot: 1 << 33},
		{Type: MsgSnapshotOffer, From: 3, To: 1, Slot: 700, Commit: 812},
		{Type: MsgSnapshotPull, From: 1, To: 3, Slot: 700, Offset: 1 << 20},
		{Type: MsgSnapshotChunk, From: 3, To: 1, Slot: 700, Offset: 1 << 20, Size: 5 << 20, Sum: 0xfedcba98, Value: v},
		{Type: MsgSnapshotChunk, From: 3, To: 1, Slot: 700},
	}
}

// messagesEqual compares messages treating nil and empty byte strings alike,
// as the wire does.
func messagesEqual(a, b Message) bool {
	norm := func(m Message) Message {
		if len(m.Value) == 0 {
			m.Value = nil
		}
		es := make([]Entry, len(m.Entries))
		for i, e := range m.Entries {
			if len(e.Value) == 0 {
				e.Value = nil
			}
			es[i] = e
		}
		m.Entries = es
		cs := make([]Command, len(m.Cmds))
		for i, c := range m.Cmds {
			if len(c.Data) == 0 {
				c.Data = nil
			}
			cs[i] = c
		}
		m.Cmds = cs
		return m
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		frame := AppendFrame(nil, m)
		got, err := DecodeFrame(bytes.NewReader(frame))
		if err != nil {
			t.Fatalf("decode %v: %v", m, err)
		}
		if got.To != 0 {
			t.Fatalf("decoded To %d: the receiver is not on the wire", got.To)
		}
		got.To = m.To
		if !messagesEqual(got, m) {
			t.Fatalf("round trip of %+v: got %+v", m, got)
		}
	}
}

func TestMinimumSizes(t *testing.T) {
	enc := func(v wireEncoder) int {
		return len(appendFrame(nil, v)) - FrameHeaderSize
	}
	for _, tc := range []struct {
		name      string
		size, min int
	}{
		{"ballot", enc(Ballot{}), minBallotSize},
		{"entry", enc(Entry{}), minEntrySize},
		{"command", enc(Command{}), minCommandSize},
	} {
		if tc.size < tc.min {
			t.Errorf("smallest %s encodes in %d bytes, but the decoder assumes at least %d", tc.name, tc.size, tc.min)
		}
	}
	st := &Status{Members: []MemberInfo{{}}}
	withOne := enc(ClientResponse{Status: st})
	st.Members = nil
	if d := withOne - enc(ClientResponse{Status: st}); d < minMemberInfoSize {
		t.Errorf("smallest member info encodes in %d bytes, but the decoder assumes at least %d", d, minMemberInfoSize)
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
		ReadFrame(io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10))), 64<<20, nil)
	})
	if used > 4*frameChunk {
		t.Fatalf("a declared 60 MiB frame with 10 bytes sent allocated %d bytes", used)
	}
	// Reading a frame that fits reuses the buffer.
	buf := make([]byte, 0, 64)
	body, err := ReadFrame(bytes.NewReader(AppendFrame(nil, sampleMessages()[0])), 1<<20, buf)
	if err != nil || &body[0] != &buf[:1][0] {
		t.Fatalf("small frame: err %v, buffer reused %v", err, err == nil && &body[0] == &buf[:1][0])
	}
}

func TestDecodeRejects(t *testing.T) {
	good := AppendFrame(nil, sampleMessages()[1])[FrameHeaderSize:]
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x93, 1, 2, 3}},
		{"truncated", good[:len(good)-3]},
		{"trailing bytes", append(append([]byte{}, good...), 0xc0)},
		{"unknown type", mustBody(t, map[string]any{"t": 99, "f": 1, "b": map[string]any{"r": 1, "n": 1}})},
		{"unknown key", mustBody(t, map[string]any{"t": 1, "f": 1, "b": map[string]any{"r": 1, "n": 1}, "zz": 1})},
		{"receiver on the wire", mustBody(t, map[string]any{"t": 1, "f": 1, "o": 2, "b": map[string]any{"r": 1, "n": 1}})},
		{"missing ballot", mustBody(t, map[string]any{"t": 1, "f": 1})},
		{"wrong value type", mustBody(t, map[string]any{"t": "x", "f": 1, "b": map[string]any{"r": 1, "n": 1}})},
		// A bin32 that claims 4 GiB in a 20-byte body.
		{"length bomb bytes", []byte{0x84, 0xa1, 't', 3, 0xa1, 'f', 1, 0xa1, 's', 2, 0xa1, 'v', 0xc6, 0xff, 0xff, 0xff, 0xff, 0}},
		// An array that claims 4 billion entries.
		{"length bomb array", []byte{0x81, 0xa1, 'e', 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"length bomb map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := DecodeMessage(tc.body); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("DecodeMessage(%x) = %v, %v; want ErrBadFrame", tc.body, m, err)
			}
		})
	}
}

// mustBody encodes v with reflection, for hand-made bad inputs.
func mustBody(t *testing.T, v map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := newEncoderTo(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClientFramesRoundTrip(t *testing.T) {
	d := NewDecoder()
	h := Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 1 << 60, From: 2, To: 3, ClientAddr: "127.0.0.1:7001"}
	if got, err := d.Hello(EncodeHello(nil, h)[FrameHeaderSize:]); err != nil || got != h {
		t.Fatalf("hello round trip: got %+v, %v; want %+v", got, err, h)
	}
	req := ClientRequest{ID: 5, Kind: ReqCommand, Session: 77, Seq: 3, Data: []byte("cmd")}
	if got, err := d.ClientRequest(EncodeClientRequest(nil, req)[FrameHeaderSize:]); err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("request round trip: got %+v, %v; want %+v", got, err, req)
	}
	resp := ClientResponse{ID: 5, Code: CodeNotLeader, Message: "m", Leader: 2, LeaderAddr: "x:1", Data: []byte("d"),
		Status: &Status{MemberInfo: MemberInfo{ID: 1, Roles: RoleAll, PeerAddr: "p", ClientAddr: "c"}, Leader: 2, IsLeader: true, Promised: Ballot{7, 2},
			Chosen: 9, Applied: 8, AppliedHash: 1 << 63, Members: []MemberInfo{{ID: 1, Roles: RoleAcceptor, PeerAddr: "p1", ClientAddr: "c1"}}}}
	if got, err := d.ClientResponse(EncodeClientResponse(nil, resp)[FrameHeaderSize:]); err != nil || !reflect.DeepEqual(got, resp) {
		t.Fatalf("response round trip: got %+v, %v; want %+v", got, err, resp)
	}
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
		f.Add(AppendFrame(nil, m)[FrameHeaderSize:])
	}
	f.Add([]byte{0x81, 0xa1, 'e', 0xdd, 0x00, 0x10, 0x00, 0x00})
	// Arrays that declare as many elements as there are bytes left: the
	// decoder must not pay a whole element per byte.
	f.Add(append([]byte{0x81, 0xa1, 'e', 0xdc, 0x01, 0x00}, make([]byte, 256)...))
	f.Add(append([]byte{0x81, 0xa1, 'x', 0xdc, 0x01, 0x00}, make([]byte, 256)...))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, body []byte) {
		var m Message
		var err error
		used := measureAlloc(func() { m, err = d.Message(body) })
		if used > allocBound(len(body)) {
			t.Fatalf("decoding %d bytes allocated %d bytes (bound %d)", len(body), used, allocBound(len(body)))
		}
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		m2, err := d.Message(AppendFrame(nil, m)[FrameHeaderSize:])
		if err != nil || !messagesEqual(m, m2) {
			t.Fatalf("round trip of %+v: got %+v, %v", m, m2, err)
		}
	})
}

func FuzzDecodeClientFrames(f *testing.F) {
	f.Add(EncodeHello(nil, Hello{Kind: HelloClient, Version: 1})[FrameHeaderSize:])
	f.Add(EncodeClientRequest(nil, ClientRequest{ID: 1, Kind: ReqCommand, Data: []byte("x")})[FrameHeaderSize:])
	f.Add(EncodeClientResponse(nil, ClientResponse{Status: &Status{Members: []MemberInfo{{ID: 1}}}})[FrameHeaderSize:])
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, body []byte) {
		used := measureAlloc(func() {
			_, _ = d.Hello(body) // errors are expected; only cost and panics matter here
			_, _ = d.ClientRequest(body)
			_, _ = d.ClientResponse(body)
		})
		if used > 3*allocBound(len(body)) {
			t.Fatalf("decoding %d bytes three ways allocated %d bytes", len(body), used)
		}
	})
}

func newEncoderTo(w io.Writer) *msgpack.Encoder { return msgpack.NewEncoder(w) }

func BenchmarkAppendFrame(b *testing.B) {
	m := sampleMessages()[2] // an Accept with a small value
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = AppendFrame(buf[:0], m)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	body := AppendFrame(nil, sampleMessages()[1])[FrameHeaderSize:] // a Promise with two entries
	d := NewDecoder()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Message(body); err != nil {
			b.Fatal(err)
		}
	}
}
