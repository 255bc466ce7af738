package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/statemachine"
)

// The session table stays bounded however many sessions clients open: each
// of N sessions (20,000 here; PAXOSD_SESSIONS=1000000 for the long run) is
// opened through the log with a one-second timeout and makes one write, and
// the table never holds more than the sessions used within the last second
// of the leader's clock, or MaxSessions. Once the clients are gone, the next
// write's time stamp expires them all.
func TestSessionsStayBounded(t *testing.T) {
	n := 20_000
	if s := os.Getenv("PAXOSD_SESSIONS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("PAXOSD_SESSIONS=%q: want a positive count", s)
		}
	}
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	leader := leaderOf(t, c, l)
	nc := dialClientPort(t, l.Endpoints()[leader-1])
	// 256 workers share the connection, each opening a session, writing
	// once in it, and moving on; a reader routes the answers by ID.
	const workers = 256
	var mu, wmu sync.Mutex
	waiting := map[uint64]chan clientapi.Response{}
	go func() {
		d := wire.NewDecoder()
		for {
			body, err := wire.ReadFrame(nc, 1<<20, nil)
			if err != nil {
				return
			}
			var resp clientapi.Response
			if d.Decode(body, &resp) != nil {
				return
			}
			mu.Lock()
			ch := waiting[resp.ID]
			delete(waiting, resp.ID)
			mu.Unlock()
			ch <- resp
		}
	}()
	call := func(req clientapi.Request) (clientapi.Response, error) {
		ch := make(chan clientapi.Response, 1)
		mu.Lock()
		waiting[req.ID] = ch
		mu.Unlock()
		wmu.Lock()
		_, err := nc.Write(wire.Append(nil, &req))
		wmu.Unlock()
		if err != nil {
			return clientapi.Response{}, err
		}
		select {
		case resp := <-ch:
			if resp.Code != clientapi.CodeOK {
				return resp, fmt.Errorf("%s: %s %s", req.Kind, resp.Code, resp.Message)
			}
			return resp, nil
		case <-time.After(20 * time.Second):
			return clientapi.Response{}, fmt.Errorf("%s: no answer", req.Kind)
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	var most uint64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	ttl := statemachine.EncodeSessionTTL(time.Second)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				id := uint64(2 * i)
				resp, err := call(clientapi.Request{ID: id + 1, Kind: clientapi.ReqSession, Data: ttl})
				if err != nil {
					errs <- err
					return
				}
				session, _ := binary.Uvarint(resp.Data)
				cmd := statemachine.KVRequest{Op: statemachine.KVPut, Key: fmt.Appendf(nil, "k%d", i%1000), Value: []byte("v")}.Encode()
				if _, err := call(clientapi.Request{ID: id + 2, Kind: clientapi.ReqCommand, Session: session, Seq: 1, Data: cmd}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for watching := true; watching; {
		select {
		case <-done:
			watching = false
		case <-time.After(200 * time.Millisecond):
		}
		if st, err := c.Status(context.Background(), l.Endpoints()[leader-1]); err == nil {
			most = max(most, st.Sessions)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d sessions opened and written in %v (%.0f/s); the leader's table held at most %d; heap in use %d MB before, %d MB after",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), most, before.HeapInuse>>20, after.HeapInuse>>20)
	if most > statemachine.MaxSessions {
		t.Fatalf("the table held %d sessions, above the cap %d", most, statemachine.MaxSessions)
	}
	// A write 1.1 s later carries a time stamp past every timeout.
	time.Sleep(1100 * time.Millisecond)
	if err := c.Put(context.Background(), "last", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Every member applies that write (followers may take a moment), and
	// then holds the client's own session (default timeout) alone.
	for _, ep := range l.Endpoints() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := c.Status(context.Background(), ep)
			if err == nil && st.Sessions <= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member at %s: %+v, %v after every test session's timeout passed; want only the client's own session", ep, st.Sessions, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
