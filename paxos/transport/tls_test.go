package transport

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/wire"
)

// logBuffer collects what a transport logs, for tests that check why a
// connection was refused.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// nodeCerts issues a peer certificate for each of nodes 1..n from ca into
// dir and loads them.
func nodeCerts(t *testing.T, ca *certs.Authority, dir string, n int) []*certs.Source {
	t.Helper()
	var out []*certs.Source
	for i := 1; i <= n; i++ {
		f, err := ca.IssueFiles(dir, "node"+paxos.NodeID(i).String(), certs.Request{CommonName: "node " + paxos.NodeID(i).String(), Node: paxos.NodeID(i), Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := certs.Load(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func newCA(t *testing.T, name string) *certs.Authority {
	t.Helper()
	ca, err := certs.NewAuthority(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// tlsPeer dials addr over TLS with cert, trusting any server (the test is
// about what the member accepts), and sends h. It returns the connection
// and the error of reading the member's answer.
func tlsPeer(t *testing.T, addr string, cert tls.Certificate, h wire.Hello) (net.Conn, error) {
	t.Helper()
	// NB: GetClientCertificate, not Certificates, which Go leaves unsent
	// when the member's CA did not sign it; a paxosd member sends its own
	// whatever CA the other side names.
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(wire.Append(nil, &h)); err != nil {
		return c, err
	}
	_, err = wire.ReadFrame(c, 1024, nil)
	return c, err
}

func keyPair(t *testing.T, ca *certs.Authority, r certs.Request) tls.Certificate {
	t.Helper()
	c, k, err := ca.Issue(r)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestMutualTLS runs three members over TLS, and checks that the
// impostors a member must refuse are refused with a reason in the log while
// the members go on talking.
func TestMutualTLS(t *testing.T) {
	ca := newCA(t, "cluster CA")
	srcs := nodeCerts(t, ca, t.TempDir(), 3)
	logs := &logBuffer{}
	c := startTransportsWith(t, 3, 77, func(cfg *Config) {
		cfg.TLS = srcs[cfg.ID-1]
		if cfg.ID == 1 {
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	})
	c.trs[1].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 2, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 2}}})
	c.trs[2].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 3, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 3}}})
	waitFor(t, "messages over TLS", func() bool { return c.boxes[0].count() == 2 })

	hello := func(from paxos.NodeID) wire.Hello {
		return wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: 77, From: from, To: 1}
	}
	other := newCA(t, "someone else's CA")
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		from paxos.NodeID
		log  string
	}{
		{"certificate of node 2 claiming node 3", keyPair(t, ca, certs.Request{Node: 2}), 3, "says it is node 3, but its certificate is for node 2"},
		{"certificate naming no node", keyPair(t, ca, certs.Request{CommonName: "client"}), 3, "certificate is for no node"},
		{"wrong CA", keyPair(t, other, certs.Request{Node: 3}), 3, "certificate signed by unknown authority"},
		{"expired", keyPair(t, ca, certs.Request{Node: 3, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), 3, "certificate has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tlsPeer(t, c.addrs[0], tc.cert, hello(tc.from))
			if err == nil {
				t.Fatal("the impostor's hello was answered")
			}
			if conn != nil && !closed(conn) {
				t.Fatal("connection left open")
			}
			waitFor(t, "the refusal in the log", func() bool { return strings.Contains(logs.String(), tc.log) })
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		conn, err := dialPeer(t, c.addrs[0], hello(3))
		if err == nil {
			t.Fatal("a plaintext hello was answered")
		}
		if !closed(conn) {
			t.Fatal("connection left open")
		}
		waitFor(t, "the refusal in the log", func() bool {
			return strings.Contains(logs.String(), "first record does not look like a TLS handshake")
		})
	})
	t.Logf("refusals logged by node 1:\n%s", logs.String())
	// The members still talk: the impostors cost nobody their connection.
	c.trs[2].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 3, To: 1, Ballot: paxos.Ballot{Round: 2, Node: 3}}})
	waitFor(t, "a message after the refusals", func() bool { return c.boxes[0].count() == 3 })
}

