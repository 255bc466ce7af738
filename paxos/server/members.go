package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/proposer"
)

// changeSession is the session the waiters of configuration changes are
// filed under; their seq numbers the change. No client session is this
// high: sessions are random 63-bit numbers.
const changeSession = ^uint64(0)

// handleChange serves ReqMembers and ReqTransfer on the leader. A change is
// checked against the newest configuration, proposed, and answered once it
// is chosen. It reports true when the request waits.
func (m *Member) handleChange(c Responder, req clientapi.Request) (clientapi.Response, bool) {
	resp := clientapi.Response{ID: req.ID}
	fail := func(code clientapi.Code, format string, args ...any) (clientapi.Response, bool) {
		resp.Code, resp.Message = code, fmt.Sprintf(format, args...)
		return resp, false
	}
	ch := req.Change
	switch {
	case ch == nil || ch.ID == 0:
		return fail(clientapi.CodeBadRequest, "a %s request needs a member ID", req.Kind)
	case m.prop == nil:
		return fail(clientapi.CodeUnavailable, "node %d runs no proposer; ask a proposer", m.cfg.ID)
	case !m.prop.IsLeader():
		m.notLeader(&resp, m.prop.Leader())
		return resp, false
	}
	if req.Kind == clientapi.ReqTransfer {
		if err := m.prop.TransferTo(ch.ID); err != nil {
			return fail(clientapi.CodeRefused, "%v", err)
		}
		return resp, false
	}
	next, err := m.amend(*ch)
	if err != nil {
		return fail(clientapi.CodeRefused, "%v", err)
	}
	if !ch.Force {
		if missing := m.unreachable(next); missing != nil {
			return fail(clientapi.CodeRefused, "the new configuration would have no quorum of acceptors this leader reaches: it could not reach %s lately; bring them back, or force the change", joinIDs(missing))
		}
	}
	if err := m.prop.ProposeChange(next); err != nil {
		if errors.Is(err, proposer.ErrChangePending) {
			return fail(clientapi.CodeRefused, "another configuration change is in progress; retry once it took effect (see 'paxosd member list')")
		}
		return fail(clientapi.CodeUnavailable, "%v", err)
	}
	m.lastChange++
	k := sessionSeq{changeSession, m.lastChange}
	next.Base = m.Configs().Latest().Made
	m.changes[string(paxos.EncodeConfig(next))] = k
	m.waiters[k] = append(m.waiters[k], waiter{c: c, id: req.ID, deadline: m.io.Now().Add(m.cfg.RequestTimeout)})
	return resp, true
}

// amend returns the newest configuration with ch applied, or why ch cannot
// be applied to it.
func (m *Member) amend(ch clientapi.Change) (paxos.Config, error) {
	latest := m.Configs().Latest()
	peers := slices.Clone(latest.Peers)
	removed := latest.Removed
	i := slices.IndexFunc(peers, func(p paxos.Peer) bool { return p.ID == ch.ID })
	switch ch.Op {
	case clientapi.ChangeAdd:
		switch {
		case latest.IsRemoved(ch.ID):
			return paxos.Config{}, fmt.Errorf("node ID %d was removed and can never return; add the member under a new ID", ch.ID)
		case i >= 0:
			return paxos.Config{}, fmt.Errorf("node %d is a member already", ch.ID)
		case ch.PeerAddr == "":
			return paxos.Config{}, fmt.Errorf("adding node %d needs its peer address", ch.ID)
		case ch.Roles&paxos.RoleLearner == 0:
			return paxos.Config{}, fmt.Errorf("a member added to a running cluster must be a learner (it catches up by learning); give it roles that include learner")
		}
		for _, p := range peers {
			if p.PeerAddr == ch.PeerAddr {
				return paxos.Config{}, fmt.Errorf("peer address %s is node %d's already", ch.PeerAddr, p.ID)
			}
			if ch.ClientAddr != "" && p.ClientAddr == ch.ClientAddr {
				return paxos.Config{}, fmt.Errorf("client address %s is node %d's already", ch.ClientAddr, p.ID)
			}
		}
		p := paxos.Peer{ID: ch.ID, Roles: paxos.RoleLearner, PeerAddr: ch.PeerAddr, ClientAddr: ch.ClientAddr}
		if ch.Roles != paxos.RoleLearner {
			p.Target = ch.Roles
		}
		peers = append(peers, p)
	case clientapi.ChangeRemove:
		if i < 0 {
			return paxos.Config{}, fmt.Errorf("node %d is not a member", ch.ID)
		}
		peers = slices.Delete(peers, i, i+1)
		removed = append(slices.Clone(removed), ch.ID)
	case clientapi.ChangeRoles:
		switch {
		case i < 0:
			return paxos.Config{}, fmt.Errorf("node %d is not a member", ch.ID)
		case peers[i].Roles&paxos.RoleLearner != 0 && ch.Roles&paxos.RoleLearner == 0:
			return paxos.Config{}, fmt.Errorf("node %d learns, and a member keeps that role: remove it instead", ch.ID)
		case peers[i].Roles&paxos.RoleLearner == 0 && ch.Roles != peers[i].Roles:
			return paxos.Config{}, fmt.Errorf("node %d does not learn, so it cannot follow a change of its roles: remove it and add it anew under a new ID", ch.ID)
		case peers[i].Roles == ch.Roles && peers[i].Target == 0:
			return paxos.Config{}, fmt.Errorf("node %d has roles %v already", ch.ID, ch.Roles)
		}
		peers[i].Roles, peers[i].Target = ch.Roles, 0
	default:
		return paxos.Config{}, fmt.Errorf("unknown change %v", ch.Op)
	}
	next, err := paxos.NewConfig(0, 0, peers, removed)
	if err != nil {
		return paxos.Config{}, fmt.Errorf("the cluster could not run after this change: %w", err)
	}
	return next, nil
}

