package proposer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/paxosd/paxosd/paxos"
)

func b(round uint64, node paxos.NodeID) paxos.Ballot { return paxos.Ballot{Round: round, Node: node} }

func cmd(i int) paxos.Command {
	return paxos.Command{Session: 7, Seq: uint64(i), Data: []byte(fmt.Sprintf("cmd%d", i))}
}

func newTestProposer(t testing.TB, mod func(*Config)) *Proposer {
	t.Helper()
	cfg := Config{ID: 1, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(3))}, Rand: rand.New(rand.NewPCG(1, 2)), ElectionTicks: 5}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func take(p *Proposer) paxos.Ready {
	rd := p.Ready()
	p.Advance()
	return rd
}

func step(t testing.TB, p *Proposer, m paxos.Message) {
	t.Helper()
	m.To = 1
	if err := p.Step(m); err != nil {
		t.Fatalf("Step(%v): %v", m, err)
	}
}

// ofType returns the messages of type typ.
func ofType(rd paxos.Ready, typ paxos.MsgType) []paxos.Message {
	var out []paxos.Message
	for _, m := range rd.Messages {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// campaign ticks p until it asks for pre-votes, grants them from
// acceptors 2 and 3, and returns the Prepares that follow.
func campaign(t testing.TB, p *Proposer) []paxos.Message {
	t.Helper()
	for range 100 {
		p.Tick()
		if vs := ofType(take(p), paxos.MsgPreVote); len(vs) > 0 {
			if p.State() != "pre-candidate" || len(vs) != 3 {
				t.Fatalf("asked %d pre-votes as %s", len(vs), p.State())
			}
			for _, from := range []paxos.NodeID{2, 3} {
				step(t, p, paxos.Message{Type: paxos.MsgPreVoteReply, From: from, Slot: vs[0].Slot, Grant: true})
			}
			ps := ofType(take(p), paxos.MsgPrepare)
			if len(ps) == 0 || !vs[0].Ballot.Less(ps[0].Ballot) && vs[0].Ballot != ps[0].Ballot {
				t.Fatalf("after a quorum of pre-votes for %v: %v", vs[0].Ballot, ps)
			}
			return ps
		}
	}
	t.Fatal("proposer never campaigned")
	return nil
}

// lead makes p the leader with promises from acceptors 2 and 3 carrying
// entries, and returns the Ready of becoming leader.
func lead(t testing.TB, p *Proposer, entries2, entries3 []paxos.Entry) paxos.Ready {
	t.Helper()
	ps := campaign(t, p)
	ballot, from := ps[0].Ballot, ps[0].Slot
	step(t, p, paxos.Message{Type: paxos.MsgPromise, From: 2, Ballot: ballot, Slot: from, Entries: entries2})
	step(t, p, paxos.Message{Type: paxos.MsgPromise, From: 3, Ballot: ballot, Slot: from, Entries: entries3})
	if !p.IsLeader() {
		t.Fatalf("not leader after a quorum of promises for %v", ballot)
	}
	return take(p)
}

func TestCampaign(t *testing.T) {
	p := newTestProposer(t, nil)
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 41})
	ps := campaign(t, p)
	if len(ps) != 3 {
		t.Fatalf("got %d Prepares, want one per acceptor (3)", len(ps))
	}
	for i, m := range ps {
		if m.To != paxos.NodeID(i+1) || m.Ballot != b(1, 1) || m.Slot != 42 {
			t.Errorf("Prepare %d = %v, want to %d at 1.1 from slot 42", i, m, i+1)
		}
	}
	// A nack reveals a higher ballot: the proposer steps down, and its next
	// campaign goes above it.
	step(t, p, paxos.Message{Type: paxos.MsgNack, From: 2, Ballot: b(6, 3)})
	if p.State() != "follower" {
		t.Fatalf("state after a higher nack = %s, want follower", p.State())
	}
	if ps := campaign(t, p); ps[0].Ballot != b(7, 1) {
		t.Fatalf("next campaign at %v, want 7.1", ps[0].Ballot)
	}
}

