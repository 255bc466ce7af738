package proposer

import (
	"errors"
	"testing"

	"github.com/paxosd/paxosd/paxos"
)

// withMember returns the configuration of three full members plus member id
// with roles.
func withMember(t *testing.T, id paxos.NodeID, roles paxos.Role, target paxos.Role) paxos.Config {
	t.Helper()
	peers := append([]paxos.Peer(nil), paxos.InitialConfig(paxos.Uniform(3)).Peers...)
	peers = append(peers, paxos.Peer{ID: id, Roles: roles, Target: target, PeerAddr: "x"})
	c, err := paxos.NewConfig(0, 0, peers, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A pre-candidate that hears a live leader gives up without raising any
// ballot; one that gets a quorum of grants campaigns for real.
func TestPreVoteYieldsToALiveLeader(t *testing.T) {
	p := newTestProposer(t, nil)
	for p.State() != "pre-candidate" {
		p.Tick()
	}
	take(p)
	step(t, p, paxos.Message{Type: paxos.MsgHeartbeat, From: 3, Ballot: b(4, 3)})
	if p.State() != "follower" || p.Leader() != 3 || !p.Ballot().IsZero() {
		t.Fatalf("after a leader's heartbeat: %s, leader %d, ballot %v", p.State(), p.Leader(), p.Ballot())
	}
	var nl *paxos.NotLeaderError
	for p.State() != "pre-candidate" {
		p.Tick()
	}
	if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{cmd(1)}}); !errors.As(err, &nl) || nl.Leader != 0 {
		t.Fatalf("a pre-candidate took a command: %v", err)
	}
}

// A leader that hears from no quorum of acceptors for an election timeout
// steps down, and then refuses commands at once.
func TestCheckQuorum(t *testing.T) {
	p := newTestProposer(t, nil)
	lead(t, p, nil, nil)
	for i := range 10 {
		if i < 5 {
			step(t, p, paxos.Message{Type: paxos.MsgHeartbeatAck, From: 2, Ballot: p.Ballot()})
		}
		p.Tick()
		take(p)
	}
	if p.IsLeader() {
		t.Fatal("still leads after an election timeout without a quorum of acceptors")
	}
	var nl *paxos.NotLeaderError
	if err := p.Step(paxos.Message{Type: paxos.MsgPropose, From: 1, To: 1, Cmds: []paxos.Command{cmd(1)}}); !errors.As(err, &nl) || nl.Leader != 0 {
		t.Fatalf("after stepping down: %v, want NotLeaderError with no leader", err)
	}
}

// The pipeline never reaches past applied+ConfigDelay: the leader does not
// know the configuration of the slots beyond.
func TestProposesOnlyWhereTheConfigurationIsKnown(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1000; c.MaxBatch = 1 })
	lead(t, p, nil, nil)
	for i := range 200 {
		step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(i)}})
	}
	acc := ofType(take(p), paxos.MsgAccept)
	if top := acc[len(acc)-1].Slot; top != paxos.ConfigDelay {
		t.Fatalf("proposed up to slot %d with nothing applied, want %d", top, paxos.ConfigDelay)
	}
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 10})
	acc = ofType(take(p), paxos.MsgAccept)
	if top := acc[len(acc)-1].Slot; top != 10+paxos.ConfigDelay {
		t.Fatalf("proposed up to slot %d with 10 applied, want %d", top, 10+paxos.ConfigDelay)
	}
}

