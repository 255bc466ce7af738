package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/statemachine"
)

// testLogger sends warnings and errors to t.Log, so they show on failure.
// Registered before the members' own cleanups, it outlives them; anything
// logged after the test ends is dropped.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func startLocal(t *testing.T, dir string) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{Dir: dir, Template: Config{TickInterval: 10 * time.Millisecond, RequestTimeout: 2 * time.Second, Logger: testLogger(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return l
}

func newClient(t *testing.T, l *Local) *client.Client {
	t.Helper()
	c, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints(), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLocalClusterServesKV(t *testing.T) {
	dir := t.TempDir()
	l := startLocal(t, dir)
	if !l.Bootstrapped() {
		t.Fatal("a cluster in an empty directory was not bootstrapped")
	}
	c := newClient(t, l)
	ctx := context.Background()
	if err := c.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "a"); err != nil || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v; want 1", v, err)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get(missing): %v, want ErrNotFound", err)
	}
	if ok, err := c.CompareAndSwap(ctx, "a", []byte("0"), []byte("2")); ok || err != nil {
		t.Fatalf("CAS with the wrong old value: swapped %v, %v", ok, err)
	}
	if ok, err := c.CompareAndSwap(ctx, "a", []byte("1"), []byte("2")); !ok || err != nil {
		t.Fatalf("CAS with the right old value: swapped %v, %v", ok, err)
	}
	if ok, err := c.PutIfAbsent(ctx, "a", []byte("3")); ok || err != nil {
		t.Fatalf("PutIfAbsent on an existing key: swapped %v, %v", ok, err)
	}
	if ok, err := c.Delete(ctx, "a"); !ok || err != nil {
		t.Fatalf("Delete(a) = %v, %v", ok, err)
	}
	if ok, err := c.Delete(ctx, "a"); ok || err != nil {
		t.Fatalf("second Delete(a) = %v, %v; want false", ok, err)
	}
	if err := c.Put(ctx, "b", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), statemachine.MaxValueSize+1)
	if err := c.Put(ctx, "big", big); !errors.Is(err, client.ErrNotApplied) {
		t.Fatalf("Put of a value above the limit: %v, want ErrNotApplied", err)
	}
	// Every member converges on the same applied slot and hash.
	waitConverged(t, c, l)

	// A restart from the same directory keeps the data.
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	l2 := startLocal(t, dir)
	if l2.Bootstrapped() {
		t.Fatal("restart bootstrapped again")
	}
	c2 := newClient(t, l2)
	if v, err := c2.Get(ctx, "b"); err != nil || string(v) != "kept" {
		t.Fatalf("after restart Get(b) = %q, %v; want kept", v, err)
	}
}