func TestBecomeLeaderAdoptsHighestBallotAndFillsHoles(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 100 })
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 4})
	// A leader at 5.3 was heard of, so the campaign goes above it.
	step(t, p, paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(5, 3)})
	rd := lead(t, p,
		[]paxos.Entry{{Slot: 5, Ballot: b(1, 2), Value: paxos.Value("old")}, {Slot: 8, Ballot: b(5, 3), Value: paxos.Value("eight")}},
		[]paxos.Entry{{Slot: 5, Ballot: b(2, 3), Value: paxos.Value("new")}, {Slot: 6, Ballot: b(1, 2), Value: paxos.Value("six")}},
	)
	want := map[paxos.Slot]string{5: "new", 6: "six", 7: "", 8: "eight"}
	got := map[paxos.Slot]string{}
	for _, m := range ofType(rd, paxos.MsgAccept) {
		if m.Ballot != p.Ballot() {
			t.Fatalf("Accept %v not at the leader's ballot %v", m, p.Ballot())
		}
		if prev, ok := got[m.Slot]; ok && prev != string(m.Value) {
			t.Fatalf("slot %d proposed as %q and %q", m.Slot, prev, m.Value)
		}
		got[m.Slot] = string(m.Value)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recovered proposals %v, want %v", got, want)
	}
	if n := len(ofType(rd, paxos.MsgAccept)); n != 4*3 {
		t.Fatalf("%d Accepts, want 12 (4 slots to 3 acceptors)", n)
	}
	if len(ofType(rd, paxos.MsgHeartbeat)) != 3 {
		t.Fatalf("a new leader must announce itself to every learner (its own too) at once")
	}
	// New commands go after the recovered slots.
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}})
	if acc := ofType(take(p), paxos.MsgAccept); len(acc) != 3 || acc[0].Slot != 9 {
		t.Fatalf("first new command proposed as %v, want slot 9", acc)
	}
}

func TestPromiseChecks(t *testing.T) {
	p := newTestProposer(t, nil)
	ps := campaign(t, p)
	ballot := ps[0].Ballot
	promise := func(from paxos.NodeID, entries ...paxos.Entry) error {
		return p.Step(paxos.Message{Type: paxos.MsgPromise, From: from, To: 1, Ballot: ballot, Slot: 1, Entries: entries})
	}
	if err := promise(2, paxos.Entry{Slot: 1, Ballot: ballot}); err == nil {
		t.Error("promise holding a value at the campaign's own ballot was taken")
	}
	// A node that is no acceptor of the configuration may answer; its
	// promise does not count.
	for _, from := range []paxos.NodeID{9, 2} {
		if err := promise(from); err != nil {
			t.Fatal(err)
		}
	}
	if p.IsLeader() {
		t.Fatal("a promise from a non-acceptor counted toward the quorum")
	}
	if err := promise(2); err != nil || p.IsLeader() {
		t.Fatalf("a duplicate promise counted twice: leader=%v err=%v", p.IsLeader(), err)
	}
	if err := p.Step(paxos.Message{Type: paxos.MsgPromise, From: 3, To: 1, Ballot: b(ballot.Round+1, 1), Slot: 1}); err != nil || p.IsLeader() {
		t.Fatalf("a promise for another ballot counted: leader=%v err=%v", p.IsLeader(), err)
	}
	if err := promise(3); err != nil || !p.IsLeader() {
		t.Fatalf("not leader after promises from 2 and 3: err=%v", err)
	}
}

func TestBatchingAndWindow(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1; c.MaxBatch = 3 })
	lead(t, p, nil, nil)
	// A lone command is proposed at once: no batching delay.
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}})
	acc := ofType(take(p), paxos.MsgAccept)
	if len(acc) != 3 || acc[0].Slot != 1 {
		t.Fatalf("lone command: Accepts %v, want 3 for slot 1", acc)
	}
	// The window is full: the next five wait and share slots.
	for i := 2; i <= 6; i++ {
		step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(i)}})
	}
	if acc := ofType(take(p), paxos.MsgAccept); len(acc) != 0 {
		t.Fatalf("proposed %v with the window full", acc)
	}
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 2, Ballot: p.Ballot(), Slot: 1})
	if rd := take(p); len(ofType(rd, paxos.MsgDecide)) != 0 {
		t.Fatal("decided on one vote of three")
	}
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 3, Ballot: p.Ballot(), Slot: 1})
	rd := take(p)
	dec := ofType(rd, paxos.MsgDecide)
	if len(dec) != 3 || dec[0].Entries[0].Slot != 1 || p.Decided() != 1 {
		t.Fatalf("after a quorum: Decides %v, decided %d; want one per learner for slot 1", dec, p.Decided())
	}
	acc = ofType(rd, paxos.MsgAccept)
	if len(acc) != 3 || acc[0].Slot != 2 {
		t.Fatalf("after slot 1 was chosen: Accepts %v, want slot 2", acc)
	}
	cmds, err := paxos.DecodeBatch(acc[0].Value)
	if err != nil || len(cmds) != 3 || cmds[0].Seq != 2 || cmds[2].Seq != 4 {
		t.Fatalf("slot 2 holds %v (%v), want commands 2, 3 and 4 (MaxBatch 3)", cmds, err)
	}
}

