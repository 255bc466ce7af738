package server

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// MaxCommand is the largest command a client may propose. Bigger ones are
// refused before they are proposed.
const MaxCommand = statemachine.MaxValueSize + statemachine.MaxKeySize + 1024

// Responder is a client connection as a member sees it: where the answers
// to its requests go. Respond must not block (it runs on the node's
// goroutine); a connection that cannot take an answer drops it, and its
// client hears of it as a broken connection.
type Responder interface {
	Respond(r clientapi.Response)
}

// Handle serves one client request on the node's goroutine: a command or a
// linearizable read is proposed and answered once applied (or refused, or
// timed out by Sweep), a serializable query is answered from the learner's
// state, a status request at once. Snapshot requests are the daemon's
// (Server), not the member's.
func (m *Member) Handle(c Responder, req clientapi.Request) {
	resp := clientapi.Response{ID: req.ID}
	if m.diskFull != "" && !servedWhileFull(req.Kind) {
		resp.Code, resp.Message = clientapi.CodeUnavailable, m.fullMessage(req.Kind)
		c.Respond(resp)
		return
	}
	switch req.Kind {
	case clientapi.ReqStatus:
		st := m.Status()
		resp.Status = &st
	case clientapi.ReqQuery:
		resp = m.query(req)
	case clientapi.ReqRead:
		if m.canReadIndex() {
			var ok bool
			if resp, ok = m.readIndex(c, req); ok {
				return // answered once confirmed and applied, or by Sweep
			}
			break
		}
		if m.lrn != nil && m.lrn.CanQuery() {
			// NB: a machine that answers queries is read by a leader's
			// confirmed query, never through the log: a candidate would
			// queue the read as a command of session 0, which the machine
			// applies like any other (a read-only client could write so).
			var leader paxos.NodeID
			if m.prop != nil {
				leader = m.prop.Leader()
			}
			m.notLeader(&resp, leader)
			break
		}
		fallthrough
	case clientapi.ReqCommand, clientapi.ReqSession:
		var ok bool
		if resp, ok = m.propose(c, req); ok {
			return // answered once applied, or by Sweep
		}
	case clientapi.ReqKeepAlive:
		resp = m.keepAlive(req)
	case clientapi.ReqWatch:
		var ok bool
		if resp, ok = m.handleWatch(c, req); ok {
			return // answered once changes are applied, or by Sweep
		}
	case clientapi.ReqMembers, clientapi.ReqTransfer:
		var ok bool
		if resp, ok = m.handleChange(c, req); ok {
			return // answered once chosen, or by Sweep
		}
	default:
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("node %d does not serve %s requests here", m.cfg.ID, req.Kind)
	}
	c.Respond(resp)
}

func (m *Member) query(req clientapi.Request) clientapi.Response {
	resp := clientapi.Response{ID: req.ID}
	if m.lrn == nil {
		resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("node %d runs no learner, so it has no state to read; ask a learner", m.cfg.ID)
		return resp
	}
	data, err := m.lrn.Query(req.Data)
	if err != nil {
		resp.Code, resp.Message = clientapi.CodeBadRequest, err.Error()
		return resp
	}
	resp.Data = data
	return resp
}