// TestDialerChecksTheNodeItReached points node 1 at node 3's address under
// node 2's name: node 1 must refuse node 3's certificate, so that nothing
// meant for node 2 reaches node 3.
func TestDialerChecksTheNodeItReached(t *testing.T) {
	ca := newCA(t, "cluster CA")
	srcs := nodeCerts(t, ca, t.TempDir(), 3)
	logs := &logBuffer{}
	c := startTransportsWith(t, 3, 77, func(cfg *Config) {
		cfg.TLS = srcs[cfg.ID-1]
		if cfg.ID == 1 {
			cfg.Peers = map[paxos.NodeID]string{2: cfg.Peers[3], 3: cfg.Peers[3]}
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	})
	c.trs[0].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 1, To: 2, Ballot: paxos.Ballot{Round: 1, Node: 1}}})
	c.trs[0].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 1, To: 3, Ballot: paxos.Ballot{Round: 1, Node: 1}}})
	waitFor(t, "node 3 hears node 1", func() bool { return c.boxes[2].count() >= 1 })
	waitFor(t, "the refusal in the log", func() bool {
		return strings.Contains(logs.String(), "the member dialed as node 2 presented a certificate for node 3")
	})
	time.Sleep(100 * time.Millisecond)
	if n := c.boxes[2].count(); n != 1 {
		t.Fatalf("node 3 got %d messages; the one for node 2 must not reach it", n)
	}
}

// TestCertificateRotation replaces a member's certificate files while it
// runs: new connections get the new certificate, and the members go on
// talking.
func TestCertificateRotation(t *testing.T) {
	ca := newCA(t, "cluster CA")
	dir := t.TempDir()
	srcs := nodeCerts(t, ca, dir, 2)
	c := startTransportsWith(t, 2, 77, func(cfg *Config) { cfg.TLS = srcs[cfg.ID-1] })
	served := func() string {
		conn, err := tls.Dial("tcp", c.addrs[0], &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
			Certificates: []tls.Certificate{keyPair(t, ca, certs.Request{Node: 2})}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	if _, err := ca.IssueFiles(dir, "node1", certs.Request{CommonName: "node 1 renewed", Node: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate served", func() bool { return served() != before })
	if got := srcs[0].Leaf().Subject.CommonName; got != "node 1 renewed" {
		t.Fatalf("leaf is %q after rotation", got)
	}
	c.trs[1].Send([]paxos.Message{{Type: paxos.MsgPrepare, From: 2, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 2}}})
	waitFor(t, "a message after rotation", func() bool { return c.boxes[0].count() == 1 })
}

// TestPeerWithOtherDataRefused: a peer that comes back under its node ID
// with another data directory is refused, and only after every other
// check passed is what it sends remembered.
func TestPeerWithOtherDataRefused(t *testing.T) {
	var mu sync.Mutex
	known := map[paxos.NodeID]uint64{}
	c := startTransportsWith(t, 3, 77, func(cfg *Config) {
		if cfg.ID != 1 {
			return
		}
		cfg.CheckData = func(id paxos.NodeID, data uint64, acceptor bool) error {
			if !acceptor {
				return fmt.Errorf("node %d is no acceptor in Uniform(3)?", id)
			}
			mu.Lock()
			defer mu.Unlock()
			if have, ok := known[id]; ok && have != data {
				return fmt.Errorf("node %d came back with other data", id)
			}
			known[id] = data
			return nil
		}
	})
	hello := func(from, to paxos.NodeID, cluster, data uint64) wire.Hello {
		return wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: cluster, From: from, To: to, Data: data}
	}
	// Refused for another reason first: nothing is remembered.
	if _, err := dialPeer(t, c.addrs[0], hello(3, 2, 77, 9)); err == nil {
		t.Fatal("a hello meant for node 2 was answered by node 1")
	}
	if _, err := dialPeer(t, c.addrs[0], hello(3, 1, 77, 5)); err != nil {
		t.Fatalf("node 3's first hello: %v", err)
	}
	if _, err := dialPeer(t, c.addrs[0], hello(3, 1, 77, 5)); err != nil {
		t.Fatalf("node 3 again with the same data: %v", err)
	}
	conn, err := dialPeer(t, c.addrs[0], hello(3, 1, 77, 6))
	if err == nil {
		t.Fatal("node 3 with other data was answered")
	}
	if !closed(conn) {
		t.Fatal("connection left open")
	}
	mu.Lock()
	defer mu.Unlock()
	if known[3] != 5 {
		t.Fatalf("remembered %d for node 3, want 5", known[3])
	}
}