func TestMaxBatchBytes(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 10; c.MaxBatchBytes = 10 })
	lead(t, p, nil, nil)
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1), cmd(2), cmd(3), {Data: make([]byte, 50)}}})
	var sizes []int
	for _, m := range ofType(take(p), paxos.MsgAccept) {
		if m.To == 1 {
			cmds, _ := paxos.DecodeBatch(m.Value)
			sizes = append(sizes, len(cmds))
		}
	}
	// "cmd1"+"cmd2" fit in 10 bytes, "cmd3" starts a new slot, and the
	// 50-byte command gets a slot of its own.
	if want := []int{2, 1, 1}; !slices.Equal(sizes, want) {
		t.Fatalf("commands per slot %v, want %v", sizes, want)
	}
}

func TestRetransmitAndHeartbeat(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.RetransmitTicks = 3; c.HeartbeatTicks = 2 })
	lead(t, p, nil, nil)
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}})
	take(p)
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 2, Ballot: p.Ballot(), Slot: 1})
	var resent []paxos.NodeID
	heartbeats := 0
	for range 3 {
		p.Tick()
		rd := take(p)
		for _, m := range ofType(rd, paxos.MsgAccept) {
			resent = append(resent, m.To)
		}
		heartbeats += len(ofType(rd, paxos.MsgHeartbeat))
	}
	if !slices.Equal(resent, []paxos.NodeID{1, 3}) {
		t.Fatalf("resent Accepts to %v, want the acceptors that did not answer: [1 3]", resent)
	}
	if heartbeats != 3 {
		t.Fatalf("%d heartbeats in 3 ticks with period 2, want 3 (one per learner, its own too)", heartbeats)
	}
}

func TestFollower(t *testing.T) {
	p := newTestProposer(t, nil)
	var nl *paxos.NotLeaderError
	if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{cmd(1)}}); !errors.As(err, &nl) || nl.Leader != 0 {
		t.Fatalf("propose with no leader known: %v, want NotLeaderError with no leader", err)
	}
	step(t, p, paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(4, 3), Commit: 10})
	if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{cmd(1)}}); !errors.As(err, &nl) || nl.Leader != 3 {
		t.Fatalf("propose to a follower of 3: %v, want NotLeaderError naming 3", err)
	}
	// Heartbeats keep a follower from campaigning.
	for range 50 {
		p.Tick()
		step(t, p, paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(4, 3)})
		if len(ofType(take(p), paxos.MsgPrepare)) > 0 {
			t.Fatal("campaigned while hearing from the leader")
		}
	}
	// A stale leader's heartbeat does not reset the failure detector.
	for range 50 {
		p.Tick()
		step(t, p, paxos.Message{Type: paxos.MsgHeartbeat, From: 2, Ballot: b(3, 2)})
		if ps := ofType(take(p), paxos.MsgPreVote); len(ps) > 0 {
			if ps[0].Ballot != b(5, 1) {
				t.Fatalf("asked pre-votes for %v, want 5.1, above the leader's 4.3", ps[0].Ballot)
			}
			return
		}
	}
	t.Fatal("never campaigned while hearing only a stale leader")
}

func TestLeaderStepsDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    paxos.Message
		down bool
	}{
		{"nack with a higher ballot", paxos.Message{Type: paxos.MsgNack, From: 2, Ballot: b(9, 2)}, true},
		{"nack of an accept with a higher ballot", paxos.Message{Type: paxos.MsgNack, From: 2, Ballot: b(9, 2), Slot: 1}, true},
		{"nack with its own ballot", paxos.Message{Type: paxos.MsgNack, From: 2, Ballot: b(1, 1)}, false},
		{"heartbeat of a higher ballot", paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(2, 3)}, true},
		{"heartbeat of a lower ballot", paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(0, 3)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProposer(t, func(c *Config) { c.Window = 1 })
			lead(t, p, nil, nil)
			step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1), cmd(2)}})
			step(t, p, tc.m)
			if p.IsLeader() == tc.down {
				t.Fatalf("after %v: leader=%v, want %v", tc.m, p.IsLeader(), !tc.down)
			}
			if tc.down {
				if tc.m.Type == paxos.MsgHeartbeat && p.Leader() != tc.m.From {
					t.Fatalf("follows %d, want %d", p.Leader(), tc.m.From)
				}
				// Votes for the old ballot no longer count.
				take(p)
				step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 2, Ballot: b(1, 1), Slot: 1})
				step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 3, Ballot: b(1, 1), Slot: 1})
				if d := ofType(take(p), paxos.MsgDecide); len(d) != 0 {
					t.Fatalf("decided %v after stepping down", d)
				}
			}
		})
	}
}

