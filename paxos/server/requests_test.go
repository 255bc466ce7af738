package server

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/proposer"
	"github.com/paxosd/paxosd/statemachine"
)

// A member's request handling, driven by hand: one member that leads a
// cluster of its own, with storage and a network that hold nothing back, a
// clock the test moves, and executor work run at once.

type memStorage struct{ recs []paxos.Record }

func (m *memStorage) Save(recs []paxos.Record) error {
	m.recs = append(m.recs, recs...)
	return nil
}

func (m *memStorage) Write(recs []paxos.Record) error { return m.Save(recs) }

type sentLog struct{ msgs []paxos.Message }

func (s *sentLog) Send(msgs []paxos.Message) { s.msgs = append(s.msgs, msgs...) }

type nowExecutor struct{}

func (nowExecutor) Go(f func()) { f() }

// inbox is a Responder that keeps every answer.
type inbox struct{ got []clientapi.Response }

func (b *inbox) Respond(r clientapi.Response) { b.got = append(b.got, r) }

type harness struct {
	t   *testing.T
	m   *Member
	now time.Time
}

func newHarness(t *testing.T, members paxos.Membership, id paxos.NodeID) *harness {
	t.Helper()
	h := &harness{t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// A window of one slot: commands handled while a slot is in flight
	// share the next one.
	m, err := NewMember(MemberConfig{ID: id, Bootstrap: paxos.InitialConfig(members), Cluster: 1, Machine: statemachine.NewKV(),
		Proposer: proposer.Config{Window: 1}, RequestTimeout: time.Second, Rand: rand.New(rand.NewPCG(1, 2))},
		MemberIO{Storage: &memStorage{}, FS: vfs.NewMem(), SnapshotDir: "snap", Transport: &sentLog{}, Executor: nowExecutor{},
			Now: func() time.Time { return h.now }, ClientAddr: func(id paxos.NodeID) string { return "client-" + id.String() }})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	return h
}

// lead ticks a one-member cluster until it leads, and opens sessions 1 to
// 10 for the tests' clients.
func (h *harness) lead() {
	h.t.Helper()
	for range 100 {
		h.tick()
		if h.m.Proposer().IsLeader() {
			for want := uint64(1); want <= 10; want++ {
				if id := h.open(0); id != want {
					h.t.Fatalf("opened session %d, want %d", id, want)
				}
			}
			return
		}
	}
	h.t.Fatal("a member alone did not become leader in 100 ticks")
}

// open opens a session with timeout ttl and returns its ID.
func (h *harness) open(ttl time.Duration) uint64 {
	h.t.Helper()
	var b inbox
	var data []byte
	if ttl > 0 {
		data = statemachine.EncodeSessionTTL(ttl)
	}
	h.m.Handle(&b, clientapi.Request{ID: 1, Kind: clientapi.ReqSession, Data: data})
	h.flush()
	if len(b.got) != 1 || b.got[0].Code != clientapi.CodeOK {
		h.t.Fatalf("opening a session: %+v", b.got)
	}
	id, n := binary.Uvarint(b.got[0].Data)
	if n <= 0 {
		h.t.Fatalf("opening a session answered %x", b.got[0].Data)
	}
	return id
}

func (h *harness) tick() {
	h.t.Helper()
	h.m.Node().Tick()
	h.flush()
}

func (h *harness) flush() {
	h.t.Helper()
	if err := h.m.Node().Flush(); err != nil {
		h.t.Fatal(err)
	}
}

func put(key, value string) []byte {
	return statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: []byte(value)}.Encode()
}

func get(key string) []byte {
	return statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)}.Encode()
}

