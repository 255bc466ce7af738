package sim

import (
	"bytes"
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
)

// checker holds what the invariants are checked against: the values chosen
// so far, every vote cast, every command clients submitted, and the sequence
// of commands every learner must apply. The invariants are numbered as in
// docs/design.md.
type checker struct {
	s *sim
	// chosen is every slot known to be chosen: by a quorum of votes, or
	// announced in a Decide. Invariant 1: one value per slot.
	chosen    map[paxos.Slot]paxos.Value
	maxChosen paxos.Slot
	// votes are the accepted (slot, ballot) pairs made durable, with who
	// accepted them.
	votes map[vote]*tally
	// submitted maps a client command to its bytes, and reads holds the
	// bytes of every read, which members number themselves (invariant 2).
	submitted map[cmdID]string
	reads     map[string]bool
	// notApplied are commands whose calls ended as certainly not applied
	// (invariant 9), and expiredOnce those of them refused because their
	// session was not open.
	notApplied  []cmdID
	expiredOnce map[cmdID]bool
	// ref is the sequence of commands a correct learner applies, derived
	// from chosen with the session rule; refNext is the next slot to fold
	// in and refLast the last seq applied per session.
	ref     []call
	refNext paxos.Slot
	refLast map[uint64]uint64
	// refSessions are the open sessions as the reference sees them (the
	// session rule of statemachine.Sessions, written again), refNow the
	// log's time and refNextID the next session ID; refApplied the
	// commands of a session that reached the machine.
	refSessions map[uint64]*refSession
	refNow      uint64
	refNextID   uint64
	refApplied  map[cmdID]bool
	// opens are the timeouts of the session openings clients asked for.
	opens map[string]bool
	// hashAt is the first applied hash seen at each applied slot.
	hashAt map[paxos.Slot]uint64
	// externalized is the highest ballot each acceptor has sent in a
	// Promise or Accepted: it may never promise less after a restart.
	externalized map[paxos.NodeID]paxos.Ballot
	maxProposed  paxos.Slot
	// dropped is set when a store dropped slots, so that the next check
	// runs checkAvailable.
	dropped bool
	// refKV applies the reference sequence, and refEvents are the changes
	// it made, in order: what watches must report (invariant 11).
	refKV     *statemachine.KV
	refEvents []statemachine.KVEvent
	// revokes are the deletes of lease revocations, by slot, until a
	// member applies the slot (recordRevokes).
	revokes map[paxos.Slot]*revocation
	// leaseAlive is, by lease, the tick before which no revocation of it
	// may apply (invariant 12).
	leaseAlive map[uint64]int64
	// grants counts the lease grants clients submitted.
	grants uint64
	// configs are the configurations the chosen prefix up to refNext-1
	// makes, from the bootstrap one on, none dropped: the truth the
	// members' quorums are checked against (invariant 10).
	configs paxos.History
}

type vote struct {
	slot   paxos.Slot
	ballot paxos.Ballot
}

type tally struct {
	value paxos.Value
	ids   []paxos.NodeID
}

type cmdID struct{ session, seq uint64 }

type refSession struct{ used, ttl uint64 }

func (c *checker) init() {
	c.chosen = map[paxos.Slot]paxos.Value{}
	c.votes = map[vote]*tally{}
	c.submitted = map[cmdID]string{}
	c.reads = map[string]bool{}
	c.refNext = 1
	c.refLast = map[uint64]uint64{}
	c.refSessions = map[uint64]*refSession{}
	c.refNextID = 1
	c.refApplied = map[cmdID]bool{}
	c.opens = map[string]bool{}
	c.expiredOnce = map[cmdID]bool{}
	c.hashAt = map[paxos.Slot]uint64{}
	c.externalized = map[paxos.NodeID]paxos.Ballot{}
	c.configs = paxos.History{c.s.bootstrap}
	c.refKV = statemachine.NewKV()
	c.revokes = map[paxos.Slot]*revocation{}
	c.leaseAlive = map[uint64]int64{}
}

// configAt returns the configuration that governs slot sl. Invariant 10: a
// slot is voted on only once every slot up to sl-ConfigDelay is chosen, so
// that its configuration is known.
func (c *checker) configAt(sl paxos.Slot) paxos.Config {
	c.extendRef()
	if sl >= c.refNext+paxos.ConfigDelay {
		c.s.fail("invariant 10: slot %d was voted on, but the chosen prefix ends at %d, so its configuration is not known (α = %d)", sl, c.refNext-1, paxos.ConfigDelay)
	}
	return c.configs.At(sl)
}

