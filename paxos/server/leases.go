package server

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// Lease expiry is the leader's. It tracks a deadline per lease by its own
// clock: a lease's TTL from when it was granted or last kept alive. When a
// deadline passes, it proposes the machine's revoke command through the log
// (as session 0: revoking twice is harmless), so every learner deletes the
// lease's keys at the same slot. A member that becomes leader does not know
// the keep-alives its predecessor took, so it gives every lease its TTL plus
// MemberConfig.LeaseGrace from then. Keep-alives go to the leader alone.

// leaseTracker is the leader's deadlines: expiry by lease, and when a
// revocation was proposed (it is proposed again after a request timeout if
// it was not applied).
type leaseTracker struct {
	leading  bool
	gen      uint64
	expiry   map[uint64]time.Time
	revoking map[uint64]time.Time
	// inherited is Proposer.Inherited when this member began to lead;
	// until its learner applied it, leases it first sees may have been
	// kept alive by the previous leader, and get the grace too.
	inherited paxos.Slot
	caughtUp  bool
}

// leaser returns the machine's leases, if it has any.
func (m *Member) leaser() (statemachine.Leaser, bool) {
	if m.lrn == nil {
		return nil, false
	}
	ls, ok := m.lrn.Machine().(statemachine.Leaser)
	return ls, ok
}

// sweepLeases follows the machine's leases while this member leads and
// proposes the revocation of those whose deadline passed. Sweep calls it.
func (m *Member) sweepLeases(now time.Time) {
	ls, ok := m.leaser()
	t := &m.leases
	if !ok || m.prop == nil || !m.prop.IsLeader() {
		if t.leading {
			*t = leaseTracker{}
		}
		return
	}
	if !t.leading {
		*t = leaseTracker{leading: true, gen: ls.LeaseGen(), expiry: map[uint64]time.Time{}, revoking: map[uint64]time.Time{}, inherited: m.prop.Inherited()}
		ls.EachLease(func(id uint64, ttl time.Duration) { t.expiry[id] = now.Add(ttl + m.cfg.LeaseGrace) })
		m.logger.Info("tracking leases as the new leader", "leases", len(t.expiry), "grace", m.cfg.LeaseGrace)
	} else if g := ls.LeaseGen(); g != t.gen {
		t.gen = g
		granted := map[uint64]bool{}
		grace := time.Duration(0)
		if !t.caughtUp {
			grace = m.cfg.LeaseGrace
		}
		ls.EachLease(func(id uint64, ttl time.Duration) {
			granted[id] = true
			if _, ok := t.expiry[id]; !ok {
				t.expiry[id] = now.Add(ttl + grace)
			}
		})
		for id := range t.expiry {
			if !granted[id] {
				delete(t.expiry, id)
				delete(t.revoking, id)
			}
		}
	}
	t.caughtUp = t.caughtUp || m.lrn.Applied() >= t.inherited
	var due []uint64
	for id, at := range t.expiry {
		if now.Before(at) {
			continue
		}
		if p, ok := t.revoking[id]; ok && now.Sub(p) < m.cfg.RequestTimeout {
			continue
		}
		due = append(due, id)
	}
	slices.Sort(due) // NB: map order is random; the simulator replays
	for _, id := range due {
		m.lastRead++
		cmd := paxos.Command{Session: 0, Seq: m.lastRead, Data: ls.RevokeCommand(id), Kind: paxos.CmdApply}
		if err := m.node.Propose(now, []paxos.Command{cmd}); err != nil {
			return // not leading after all, or overloaded: the next sweep tries again
		}
		t.revoking[id] = now
		m.logger.Info("lease expired; revoking it", "lease", id)
	}
}

// keepAlive renews a lease's deadline at the leader. The answer's Data is
// the lease's TTL in milliseconds, a uvarint, or empty when the lease is not
// granted (it expired, was revoked, or never was).
func (m *Member) keepAlive(req clientapi.Request) clientapi.Response {
	resp := clientapi.Response{ID: req.ID}
	ls, ok := m.leaser()
	id, n := binary.Uvarint(req.Data)
	switch {
	case !ok:
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("the state machine of node %d has no leases", m.cfg.ID)
		return resp
	case n <= 0 || n != len(req.Data) || id == 0:
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("keep-alive of %x: send a lease number, a non-zero uvarint", req.Data)
		return resp
	case m.prop == nil || !m.prop.IsLeader():
		var leader paxos.NodeID
		if m.prop != nil {
			leader = m.prop.Leader()
		}
		m.notLeader(&resp, leader)
		return resp
	}
	now := m.io.Now()
	if !m.leases.leading {
		m.sweepLeases(now) // NB: a leader of a moment ago may not track yet
	}
	ttl, granted := ls.LeaseTTL(id)
	_, revoking := m.leases.revoking[id]
	switch {
	case m.lrn.Applied() < m.prop.Inherited() || (!granted && m.lrn.Applied() < m.prop.Decided()):
		// NB: an earlier leader may have proposed the lease's revocation,
		// which this one found in its phase 1 and will have chosen: a
		// keep-alive answered before it applies would be a promise the
		// revocation breaks (simulator seed 5565).
		resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("node %d leads but has not applied what earlier leaders proposed, so it cannot tell whether lease %d still lives; retry", m.cfg.ID, id)
	case !granted || revoking:
	default:
		m.leases.expiry[id] = now.Add(ttl)
		resp.Data = binary.AppendUvarint(nil, uint64(ttl/time.Millisecond))
	}
	return resp
}
