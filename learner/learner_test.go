package learner

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
)

// testConfigs is the configuration of three full members.
var testConfigs = paxos.History{paxos.InitialConfig(paxos.Uniform(3))}

func newTestLearner(t testing.TB, st paxos.LearnerState, mod func(*Config)) *Learner {
	t.Helper()
	cfg := Config{ID: 1, Proposer: true, Machine: statemachine.NewKV(), Rand: rand.New(rand.NewPCG(1, 2))}
	if mod != nil {
		mod(&cfg)
	}
	if st.Configs == nil {
		st.Configs = testConfigs
	}
	l, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func put(session, seq uint64, key, value string) paxos.Command {
	return paxos.Command{Session: session, Seq: seq, Data: statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: []byte(value)}.Encode()}
}

func get(key string) paxos.Command {
	return paxos.Command{Data: statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)}.Encode()}
}

func entry(s paxos.Slot, cmds ...paxos.Command) paxos.Entry {
	return paxos.Entry{Slot: s, Value: paxos.EncodeBatchAt(1000, cmds)}
}

func decide(t testing.TB, l *Learner, entries ...paxos.Entry) paxos.Ready {
	t.Helper()
	if err := l.Step(paxos.Message{Type: paxos.MsgDecide, From: 2, To: 1, Ballot: paxos.Ballot{Round: 1, Node: 2}, Entries: entries}); err != nil {
		t.Fatal(err)
	}
	rd := l.Ready()
	l.Advance()
	return rd
}

func slotsOf(ds []paxos.Decision) []paxos.Slot {
	var out []paxos.Slot
	for _, d := range ds {
		out = append(out, d.Slot)
	}
	return out
}

func TestAppliesInOrder(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	rd := decide(t, l, entry(3, put(0, 0, "c", "3")), entry(2, put(0, 0, "b", "2")))
	if len(rd.Decided) != 0 || l.Applied() != 0 || l.Known() != 3 {
		t.Fatalf("with slot 1 missing: decided %v, applied %d, known %d; want nothing applied, 3 known", slotsOf(rd.Decided), l.Applied(), l.Known())
	}
	if len(rd.Writes) != 2 || rd.Writes[0].Type != paxos.RecChosen {
		t.Fatalf("writes %v, want the two chosen values recorded", rd.Writes)
	}
	rd = decide(t, l, entry(1, put(0, 0, "a", "1")))
	if got := slotsOf(rd.Decided); !slices.Equal(got, []paxos.Slot{1, 2, 3}) || l.Applied() != 3 {
		t.Fatalf("after slot 1: decided %v, applied %d; want [1 2 3]", got, l.Applied())
	}
	last := rd.Writes[len(rd.Writes)-1]
	if last.Type != paxos.RecApplied || last.Slot != 3 {
		t.Fatalf("last write %v, want applied slot 3", last)
	}
	learned := rd.Messages[len(rd.Messages)-1]
	if learned.Type != paxos.MsgLearned || learned.To != 1 || learned.Commit != 3 {
		t.Fatalf("got %v, want Learned 3 to the local proposer", learned)
	}
}