// onRecord sees every record as it becomes durable on node n.
func (c *checker) onRecord(n *simNode, r paxos.Record) {
	s := c.s
	{
		switch r.Type {
		case paxos.RecPromise:
			if r.Ballot.Less(n.model.promised) {
				s.fail("invariant 3: acceptor %d stored promise %v below its stored %v", n.id, r.Ballot, n.model.promised)
			}
		case paxos.RecAccept:
			c.vote(n.id, r.Slot, r.Ballot, r.Value)
		case paxos.RecTruncate:
			c.checkTruncate(n, r.Slot)
			s.stats.Truncations++
		case paxos.RecSnapshot:
			if newest := n.newestDurable(); newest < r.Slot {
				s.fail("invariant 8: learner %d dropped its log up to slot %d, but its newest durable snapshot covers %d", n.id, r.Slot, newest)
			}
			s.stats.Snapshots++
			c.dropped = true
		case paxos.RecChosen:
			v, ok := c.chosen[r.Slot]
			if !ok {
				s.fail("invariant 1: learner %d stored slot %d, which was never chosen", n.id, r.Slot)
			}
			if !bytes.Equal(v, r.Value) {
				s.fail("invariant 1: learner %d stored slot %d as %x; it was chosen as %x", n.id, r.Slot, r.Value, v)
			}
		}
	}
}

// checkTruncate checks the acceptor truncation rule (docs/design.md, "Truncation")
// as acceptor n durably forgets every slot up to f: each is chosen, and a
// majority of the learners hold a durable snapshot covering it (invariant 8).
func (c *checker) checkTruncate(n *simNode, f paxos.Slot) {
	s := c.s
	for sl := n.model.floor + 1; sl <= f; sl++ {
		if _, ok := c.chosen[sl]; !ok {
			s.fail("invariant 8: acceptor %d truncated up to slot %d, but slot %d is not chosen", n.id, f, sl)
		}
	}
	// The learners as the acceptor knew them when it decided.
	learners := n.member.Acceptor().Configs().Latest().Membership().Learners()
	covered := 0
	for _, id := range learners {
		if s.nodes[id].newestDurable() >= f {
			covered++
		}
	}
	if covered <= len(learners)/2 {
		s.fail("invariant 8: acceptor %d truncated up to slot %d, which only %d of %d learners hold in a durable snapshot", n.id, f, covered, len(learners))
	}
	c.dropped = true
}

// checkAvailable checks, after something was dropped, that no slot a
// learner may still need was dropped by everyone who held it: every slot
// above the lowest durable applied slot of any learner is still in some
// learner's durable log or covered by some learner's durable snapshot.
func (c *checker) checkAvailable() {
	s := c.s
	c.dropped = false
	need := c.maxChosen
	best := paxos.Slot(0) // the newest durable snapshot of any learner
	learners := s.learnerIDs()
	for _, id := range learners {
		n := s.nodes[id]
		need = min(need, max(n.model.applied, n.model.base))
		best = max(best, n.newestDurable())
	}
	for sl := max(need, best) + 1; sl <= c.maxChosen; sl++ {
		if _, ok := c.chosen[sl]; !ok {
			continue // not chosen yet: nothing to lose
		}
		held := false
		for _, id := range learners {
			if _, ok := s.nodes[id].model.chosen[sl]; ok {
				held = true
				break
			}
		}
		if !held && !c.heldByAcceptors(sl) {
			s.fail("invariant 8: slot %d is chosen and a learner still needs it, but no learner or acceptor holds it durably", sl)
		}
	}
}

// learnerIDs returns the nodes that run a learner and were not removed.
func (s *sim) learnerIDs() []paxos.NodeID {
	var out []paxos.NodeID
	for _, id := range s.ids {
		if n := s.nodes[id]; n.roles&paxos.RoleLearner != 0 && !n.removed {
			out = append(out, id)
		}
	}
	return out
}

// heldByAcceptors reports whether some acceptor still holds a durable vote
// for slot sl.
func (c *checker) heldByAcceptors(sl paxos.Slot) bool {
	for _, id := range c.s.ids {
		if _, ok := c.s.nodes[id].model.accepted[sl]; ok {
			return true
		}
	}
	return false
}