func TestOverloaded(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1; c.MaxQueue = 2 })
	lead(t, p, nil, nil)
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}}) // takes the window
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(2), cmd(3)}})
	if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{cmd(4)}}); !errors.Is(err, paxos.ErrOverloaded) {
		t.Fatalf("propose with a full queue: %v, want ErrOverloaded", err)
	}
}

// TestDeterministic feeds two proposers with the same seed the same inputs
// and expects the same output, byte for byte.
func TestDeterministic(t *testing.T) {
	run := func() []paxos.Message {
		p := newTestProposer(t, func(c *Config) { c.Window = 3 })
		lead(t, p, []paxos.Entry{{Slot: 2, Ballot: b(0, 2), Value: paxos.Value("x")}}, nil)
		var out []paxos.Message
		for i := range 20 {
			step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(i)}})
			for _, from := range []paxos.NodeID{2, 3} {
				step(t, p, paxos.Message{Type: paxos.MsgHeartbeatAck, From: from, Ballot: p.Ballot()})
			}
			p.Tick()
			out = append(out, take(p).Messages...)
		}
		return out
	}
	if a, b := run(), run(); !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with the same inputs produced different messages")
	}
}

func BenchmarkProposerBatching(b *testing.B) {
	p := newTestProposer(b, func(c *Config) { c.Window = 8; c.MaxBatch = 64 })
	lead(b, p, nil, nil)
	c := paxos.Command{Session: 1, Data: make([]byte, 256)}
	ballot := p.Ballot()
	var slot paxos.Slot
	b.ReportAllocs()
	for b.Loop() {
		// 64 commands arrive, then the oldest slot is chosen.
		for i := range 64 {
			c.Seq = uint64(i)
			if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{c}}); err != nil {
				b.Fatal(err)
			}
		}
		slot++
		for _, from := range []paxos.NodeID{2, 3} {
			if err := p.Step(paxos.Message{Type: paxos.MsgAccepted, From: from, To: 1, Ballot: ballot, Slot: slot}); err != nil {
				b.Fatal(err)
			}
		}
		p.Ready()
		p.Advance()
	}
}

// A promise's floor (Commit) says every slot up to it is chosen and its
// vote forgotten: the new leader proposes nothing there, not even a no-op,
// and takes the floor as decided.
func TestBecomeLeaderSkipsTheFloor(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 100 })
	ps := campaign(t, p)
	ballot := ps[0].Ballot
	step(t, p, paxos.Message{Type: paxos.MsgPromise, From: 2, Ballot: ballot, Slot: 1, Commit: 6,
		Entries: []paxos.Entry{{Slot: 8, Ballot: b(0, 3), Value: paxos.Value("eight")}}})
	step(t, p, paxos.Message{Type: paxos.MsgPromise, From: 3, Ballot: ballot, Slot: 1,
		Entries: []paxos.Entry{{Slot: 3, Ballot: b(0, 3), Value: paxos.Value("three")}}})
	if !p.IsLeader() {
		t.Fatal("not leader after a quorum of promises")
	}
	got := map[paxos.Slot]string{}
	for _, m := range ofType(take(p), paxos.MsgAccept) {
		got[m.Slot] = string(m.Value)
	}
	want := map[paxos.Slot]string{7: "", 8: "eight"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("leader proposed %v after a promise with floor 6; want %v", got, want)
	}
	if p.Decided() != 6 {
		t.Fatalf("decided %d after a floor of 6", p.Decided())
	}
	// A promise may not report a slot at or below its own floor.
	q := newTestProposer(t, nil)
	ps = campaign(t, q)
	if err := q.Step(paxos.Message{Type: paxos.MsgPromise, From: 2, To: 1, Ballot: ps[0].Ballot, Slot: 1, Commit: 5,
		Entries: []paxos.Entry{{Slot: 5, Ballot: b(0, 3)}}}); err == nil {
		t.Fatal("a promise holding a slot at its floor was accepted")
	}
}

