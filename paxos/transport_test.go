package paxos

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

type inbox struct {
	mu   sync.Mutex
	msgs []Message
	got  chan struct{}
}

func newInbox() *inbox { return &inbox{got: make(chan struct{}, 1024)} }

func (b *inbox) deliver(m Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	b.got <- struct{}{}
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// startTransports runs a transport per member of Uniform(n) on loopback.
func startTransports(t *testing.T, n int, cluster uint64) ([]*TCPTransport, []*inbox, []string) {
	t.Helper()
	cfg := Uniform(n)
	var lns []net.Listener
	addrs := map[NodeID]string{}
	for i := 1; i <= n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs[NodeID(i)] = ln.Addr().String()
	}
	var trs []*TCPTransport
	var boxes []*inbox
	var list []string
	for i := 1; i <= n; i++ {
		b := newInbox()
		tr, err := NewTCPTransport(TransportConfig{ID: NodeID(i), Cluster: cluster, Members: cfg, Peers: addrs,
			ClientAddr: "client-" + NodeID(i).String(), Deliver: b.deliver, HandshakeTimeout: time.Second, MaxFrame: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		go tr.Serve(lns[i-1])
		t.Cleanup(func() { tr.Close() })
		trs, boxes, list = append(trs, tr), append(boxes, b), append(list, addrs[NodeID(i)])
	}
	return trs, boxes, list
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTransportDelivers(t *testing.T) {
	trs, boxes, _ := startTransports(t, 3, 77)
	want := sampleMessages()[:9] // all but the local-only Propose
	var msgs []Message
	for _, m := range want {
		m.From, m.To = 1, 2
		msgs = append(msgs, m)
	}
	trs[0].Send(msgs)
	waitFor(t, "delivery", func() bool { return boxes[1].count() == len(msgs) })
	boxes[1].mu.Lock()
	defer boxes[1].mu.Unlock()
	for i, m := range boxes[1].msgs {
		if !messagesEqual(m, msgs[i]) {
			t.Fatalf("message %d: got %v, want %v (in order, one connection)", i, m, msgs[i])
		}
	}
	if a := trs[1].ClientAddr(1); a != "client-1" {
		t.Fatalf("node 2 learned client address %q for node 1, want client-1", a)
	}
}

// dialPeer opens a raw connection and sends a hello; it returns the
// connection and whether the transport answered it.
func dialPeer(t *testing.T, addr string, h Hello) (net.Conn, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(EncodeHello(nil, h)); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFrame(c, 1024, nil)
	return c, err
}

// closed reports whether the transport closed c (reads hit EOF or reset).
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 16))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestTransportRefusesStrangers(t *testing.T) {
	_, boxes, addrs := startTransports(t, 3, 77)
	good := Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 77, From: 3, To: 1}
	for _, tc := range []struct {
		name string
		h    Hello
	}{
		{"wrong cluster", Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 78, From: 3, To: 1}},
		{"unknown node", Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 77, From: 9, To: 1}},
		{"itself", Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 77, From: 1, To: 1}},
		{"wrong version", Hello{Kind: HelloPeer, Version: 99, Cluster: 77, From: 3, To: 1}},
		{"client on peer port", Hello{Kind: HelloClient, Version: ProtocolVersion}},
		{"dialed someone else", Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: 77, From: 3, To: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialPeer(t, addrs[0], tc.h)
			if err == nil {
				t.Fatalf("hello %+v was answered", tc.h)
			}
			if !closed(c) {
				t.Fatal("connection left open")
			}
		})
	}
	// After a good hello, bad frames close the connection and deliver
	// nothing.
	frame := func(m Message) []byte { return AppendFrame(nil, m) }
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, 1<<30)
	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"garbage", []byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1}},
		{"length bomb", huge},
		{"spoofed sender", frame(Message{Type: MsgPrepare, From: 2, To: 1, Ballot: Ballot{1, 2}})},
		{"local-only type", frame(Message{Type: MsgLearned, From: 3, To: 1, Commit: 1 << 40})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialPeer(t, addrs[0], good)
			if err != nil {
				t.Fatalf("good hello refused: %v", err)
			}
			c.Write(tc.bytes)
			if !closed(c) {
				t.Fatal("connection left open")
			}
		})
	}
	if n := boxes[0].count(); n != 0 {
		t.Fatalf("%d messages from bad connections were delivered", n)
	}
	// A good frame still goes through.
	c, err := dialPeer(t, addrs[0], good)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(frame(Message{Type: MsgPrepare, From: 3, To: 1, Ballot: Ballot{1, 3}}))
	waitFor(t, "the good message", func() bool { return boxes[0].count() == 1 })
}

func TestTransportIdleStrangerIsDropped(t *testing.T) {
	_, _, addrs := startTransports(t, 2, 5)
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("read: %v (the transport should have closed the connection)", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("silent connection kept for %v, handshake timeout is 1s", took)
	}
}

func TestTransportReconnects(t *testing.T) {
	cfg := Uniform(2)
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	addr2 := ln2.Addr().String()
	ln2.Close() // node 2 is down at first
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	addrs := map[NodeID]string{1: ln1.Addr().String(), 2: addr2}
	b1 := newInbox()
	tr1, err := NewTCPTransport(TransportConfig{ID: 1, Cluster: 1, Members: cfg, Peers: addrs, Deliver: b1.deliver, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr1.Close()
	go tr1.Serve(ln1)
	tr1.Send([]Message{{Type: MsgHeartbeat, From: 1, To: 2, Ballot: Ballot{1, 1}}}) // dropped: nobody there
	time.Sleep(200 * time.Millisecond)
	ln2, err = net.Listen("tcp", addr2)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr2, err)
	}
	b2 := newInbox()
	tr2, err := NewTCPTransport(TransportConfig{ID: 2, Cluster: 1, Members: cfg, Peers: addrs, Deliver: b2.deliver})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	go tr2.Serve(ln2)
	waitFor(t, "reconnect", func() bool {
		tr1.Send([]Message{{Type: MsgHeartbeat, From: 1, To: 2, Ballot: Ballot{1, 1}}})
		time.Sleep(20 * time.Millisecond)
		return b2.count() > 0
	})
}

func TestBroadcastsShareAFrame(t *testing.T) {
	v := Value("batch")
	es := []Entry{{Slot: 1, Value: v}}
	msgs := []Message{
		{Type: MsgAccept, From: 1, To: 2, Ballot: Ballot{3, 1}, Slot: 7, Value: v},
		{Type: MsgAccept, From: 1, To: 3, Ballot: Ballot{3, 1}, Slot: 7, Value: v},
		{Type: MsgAccept, From: 1, To: 3, Ballot: Ballot{3, 1}, Slot: 7, Value: Value("batch")}, // equal bytes, other slice
		{Type: MsgDecide, From: 1, To: 2, Entries: es},
		{Type: MsgDecide, From: 1, To: 3, Entries: es},
		{Type: MsgDecide, From: 1, To: 3, Entries: es, Commit: 1},
	}
	var same []bool
	for i := 1; i < len(msgs); i++ {
		same = append(same, sameContent(msgs[i-1], msgs[i]))
	}
	if want := []bool{true, false, false, true, false}; !slices.Equal(same, want) {
		t.Fatalf("sameContent of neighbours: %v, want %v", same, want)
	}
	// And the shared frame is what each receiver would have got alone.
	f := &sharedFrame{}
	for _, m := range msgs[:2] {
		got, err := DecodeMessage(f.bytes(m)[FrameHeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		got.To = m.To
		if !messagesEqual(got, m) {
			t.Fatalf("shared frame decodes as %v for %v", got, m)
		}
	}
}
