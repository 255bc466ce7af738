package server

import (
	"cmp"
	"slices"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
)

// Linearizable reads without the log: the leader confirms with one round of
// its acceptors that it still leads (proposer.ReadIndex), then answers from
// its learner's state once that applied the slot the round named. Why that
// is linearizable: docs/design.md, "Reads".

// read is a linearizable read waiting for its confirmation (index 0, ok
// false) or for the learner to apply its index.
type read struct {
	waiter
	query []byte
	index paxos.Slot
	ok    bool
}

// canReadIndex reports whether reads can be served here without the log:
// this member leads and its machine answers queries. A machine that does not
// has its reads proposed through the log instead.
func (m *Member) canReadIndex() bool {
	if m.prop == nil || m.lrn == nil || !m.prop.IsLeader() {
		return false
	}
	return m.lrn.CanQuery()
}

// readIndex asks the proposer to confirm a read. It reports true when the
// read now waits, and otherwise returns the refusal.
func (m *Member) readIndex(c Responder, req clientapi.Request) (clientapi.Response, bool) {
	resp := clientapi.Response{ID: req.ID}
	m.readTag++
	if err := m.prop.ReadIndex(m.readTag); err != nil {
		m.refuse(&resp, err)
		return resp, false
	}
	m.reads[m.readTag] = &read{waiter: waiter{c: c, id: req.ID, deadline: m.io.Now().Add(m.cfg.RequestTimeout)}, query: req.Data}
	return resp, true
}

// confirmed takes the proposer's answers: a confirmed read is served as soon
// as the learner applied its index; a read whose leader stepped down first
// is told to retry at the new leader.
func (m *Member) confirmed(rs []paxos.ReadState) {
	for _, st := range rs {
		r := m.reads[st.ID]
		if r == nil {
			continue // timed out already
		}
		if !st.OK {
			delete(m.reads, st.ID)
			resp := clientapi.Response{ID: r.id}
			if m.prop.IsLeader() {
				resp.Code, resp.Message = clientapi.CodeUnavailable, "the leader could not confirm in time that it still leads (it hears no quorum of the acceptors that promised it); a read changes nothing: retry"
			} else {
				m.notLeader(&resp, m.prop.Leader())
				resp.Message = "leadership changed before the read was confirmed; a read changes nothing: retry at the leader"
			}
			r.c.Respond(resp)
			continue
		}
		r.index, r.ok = st.Index, true
	}
	m.serveReads()
}

// serveReads answers the confirmed reads whose index the learner applied.
func (m *Member) serveReads() {
	if len(m.reads) == 0 {
		return
	}
	applied := m.lrn.Applied()
	var ready []uint64
	for tag, r := range m.reads {
		if r.ok && r.index <= applied {
			ready = append(ready, tag)
		}
	}
	slices.Sort(ready) // NB: map order is random; the simulator replays
	for _, tag := range ready {
		r := m.reads[tag]
		delete(m.reads, tag)
		r.c.Respond(m.query(clientapi.Request{ID: r.id, Data: r.query}))
		m.readsServed++
	}
}

// ReadsServed returns how many linearizable reads this member served
// without the log.
func (m *Member) ReadsServed() uint64 { return m.readsServed }

// lateReads removes and returns the reads whose deadline passed.
func (m *Member) lateReads(now time.Time) []due {
	var late []due
	for tag, r := range m.reads {
		if !now.Before(r.deadline) {
			delete(m.reads, tag)
			late = append(late, due{w: r.waiter})
		}
	}
	slices.SortFunc(late, func(a, b due) int { return cmp.Compare(a.w.id, b.w.id) })
	return late
}