// unreachable returns the acceptors of next that this leader did not hear
// from lately, when too few are left for a quorum; nil when enough are.
func (m *Member) unreachable(next paxos.Config) []paxos.NodeID {
	heard := m.prop.Reachable()
	if !slices.Contains(heard, m.cfg.ID) {
		heard = append(heard, m.cfg.ID) // NB: IsQuorum counts each ID once only if it is listed once
	}
	if next.Membership().IsQuorum(heard) {
		return nil
	}
	var missing []paxos.NodeID
	for _, id := range next.Membership().Acceptors() {
		if !slices.Contains(heard, id) {
			missing = append(missing, id)
		}
	}
	return missing
}

// applyChange follows the configuration change chosen in slot d: a change
// that did not take (another came first) is answered at once; one that
// did is answered once it governs (answerChanges), so that an operator may
// stop a member as soon as its removal is answered.
func (m *Member) applyChange(d paxos.Decision) {
	k, ok := m.changes[string(d.Value)]
	if !ok {
		return
	}
	delete(m.changes, string(d.Value))
	if latest := m.Configs().Latest(); latest.Made == d.Slot {
		m.effects = append(m.effects, effect{key: k, made: d.Slot, start: latest.Start})
		return
	}
	ws := m.waiters[k]
	delete(m.waiters, k)
	for _, w := range ws {
		w.c.Respond(clientapi.Response{ID: w.id, Code: clientapi.CodeRefused,
			Message: "the configuration changed while this change waited for its slot, so it was not applied; check 'paxosd member list' and retry"})
	}
}

// effect is a chosen configuration change whose client waits for it to
// govern: from slot start on.
type effect struct {
	key         sessionSeq
	made, start paxos.Slot
}

// governs reports whether a change that governs from slot start on may be
// reported done: this member applied every slot before start, and so did a
// proposer of the newest configuration (this one, or one that told the
// leader so). From then on a member the change removed may be stopped: that
// proposer can lead with the new configuration's acceptors alone, and the
// slots the removed member's votes helped choose can be learned from it.
func (m *Member) governs(start paxos.Slot) bool {
	if m.lrn.Applied()+1 < start {
		return false
	}
	latest := m.Configs().Latest().Membership()
	if latest.Has(m.cfg.ID, paxos.RoleProposer) {
		return true
	}
	for _, id := range latest.Proposers() {
		if at, ok := m.prop.Progress(id); ok && at+1 >= start {
			return true
		}
	}
	return false
}

// answerChanges answers the clients of chosen changes that now govern.
func (m *Member) answerChanges() {
	if len(m.effects) == 0 || m.lrn == nil {
		return
	}
	keep := m.effects[:0]
	for _, e := range m.effects {
		if !m.governs(e.start) {
			keep = append(keep, e)
			continue
		}
		ws := m.waiters[e.key]
		delete(m.waiters, e.key)
		for _, w := range ws {
			w.c.Respond(clientapi.Response{ID: w.id, Code: clientapi.CodeOK, Slot: e.made})
		}
	}
	m.effects = keep
}

func joinIDs(ids []paxos.NodeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = "node " + id.String()
	}
	return strings.Join(s, ", ")
}