// propose hands a command or a read to the proposer. It reports true when
// the request now waits for its slot, and otherwise returns the refusal.
func (m *Member) propose(c Responder, req clientapi.Request) (clientapi.Response, bool) {
	resp := clientapi.Response{ID: req.ID}
	if len(req.Data) > MaxCommand {
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("command of %d bytes is larger than the limit of %d", len(req.Data), MaxCommand)
		return resp, false
	}
	kind := paxos.CmdApply
	switch {
	case req.Kind == clientapi.ReqSession && !validTTL(req.Data):
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("session timeout %x does not decode: send a uvarint of milliseconds, or nothing for the default", req.Data)
		return resp, false
	case req.Kind == clientapi.ReqRead || req.Kind == clientapi.ReqSession:
		// NB: a read through the log and a session's opening carry no
		// session; this member tags them to find their answers.
		m.lastRead++
		req.Session, req.Seq = 0, m.lastRead
		if req.Kind == clientapi.ReqSession {
			kind = paxos.CmdOpenSession
		}
	case req.Session == 0 || req.Seq == 0:
		resp.Code, resp.Message = clientapi.CodeBadRequest, "a command needs a non-zero session and sequence number; open a session first"
		return resp, false
	}
	if err := m.node.Propose(m.io.Now(), []paxos.Command{{Session: req.Session, Seq: req.Seq, Data: req.Data, Kind: kind}}); err != nil {
		m.refuse(&resp, err)
		return resp, false
	}
	k := sessionSeq{req.Session, req.Seq}
	m.waiters[k] = append(m.waiters[k], waiter{c: c, id: req.ID, deadline: m.io.Now().Add(m.cfg.RequestTimeout)})
	return resp, true
}

func validTTL(b []byte) bool {
	_, ok := statemachine.DecodeSessionTTL(b)
	return ok
}

// refuse fills in resp for a request the proposer did not take.
func (m *Member) refuse(resp *clientapi.Response, err error) {
	var nl *paxos.NotLeaderError
	switch {
	case errors.As(err, &nl):
		m.notLeader(resp, nl.Leader)
	case errors.Is(err, paxos.ErrOverloaded):
		resp.Code, resp.Message = clientapi.CodeOverloaded, err.Error()
	default:
		resp.Code, resp.Message = clientapi.CodeUnavailable, err.Error()
	}
}

// notLeader fills in resp as a redirect to leader (0: none known).
func (m *Member) notLeader(resp *clientapi.Response, leader paxos.NodeID) {
	resp.Code, resp.Message = clientapi.CodeNotLeader, (&paxos.NotLeaderError{Leader: leader}).Error()
	if leader == 0 {
		resp.Message = "no leader is known (an election is under way, or this member is cut off from a quorum); not applied"
	}
	resp.Leader = leader
	if leader != 0 {
		if p, ok := m.Configs().Latest().Peer(leader); ok {
			resp.LeaderAddr = p.ClientAddr
		}
		if m.io.ClientAddr != nil {
			if a := m.io.ClientAddr(leader); a != "" {
				resp.LeaderAddr = a
			}
		}
	}
}

// appliedLogEvery is how often (in slots) the applied slot and hash are
// logged, so that logs of different members can be compared.
const appliedLogEvery = 10000

// apply runs on the node's goroutine with newly applied decisions: it
// answers the clients waiting for them.
func (m *Member) apply(ds []paxos.Decision) {
	for _, d := range ds {
		if d.Value.IsConfig() {
			m.applyChange(d)
		}
		for _, r := range d.Results {
			k := sessionSeq{r.Session, r.Seq}
			ws := m.waiters[k]
			if len(ws) == 0 {
				continue
			}
			delete(m.waiters, k)
			resp := clientapi.Response{Code: clientapi.CodeOK, Data: r.Data}
			switch {
			case r.Expired:
				resp = clientapi.Response{Code: clientapi.CodeSessionExpired, Message: fmt.Sprintf("session %d is not open (idle for longer than its timeout, pushed out of a full session table, or never opened): not applied now; if this was a retry, an earlier attempt may have been applied: check, then open a new session", r.Session)}
			case r.Duplicate && r.Data == nil:
				resp = clientapi.Response{Code: clientapi.CodeStale, Message: "the session moved past this command; it was applied at most once, and its answer is gone"}
			}
			for _, w := range ws {
				resp.ID = w.id
				w.c.Respond(resp)
			}
		}
		if d.Slot%appliedLogEvery == 0 && m.lrn != nil {
			m.logger.Info("applied", "slot", d.Slot, "applied_hash", fmt.Sprintf("%016x", m.lrn.Hash()))
		}
	}
	m.answerChanges()
	m.serveReads()
	m.serveWatches()
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.decided(ds, m.io.Now())
	}
	if m.cfg.Observe != nil {
		m.cfg.Observe(ds)
	}
}