// Across a change, each slot goes to its own configuration's acceptors and
// is chosen by its quorum; the new acceptor is asked for its promise, and
// until a quorum of the new configuration promised, no slot it governs is
// proposed. While the change is not yet in effect, the leader fills the
// slots up to it with no-ops.
func TestSlotsFollowTheirConfiguration(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 1000 })
	lead(t, p, nil, nil)
	next := withMember(t, 4, paxos.RoleAll, 0)
	if err := p.ProposeChange(next); err != nil {
		t.Fatal(err)
	}
	if err := p.ProposeChange(next); !errors.Is(err, ErrChangePending) {
		t.Fatalf("a second change while one is in flight: %v", err)
	}
	acc := ofType(take(p), paxos.MsgAccept)
	if len(acc) != 3 || acc[0].Slot != 1 || !acc[0].Value.IsConfig() {
		t.Fatalf("change proposed as %v", acc)
	}
	for _, from := range []paxos.NodeID{1, 2} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 1})
	}
	c, err := paxos.DecodeConfig(acc[0].Value, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := paxos.History{paxos.InitialConfig(paxos.Uniform(3)), c}
	p.Reconfigure(h)
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 1})
	rd := take(p)
	if prep := ofType(rd, paxos.MsgPrepare); len(prep) != 1 || prep[0].To != 4 {
		t.Fatalf("after the change: Prepares %v, want one to the new acceptor", prep)
	}
	acc = ofType(rd, paxos.MsgAccept)
	if top := acc[len(acc)-1]; top.Slot != c.Start-1 || !top.Value.IsNoop() {
		t.Fatalf("filled up to %v, want no-ops up to slot %d", top, c.Start-1)
	}
	for _, m := range acc {
		if m.To == 4 {
			t.Fatalf("slot %d, governed by the old configuration, went to the new acceptor", m.Slot)
		}
	}
	step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(1)}})
	if acc := ofType(take(p), paxos.MsgAccept); len(acc) != 0 {
		t.Fatalf("proposed %v before a quorum of the new configuration promised", acc)
	}
	step(t, p, paxos.Message{Type: paxos.MsgPromise, From: 4, Ballot: p.Ballot(), Slot: 1})
	acc = ofType(take(p), paxos.MsgAccept)
	if len(acc) != 4 || acc[0].Slot != c.Start {
		t.Fatalf("once 4 promised: %v, want slot %d to all four acceptors", acc, c.Start)
	}
	for _, from := range []paxos.NodeID{1, 4} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: c.Start})
	}
	if p.Decided() >= c.Start {
		t.Fatal("two of four acceptors chose a slot")
	}
}

// A joining learner is promoted by the leader once it reports progress
// close enough, and leadership is handed over with TimeoutNow, which the
// receiver answers by campaigning at once, without a pre-vote.
func TestPromoteAndTransfer(t *testing.T) {
	p := newTestProposer(t, nil)
	p.Reconfigure(paxos.History{withMember(t, 4, paxos.RoleLearner, paxos.RoleAll)})
	lead(t, p, nil, nil)
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 100})
	take(p)
	step(t, p, paxos.Message{Type: paxos.MsgProgress, From: 4, Commit: 100 - paxos.Slot(p.cfg.PromoteLag) - 1})
	p.Tick()
	if acc := ofType(take(p), paxos.MsgAccept); len(acc) != 0 {
		t.Fatalf("promoted a member too far behind: %v", acc)
	}
	step(t, p, paxos.Message{Type: paxos.MsgProgress, From: 4, Commit: 90})
	p.Tick()
	acc := ofType(take(p), paxos.MsgAccept)
	if len(acc) == 0 || !acc[0].Value.IsConfig() {
		t.Fatalf("no promotion proposed: %v", acc)
	}
	if c, err := paxos.DecodeConfig(acc[0].Value, acc[0].Slot); err != nil || c.Membership().Roles(4) != paxos.RoleAll {
		t.Fatalf("promotion proposed as %+v, %v", c, err)
	}

	if err := p.TransferTo(9); !errors.Is(err, ErrTransfer) {
		t.Fatalf("transfer to a non-proposer: %v", err)
	}
	if err := p.TransferTo(2); err != nil {
		t.Fatal(err)
	}
	tn := ofType(take(p), paxos.MsgTimeoutNow)
	if p.IsLeader() || p.Leader() != 2 || len(tn) != 1 || tn[0].To != 2 {
		t.Fatalf("after handing over: leader %d, %v", p.Leader(), tn)
	}
	q := newTestProposer(t, func(c *Config) { c.ID = 2 })
	if err := q.Step(paxos.Message{Type: paxos.MsgTimeoutNow, From: 1, To: 2, Ballot: tn[0].Ballot}); err != nil {
		t.Fatal(err)
	}
	if prep := ofType(take(q), paxos.MsgPrepare); len(prep) != 3 || !tn[0].Ballot.Less(prep[0].Ballot) {
		t.Fatalf("TimeoutNow answered with %v, want Prepares above %v", prep, tn[0].Ballot)
	}
}

