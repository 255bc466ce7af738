package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/wire"
)

type inbox struct {
	mu   sync.Mutex
	msgs []paxos.Message
}

func (b *inbox) deliver(m paxos.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func (b *inbox) all() []paxos.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]paxos.Message(nil), b.msgs...)
}

// cluster is n transports of Uniform(n) on loopback.
type cluster struct {
	trs   []*TCP
	boxes []*inbox
	addrs []string
	lns   []net.Listener
}

func startTransports(t *testing.T, n int, id uint64) *cluster {
	t.Helper()
	return startTransportsWith(t, n, id, func(*Config) {})
}

// startTransportsWith is startTransports with each Config changed by
// adjust first.
func startTransportsWith(t *testing.T, n int, id uint64, adjust func(*Config)) *cluster {
	t.Helper()
	members := paxos.Uniform(n)
	c := &cluster{}
	addrs := map[paxos.NodeID]string{}
	for i := 1; i <= n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.lns = append(c.lns, ln)
		addrs[paxos.NodeID(i)] = ln.Addr().String()
		c.addrs = append(c.addrs, ln.Addr().String())
	}
	for i := 1; i <= n; i++ {
		b := &inbox{}
		cfg := Config{ID: paxos.NodeID(i), Cluster: id, Membership: members, Peers: addrs,
			ClientAddr: "client-" + paxos.NodeID(i).String(), HandshakeTimeout: time.Second, MaxFrame: 1 << 20, MaxBackoff: 100 * time.Millisecond}
		adjust(&cfg)
		tr, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go tr.Serve(c.lns[i-1], b.deliver)
		t.Cleanup(func() { tr.Close() })
		c.trs, c.boxes = append(c.trs, tr), append(c.boxes, b)
	}
	return c
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

// everyType returns one message of every type that crosses the network,
// from 1 to 2, with every field a type may carry set.
func everyType() []paxos.Message {
	v := paxos.EncodeBatch([]paxos.Command{{Session: 9, Seq: 1, Data: []byte("put a 1")}})
	var out []paxos.Message
	for t := paxos.MsgType(1); t.Valid(); t++ {
		if t.IsLocal() {
			continue
		}
		out = append(out, paxos.Message{Type: t, From: 1, To: 2, Ballot: paxos.Ballot{Round: 7, Node: 1}, Slot: 5, Commit: 4, Value: v,
			Entries: []paxos.Entry{{Slot: 5, Ballot: paxos.Ballot{Round: 3, Node: 1}, Value: v}, {Slot: 6}},
			Cmds:    []paxos.Command{{Session: 1, Seq: 2, Data: []byte("x")}},
			Offset:  1 << 20, Size: 5 << 20, Sum: 0xfedcba98})
	}
	return out
}

// normalize makes the empty values of a message nil, as they decode.
func normalize(m paxos.Message) paxos.Message {
	for i := range m.Entries {
		if len(m.Entries[i].Value) == 0 {
			m.Entries[i].Value = nil
		}
	}
	return m
}

// TestEveryTypeCrossesTheNetwork sends a message of every type, every field
// set, and checks each arrives whole and in order.
func TestEveryTypeCrossesTheNetwork(t *testing.T) {
	c := startTransports(t, 3, 77)
	msgs := everyType()
	c.trs[0].Send(msgs)
	waitFor(t, "delivery", func() bool { return c.boxes[1].count() == len(msgs) })
	for i, m := range c.boxes[1].all() {
		if want := normalize(msgs[i]); !reflect.DeepEqual(m, want) {
			t.Fatalf("message %d: got %+v, want %+v (in order, one connection)", i, m, want)
		}
	}
	if a := c.trs[1].ClientAddr(1); a != "client-1" {
		t.Fatalf("node 2 learned client address %q for node 1, want client-1", a)
	}
}