func TestSessionDeduplicates(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	// Two clients open sessions (1 and 2) in slot 1. Client 1's put (seq
	// 1) is chosen twice (a retry), around client 2's put to the same key.
	rd := decide(t, l,
		paxos.Entry{Slot: 1, Value: paxos.EncodeBatchAt(1000, []paxos.Command{openSession(11), openSession(12)})},
		entry(2, put(1, 1, "k", "first")),
		entry(3, put(2, 1, "k", "second")),
		entry(4, put(1, 1, "k", "first"), get("k")),
	)
	if len(rd.Decided) != 4 {
		t.Fatalf("decided %v, want 4 slots", slotsOf(rd.Decided))
	}
	opened := rd.Decided[0].Results
	if len(opened) != 2 || opened[0].Seq != 11 || string(opened[0].Data) != "\x01" || string(opened[1].Data) != "\x02" {
		t.Fatalf("opening answered %+v, want sessions 1 and 2 for tags 11 and 12", opened)
	}
	r1, r3 := rd.Decided[1].Results[0], rd.Decided[3].Results[0]
	if r1.Duplicate || r1.Expired || !r3.Duplicate || string(r1.Data) != string(r3.Data) {
		t.Fatalf("first %+v, retry %+v: want the retry marked duplicate with the first answer", r1, r3)
	}
	resp, err := statemachine.DecodeKVResponse(rd.Decided[3].Results[1].Data)
	if err != nil || string(resp.Value) != "second" {
		t.Fatalf("get after the retry: %+v, %v; want \"second\" (the retry was not applied again)", resp, err)
	}
	// An older seq of the same session is stale: skipped, no answer.
	rd = decide(t, l, entry(5, put(1, 2, "k", "x")), entry(6, put(1, 1, "k", "first")))
	if r := rd.Decided[1].Results[0]; !r.Duplicate || r.Data != nil {
		t.Fatalf("stale seq 1 after seq 2: %+v, want a duplicate with no answer", r)
	}
	// A session never opened, and one idle past its timeout (default ten
	// minutes of the batches' time), are refused, not applied.
	late := uint64(1000 + statemachine.DefaultSessionTTL.Milliseconds() + 1)
	rd = decide(t, l, entry(7, put(9, 1, "k", "y")),
		paxos.Entry{Slot: 8, Value: paxos.EncodeBatchAt(late, []paxos.Command{put(2, 2, "k", "z")})})
	if r := rd.Decided[0].Results[0]; !r.Expired || r.Duplicate {
		t.Fatalf("a session never opened: %+v, want refused as expired", r)
	}
	if r := rd.Decided[1].Results[0]; !r.Expired {
		t.Fatalf("a session idle past its timeout: %+v, want refused as expired", r)
	}
}

// A log written before sessions were opened through the log (batches
// without a time) replays as it applied then: a session's first command
// opens it, and its retries are still recognized; new batches expire those
// sessions by time like any other.
func TestLegacyBatchesOpenSessions(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	old := func(s paxos.Slot, cmds ...paxos.Command) paxos.Entry {
		return paxos.Entry{Slot: s, Value: paxos.EncodeBatch(cmds)}
	}
	rd := decide(t, l, old(1, put(0xdeadbeef, 1, "k", "v")), old(2, put(0xdeadbeef, 1, "k", "v")))
	r1, r2 := rd.Decided[0].Results[0], rd.Decided[1].Results[0]
	if r1.Expired || r1.Duplicate || !r2.Duplicate || string(r1.Data) != string(r2.Data) {
		t.Fatalf("an old log's first command %+v and its retry %+v: want applied, then recognized", r1, r2)
	}
	late := uint64(statemachine.DefaultSessionTTL.Milliseconds() + 1)
	rd = decide(t, l, paxos.Entry{Slot: 3, Value: paxos.EncodeBatchAt(late, []paxos.Command{put(0xdeadbeef, 2, "k", "w")})})
	if r := rd.Decided[0].Results[0]; !r.Expired {
		t.Fatalf("an old session idle past the timeout in a new batch: %+v, want refused", r)
	}
}

func openSession(tag uint64) paxos.Command {
	return paxos.Command{Kind: paxos.CmdOpenSession, Seq: tag}
}