// vote records that acceptor id durably accepted v in slot at ballot b; a
// quorum of such votes chooses v.
func (c *checker) vote(id paxos.NodeID, slot paxos.Slot, b paxos.Ballot, v paxos.Value) {
	k := vote{slot, b}
	t := c.votes[k]
	if t == nil {
		t = &tally{value: v}
		c.votes[k] = t
	} else if !bytes.Equal(t.value, v) {
		c.s.fail("invariant 1: ballot %v carries two values for slot %d (%x and %x)", b, slot, t.value, v)
	}
	if slices.Contains(t.ids, id) {
		return
	}
	t.ids = append(t.ids, id)
	if c.configAt(slot).Membership().IsQuorum(t.ids) {
		c.choose(slot, v, "quorum")
	}
}

// choose records that v is chosen in slot, checking agreement (invariant 1)
// and validity (invariant 2).
func (c *checker) choose(slot paxos.Slot, v paxos.Value, how string) {
	s := c.s
	if old, ok := c.chosen[slot]; ok {
		if !bytes.Equal(old, v) {
			s.fail("invariant 1: slot %d chosen as %x, then %x (%s)", slot, old, v, how)
		}
		return
	}
	var cmds []paxos.Command
	var err error
	if v.IsConfig() {
		_, err = paxos.DecodeConfig(v, slot)
	} else {
		cmds, err = paxos.DecodeBatch(v)
	}
	if err != nil {
		s.fail("invariant 2: slot %d chosen with a value that does not decode: %v", slot, err)
	}
	for _, cmd := range cmds {
		if cmd.Kind == paxos.CmdOpenSession {
			if !c.opens[string(cmd.Data)] {
				s.fail("invariant 2: slot %d opens a session with timeout %x that no client asked for", slot, cmd.Data)
			}
			continue
		}
		if cmd.Session == 0 {
			// NB: a leader revokes expired leases as session 0; leases
			// are numbered 1, 2, … by the grants clients submitted.
			if r, err := statemachine.DecodeKVRequest(cmd.Data); err == nil && r.Op == statemachine.KVLeaseRevoke {
				if r.Lease > c.grants {
					s.fail("invariant 2: slot %d revokes lease %d, but clients asked for %d leases", slot, r.Lease, c.grants)
				}
				continue
			}
			if !c.reads[string(cmd.Data)] {
				s.fail("invariant 2: slot %d holds read %d %x that no client sent", slot, cmd.Seq, cmd.Data)
			}
			continue
		}
		want, ok := c.submitted[cmdID{cmd.Session, cmd.Seq}]
		if !ok || want != string(cmd.Data) {
			s.fail("invariant 2: slot %d holds command (%d, %d) %x that no client submitted", slot, cmd.Session, cmd.Seq, cmd.Data)
		}
	}
	c.chosen[slot] = v
	c.maxChosen = max(c.maxChosen, slot)
	s.stats.Chosen = int(c.maxChosen)
	s.stats.MaxBatch = max(s.stats.MaxBatch, len(cmds))
	if len(cmds) > 1 {
		s.stats.MultiBatches++
	}
}