// An Accept refused at an acceptor's floor tells the leader those slots are
// chosen: it stops proposing them and frees the window.
func TestNackWithFloor(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window, c.MaxBatch = 2, 1 })
	lead(t, p, []paxos.Entry{{Slot: 1, Ballot: b(0, 2), Value: paxos.Value("one")}}, nil)
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1), cmd(2)}})
	take(p)
	step(t, p, paxos.Message{Type: paxos.MsgNack, From: 3, Ballot: b(0, 0), Slot: 1, Commit: 1})
	if p.Decided() != 1 || !p.IsLeader() {
		t.Fatalf("after a nack with floor 1: decided %d, leader %v; want 1 and still leading", p.Decided(), p.IsLeader())
	}
	acc := ofType(take(p), paxos.MsgAccept)
	if len(acc) != 3 || acc[0].Slot != 3 {
		t.Fatalf("window freed by the floor was not reused: %v", acc)
	}
}

// TestOldBallotVotesDoNotCount: a proposer that leads again at a higher
// ballot must not count Accepteds of its earlier ballot for a slot it
// proposes anew; those votes were for another proposal, and an old value
// may be the one a quorum accepted.
func TestOldBallotVotesDoNotCount(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 4 })
	lead(t, p, nil, nil)
	old := p.Ballot()
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}})
	take(p)
	step(t, p, paxos.Message{Type: paxos.MsgNack, From: 3, Ballot: b(5, 3)})
	if p.IsLeader() {
		t.Fatal("still leads after a higher nack")
	}
	// Lead again; acceptor 2 reports slot 1 from the old ballot, so the
	// new leader re-proposes it at its new ballot.
	rd := lead(t, p, []paxos.Entry{{Slot: 1, Ballot: old, Value: paxos.EncodeBatch([]paxos.Command{cmd(1)})}}, nil)
	if len(ofType(rd, paxos.MsgAccept)) == 0 || p.Ballot() == old {
		t.Fatalf("leads at %v and re-proposed %v", p.Ballot(), ofType(rd, paxos.MsgAccept))
	}
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: old, Slot: 1})
	}
	if d := ofType(take(p), paxos.MsgDecide); len(d) != 0 || p.Decided() != 0 {
		t.Fatalf("decided slot 1 on votes of the old ballot %v: %v", old, d)
	}
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 1})
	}
	if p.Decided() != 1 {
		t.Fatalf("votes of the current ballot did not decide slot 1 (decided %d)", p.Decided())
	}
}

// TestHeartbeatAdvertisesOnlyChosenSlots: a leader's heartbeat tells the
// learners how far the log is chosen; slots in flight are not chosen, and a
// learner that believed so would wait for them forever if this leader
// failed.
func TestHeartbeatAdvertisesOnlyChosenSlots(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 4; c.HeartbeatTicks = 1 })
	lead(t, p, nil, nil)
	for i := range 3 {
		step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(i + 1)}})
	}
	take(p)
	// Slot 2 is chosen, slots 1 and 3 are not: the chosen prefix is empty.
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 2})
	}
	check := func(want paxos.Slot) {
		t.Helper()
		p.Tick()
		hbs := ofType(take(p), paxos.MsgHeartbeat)
		if len(hbs) == 0 {
			t.Fatal("no heartbeat")
		}
		for _, hb := range hbs {
			if hb.Commit != want {
				t.Fatalf("heartbeat advertises slots up to %d as chosen, want %d", hb.Commit, want)
			}
		}
	}
	check(0)
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 1})
	}
	check(2)
}

// The queue of commands waiting for a slot is bounded in bytes too: a
// leader refuses commands once MaxQueueBytes wait, takes them again once
// they went into slots, and takes one oversized command into an empty
// queue.
func TestQueueBytesBound(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1; c.MaxQueueBytes = 100; c.MaxBatch = 1 })
	lead(t, p, nil, nil)
	big := func(n int) paxos.Message {
		return paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{{Session: 1, Seq: 1, Data: make([]byte, n)}}}
	}
	step(t, p, big(500)) // proposed at once: the window was free
	step(t, p, big(60))  // waits
	if err := p.Step(big(60)); !errors.Is(err, paxos.ErrOverloaded) {
		t.Fatalf("120 bytes waiting with a 100-byte bound: %v, want ErrOverloaded", err)
	}
	acc := ofType(take(p), paxos.MsgAccept)
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 2, Ballot: p.Ballot(), Slot: acc[0].Slot})
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 3, Ballot: p.Ballot(), Slot: acc[0].Slot})
	// The 60-byte command went into the next slot: the queue is empty.
	if err := p.Step(big(500)); err != nil {
		t.Fatalf("an oversized command into an empty queue: %v", err)
	}
}
