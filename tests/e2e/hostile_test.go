package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/paxos/wire"
)

// frameHeader declares a frame of n bytes.
func frameHeader(n uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return b[:]
}

// Garbage, truncated, oversized and length-bomb frames, and idle and slow
// connections, on both ports of one member: it stays up, keeps serving, and
// its memory stays bounded.
func TestHostileConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	cl := newClient(t, c)
	ctx := context.Background()
	for i := range 100 {
		if err := cl.Put(ctx, fmt.Sprintf("warm%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	target := c.member(1)
	before := target.rssKB(t)
	clusterID := server.ClusterID("paxosd", paxos.Uniform(3))
	peerHello := wire.Append(nil, &wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: clusterID, From: 2, To: 1})
	clientHello := wire.Append(nil, &wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion})

	var held []net.Conn // connections kept open during the measurement
	var mu sync.Mutex
	hold := func(conn net.Conn) {
		mu.Lock()
		held = append(held, conn)
		mu.Unlock()
	}
	defer func() {
		for _, conn := range held {
			conn.Close()
		}
	}()
	dial := func(addr string) net.Conn {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
			return nil
		}
		return conn
	}
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	type attack struct {
		name  string
		hello []byte // sent first, if any
		send  []byte
		keep  bool // hold the connection open afterwards
	}
	var attacks []attack
	for _, port := range []struct {
		name  string
		hello []byte
	}{{"peer", peerHello}, {"client", clientHello}} {
		attacks = append(attacks,
			attack{port.name + " garbage", nil, garbage, false},
			attack{port.name + " truncated frame", nil, append(frameHeader(100), 1, 2, 3), false},
			attack{port.name + " oversized frame", nil, frameHeader(0xffffffff), false},
			attack{port.name + " length bomb before handshake", nil, append(frameHeader(60<<20), 0x80), true},
			// A frame just under the limit, declared and never sent: the
			// member must not allocate it up front.
			attack{port.name + " length bomb after handshake", port.hello, append(frameHeader(1000<<10), 0x80), true},
			attack{port.name + " garbage after handshake", port.hello, garbage, false},
			attack{port.name + " idle", nil, nil, true},
		)
	}
	var wg sync.WaitGroup
	for _, a := range attacks {
		addr := target.client
		if strings.HasPrefix(a.name, "peer") {
			addr = target.peer
		}
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn := dial(addr)
				if conn == nil {
					return
				}
				conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if a.hello != nil {
					conn.Write(a.hello)
				}
				conn.Write(a.send)
				if a.keep {
					hold(conn)
				} else {
					conn.Close()
				}
			}()
		}
	}
	// Slow senders: a valid client hello, then a frame a byte at a time.
	stopSlow := make(chan struct{})
	var slow sync.WaitGroup
	for range 20 {
		slow.Add(1)
		go func() {
			defer slow.Done()
			conn := dial(target.client)
			if conn == nil {
				return
			}
			defer conn.Close()
			conn.Write(clientHello)
			frame := append(frameHeader(900<<10), garbage...)
			for i := 0; ; i++ {
				select {
				case <-stopSlow:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := conn.Write(frame[i%len(frame) : i%len(frame)+1]); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	// The member keeps serving while all this is going on.
	for i := range 20 {
		if err := cl.Put(ctx, fmt.Sprintf("during%d", i), []byte("y")); err != nil {
			t.Fatalf("put during the attack: %v", err)
		}
	}
	if out := mustCLI(t, 0, "get", "--consistency", "serializable", "--endpoints", target.client, "warm99"); out != "x\n" {
		t.Fatalf("target's own read during the attack: %q", out)
	}
	after := target.rssKB(t)
	close(stopSlow)
	slow.Wait()
	mu.Lock()
	t.Logf("RSS of member 1: %d KiB before, %d KiB with %d hostile connections held open (+%d KiB)", before, after, len(held), after-before)
	mu.Unlock()
	// Held connections declared frames of up to 60 MiB; allocating them
	// would cost gigabytes. A member may spend a read chunk (64 KiB) per
	// connection. (RSS only sees memory that was touched, so the codec's
	// own tests measure allocations directly.)
	if after-before > 64<<10 {
		t.Fatalf("RSS grew by %d KiB under hostile connections", after-before)
	}
	if !target.running() {
		t.Fatalf("member 1 died:\n%s", target.log.String())
	}
	log := target.log.String()
	for _, want := range []string{"peer connection closed", "client connection refused", "client connection closed"} {
		if !strings.Contains(log, want) {
			t.Errorf("member 1 logged no %q warning", want)
		}
	}
	if strings.Contains(log, "panic") {
		t.Fatalf("member 1 panicked:\n%s", log)
	}
	c.converged(1, 2, 3)
}

// A peer with the wrong cluster ID, an unknown node ID or another protocol
// version, and a client of another version, are refused: the connection is
// closed (after this member's Hello, for another version, so that the
// other side can say which version it met), and the member says why.
func TestStrangerPeersRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	target := c.member(1)
	clusterID := server.ClusterID("paxosd", paxos.Uniform(3))
	for _, tc := range []struct {
		name string
		h    wire.Hello
		log  string
	}{
		{"wrong cluster ID", wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: clusterID + 1, From: 2, To: 1}, "belongs to cluster"},
		{"unknown node ID", wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: clusterID, From: 9, To: 1}, "node 9 is not a member"},
		// Hello's keys are the same in every version, so a member of
		// version 3 is told, not just dropped.
		{"older protocol", wire.Hello{Kind: wire.HelloPeer, Version: 3, Cluster: clusterID, From: 2, To: 1}, fmt.Sprintf("node 2 speaks protocol version 3, this node %d", wire.ProtocolVersion)},
		{"older client", wire.Hello{Kind: wire.HelloClient, Version: 3}, fmt.Sprintf("client speaks protocol version 3, this node %d", wire.ProtocolVersion)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := target.peer
			if tc.h.Kind == wire.HelloClient {
				addr = target.client
			}
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write(wire.Append(nil, &tc.h))
			body, err := wire.ReadFrame(conn, 1024, nil)
			if tc.h.Version != wire.ProtocolVersion {
				// Another version is answered, so that it can say
				// which version the member speaks, then cut off.
				var h wire.Hello
				if err != nil || wire.NewDecoder().Decode(body, &h) != nil || h.Version != wire.ProtocolVersion {
					t.Fatalf("hello %+v: answer %x, %v; want this member's Hello", tc.h, body, err)
				}
				if _, err := wire.ReadFrame(conn, 1024, nil); err == nil {
					t.Fatal("the connection stayed open after the answer")
				}
			} else if err == nil {
				t.Fatalf("hello %+v was answered with %x", tc.h, body)
			}
			waitUntil(t, "the refusal in the log", 5*time.Second, func() bool { return strings.Contains(target.log.String(), tc.log) })
		})
	}
	// The cluster is unaffected.
	mustCLI(t, 0, "put", "--endpoints", c.endpoints(), "still", "fine")
	c.converged(1, 2, 3)
}
