package acceptor

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	"github.com/paxosd/paxosd/paxos"
)

// Config configures an Acceptor.
type Config struct {
	ID      paxos.NodeID
	Cluster paxos.Config
	Logger  *slog.Logger
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if !c.Cluster.Has(c.ID, paxos.RoleAcceptor) {
		return fmt.Errorf("acceptor: node %d is not an acceptor of the cluster", c.ID)
	}
	return nil
}

// Acceptor is the acceptor core. It is not safe for concurrent use.
type Acceptor struct {
	id      paxos.NodeID
	cluster paxos.Config
	logger  *slog.Logger

	promised paxos.Ballot // Invariant: never decreases, even across restarts.
	// accepted holds, per slot, the value accepted at the highest ballot.
	// Invariant: accepted[s].Ballot <= promised for every s.
	accepted map[paxos.Slot]paxos.Entry
	top      paxos.Slot // highest slot in accepted
	// maxAccepted is the highest ballot in accepted, kept for checks.
	maxAccepted paxos.Ballot

	rd paxos.Ready
}

// New returns an acceptor that resumes from st, the state its storage
// recovered. It keeps no reference to st.Accepted.
func New(cfg Config, st paxos.AcceptorState) (*Acceptor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Acceptor{
		id:       cfg.ID,
		cluster:  cfg.Cluster,
		logger:   cfg.Logger,
		promised: st.Promised,
		accepted: make(map[paxos.Slot]paxos.Entry, len(st.Accepted)),
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	a.logger = a.logger.With("node", cfg.ID, "role", "acceptor")
	for _, e := range st.Accepted {
		if a.promised.Less(e.Ballot) {
			return nil, fmt.Errorf("acceptor: recovered slot %d accepted at %v above promised %v", e.Slot, e.Ballot, a.promised)
		}
		a.accepted[e.Slot] = e
		a.top = max(a.top, e.Slot)
		a.maxAccepted = a.maxAccepted.Max(e.Ballot)
	}
	return a, nil
}

// Promised returns the promised ballot.
func (a *Acceptor) Promised() paxos.Ballot { return a.promised }

// MaxAccepted returns the highest ballot of any accepted value.
func (a *Acceptor) MaxAccepted() paxos.Ballot { return a.maxAccepted }

// Accepted returns the entry accepted in slot s, if any.
func (a *Acceptor) Accepted(s paxos.Slot) (paxos.Entry, bool) {
	e, ok := a.accepted[s]
	return e, ok
}

// Step handles MsgPrepare and MsgAccept.
func (a *Acceptor) Step(m paxos.Message) error {
	if !a.cluster.Has(m.From, paxos.RoleProposer) {
		return fmt.Errorf("acceptor: %s from %d, which is not a proposer of the cluster", m.Type, m.From)
	}
	if m.Ballot.Node != m.From {
		return fmt.Errorf("acceptor: %s from %d carries ballot %v of node %d", m.Type, m.From, m.Ballot, m.Ballot.Node)
	}
	switch m.Type {
	case paxos.MsgPrepare:
		a.handlePrepare(m)
	case paxos.MsgAccept:
		if m.Slot == 0 {
			return fmt.Errorf("acceptor: Accept for slot 0 from %d", m.From)
		}
		a.handleAccept(m)
	default:
		return fmt.Errorf("acceptor: unexpected %s from %d", m.Type, m.From)
	}
	return nil
}

// handlePrepare answers phase 1a with a promise or a nack (Lamport, "Paxos
// Made Simple", §2.2). NB: the ballot must be strictly above the promise. A
// proposer that restarts forgets its ballots and may pick one it used before;
// with ">" such a ballot can never win a second quorum of promises, so one
// ballot never carries two values for a slot.
func (a *Acceptor) handlePrepare(m paxos.Message) {
	if !a.promised.Less(m.Ballot) {
		a.sendNack(m.From, 0)
		return
	}
	a.persistPromise(m.Ballot)
	var entries []paxos.Entry
	if a.top >= m.Slot {
		for s, e := range a.accepted {
			if s >= m.Slot {
				entries = append(entries, e)
			}
		}
		// NB: the promise must carry every entry at or above m.Slot. A
		// proposer fills each slot it hears nothing about with a no-op, so
		// a cut-off list could overwrite a chosen value.
		slices.SortFunc(entries, func(x, y paxos.Entry) int { return cmp.Compare(x.Slot, y.Slot) })
	}
	a.send(paxos.Message{Type: paxos.MsgPromise, To: m.From, Ballot: m.Ballot, Slot: m.Slot, Entries: entries})
}

// handleAccept answers phase 2a with an accepted or a nack (§2.2): it accepts
// any ballot at or above its promise.
func (a *Acceptor) handleAccept(m paxos.Message) {
	if m.Ballot.Less(a.promised) {
		a.sendNack(m.From, m.Slot)
		return
	}
	if a.promised.Less(m.Ballot) {
		a.persistPromise(m.Ballot)
	}
	// A duplicate of an Accept already taken needs no new write: the first
	// write is durable, or is in this same Ready and becomes durable before
	// the reply leaves.
	if e, ok := a.accepted[m.Slot]; !ok || e.Ballot != m.Ballot {
		a.persistAccept(paxos.Entry{Slot: m.Slot, Ballot: m.Ballot, Value: m.Value})
	}
	a.send(paxos.Message{Type: paxos.MsgAccepted, To: m.From, Ballot: m.Ballot, Slot: m.Slot})
}

func (a *Acceptor) persistPromise(b paxos.Ballot) {
	if b.Less(a.promised) {
		panic(fmt.Sprintf("acceptor: promise %v below promised %v", b, a.promised))
	}
	a.promised = b
	a.rd.Writes = append(a.rd.Writes, paxos.Record{Type: paxos.RecPromise, Ballot: b})
}

func (a *Acceptor) persistAccept(e paxos.Entry) {
	if a.promised.Less(e.Ballot) {
		panic(fmt.Sprintf("acceptor: accepted %v above promised %v in slot %d", e.Ballot, a.promised, e.Slot))
	}
	a.accepted[e.Slot] = e
	a.top = max(a.top, e.Slot)
	a.maxAccepted = a.maxAccepted.Max(e.Ballot)
	a.rd.Writes = append(a.rd.Writes, paxos.Record{Type: paxos.RecAccept, Slot: e.Slot, Ballot: e.Ballot, Value: e.Value})
}

func (a *Acceptor) sendNack(to paxos.NodeID, s paxos.Slot) {
	a.send(paxos.Message{Type: paxos.MsgNack, To: to, Ballot: a.promised, Slot: s})
}

func (a *Acceptor) send(m paxos.Message) {
	m.From = a.id
	a.rd.Messages = append(a.rd.Messages, m)
}

// Tick does nothing: an acceptor only reacts.
func (a *Acceptor) Tick() {}

// Ready returns the writes and replies produced since the last Advance.
func (a *Acceptor) Ready() paxos.Ready { return a.rd }

// Advance forgets the work returned by Ready.
func (a *Acceptor) Advance() { a.rd = paxos.Ready{} }