// due is a waiter whose deadline passed.
type due struct {
	k sessionSeq
	w waiter
}

// Sweep answers, with CodeTimeout, every request whose command was not
// applied by its deadline. The daemon calls it ten times a second, the
// simulator every tick. Answers go out in deadline order.
func (m *Member) Sweep() {
	// A change may come to govern without a new slot applied here: a
	// learner's report of progress can be what it waited for.
	m.answerChanges()
	now := m.io.Now()
	var late []due
	for k, ws := range m.waiters {
		keep := ws[:0]
		for _, w := range ws {
			if now.Before(w.deadline) {
				keep = append(keep, w)
			} else {
				late = append(late, due{k, w})
			}
		}
		if len(keep) == 0 {
			delete(m.waiters, k)
		} else {
			m.waiters[k] = keep
		}
	}
	m.sweepWatches(now)
	m.sweepLeases(now)
	late = append(late, m.lateReads(now)...)
	// NB: map order is random; answer in a fixed order, so that the
	// simulator replays.
	slices.SortFunc(late, func(a, b due) int {
		return cmp.Or(a.w.deadline.Compare(b.w.deadline), cmp.Compare(a.k.session, b.k.session), cmp.Compare(a.k.seq, b.k.seq), cmp.Compare(a.w.id, b.w.id))
	})
	for _, d := range late {
		msg := fmt.Sprintf("proposed, but not applied within %v; it may still be applied: retry with the same session and sequence number to find out", m.cfg.RequestTimeout)
		if d.k.session == 0 {
			msg = fmt.Sprintf("not answered within %v (the leader could not confirm it leads, or its learner lags); a read changes nothing, and a session opened twice only expires unused: retry", m.cfg.RequestTimeout)
		}
		d.w.c.Respond(clientapi.Response{ID: d.w.id, Code: clientapi.CodeTimeout, Message: msg})
	}
}

// SampleMetrics reads the member's state into its Metrics, if it keeps
// any. The daemon calls it ten times a second.
func (m *Member) SampleMetrics() {
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.sample(m)
	}
}

// Waiting returns how many requests wait for their commands to be applied.
func (m *Member) Waiting() int {
	n := 0
	for _, ws := range m.waiters {
		n += len(ws)
	}
	return n + len(m.reads)
}

// Status reports this member's view of itself and the cluster.
func (m *Member) Status() clientapi.Status {
	addr := func(f func(paxos.NodeID) string, id paxos.NodeID) string {
		if f == nil {
			return ""
		}
		return f(id)
	}
	st := clientapi.Status{MemberInfo: clientapi.MemberInfo{ID: m.cfg.ID, Roles: m.Roles(), PeerAddr: addr(m.io.PeerAddr, m.cfg.ID), ClientAddr: addr(m.io.ClientAddr, m.cfg.ID)}}
	if m.acc != nil {
		st.Promised = m.acc.Promised()
	}
	if m.prop != nil {
		st.Leader, st.IsLeader = m.prop.Leader(), m.prop.IsLeader()
		st.Chosen = m.prop.Decided()
	}
	if m.lrn != nil {
		st.Chosen = max(st.Chosen, m.lrn.Known())
		st.Applied, st.AppliedHash = m.lrn.Applied(), m.lrn.Hash()
		st.SnapshotSlot = m.lrn.SnapshotSlot()
		st.Sessions = uint64(m.lrn.Sessions())
	}
	if m.io.LogBytes != nil {
		st.LogBytes = m.io.LogBytes()
	}
	latest := m.Configs().Latest()
	st.ConfigSlot, st.Cluster = latest.Made, m.cfg.Cluster
	for _, p := range latest.Peers {
		info := clientapi.MemberInfo{ID: p.ID, Roles: p.Roles, Target: p.Target, PeerAddr: p.PeerAddr, ClientAddr: p.ClientAddr}
		if a := addr(m.io.ClientAddr, p.ID); a != "" {
			info.ClientAddr = a // what the member itself advertised last
		}
		st.Members = append(st.Members, info)
	}
	return st
}