// A leader gives up the slots its learner has applied: it re-proposes no
// value phase 1 found there and counts no vote for them, because the
// configurations that governed them may be gone from what it knows (the
// bug the simulator found with seed 887).
func TestLeaderSkipsAppliedSlots(t *testing.T) {
	p := newTestProposer(t, nil)
	found := []paxos.Entry{{Slot: 1, Ballot: b(0, 2), Value: paxos.Value("a")}, {Slot: 2, Ballot: b(0, 2), Value: paxos.Value("b")}, {Slot: 3, Ballot: b(0, 2), Value: paxos.Value("c")}}
	rd := lead(t, p, found, nil)
	if acc := ofType(rd, paxos.MsgAccept); len(acc) != 9 {
		t.Fatalf("recovery proposed %d Accepts, want 3 slots to 3 acceptors", len(acc))
	}
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 2}) // chosen and applied elsewhere
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 1})
	}
	if d := ofType(take(p), paxos.MsgDecide); len(d) != 0 {
		t.Fatalf("counted votes for an applied slot: %v", d)
	}
	for _, from := range []paxos.NodeID{2, 3} {
		step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: from, Ballot: p.Ballot(), Slot: 3})
	}
	if d := ofType(take(p), paxos.MsgDecide); len(d) == 0 || d[0].Entries[0].Slot != 3 {
		t.Fatalf("slot 3, above the applied slot, was not chosen: %v", d)
	}
}

// The learner hands over its configurations, pruned to those after its
// applied slot, before the Learned that says how far it applied (both come
// out of one flush). A leader must not count a vote in a slot the learner
// already passed by a configuration that governs only later slots. Found
// by simulator seed 532: a leader decided slot 74 by its own vote alone,
// under the configuration of slot 77 on, in which it was the only acceptor.
func TestReconfigureBeforeLearnedCountsNoVote(t *testing.T) {
	p := newTestProposer(t, func(c *Config) { c.Window = 100; c.MaxBatch = 1 })
	lead(t, p, nil, nil)
	step(t, p, paxos.Message{Type: paxos.MsgLearned, From: 1, Commit: 15})
	for i := range 80 {
		step(t, p, paxos.Message{Type: paxos.MsgPropose, From: 1, Cmds: []paxos.Command{cmd(i)}})
	}
	if acc := ofType(take(p), paxos.MsgAccept); acc[len(acc)-1].Slot < 74 {
		t.Fatalf("proposed up to slot %d; the test needs slot 74 in flight", acc[len(acc)-1].Slot)
	}
	alone, err := paxos.NewConfig(77, 13, []paxos.Peer{{ID: 1, Roles: paxos.RoleAll}, {ID: 2, Roles: paxos.RoleLearner}, {ID: 3, Roles: paxos.RoleLearner}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Reconfigure(paxos.History{alone})
	step(t, p, paxos.Message{Type: paxos.MsgAccepted, From: 1, Ballot: p.Ballot(), Slot: 74})
	for _, m := range ofType(take(p), paxos.MsgDecide) {
		for _, e := range m.Entries {
			if e.Slot < 77 {
				t.Fatalf("decided slot %d by one vote, counted under the configuration of slot 77 on", e.Slot)
			}
		}
	}
}