// TestCoalescedFramesKeepTheirFields sends, in one Send, a broadcast that
// shares a frame, and neighbouring messages that share every slice but
// differ in one field each. Every receiver gets exactly what was addressed
// to it: a frame is shared only by messages that encode alike.
func TestCoalescedFramesKeepTheirFields(t *testing.T) {
	c := startTransports(t, 3, 5)
	v := paxos.Value("chunk")
	var msgs []paxos.Message
	// A broadcast: differs only in the receiver.
	for _, to := range []paxos.NodeID{2, 3} {
		msgs = append(msgs, paxos.Message{Type: paxos.MsgAccept, From: 1, To: to, Ballot: paxos.Ballot{Round: 2, Node: 1}, Slot: 9, Value: v})
	}
	// Snapshot pulls and chunks to one peer that differ only in offset,
	// size or checksum (protocol 3's fields, which a hand-written
	// comparison once forgot).
	for i := range uint64(3) {
		msgs = append(msgs, paxos.Message{Type: paxos.MsgSnapshotPull, From: 1, To: 2, Slot: 700, Offset: i << 20})
	}
	for i := range uint64(3) {
		msgs = append(msgs, paxos.Message{Type: paxos.MsgSnapshotChunk, From: 1, To: 3, Slot: 700, Offset: 1 << 20, Size: 8<<20 + i, Sum: uint32(i), Value: v})
	}
	c.trs[0].Send(msgs)
	want := map[paxos.NodeID][]paxos.Message{}
	for _, m := range msgs {
		want[m.To] = append(want[m.To], m)
	}
	for _, to := range []paxos.NodeID{2, 3} {
		b := c.boxes[to-1]
		waitFor(t, "delivery", func() bool { return b.count() == len(want[to]) })
		if got := b.all(); !reflect.DeepEqual(got, want[to]) {
			t.Fatalf("node %d got\n%+v\nwant\n%+v", to, got, want[to])
		}
	}
}

// TestReconnectsAfterADroppedConnection cuts a peer connection while
// messages flow; the writer dials again and later messages arrive.
func TestReconnectsAfterADroppedConnection(t *testing.T) {
	c := startTransports(t, 2, 9)
	send := func(slot paxos.Slot) {
		c.trs[0].Send([]paxos.Message{{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.Ballot{Round: 1, Node: 1}, Slot: slot}})
	}
	send(1)
	waitFor(t, "the first message", func() bool { return c.boxes[1].count() == 1 })
	// Cut every inbound connection of node 2 from its side.
	tr := c.trs[1]
	tr.mu.Lock()
	for conn := range tr.inbound {
		conn.Close()
	}
	tr.mu.Unlock()
	waitFor(t, "a message after the cut", func() bool {
		send(2)
		time.Sleep(20 * time.Millisecond)
		for _, m := range c.boxes[1].all() {
			if m.Slot == 2 {
				return true
			}
		}
		return false
	})
}

// dialPeer opens a raw connection and sends a hello; it returns the
// connection and whether the transport answered it.
func dialPeer(t *testing.T, addr string, h wire.Hello) (net.Conn, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(wire.Append(nil, &h)); err != nil {
		t.Fatal(err)
	}
	_, err = wire.ReadFrame(c, 1024, nil)
	return c, err
}

// closed reports whether the transport closed c (reads hit EOF or reset).
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 16))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestRefusesStrangers(t *testing.T) {
	c := startTransports(t, 3, 77)
	addr := c.addrs[0]
	peer := func(cluster uint64, from, to paxos.NodeID) wire.Hello {
		return wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: cluster, From: from, To: to}
	}
	good := peer(77, 3, 1)
	for _, tc := range []struct {
		name string
		h    wire.Hello
	}{
		{"wrong cluster", peer(78, 3, 1)},
		{"unknown node", peer(77, 9, 1)},
		{"itself", peer(77, 1, 1)},
		{"client on peer port", wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion}},
		{"dialed someone else", peer(77, 3, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := dialPeer(t, addr, tc.h)
			if err == nil {
				t.Fatalf("hello %+v was answered", tc.h)
			}
			if !closed(conn) {
				t.Fatal("connection left open")
			}
		})
	}
	// After a good hello, bad frames close the connection and deliver
	// nothing.
	frame := func(m paxos.Message) []byte { return wire.Append(nil, &m) }
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, 1<<30)
	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"garbage", []byte{0, 0, 0, 3, 0xc1, 0xc1, 0xc1}},
		{"length bomb", huge},
		{"spoofed sender", frame(paxos.Message{Type: paxos.MsgPrepare, From: 2, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 2}})},
		{"local-only type", frame(paxos.Message{Type: paxos.MsgLearned, From: 3, To: 1, Commit: 1 << 40})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := dialPeer(t, addr, good)
			if err != nil {
				t.Fatalf("good hello refused: %v", err)
			}
			conn.Write(tc.bytes)
			if !closed(conn) {
				t.Fatal("connection left open")
			}
		})
	}
	if n := c.boxes[0].count(); n != 0 {
		t.Fatalf("%d messages from bad connections were delivered", n)
	}
	// A good frame still goes through.
	conn, err := dialPeer(t, addr, good)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(frame(paxos.Message{Type: paxos.MsgPrepare, From: 3, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 3}}))
	waitFor(t, "the good message", func() bool { return c.boxes[0].count() == 1 })
}

