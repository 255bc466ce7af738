package proposer

import (
	"errors"
	"slices"
	"testing"

	"github.com/paxosd/paxosd/paxos"
)

// confirm answers the leader's Confirm round seq as acceptor from, with
// promise ballot, and returns the reads that came out.
func confirm(t *testing.T, p *Proposer, from paxos.NodeID, ballot paxos.Ballot, seq paxos.Slot) []paxos.ReadState {
	t.Helper()
	step(t, p, paxos.Message{Type: paxos.MsgHeartbeatAck, From: from, Ballot: ballot, Slot: seq})
	return take(p).Reads
}

func TestReadIndex(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1 })
	var nl *paxos.NotLeaderError
	if err := p.ReadIndex(1); !errors.As(err, &nl) {
		t.Fatalf("ReadIndex on a follower: %v, want NotLeaderError", err)
	}
	// Acceptor 2 reports a vote in slot 5: with a window of 1 the leader
	// proposes only slot 1 for now, yet a value may have been chosen up to
	// slot 5 before it led, so a read must wait for slot 5.
	lead(t, p, []paxos.Entry{{Slot: 5, Ballot: b(0, 2), Value: paxos.Value("v5")}}, nil)
	ballot := p.Ballot()
	if err := p.ReadIndex(7); err != nil {
		t.Fatal(err)
	}
	cs := ofType(take(p), paxos.MsgConfirm)
	if len(cs) != 3 || cs[0].Ballot != ballot || cs[0].Slot == 0 {
		t.Fatalf("a read sent %v, want a Confirm at %v to each of 3 acceptors", cs, ballot)
	}
	seq := cs[0].Slot
	// A read that arrives during the round waits for the next one.
	if err := p.ReadIndex(8); err != nil {
		t.Fatal(err)
	}
	if cs := ofType(take(p), paxos.MsgConfirm); len(cs) != 0 {
		t.Fatalf("a second read started a round while one was in flight: %v", cs)
	}
	// What does not confirm: a lower promise (the acceptor never promised
	// this leader), an acceptor whose promise the leader never received
	// (its votes are unknown here: node 1 did not promise), another round,
	// and the same acceptor twice.
	for _, ack := range []struct {
		from   paxos.NodeID
		ballot paxos.Ballot
		seq    paxos.Slot
	}{{3, b(0, 2), seq}, {1, ballot, seq}, {3, ballot, seq + 1}, {2, ballot, seq}, {2, ballot, seq}} {
		if rs := confirm(t, p, ack.from, ack.ballot, ack.seq); len(rs) != 0 {
			t.Fatalf("ack from %d at %v for round %d confirmed %v", ack.from, ack.ballot, ack.seq, rs)
		}
	}
	rs := confirm(t, p, 3, ballot, seq)
	if len(rs) != 1 || rs[0].ID != 7 || !rs[0].OK || rs[0].Index < 5 {
		t.Fatalf("a quorum confirmed %v, want read 7 at index 5 or above", rs)
	}
	// The next round started for read 8, and is retransmitted when lost.
	for range p.cfg.RetransmitTicks {
		p.Tick()
	}
	cs = ofType(take(p), paxos.MsgConfirm)
	if len(cs) == 0 || cs[0].Slot != seq+1 {
		t.Fatalf("round for read 8: %v", cs)
	}
	// Stepping down answers the waiting reads: not served.
	step(t, p, paxos.Message{Type: paxos.MsgHeartbeatAck, From: 2, Ballot: b(ballot.Round+1, 3), Slot: seq + 1})
	if rs := take(p).Reads; len(rs) != 1 || rs[0].ID != 8 || rs[0].OK {
		t.Fatalf("after stepping down: %v, want read 8 failed", rs)
	}
}

