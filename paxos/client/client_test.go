package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/statemachine"
)

// fakeMember speaks the client protocol and answers each request with
// answer; nil means "never answer", and hangUp (a nil pointer of its own)
// means "close the connection without an answer".
type fakeMember struct {
	ln     net.Listener
	mu     sync.Mutex
	reqs   []clientapi.Request
	opened uint64
}

func newFake(t *testing.T, answer func(clientapi.Request) *clientapi.Response) *fakeMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMember{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				if _, err := wire.ReadFrame(nc, 1024, nil); err != nil {
					return
				}
				nc.Write(wire.Append(nil, &wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion}))
				d := wire.NewDecoder()
				for {
					body, err := wire.ReadFrame(nc, 1<<20, nil)
					if err != nil {
						return
					}
					var req clientapi.Request
					if err := d.Decode(body, &req); err != nil {
						return
					}
					if req.Kind == clientapi.ReqSession {
						// Sessions open at once, numbered from 1,
						// and are not recorded.
						f.mu.Lock()
						f.opened++
						id := f.opened
						f.mu.Unlock()
						nc.Write(wire.Append(nil, &clientapi.Response{ID: req.ID, Data: binary.AppendUvarint(nil, id)}))
						continue
					}
					f.mu.Lock()
					f.reqs = append(f.reqs, req)
					f.mu.Unlock()
					resp := answer(req)
					if resp == hangUp {
						return
					}
					if resp != nil {
						resp.ID = req.ID
						nc.Write(wire.Append(nil, resp))
					}
				}
			}()
		}
	}()
	return f
}

// hangUp is the answer that closes the connection instead.
var hangUp = &clientapi.Response{Message: "hang up"}

func (f *fakeMember) addr() string { return f.ln.Addr().String() }

func (f *fakeMember) requests() []clientapi.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]clientapi.Request(nil), f.reqs...)
}

func ok() *clientapi.Response {
	return &clientapi.Response{Data: statemachine.KVResponse{Status: statemachine.KVOK}.Encode()}
}

func TestRedirectKeepsSessionAndSeq(t *testing.T) {
	leader := newFake(t, func(clientapi.Request) *clientapi.Response { return ok() })
	follower := newFake(t, func(clientapi.Request) *clientapi.Response {
		return &clientapi.Response{Code: clientapi.CodeNotLeader, Leader: 2, LeaderAddr: leader.addr()}
	})
	c, err := New(follower.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	f, l := follower.requests(), leader.requests()
	if len(f) != 1 || len(l) != 1 || f[0].Session != l[0].Session || f[0].Seq != l[0].Seq {
		t.Fatalf("follower got %+v, leader got %+v; want one request each with the same session and seq", f, l)
	}
	// The next call goes straight to the leader, with the next seq.
	if err := c.Put(context.Background(), "k", []byte("w")); err != nil {
		t.Fatal(err)
	}
	if l = leader.requests(); len(l) != 2 || l[1].Seq != l[0].Seq+1 || len(follower.requests()) != 1 {
		t.Fatalf("second put: leader got %+v", l)
	}
}

func TestTimeoutRetriesSameCommand(t *testing.T) {
	var mu sync.Mutex
	n := 0
	m := newFake(t, func(clientapi.Request) *clientapi.Response {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n < 3 {
			return &clientapi.Response{Code: clientapi.CodeTimeout, Message: "slow"}
		}
		return ok()
	})
	c, _ := New(m.addr())
	defer c.Close()
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	reqs := m.requests()
	if len(reqs) != 3 || reqs[0].Session != reqs[2].Session || reqs[0].Seq != reqs[2].Seq {
		t.Fatalf("requests %+v; want three with the same session and seq", reqs)
	}
}

// A command refused because its session expired, with no earlier attempt
// that may have been applied, is retried once in a new session; after an
// attempt that may have been applied, the outcome is unknown.
func TestExpiredSession(t *testing.T) {
	var mu sync.Mutex
	var answers []*clientapi.Response
	m := newFake(t, func(clientapi.Request) *clientapi.Response {
		mu.Lock()
		defer mu.Unlock()
		a := answers[0]
		answers = answers[1:]
		return a
	})
	expired := &clientapi.Response{Code: clientapi.CodeSessionExpired, Message: "session is not open"}
	answers = []*clientapi.Response{expired, ok()}
	c, _ := New(m.addr())
	defer c.Close()
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	reqs := m.requests()
	if len(reqs) != 2 || reqs[0].Session == reqs[1].Session || reqs[1].Seq != 1 {
		t.Fatalf("requests %+v; want the command again, as seq 1 of a new session", reqs)
	}
	answers = []*clientapi.Response{{Code: clientapi.CodeTimeout, Message: "slow"}, expired}
	err := c.Put(context.Background(), "k", []byte("w"))
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNotApplied) {
		t.Fatalf("expired after a timeout: %v, want ErrUnknownOutcome", err)
	}
	answers = []*clientapi.Response{expired, expired}
	if err := c.Put(context.Background(), "k", []byte("x")); !errors.Is(err, ErrSessionExpired) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("expired twice in a row: %v, want ErrSessionExpired (not applied)", err)
	}
}

