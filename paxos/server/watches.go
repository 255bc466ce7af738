package server

import (
	"fmt"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// Watches are long polls. A client asks for the changes from a place in the
// machine's history on (clientapi.ReqWatch); the member answers at once if
// its learner applied some, and otherwise holds the request until some are
// applied or its wait ends. Every answer says where to continue, so the
// member keeps nothing for a watcher between requests: a slow watcher costs
// it no memory, and one that falls behind the history's window is told its
// place was compacted. Any learner serves watches, from its own state.

// MaxWatches bounds the watch requests one member holds at a time; more are
// refused as overloaded.
const MaxWatches = 100_000

// watch is a held watch request: query is the machine's query moved past
// what was looked at, last the answer to give if the wait ends.
type watch struct {
	waiter
	query, last []byte
}

// handleWatch answers a watch request, or holds it. It reports true when
// the request is held.
func (m *Member) handleWatch(c Responder, req clientapi.Request) (clientapi.Response, bool) {
	resp := clientapi.Response{ID: req.ID}
	if m.lrn == nil {
		resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("node %d runs no learner, so it has no changes to report; watch at a learner", m.cfg.ID)
		return resp, false
	}
	if m.prop != nil && m.prop.Leader() == 0 {
		// NB: a member cut off from the others applies nothing new, and
		// a watch held there would wait in silence; one that knows no
		// leader sends the watcher elsewhere.
		resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("node %d knows no leader (an election is under way, or it is cut off), so its changes may lag; watch at another member", m.cfg.ID)
		return resp, false
	}
	w, ok := m.lrn.Machine().(statemachine.Watcher)
	if !ok {
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("the state machine of node %d keeps no history to watch", m.cfg.ID)
		return resp, false
	}
	answer, next, ready := w.Watch(req.Data)
	wait := min(time.Duration(req.Wait)*time.Millisecond, m.cfg.RequestTimeout)
	if ready || wait <= 0 {
		resp.Data = answer
		return resp, false
	}
	if len(m.watches) >= MaxWatches {
		resp.Code, resp.Message = clientapi.CodeOverloaded, fmt.Sprintf("node %d holds %d watch requests, its limit; watch at another member, or retry later", m.cfg.ID, MaxWatches)
		return resp, false
	}
	m.watches = append(m.watches, &watch{waiter: waiter{c: c, id: req.ID, deadline: m.io.Now().Add(wait)}, query: next, last: answer})
	return resp, true
}

// serveWatches asks again for every held watch after commands were applied,
// and answers those that now have changes.
func (m *Member) serveWatches() {
	if len(m.watches) == 0 {
		return
	}
	w := m.lrn.Machine().(statemachine.Watcher) // NB: only a Watcher's requests are held
	keep := m.watches[:0]
	for _, h := range m.watches {
		answer, next, ready := w.Watch(h.query)
		if ready {
			h.c.Respond(clientapi.Response{ID: h.id, Data: answer})
			continue
		}
		h.query, h.last = next, answer
		keep = append(keep, h)
	}
	clear(m.watches[len(keep):])
	m.watches = keep
}

// sweepWatches answers the held watches whose wait ended, with nothing new
// and the place to continue.
func (m *Member) sweepWatches(now time.Time) {
	keep := m.watches[:0]
	for _, h := range m.watches {
		if now.Before(h.deadline) {
			keep = append(keep, h)
			continue
		}
		h.c.Respond(clientapi.Response{ID: h.id, Data: h.last})
	}
	clear(m.watches[len(keep):])
	m.watches = keep
}