// onSend checks a message as it leaves node n. Invariant 4: an acceptor's
// answer leaves only after the state it reports is durable.
func (c *checker) onSend(n *simNode, m paxos.Message) {
	s := c.s
	st := n.model
	switch m.Type {
	case paxos.MsgPromise, paxos.MsgNack:
		if st.promised.Less(m.Ballot) {
			s.fail("invariant 4: acceptor %d sent %v while its durable promise is %v", n.id, m, st.promised)
		}
	case paxos.MsgAccepted:
		// A vote may be forgotten in the same batch that cast it, once
		// the slot is below the floor (chosen, and covered by snapshots).
		if e, ok := st.accepted[m.Slot]; (!ok && m.Slot > st.floor) || (ok && e.Ballot.Less(m.Ballot)) || st.promised.Less(m.Ballot) {
			s.fail("invariant 4: acceptor %d sent %v before accepting it durably", n.id, m)
		}
	case paxos.MsgAccept:
		if m.Slot > c.maxProposed {
			c.maxProposed = m.Slot
			s.stats.MaxPipeline = max(s.stats.MaxPipeline, int(m.Slot)-int(c.refNext-1))
		}
	case paxos.MsgDecide:
		for _, e := range m.Entries {
			t := c.votes[vote{e.Slot, e.Ballot}]
			if t == nil || !bytes.Equal(t.value, e.Value) || !c.configAt(e.Slot).Membership().IsQuorum(t.ids) {
				s.fail("invariant 1: node %d decided slot %d at %v without a quorum of acceptors", n.id, e.Slot, e.Ballot)
			}
			c.choose(e.Slot, e.Value, "decide")
		}
	case paxos.MsgCatchUpReply:
		for _, e := range m.Entries {
			// A slot the snapshot base covers was durable before the
			// log dropped it; the learner may keep it in memory.
			if v, ok, _ := st.written(e.Slot); (!ok && e.Slot > st.base) || (ok && !bytes.Equal(v, e.Value)) {
				s.fail("invariant 4: learner %d served slot %d that is not written in its log", n.id, e.Slot)
			}
			c.choose(e.Slot, e.Value, "catch-up")
		}
	case paxos.MsgLearned:
		if _, _, applied := st.written(0); applied < m.Commit {
			s.fail("invariant 4: learner %d reported slot %d learned before writing it (written %d)", n.id, m.Commit, applied)
		}
	case paxos.MsgProgress:
		if st.applied < m.Commit {
			s.fail("invariant 4: learner %d reported progress to slot %d to node %d before it was synced (synced %d)", n.id, m.Commit, m.To, st.applied)
		}
	}
	if m.Type == paxos.MsgPromise || m.Type == paxos.MsgAccepted {
		c.externalized[n.id] = c.externalized[n.id].Max(m.Ballot)
	}
}

// checkApplied compares what learner n applied with the reference sequence
// (invariant 5): the same commands, in slot order, each session's command
// applied at most once, and equal hashes at equal applied slots.
func (c *checker) checkApplied(n *simNode) {
	s := c.s
	l := n.member.Learner()
	if n.rec.restored {
		// A snapshot replaced the state: the recorder's calls begin
		// after the snapshot's slot.
		n.rec.restored = false
		n.callBase, n.checked = c.refIndex(l.SnapshotSlot()), 0
		s.stats.Installs++
	}
	calls := n.rec.calls
	for i := n.checked; i < len(calls); i++ {
		j := n.callBase + i
		if j >= len(c.ref) {
			c.extendRef()
		}
		if j >= len(c.ref) {
			s.fail("invariant 5: learner %d applied %d commands, but the chosen prefix holds only %d (last: slot %d)", n.id, j+1, len(c.ref), calls[i].slot)
		}
		if calls[i] != c.ref[j] {
			s.fail("invariant 5: learner %d's command %d was slot %d %x, want slot %d %x", n.id, j, calls[i].slot, calls[i].cmd, c.ref[j].slot, c.ref[j].cmd)
		}
	}
	n.checked = len(calls)
	if a := l.Applied(); a > 0 {
		h := l.Hash()
		if prev, ok := c.hashAt[a]; ok && prev != h {
			s.fail("invariant 5: learner %d at slot %d has hash %016x, another learner had %016x", n.id, a, h, prev)
		}
		c.hashAt[a] = h
	}
}

// refIndex returns how many reference commands come from slots up to s.
func (c *checker) refIndex(s paxos.Slot) int {
	c.extendRef()
	if c.refNext <= s {
		c.s.fail("a snapshot covers slot %d, but the chosen prefix ends at %d", s, c.refNext-1)
	}
	i, _ := slices.BinarySearchFunc(c.ref, s+1, func(x call, t paxos.Slot) int { return cmp.Compare(x.slot, t) })
	return i
}