// After a long idle time every pooled session expired: the first refusal
// drops them all, and the retry opens a new one instead of taking the next
// expired one.
func TestIdlePoolExpiresTogether(t *testing.T) {
	m := newFake(t, func(req clientapi.Request) *clientapi.Response {
		if req.Session >= 100 {
			return &clientapi.Response{Code: clientapi.CodeSessionExpired, Message: "session is not open"}
		}
		return ok()
	})
	c, _ := New(m.addr())
	defer c.Close()
	c.putSession(&session{id: 100, seq: 3})
	c.putSession(&session{id: 101, seq: 5})
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("a write after the pool's sessions all expired: %v", err)
	}
}

func TestOutcomeKinds(t *testing.T) {
	silent := newFake(t, func(clientapi.Request) *clientapi.Response { return nil })
	refusing := newFake(t, func(clientapi.Request) *clientapi.Response {
		return &clientapi.Response{Code: clientapi.CodeBadRequest, Message: "too large"}
	})
	noLeader := newFake(t, func(clientapi.Request) *clientapi.Response {
		return &clientapi.Response{Code: clientapi.CodeNotLeader, Message: "no leader known"}
	})
	hangingUp := newFake(t, func(clientapi.Request) *clientapi.Response { return hangUp })
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	for _, tc := range []struct {
		name string
		ep   string
		want error
	}{
		{"sent, never answered", silent.addr(), ErrUnknownOutcome},
		// The member read the request and the connection dropped: it
		// may have proposed it.
		{"connection dropped after the request was sent", hangingUp.addr(), ErrUnknownOutcome},
		{"refused", refusing.addr(), ErrNotApplied},
		{"no leader", noLeader.addr(), ErrNotApplied},
		{"nobody listening", deadAddr, ErrNotApplied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := New(tc.ep)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := c.Put(ctx, "k", []byte("v"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Put: %v; want %v", err, tc.want)
			}
			if tc.ep == deadAddr && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Put: %v; want it to say the deadline passed", err)
			}
		})
	}
	// A read never answered changes nothing: it is not applied, not of
	// unknown outcome.
	c, _ := New(silent.addr())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotApplied) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Get from a member that never answers: %v; want ErrNotApplied", err)
	}
}

// Bad keys and values are refused before anything is sent, saying which of
// them is wrong and by how much.
func TestKeyAndValueLimits(t *testing.T) {
	m := newFake(t, func(clientapi.Request) *clientapi.Response { return ok() })
	c, _ := New(m.addr())
	defer c.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		key  string
		val  []byte
		want string
	}{
		{"", []byte("v"), "the key is empty"},
		{strings.Repeat("k", statemachine.MaxKeySize+1), nil, fmt.Sprintf("the key is %d bytes", statemachine.MaxKeySize+1)},
		{"k", make([]byte, 2<<20), fmt.Sprintf("the value is %d bytes, above the %d-byte limit", 2<<20, statemachine.MaxValueSize)},
	} {
		if err := c.Put(ctx, tc.key, tc.val); !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Put(%.10q…, %d bytes): %v; want not applied, saying %q", tc.key, len(tc.val), err, tc.want)
		}
	}
	if n := len(m.requests()); n != 0 {
		t.Fatalf("%d requests reached the member", n)
	}
}

func TestNewChecksEndpoints(t *testing.T) {
	if _, err := New(); err == nil {
		t.Fatal("New() with no endpoints succeeded")
	}
	if _, err := New("no-port"); err == nil {
		t.Fatal(`New("no-port") succeeded`)
	}
}

// Two members that name each other as leader do not make the client spin:
// it pauses between rounds of redirects.
func TestRedirectLoopPauses(t *testing.T) {
	var a, b *fakeMember
	var addrA, addrB string
	var ready sync.WaitGroup
	ready.Add(1)
	a = newFake(t, func(clientapi.Request) *clientapi.Response {
		ready.Wait()
		return &clientapi.Response{Code: clientapi.CodeNotLeader, LeaderAddr: addrB}
	})
	b = newFake(t, func(clientapi.Request) *clientapi.Response {
		ready.Wait()
		return &clientapi.Response{Code: clientapi.CodeNotLeader, LeaderAddr: addrA}
	})
	addrA, addrB = a.addr(), b.addr()
	ready.Done()
	c, _ := New(addrA)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.Put(ctx, "k", []byte("v")); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Put between two stale members: %v, want ErrNotApplied", err)
	}
	if n := len(a.requests()) + len(b.requests()); n > 60 {
		t.Fatalf("%d requests in 500ms: the client spins between redirects", n)
	}
}

// A member of another protocol version answers the Hello with its own and
// closes; the client says which versions met.
func TestOtherVersionIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := wire.ReadFrame(nc, 1024, nil); err == nil {
				nc.Write(wire.Append(nil, &wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion + 1}))
			}
			nc.Close()
		}
	}()
	c, _ := New(ln.Addr().String())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.Put(ctx, "k", []byte("v"))
	if !errors.Is(err, ErrNotApplied) || !strings.Contains(err.Error(), fmt.Sprintf("protocol version %d, this client speaks %d", wire.ProtocolVersion+1, wire.ProtocolVersion)) {
		t.Fatalf("Put against a member of another version: %v", err)
	}
}