// waitConverged waits until every running member applied the same slot with
// the same hash, and returns that slot.
func waitConverged(t *testing.T, c *client.Client, l *Local) paxos.Slot {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var sts []clientapi.Status
		var err error
		for _, s := range l.Servers() {
			var st clientapi.Status
			if st, err = c.Status(context.Background(), s.ClientAddr()); err != nil {
				break
			}
			sts = append(sts, st)
		}
		same := err == nil && len(sts) > 0
		for _, st := range sts {
			if st.Applied != sts[0].Applied || st.AppliedHash != sts[0].AppliedHash || st.Applied == 0 {
				same = false
			}
		}
		if same {
			return sts[0].Applied
		}
		if time.Now().After(deadline) {
			t.Fatalf("members did not converge: %+v, %v", sts, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(t *testing.T, c *client.Client, l *Local) paxos.NodeID {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range l.Servers() {
			if st, err := c.Status(context.Background(), s.ClientAddr()); err == nil && st.IsLeader {
				return st.ID
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return 0
}

func TestLeaderFailoverAndCatchUp(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx := context.Background()
	if err := c.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	old := leaderOf(t, c, l)
	if err := l.StopMember(old); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := c.Put(ctx, "k", []byte{byte('a' + i)}); err != nil {
			t.Fatalf("put %d after the leader stopped: %v", i, err)
		}
	}
	if now := leaderOf(t, c, l); now == old {
		t.Fatalf("stopped member %d still leads", old)
	}
	if err := l.StartMember(old); err != nil {
		t.Fatal(err)
	}
	applied := waitConverged(t, c, l)
	if applied < 21 {
		t.Fatalf("converged at slot %d, but 21 commands were applied", applied)
	}
}

// dialClientPort connects to a member's client port as a client would and
// completes the handshake; the connection closes when the test ends.
func dialClientPort(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(wire.Append(nil, &wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion})); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadFrame(nc, 1024, nil); err != nil {
		t.Fatal(err)
	}
	return nc
}

// A command retried with the same (session, seq) is applied once: the KV
// machine's revision shows it.
func TestRetriedCommandAppliedOnce(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	leader := leaderOf(t, c, l)
	nc := dialClientPort(t, l.Endpoints()[leader-1])
	d := wire.NewDecoder()
	call := func(req clientapi.Request) clientapi.Response {
		t.Helper()
		if _, err := nc.Write(wire.Append(nil, &req)); err != nil {
			t.Fatal(err)
		}
		body, err := wire.ReadFrame(nc, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		var resp clientapi.Response
		err = d.Decode(body, &resp)
		if err != nil || resp.Code != clientapi.CodeOK || resp.ID != req.ID {
			t.Fatalf("%s seq %d: %+v, %v", req.Kind, req.Seq, resp, err)
		}
		return resp
	}
	session, _ := binary.Uvarint(call(clientapi.Request{ID: 100, Kind: clientapi.ReqSession}).Data)
	put := func(id, seq uint64, val string) statemachine.KVResponse {
		t.Helper()
		cmd := statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte("x"), Value: []byte(val)}.Encode()
		resp := call(clientapi.Request{ID: id, Kind: clientapi.ReqCommand, Session: session, Seq: seq, Data: cmd})
		r, err := statemachine.DecodeKVResponse(resp.Data)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := put(1, 1, "one")
	retry := put(2, 1, "one")
	next := put(3, 2, "two")
	if retry.Rev != first.Rev || next.Rev != first.Rev+1 {
		t.Fatalf("revisions: first %d, retry %d, next %d; the retry must not be applied again", first.Rev, retry.Rev, next.Rev)
	}
}

func TestBootstrapRules(t *testing.T) {
	members := paxos.Uniform(1)
	dir := filepath.Join(t.TempDir(), "1")
	start := func(id paxos.NodeID, token string, bootstrap bool) (*Server, error) {
		pl, _ := net.Listen("tcp", "127.0.0.1:0")
		cl, _ := net.Listen("tcp", "127.0.0.1:0")
		var addrs map[paxos.NodeID]string
		if len(members.Members()) > 0 {
			addrs = map[paxos.NodeID]string{1: pl.Addr().String(), 2: "127.0.0.1:1"}
		}
		return Start(Config{ID: id, Membership: members, PeerAddrs: addrs, ClusterToken: token,
			DataDir: dir, Bootstrap: bootstrap, PeerListener: pl, ClientListener: cl, Machine: statemachine.NewKV(), Logger: testLogger(t)})
	}
	if _, err := start(1, "t", false); !errors.Is(err, ErrNotBootstrapped) || !strings.Contains(err.Error(), "--bootstrap") {
		t.Fatalf("empty dir without bootstrap: %v", err)
	}
	s, err := start(1, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	// --bootstrap on a restart is ignored, as long as it names the same
	// cluster.
	if s, err = start(1, "t", true); err != nil {
		t.Fatalf("bootstrap on a restart: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := start(1, "other", true); !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "--bootstrap with this --cluster and --cluster-token makes cluster") {
		t.Fatalf("bootstrap of another cluster on a restart: %v", err)
	}
	// After the first start the configuration comes from the data: a
	// --cluster with other members is refused, showing both.
	members = paxos.MustMembership(paxos.Member{ID: 1, Roles: paxos.RoleAll}, paxos.Member{ID: 2, Roles: paxos.RoleAll})
	if _, err := start(1, "t", false); !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "--cluster says 1=") ||
		!strings.Contains(err.Error(), "data says the cluster is 1=") || !strings.Contains(err.Error(), "drop --cluster") {
		t.Fatalf("restart with a --cluster that disagrees with the data: %v", err)
	}
	// Without --cluster, the data is enough.
	members = paxos.Membership{}
	if s, err = start(1, "", false); err != nil {
		t.Fatalf("restart without --cluster: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	members = paxos.MustMembership(paxos.Member{ID: 2, Roles: paxos.RoleAll})
	if _, err := start(2, "t", false); !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "node 1, not node 2") {
		t.Fatalf("data dir of another node: %v", err)
	}
	members = paxos.Uniform(1)
	s, err = start(1, "t", false)
	if err != nil {
		t.Fatalf("plain restart: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A split cluster: three acceptor-only members and two proposer-learners.
// Clients talk to the proposers; the acceptors answer status and refuse
// reads they cannot serve.
func TestSplitRoles(t *testing.T) {
	members := paxos.MustMembership(
		paxos.Member{ID: 1, Roles: paxos.RoleAcceptor}, paxos.Member{ID: 2, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 3, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 4, Roles: paxos.RoleProposer | paxos.RoleLearner}, paxos.Member{ID: 5, Roles: paxos.RoleProposer | paxos.RoleLearner})
	peers := map[paxos.NodeID]string{}
	var pls, cls []net.Listener
	for i := 1; i <= 5; i++ {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pls, cls = append(pls, pl), append(cls, cl)
		peers[paxos.NodeID(i)] = pl.Addr().String()
	}
	root := t.TempDir()
	logger := testLogger(t)
	var servers []*Server
	for i := 1; i <= 5; i++ {
		s, err := Start(Config{ID: paxos.NodeID(i), Membership: members, PeerAddrs: peers, ClusterToken: "split",
			DataDir: filepath.Join(root, fmt.Sprint(i)), Bootstrap: true, PeerListener: pls[i-1], ClientListener: cls[i-1],
			Machine: statemachine.NewKV(), TickInterval: 10 * time.Millisecond, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
		t.Cleanup(func() { s.Stop() })
	}
	// Start with an acceptor: it redirects nothing (it has no proposer),
	// so the client moves on to the others.
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.ClientAddr())
	}
	c, err := client.NewWithConfig(client.Config{Endpoints: eps, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "a"); err != nil || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, err)
	}
	if v, err := c.GetSerializable(ctx, "a"); err != nil {
		t.Fatalf("GetSerializable(a) = %q, %v (acceptors cannot answer; the learners can)", v, err)
	}
	st, err := c.Status(ctx, servers[0].ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if st.Roles != paxos.RoleAcceptor || st.Promised.IsZero() || st.Applied != 0 || len(st.Members) != 5 {
		t.Fatalf("acceptor status %+v: want acceptor role, a promise, nothing applied, five members", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st4, err4 := c.Status(ctx, servers[3].ClientAddr())
		st5, err5 := c.Status(ctx, servers[4].ClientAddr())
		if err4 == nil && err5 == nil && st4.Applied == st5.Applied && st4.AppliedHash == st5.AppliedHash && st4.Applied >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("learners did not converge: %+v %v / %+v %v", st4, err4, st5, err5)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A TCP connection that closes before its first byte (what a health checker
// does) is not worth a warning; one that sends garbage is.
func TestHealthCheckConnectionsAreQuiet(t *testing.T) {
	var logs syncLog
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	cl, _ := net.Listen("tcp", "127.0.0.1:0")
	s, err := Start(Config{ID: 1, Membership: paxos.Uniform(1), PeerAddrs: map[paxos.NodeID]string{1: pl.Addr().String()}, ClusterToken: "quiet",
		DataDir: t.TempDir(), Bootstrap: true, PeerListener: pl, ClientListener: cl, Machine: statemachine.NewKV(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for range 3 {
		nc, err := net.Dial("tcp", s.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	nc, err := net.Dial("tcp", s.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "client connection refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for a connection that sent garbage; logs: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc.Close()
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1 (for the garbage only); logs: %s", n, logs.String())
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