func kvAnswer(t *testing.T, r clientapi.Response) statemachine.KVResponse {
	t.Helper()
	if r.Code != clientapi.CodeOK {
		t.Fatalf("answer %+v, want ok", r)
	}
	kr, err := statemachine.DecodeKVResponse(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// Two requests for one command (a retry that reached the same member while
// the first still waited) are both answered, with the one result.
func TestRetryWhileWaitingIsAnsweredTwice(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	var a, b inbox
	h.m.Handle(&a, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("k", "v")})
	h.m.Handle(&b, clientapi.Request{ID: 7, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("k", "v")})
	h.flush()
	if len(a.got) != 1 || len(b.got) != 1 || a.got[0].ID != 1 || b.got[0].ID != 7 {
		t.Fatalf("answers %+v and %+v, want one each with its own ID", a.got, b.got)
	}
	if ra, rb := kvAnswer(t, a.got[0]), kvAnswer(t, b.got[0]); ra.Rev != 1 || rb.Rev != 1 {
		t.Fatalf("revisions %d and %d: the command must be applied once", ra.Rev, rb.Rev)
	}
}

// Sweep times out the requests past their deadline, in deadline order, and
// only those: a newer request for the same command still gets its answer.
func TestSweepTimesOutOnlyThoseLate(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	var old, retry, other inbox
	// The proposals are queued, not yet sent: nothing is applied until
	// the flush.
	h.m.Handle(&old, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("k", "v")})
	h.now = h.now.Add(600 * time.Millisecond)
	h.m.Handle(&other, clientapi.Request{ID: 2, Kind: clientapi.ReqCommand, Session: 8, Seq: 1, Data: put("j", "v")})
	h.m.Handle(&retry, clientapi.Request{ID: 3, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("k", "v")})
	h.now = h.now.Add(600 * time.Millisecond) // the first is late, the others not
	h.m.Sweep()
	if len(old.got) != 1 || old.got[0].Code != clientapi.CodeTimeout || len(retry.got) != 0 || len(other.got) != 0 {
		t.Fatalf("after the sweep: %+v / %+v / %+v; want only the first timed out", old.got, retry.got, other.got)
	}
	h.flush()
	if len(retry.got) != 1 || len(other.got) != 1 {
		t.Fatalf("after applying: retry %+v, other %+v; want both answered", retry.got, other.got)
	}
	kvAnswer(t, retry.got[0])
	if h.m.Waiting() != 0 {
		t.Fatalf("%d requests still wait", h.m.Waiting())
	}
}

// Reads are numbered by the member, each its own, and every command of a
// batch gets its own result: two reads in one slot get their own answers.
func TestReadsGetTheirOwnAnswers(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	var w inbox
	h.m.Handle(&w, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("a", "1")})
	h.flush()
	h.m.Handle(&w, clientapi.Request{ID: 2, Kind: clientapi.ReqCommand, Session: 9, Seq: 2, Data: put("b", "2")})
	var ra, rb inbox
	h.m.Handle(&ra, clientapi.Request{ID: 5, Kind: clientapi.ReqRead, Data: get("a")})
	h.m.Handle(&rb, clientapi.Request{ID: 5, Kind: clientapi.ReqRead, Data: get("b")})
	h.flush()
	if len(ra.got) != 1 || len(rb.got) != 1 {
		t.Fatalf("answers %+v / %+v", ra.got, rb.got)
	}
	if a, b := kvAnswer(t, ra.got[0]), kvAnswer(t, rb.got[0]); string(a.Value) != "1" || string(b.Value) != "2" {
		t.Fatalf("get a = %q, get b = %q; want 1 and 2", a.Value, b.Value)
	}
}

// A command whose session moved on is answered as stale: applied at most
// once, its answer gone.
func TestStaleCommand(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	var w, late inbox
	h.m.Handle(&w, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("a", "1")})
	h.m.Handle(&w, clientapi.Request{ID: 2, Kind: clientapi.ReqCommand, Session: 9, Seq: 2, Data: put("a", "2")})
	h.flush()
	h.m.Handle(&late, clientapi.Request{ID: 3, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("a", "1")})
	h.flush()
	if len(late.got) != 1 || late.got[0].Code != clientapi.CodeStale {
		t.Fatalf("late retry answered %+v, want stale", late.got)
	}
}