func TestConflictIsRefused(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	decide(t, l, entry(1, put(0, 0, "a", "1")), entry(3, put(0, 0, "c", "3")))
	for _, e := range []paxos.Entry{entry(1, put(0, 0, "a", "other")), entry(3, put(0, 0, "c", "other"))} {
		err := l.Step(paxos.Message{Type: paxos.MsgDecide, From: 2, To: 1, Entries: []paxos.Entry{entry(2, put(0, 0, "b", "2")), e}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("conflicting value for slot %d: %v, want ErrConflict", e.Slot, err)
		}
		if !l.Ready().Empty() || l.Applied() != 1 {
			t.Fatalf("a refused message changed state: applied %d, ready %+v", l.Applied(), l.Ready())
		}
	}
}

func TestCatchUp(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, func(c *Config) { c.CatchUpTicks = 2 })
	if err := l.Step(paxos.Message{Type: paxos.MsgHeartbeat, From: 2, To: 1, Commit: 5}); err != nil {
		t.Fatal(err)
	}
	if msgs := l.Ready().Messages; len(msgs) != 1 || msgs[0].Type != paxos.MsgProgress || msgs[0].To != 2 || msgs[0].Commit != 0 {
		t.Fatalf("heartbeat answered with %v, want the learner's progress", msgs)
	}
	l.Advance()
	l.Tick()
	if msgs := l.Ready().Messages; len(msgs) != 0 {
		t.Fatalf("asked after 1 tick: %v", msgs)
	}
	l.Tick()
	msgs := l.Ready().Messages
	l.Advance()
	if len(msgs) != 1 || msgs[0].Type != paxos.MsgCatchUp || msgs[0].Slot != 1 || (msgs[0].To != 2 && msgs[0].To != 3) {
		t.Fatalf("after 2 ticks with a gap: %v, want one CatchUp from slot 1 to a peer", msgs)
	}
	// A peer answers with part of the gap.
	reply := paxos.Message{Type: paxos.MsgCatchUpReply, From: 3, To: 1, Commit: 6, Entries: []paxos.Entry{entry(1, get("a")), entry(2, get("b"))}}
	if err := l.Step(reply); err != nil {
		t.Fatal(err)
	}
	if l.Applied() != 2 || l.Known() != 6 {
		t.Fatalf("after the reply: applied %d, known %d; want 2 and 6", l.Applied(), l.Known())
	}
	// Progress with a gap left: the next request goes out at once, to the
	// same peer (found by seed 5307, where a learner 500 slots behind
	// caught up one small reply per timeout).
	var next []paxos.Message
	for _, m := range l.Ready().Messages {
		if m.Type == paxos.MsgCatchUp {
			next = append(next, m)
		}
	}
	l.Advance()
	if len(next) != 1 || next[0].To != 3 || next[0].Slot != 3 {
		t.Fatalf("after a reply that made progress: %v, want one CatchUp from slot 3 to peer 3", next)
	}
	// A duplicate of the reply makes no progress and asks nothing.
	if err := l.Step(reply); err != nil {
		t.Fatal(err)
	}
	if msgs := l.Ready().Messages; len(msgs) != 0 {
		t.Fatalf("a duplicate reply sent %v", msgs)
	}
}

func TestServeCatchUp(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, func(c *Config) { c.MaxCatchUpEntries = 2 })
	decide(t, l, entry(1, get("a")), entry(2, get("b")), entry(3, get("c")), entry(5, get("e")))
	for _, tc := range []struct {
		from paxos.Slot
		want []paxos.Slot
	}{{1, []paxos.Slot{1, 2}}, {3, []paxos.Slot{3}}, {4, nil}, {9, nil}} {
		if err := l.Step(paxos.Message{Type: paxos.MsgCatchUp, From: 3, To: 1, Slot: tc.from}); err != nil {
			t.Fatal(err)
		}
		rd := l.Ready()
		l.Advance()
		if len(rd.Messages) != 1 {
			t.Fatalf("CatchUp from %d: %d replies", tc.from, len(rd.Messages))
		}
		m := rd.Messages[0]
		var got []paxos.Slot
		for _, e := range m.Entries {
			got = append(got, e.Slot)
		}
		if m.Type != paxos.MsgCatchUpReply || m.To != 3 || m.Commit != 5 || !slices.Equal(got, tc.want) {
			t.Fatalf("CatchUp from %d: got %v with slots %v, want a reply to 3 with %v and commit 5", tc.from, m, got, tc.want)
		}
	}
}

func TestRecovery(t *testing.T) {
	entries := []paxos.Entry{entry(1, put(0, 0, "a", "1")), entry(2, put(0, 0, "b", "2")), entry(4, put(0, 0, "d", "4"))}
	live := newTestLearner(t, paxos.LearnerState{}, nil)
	decide(t, live, entries...)

	restarted := newTestLearner(t, paxos.LearnerState{Chosen: entries, Applied: 2}, nil)
	if restarted.Applied() != 2 || restarted.Known() != 4 || restarted.Hash() != live.Hash() {
		t.Fatalf("after replay: applied %d known %d hash %x; want 2, 4 and the live learner's %x", restarted.Applied(), restarted.Known(), restarted.Hash(), live.Hash())
	}
	var a, b strings.Builder
	if err := live.Snapshot(&a); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatal("a replayed learner holds different state from the live one")
	}
	if rd := restarted.Ready(); len(rd.Decided) != 0 || len(rd.Writes) != 0 {
		t.Fatalf("replay produced work: %+v", rd)
	}
	if _, err := New(Config{ID: 1, Proposer: true, Machine: statemachine.NewKV(), Rand: rand.New(rand.NewPCG(1, 1))},
		paxos.LearnerState{Configs: testConfigs, Chosen: entries, Applied: 4}); err == nil {
		t.Fatal("recovered an applied slot beyond a gap in the chosen log")
	}
}