// extendRef folds newly contiguous chosen slots into the reference sequence.
func (c *checker) extendRef() {
	for {
		v, ok := c.chosen[c.refNext]
		if !ok {
			return
		}
		if v.IsConfig() {
			cf, _ := paxos.DecodeConfig(v, c.refNext) // NB: choose checked it
			if cf.Base == c.configs.Latest().Made {
				c.configs = append(c.configs, cf)
				c.s.tracef("configuration of slot %d governs from %d: %v, removed %v", c.refNext, cf.Start, cf.Membership().Members(), cf.Removed)
				c.s.stats.Reconfigs++
				c.s.onConfig(cf)
			}
		}
		cmds, ms, _ := paxos.DecodeBatchAt(v) // NB: choose already checked that it decodes
		c.refAdvance(ms)
		for _, cmd := range cmds {
			if cmd.Kind == paxos.CmdOpenSession {
				ttl, _ := statemachine.DecodeSessionTTL(cmd.Data)
				c.refOpen(ttl)
				continue
			}
			if cmd.Session != 0 {
				e := c.refSessions[cmd.Session]
				if e == nil {
					continue // refused: the session is not open
				}
				e.used = c.refNow
				if cmd.Seq <= c.refLast[cmd.Session] {
					continue
				}
				c.refLast[cmd.Session] = cmd.Seq
				c.refApplied[cmdID{cmd.Session, cmd.Seq}] = true
			}
			c.ref = append(c.ref, call{c.refNext, string(cmd.Data)})
			c.refApply(uint64(c.refNext), cmd.Data)
		}
		c.refNext++
	}
}

// refAdvance moves the reference's log time and expires the sessions idle
// past their timeouts.
func (c *checker) refAdvance(ms uint64) {
	c.refNow = max(c.refNow, ms)
	for id, e := range c.refSessions {
		if e.used+e.ttl < c.refNow {
			delete(c.refSessions, id)
			c.s.stats.SessionsExpired++
		}
	}
}

// refOpen opens a session in the reference; a full table first expires
// the session closest to its timeout (then the lowest ID).
func (c *checker) refOpen(ttl time.Duration) {
	if ttl == 0 {
		ttl = statemachine.DefaultSessionTTL
	}
	ttl = min(max(ttl, statemachine.MinSessionTTL), statemachine.MaxSessionTTL)
	if len(c.refSessions) >= statemachine.MaxSessions {
		var victim uint64
		for id, e := range c.refSessions {
			if v := c.refSessions[victim]; victim == 0 || e.used+e.ttl < v.used+v.ttl || (e.used+e.ttl == v.used+v.ttl && id < victim) {
				victim = id
			}
		}
		delete(c.refSessions, victim)
	}
	c.refSessions[c.refNextID] = &refSession{used: c.refNow, ttl: uint64(ttl.Milliseconds())}
	c.refNextID++
	c.s.stats.SessionsOpened++
}

// onApply sees every batch of decisions a member applied, after it
// answered its clients. Invariant 9: a client hears of a slot only once it
// is chosen by durable votes, so a crash cannot take an answer back, and
// the learner's own record of it was written (it need not be synced: see
// paxos.Record.Lazy).
func (s *sim) onApply(n *simNode, ds []paxos.Decision) {
	for _, d := range ds {
		if v, ok := s.ck.chosen[d.Slot]; !ok || !bytes.Equal(v, d.Value) {
			s.fail("invariant 9: node %d applied slot %d before it was durably chosen", n.id, d.Slot)
		}
		if v, ok, applied := n.model.written(d.Slot); (!ok && d.Slot > n.model.base) || (ok && !bytes.Equal(v, d.Value)) || applied < d.Slot {
			s.fail("invariant 9: node %d applied slot %d before its own record of it was written", n.id, d.Slot)
		}
		for _, r := range d.Results {
			if r.Duplicate {
				s.stats.DuplicateApply++
			}
		}
		s.recordRevokes(d.Slot)
	}
}

// checkNotApplied checks, at the end of a run, that no command whose call
// ended as certainly not applied was chosen (invariant 9).
func (c *checker) checkNotApplied() {
	if len(c.notApplied) == 0 {
		return
	}
	c.extendRef()
	for _, id := range c.notApplied {
		if c.refApplied[id] {
			c.s.fail("invariant 9: command (%d, %d) was reported certainly not applied, but it was applied", id.session, id.seq)
		}
	}
	// A command is refused as expired only in a slot that chose it; one
	// reported not applied for any other reason must not be chosen at all.
	never := map[cmdID]bool{}
	for _, id := range c.notApplied {
		never[id] = !c.expiredOnce[id]
	}
	for _, sl := range slices.Sorted(maps.Keys(c.chosen)) {
		cmds, _ := paxos.DecodeBatch(c.chosen[sl]) // NB: choose already checked that it decodes
		for _, cmd := range cmds {
			if cmd.Session != 0 && never[cmdID{cmd.Session, cmd.Seq}] {
				c.s.fail("invariant 9: command (%d, %d) was reported certainly not applied, but slot %d chose it", cmd.Session, cmd.Seq, sl)
			}
		}
	}
}