// While a configuration change is in flight, a read needs a quorum of the
// configuration it would make too: if it is chosen, a value this leader
// does not know may be chosen by that configuration alone.
func TestReadIndexCoversAChangeInFlight(t *testing.T) {
	p := newTestProposer(t, nil)
	lead(t, p, nil, nil)
	ballot := p.Ballot()
	next := withMember(t, 4, paxos.RoleAcceptor|paxos.RoleLearner, 0)
	if err := p.ProposeChange(next); err != nil {
		t.Fatal(err)
	}
	take(p)
	if err := p.ReadIndex(1); err != nil {
		t.Fatal(err)
	}
	cs := ofType(take(p), paxos.MsgConfirm)
	var to []paxos.NodeID
	for _, m := range cs {
		to = append(to, m.To)
	}
	if !slices.Contains(to, 4) {
		t.Fatalf("Confirm went to %v; the changed configuration's acceptor 4 too", to)
	}
	for _, from := range []paxos.NodeID{2, 3} {
		if rs := confirm(t, p, from, ballot, cs[0].Slot); len(rs) != 0 {
			t.Fatalf("confirmed %v by a quorum of the old configuration alone", rs)
		}
	}
}

// A leader whose learner has not applied the slots chosen before its
// phase 1 confirms no read until it has: values there, chosen by others,
// may change the configurations the round must reach.
func TestReadIndexWaitsForTheLearner(t *testing.T) {
	p := newTestProposer(t, nil)
	var entries []paxos.Entry
	for s := paxos.Slot(1); s <= 10; s++ {
		entries = append(entries, paxos.Entry{Slot: s, Ballot: b(1, 2), Value: paxos.Value("x")})
	}
	step(t, p, paxos.Message{Type: paxos.MsgDecide, From: 2, Ballot: b(1, 2), Entries: entries})
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 5})
	lead(t, p, nil, nil)
	if err := p.ReadIndex(1); err != nil {
		t.Fatal(err)
	}
	seq := ofType(take(p), paxos.MsgConfirm)[0].Slot
	confirm(t, p, 2, p.Ballot(), seq)
	if rs := confirm(t, p, 3, p.Ballot(), seq); len(rs) != 0 {
		t.Fatalf("confirmed %v with slots 6-10 chosen before phase 1 and not applied", rs)
	}
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 10})
	if rs := take(p).Reads; len(rs) != 1 || !rs[0].OK || rs[0].Index < 10 {
		t.Fatalf("after the learner applied slot 10: %v, want read 1 at index 10 or above", rs)
	}
}

// A leader elected by acceptors 2 and 3 that later hears only 1 and 3 can
// still write, but could confirm no read: only acceptors that promised it
// count. It campaigns again after an election timeout, to get 1's promise;
// and a round that gets no quorum in that time answers its reads as not
// confirmed.
func TestReadsNeedAPromisedQuorumThatAnswers(t *testing.T) {
	p := newTestProposer(t, nil)
	lead(t, p, nil, nil)
	ballot := p.Ballot()
	if err := p.ReadIndex(1); err != nil {
		t.Fatal(err)
	}
	seq := ofType(take(p), paxos.MsgConfirm)[0].Slot
	var reads []paxos.ReadState
	// NB: the check runs every election timeout, over what the leader
	// heard in that one; acceptor 2's promise counts in the first.
	for range 2 * p.cfg.ElectionTicks {
		if !p.IsLeader() {
			break
		}
		for _, from := range []paxos.NodeID{1, 3} {
			step(t, p, paxos.Message{Type: paxos.MsgHeartbeatAck, From: from, Ballot: ballot, Slot: seq})
		}
		p.Tick()
		reads = append(reads, take(p).Reads...)
	}
	if len(reads) != 1 || reads[0].ID != 1 || reads[0].OK {
		t.Fatalf("reads answered %v; want read 1 answered as not confirmed", reads)
	}
	if p.State() != "candidate" || !ballot.Less(p.Ballot()) {
		t.Fatalf("after an election timeout hearing only 1 and 3: %s at %v; want a new campaign above %v", p.State(), p.Ballot(), ballot)
	}
}