func TestBadInput(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	for _, m := range []paxos.Message{
		{Type: paxos.MsgDecide, From: 2, Entries: []paxos.Entry{entry(0)}},
		{Type: paxos.MsgCatchUp, From: 1, Slot: 1}, // from itself
		{Type: paxos.MsgPrepare, From: 2},
	} {
		m.To = 1
		if err := l.Step(m); err == nil {
			t.Errorf("Step(%v) took bad input", m)
		}
	}
	if !l.Ready().Empty() || l.Applied() != 0 {
		t.Fatal("bad input changed state")
	}
}

func TestUndecodableValueIsANoop(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	rd := decide(t, l, paxos.Entry{Slot: 1, Value: paxos.Value{0xff, 1, 2}})
	if l.Applied() != 1 || len(rd.Decided) != 1 || len(rd.Decided[0].Results) != 0 || l.Hash() == hashSeed {
		t.Fatalf("applied %d, decided %+v: want slot 1 applied as a no-op and hashed", l.Applied(), rd.Decided)
	}
}

func BenchmarkLearnerApply(b *testing.B) {
	l := newTestLearner(b, paxos.LearnerState{}, nil)
	cmds := make([]paxos.Command, 64)
	for i := range cmds {
		cmds[i] = put(0, 0, "key", strings.Repeat("v", 256)) // session 0: applied every time
	}
	v := paxos.EncodeBatch(cmds)
	m := paxos.Message{Type: paxos.MsgDecide, From: 2, To: 1, Entries: []paxos.Entry{{Value: v}}}
	b.ReportAllocs()
	for b.Loop() {
		m.Entries[0].Slot++
		if err := l.Step(m); err != nil {
			b.Fatal(err)
		}
		l.Advance()
	}
}

// A configuration change chosen in slot s is applied to the learner's
// configurations, not to the machine, and governs from s+ConfigDelay on;
// one made from an older configuration is a no-op. Once the applied slot
// passes a Start, the configuration before it is dropped.
func TestConfigChange(t *testing.T) {
	l := newTestLearner(t, paxos.LearnerState{}, nil)
	boot := testConfigs[0]
	add := func(id paxos.NodeID, base paxos.Slot) paxos.Value {
		peers := append(append([]paxos.Peer(nil), boot.Peers...), paxos.Peer{ID: id, Roles: paxos.RoleLearner, PeerAddr: "x"})
		c, err := paxos.NewConfig(0, 0, peers, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Base = base
		return paxos.EncodeConfig(c)
	}
	rd := decide(t, l, paxos.Entry{Slot: 1, Value: add(4, 0)}, paxos.Entry{Slot: 2, Value: add(5, 0)})
	h := l.Configs()
	if len(h) != 2 || h[1].Made != 1 || h[1].Start != 1+paxos.ConfigDelay || !h[1].Membership().Has(4, paxos.RoleLearner) {
		t.Fatalf("configurations after a change in slot 1: %+v", h)
	}
	if len(rd.Configs) != 2 || len(rd.Decided) != 2 || rd.Decided[0].Results != nil {
		t.Fatalf("Ready after the change: configs %d, decided %+v", len(rd.Configs), rd.Decided)
	}
	if h.At(paxos.ConfigDelay).Made != 0 || h.At(1+paxos.ConfigDelay).Made != 1 {
		t.Fatal("the change governs before slot 1+ConfigDelay, or not from it")
	}
	// Apply up to the change's Start: the bootstrap configuration goes.
	var es []paxos.Entry
	for s := paxos.Slot(3); s <= paxos.ConfigDelay; s++ {
		es = append(es, entry(s))
	}
	rd = decide(t, l, es...)
	if h := l.Configs(); len(h) != 1 || h[0].Made != 1 || rd.Configs == nil {
		t.Fatalf("at slot %d the configurations are %+v", paxos.ConfigDelay, h)
	}
	if rd := decide(t, l, paxos.Entry{Slot: paxos.ConfigDelay + 1, Value: add(6, 0)}); rd.Configs != nil || len(l.Configs()) != 1 {
		t.Fatal("a change made from an older configuration was applied")
	}
	if rd := decide(t, l, paxos.Entry{Slot: paxos.ConfigDelay + 2, Value: add(6, 1)}); rd.Configs == nil || l.Configs().Latest().Made != paxos.ConfigDelay+2 {
		t.Fatal("a change made from the newest configuration was not applied")
	}
	if job := l.TakeSnapshot(); job == 0 || len(l.Ready().Snapshot.Meta.Configs) != 2 {
		t.Fatalf("snapshot of slot %d does not carry the two configurations that govern after it", job)
	}
}