// A session idle past its timeout, by the time stamps of the batches the
// leader proposes, is refused: the command is not applied, and the answer
// says so.
func TestExpiredSessionIsRefused(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	id := h.open(2 * time.Second)
	var w inbox
	h.m.Handle(&w, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: id, Seq: 1, Data: put("a", "1")})
	h.flush()
	kvAnswer(t, w.got[0])
	h.now = h.now.Add(3 * time.Second)
	// Another client's command carries the new time into the log first.
	h.m.Handle(&w, clientapi.Request{ID: 2, Kind: clientapi.ReqCommand, Session: 1, Seq: 1, Data: put("b", "1")})
	h.flush()
	h.m.Handle(&w, clientapi.Request{ID: 3, Kind: clientapi.ReqCommand, Session: id, Seq: 1, Data: put("a", "1")})
	h.flush()
	if got := w.got[len(w.got)-1]; got.ID != 3 || got.Code != clientapi.CodeSessionExpired || !strings.Contains(got.Message, "not open") {
		t.Fatalf("a retry in an expired session answered %+v, want session expired", got)
	}
	if n := h.m.Learner().Sessions(); n != 10 {
		t.Fatalf("%d sessions open, want the 10 of lead() (session %d expired)", n, id)
	}
}

// A member that does not lead says who does, with the address clients
// should use; bad requests are refused before anything is proposed.
func TestRefusals(t *testing.T) {
	h := newHarness(t, paxos.Uniform(3), 1)
	if err := h.m.Node().Deliver(paxos.Message{Type: paxos.MsgHeartbeat, From: 2, To: 1, Ballot: paxos.Ballot{Round: 3, Node: 2}}); err != nil {
		t.Fatal(err)
	}
	var b inbox
	h.m.Handle(&b, clientapi.Request{ID: 1, Kind: clientapi.ReqCommand, Session: 9, Seq: 1, Data: put("a", "1")})
	h.m.Handle(&b, clientapi.Request{ID: 2, Kind: clientapi.ReqCommand, Data: put("a", "1")})
	h.m.Handle(&b, clientapi.Request{ID: 3, Kind: clientapi.ReqCommand, Session: 9, Seq: 2, Data: make([]byte, MaxCommand+1)})
	h.m.Handle(&b, clientapi.Request{ID: 4, Kind: clientapi.ReqSnapshot})
	want := []struct {
		code clientapi.Code
		addr string
	}{{clientapi.CodeNotLeader, "client-2"}, {clientapi.CodeBadRequest, ""}, {clientapi.CodeBadRequest, ""}, {clientapi.CodeBadRequest, ""}}
	if len(b.got) != len(want) {
		t.Fatalf("answers %+v", b.got)
	}
	for i, w := range want {
		if g := b.got[i]; g.Code != w.code || g.LeaderAddr != w.addr || g.ID != uint64(i+1) {
			t.Errorf("request %d answered %+v, want %s to %q", i+1, g, w.code, w.addr)
		}
	}
	if h.m.Waiting() != 0 {
		t.Fatalf("%d requests wait after refusals", h.m.Waiting())
	}
}

// TestCandidateRedirectsReads: a linearizable read at a member that
// campaigns is redirected, never queued as a command: the KV machine would
// apply it like any other, so a read-only client could write through it.
func TestCandidateRedirectsReads(t *testing.T) {
	h := newHarness(t, paxos.Uniform(3), 1)
	sent := h.m.io.Transport.(*sentLog)
	var prevote paxos.Message
	for range 100 {
		h.tick()
		if i := slices.IndexFunc(sent.msgs, func(m paxos.Message) bool { return m.Type == paxos.MsgPreVote }); i >= 0 {
			prevote = sent.msgs[i]
			break
		}
	}
	if prevote.Type != paxos.MsgPreVote {
		t.Fatal("member 1 never campaigned")
	}
	if err := h.m.Node().Deliver(paxos.Message{Type: paxos.MsgPreVoteReply, From: 2, To: 1, Slot: prevote.Slot, Grant: true}); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if st := h.m.Proposer().State(); st != "candidate" {
		t.Fatalf("member 1 is %s, want candidate", st)
	}
	var b inbox
	h.m.Handle(&b, clientapi.Request{ID: 7, Kind: clientapi.ReqRead, Data: put("k", "written by a reader")})
	h.flush()
	if len(b.got) != 1 || b.got[0].Code != clientapi.CodeNotLeader {
		t.Fatalf("a read at a candidate: %+v; want a redirect at once", b.got)
	}
}