// TestOlderVersionIsTold checks that a peer of another protocol version is
// refused with a message that says so, read from its Hello, whose keys
// never change; and that it gets this member's Hello before the connection
// closes, so that it can say the same.
func TestOlderVersionIsTold(t *testing.T) {
	c := startTransports(t, 2, 1)
	h := wire.Hello{Kind: wire.HelloPeer, Version: 3, Cluster: 1, From: 2, To: 1}
	err := c.trs[0].checkHello(h, 0)
	if !errors.Is(err, wire.ErrHandshake) || err.Error() != "wire: handshake refused: node 2 speaks protocol version 3, this node "+strconv.Itoa(wire.ProtocolVersion)+"; run the same paxosd version on every member" {
		t.Fatalf("got %v", err)
	}
	conn, err := net.Dial("tcp", c.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(wire.Append(nil, &h))
	body, err := wire.ReadFrame(conn, 1024, nil)
	var answer wire.Hello
	if err != nil || wire.NewDecoder().Decode(body, &answer) != nil || answer.Version != wire.ProtocolVersion || answer.From != 1 {
		t.Fatalf("answer %x, %v; want node 1's Hello of version %d", body, err, wire.ProtocolVersion)
	}
	if !closed(conn) {
		t.Fatal("connection left open after the answer")
	}
}

func TestIdleStrangerIsDropped(t *testing.T) {
	c := startTransports(t, 2, 5)
	conn, err := net.Dial("tcp", c.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("read: %v (the transport should have closed the connection)", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("silent connection kept for %v, handshake timeout is 1s", took)
	}
}

func TestReconnectsToAPeerThatStartsLate(t *testing.T) {
	members := paxos.Uniform(2)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr2 := ln2.Addr().String()
	ln2.Close() // node 2 is down at first
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[paxos.NodeID]string{1: ln1.Addr().String(), 2: addr2}
	tr1, err := New(Config{ID: 1, Cluster: 1, Membership: members, Peers: addrs, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr1.Close()
	go tr1.Serve(ln1, (&inbox{}).deliver)
	hb := []paxos.Message{{Type: paxos.MsgHeartbeat, From: 1, To: 2, Ballot: paxos.Ballot{Round: 1, Node: 1}}}
	tr1.Send(hb) // dropped: nobody there
	time.Sleep(200 * time.Millisecond)
	ln2, err = net.Listen("tcp", addr2)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr2, err)
	}
	b2 := &inbox{}
	tr2, err := New(Config{ID: 2, Cluster: 1, Membership: members, Peers: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	go tr2.Serve(ln2, b2.deliver)
	waitFor(t, "reconnect", func() bool {
		tr1.Send(hb)
		time.Sleep(20 * time.Millisecond)
		return b2.count() > 0
	})
}

// A removed member is refused at the handshake once its removal governs
// (the first configuration Reconfigure is given), never before: until then
// the configuration before the change needs it. A member added later may
// connect.
func TestRemovedMemberRefused(t *testing.T) {
	c := startTransports(t, 2, 1)
	tr := c.trs[0]
	hello := func(from paxos.NodeID) wire.Hello {
		return wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: 1, From: from, To: 1}
	}
	mk := func(start paxos.Slot, ids []paxos.NodeID, removed ...paxos.NodeID) paxos.Config {
		var peers []paxos.Peer
		for _, id := range ids {
			peers = append(peers, paxos.Peer{ID: id, Roles: paxos.RoleAll, PeerAddr: "127.0.0.1:1"})
		}
		cfg, err := paxos.NewConfig(start, start, peers, removed)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	before := mk(1, []paxos.NodeID{1, 2})
	after := mk(70, []paxos.NodeID{1, 3}, 2)
	tr.Reconfigure(paxos.History{before, after})
	for _, id := range []paxos.NodeID{2, 3} {
		if err := tr.checkHello(hello(id), 0); err != nil {
			t.Fatalf("node %d refused while the change does not govern: %v", id, err)
		}
	}
	tr.Reconfigure(paxos.History{after})
	if err := tr.checkHello(hello(2), 0); !errors.Is(err, wire.ErrHandshake) || !strings.Contains(err.Error(), "node 2 was removed from this cluster and may never return") {
		t.Fatalf("removed node 2: %v", err)
	}
	if err := tr.checkHello(hello(3), 0); err != nil {
		t.Fatalf("added node 3: %v", err)
	}
	if err := tr.checkHello(hello(9), 0); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("stranger 9: %v", err)
	}
}
