package sim

import (
	"bytes"
	"io"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/wal"
)

// maxSimMembers bounds how many members a run may grow to.
const maxSimMembers = 8

// operator is where the answers to the operator's requests go.
type operator struct{ s *sim }

// Respond checks an answer to a configuration change: an OK names the slot
// that chose the change, and that slot holds a configuration.
func (o operator) Respond(resp clientapi.Response) {
	s := o.s
	s.tracef("operator: answer %s slot %d %s", resp.Code, resp.Slot, resp.Message)
	if resp.Code == clientapi.CodeOK && resp.Slot != 0 {
		if v, ok := s.ck.chosen[resp.Slot]; !ok || !v.IsConfig() {
			s.fail("a configuration change was answered as chosen in slot %d, which holds no configuration", resp.Slot)
		}
	}
}

// changeMembers is the operator at work: it asks a random member for a
// configuration change drawn from what the chosen log says the members
// are (add one, remove one, change roles, or hand leadership over),
// through the member's own request handling. Members refuse what is not
// possible now; that is part of what runs.
func (s *sim) changeMembers() {
	up := s.upNodes()
	if len(up) == 0 {
		return
	}
	n := up[s.rng.IntN(len(up))]
	latest := s.ck.configs.Latest()
	peers := latest.Peers
	req := clientapi.Request{Kind: clientapi.ReqMembers, Change: &clientapi.Change{Force: s.rng.IntN(10) == 0}}
	ch := req.Change
	roles := []paxos.Role{paxos.RoleLearner, paxos.RoleLearner | paxos.RoleAcceptor, paxos.RoleAll}
	switch r := s.rng.IntN(10); {
	case r < 3 && len(s.ids) < maxSimMembers:
		ch.Op, ch.ID = clientapi.ChangeAdd, s.nextID
		ch.Roles = roles[s.rng.IntN(len(roles))]
		ch.PeerAddr, ch.ClientAddr = peerAddr(ch.ID), clientAddr(ch.ID)
	case r < 6:
		p := peers[s.rng.IntN(len(peers))]
		if !s.keepsAnOriginalProposer(latest, p.ID) {
			return
		}
		ch.Op, ch.ID = clientapi.ChangeRemove, p.ID
	case r < 8:
		p := peers[s.rng.IntN(len(peers))]
		ch.Op, ch.ID, ch.Roles = clientapi.ChangeRoles, p.ID, roles[s.rng.IntN(len(roles))]
	default:
		ps := latest.Membership().Proposers()
		req.Kind = clientapi.ReqTransfer
		ch.ID = ps[s.rng.IntN(len(ps))]
	}
	s.tracef("operator asks node %d: %s %s %d roles %v force %v", n.id, req.Kind, ch.Op, ch.ID, ch.Roles, ch.Force)
	if req.Kind == clientapi.ReqTransfer && n.member.Proposer() != nil && n.member.Proposer().IsLeader() {
		s.stats.Transfers++
	}
	n.member.Handle(operator{s}, wireTrip(s, req))
}

// keepsAnOriginalProposer reports whether removing id from c leaves one of
// the shape's proposers: the clients know only those, and find the others
// through their redirects.
func (s *sim) keepsAnOriginalProposer(c paxos.Config, id paxos.NodeID) bool {
	for _, p := range s.shape.Membership.Proposers() {
		if p != id && c.Membership().Has(p, paxos.RoleProposer) {
			return true
		}
	}
	return false
}

// onConfig follows a configuration that the chosen log made, as operators
// would: a member it adds is started with an empty disk and the newest
// configuration (as 'serve --join' fetches it), and a member it removes is
// stopped for good.
func (s *sim) onConfig(c paxos.Config) {
	for _, p := range c.Peers {
		if s.nodes[p.ID] == nil {
			n := newSimNode(s, paxos.Member{ID: p.ID, Roles: paxos.RoleLearner})
			n.bootstrap, n.joining = c, true
			n.restartAt = s.now + 1 + int64(s.rng.IntN(20))
			s.nodes[p.ID] = n
			s.ids = append(s.ids, p.ID)
			s.nextID = max(s.nextID, p.ID+1)
			s.stats.Joins++
			s.tracef("node %d joins", p.ID)
		}
	}
	for _, id := range c.Removed {
		if n := s.nodes[id]; n != nil && !n.removed && n.removeAt == 0 {
			// The operator stops it once the change governs: until then
			// the configuration before it needs its votes.
			n.removeAt = c.Start
		}
	}
}

// stopRemoved stops for good the removed members whose removal governs,
// as an operator does once 'member remove' is answered: when a proposer
// that stays has durably applied every slot before the change governs.
func (s *sim) stopRemoved() {
	for _, id := range s.ids {
		n := s.nodes[id]
		if n.removeAt == 0 || n.removed || !s.learnedWithout(n) {
			continue
		}
		n.removed = true
		s.stats.Removals++
		if n.up {
			s.crash(n, "removed from the cluster")
		}
		n.restartAt = 1 << 62
	}
}

// checkConfigViews checks that no learner's newest configuration goes back
// from the newest it made durable (invariant 10), across restarts too: it
// is made by chosen values, which a learner keeps or covers by a snapshot.
func (s *sim) checkConfigViews(n *simNode) {
	if made := n.member.Configs().Latest().Made; made < n.configMade {
		s.fail("invariant 10: node %d's newest configuration went back from the one of slot %d to the one of slot %d", n.id, n.configMade, made)
	}
}

// seedJoiner starts joining member n from a snapshot of a member whose
// configuration lists n, as 'serve --join' does. It reports false when no
// member can give one yet.
func (s *sim) seedJoiner(n *simNode) (paxos.State, bool) {
	var donor *simNode
	for _, d := range s.upNodes() {
		if l := d.member.Learner(); l != nil && l.Applied() > 0 && d.member.Configs().Latest().Membership().Has(n.id, 0) {
			if donor == nil || l.Applied() > donor.member.Learner().Applied() {
				donor = d
			}
		}
	}
	if donor == nil {
		return paxos.State{}, false
	}
	l := donor.member.Learner()
	var buf bytes.Buffer
	if err := l.Snapshot(&buf); err != nil {
		s.fail("snapshot of node %d for joining node %d: %v", donor.id, n.id, err)
	}
	hdr := wal.SnapshotHeader{SnapshotMeta: paxos.SnapshotMeta{Slot: l.Applied(), Hash: l.Hash(), Configs: donor.member.Configs()}, Cluster: 1, Machine: "kv"}
	st, err := server.Seed(n.fs, snapDir, n, hdr, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err })
	if err != nil {
		s.tracef("node %d: seeding from node %d failed: %v", n.id, donor.id, err)
		return paxos.State{}, false
	}
	n.joining = false
	s.tracef("node %d seeded with node %d's snapshot of slot %d", n.id, donor.id, hdr.Slot)
	return st, true
}

// learnedWithout reports whether a proposer of the newest configuration,
// other than removed member n, durably applied every slot before n's
// removal governs.
func (s *sim) learnedWithout(n *simNode) bool {
	latest := s.ck.configs.Latest().Membership()
	for _, id := range latest.Proposers() {
		if m := s.nodes[id]; m != nil && m != n && m.removeAt == 0 && m.model.applied+1 >= n.removeAt {
			return true
		}
	}
	return false
}
