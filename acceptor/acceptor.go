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
	ID paxos.NodeID
	// Configs are the configurations this node knows; the acceptor counts
	// the learners of the newest one when it decides what it may forget.
	// A node with a learner passes later ones to Reconfigure.
	Configs paxos.History
	// StickyTicks is how long after it last heard a leader's heartbeat the
	// acceptor refuses pre-votes: a member that restarts or returns from a
	// partition cannot depose a leader a quorum still hears. Default 10,
	// the proposers' election timeout.
	StickyTicks int
	Logger      *slog.Logger
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	switch {
	case c.ID == 0:
		return fmt.Errorf("acceptor: node ID 0 is reserved")
	case len(c.Configs) == 0:
		return fmt.Errorf("acceptor: Config.Configs is required")
	case c.StickyTicks < 0:
		return fmt.Errorf("acceptor: StickyTicks must not be negative")
	}
	return nil
}

// Acceptor is the acceptor core. It is not safe for concurrent use.
type Acceptor struct {
	id      paxos.NodeID
	configs paxos.History
	sticky  int // StickyTicks
	logger  *slog.Logger
	// quiet is how many ticks passed since a leader's heartbeat; it starts
	// high, so that an acceptor that just started grants pre-votes.
	quiet int

	promised paxos.Ballot // Invariant: never decreases, even across restarts.
	// accepted holds, per slot, the value accepted at the highest ballot.
	// Invariant: accepted[s].Ballot <= promised for every s.
	accepted map[paxos.Slot]paxos.Entry
	top      paxos.Slot // highest slot in accepted
	// maxAccepted is the highest ballot in accepted, kept for checks.
	maxAccepted paxos.Ballot
	// floor: every slot <= floor is chosen, and this acceptor dropped what
	// it accepted there (see maybeTruncate). Invariant: never decreases;
	// accepted holds no slot <= floor.
	floor paxos.Slot
	// snapshots is the highest snapshot slot each learner reported. It is
	// not durable: after a restart the acceptor waits for new reports.
	snapshots map[paxos.NodeID]paxos.Slot

	rd paxos.Ready
}

// New returns an acceptor that resumes from st, the state its storage
// recovered. It keeps no reference to st.Accepted.
func New(cfg Config, st paxos.AcceptorState) (*Acceptor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StickyTicks == 0 {
		cfg.StickyTicks = 10
	}
	a := &Acceptor{
		id:        cfg.ID,
		configs:   cfg.Configs,
		sticky:    cfg.StickyTicks,
		quiet:     cfg.StickyTicks,
		logger:    cfg.Logger,
		promised:  st.Promised,
		accepted:  make(map[paxos.Slot]paxos.Entry, len(st.Accepted)),
		floor:     st.Floor,
		snapshots: map[paxos.NodeID]paxos.Slot{},
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	a.logger = a.logger.With("node", cfg.ID, "role", "acceptor")
	for _, e := range st.Accepted {
		if e.Slot <= a.floor {
			return nil, fmt.Errorf("acceptor: recovered slot %d at or below the floor %d", e.Slot, a.floor)
		}
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

// Floor returns the slot up to which this acceptor forgot what it accepted.
func (a *Acceptor) Floor() paxos.Slot { return a.floor }

// Len returns the number of slots the acceptor holds a value for.
func (a *Acceptor) Len() int { return len(a.accepted) }

// Accepted returns the entry accepted in slot s, if any.
func (a *Acceptor) Accepted(s paxos.Slot) (paxos.Entry, bool) {
	e, ok := a.accepted[s]
	return e, ok
}

// Configs returns the configurations the acceptor knows.
func (a *Acceptor) Configs() paxos.History { return a.configs }

// Reconfigure gives the acceptor the configurations its node's learner
// knows.
func (a *Acceptor) Reconfigure(h paxos.History) { a.configs = h }

// Step handles MsgPrepare, MsgAccept, MsgPreVote, MsgHeartbeat, MsgConfirm
// and MsgSnapshotted. It takes them from any member: only the proposers count
// votes, each by the configuration of the slot, and the transport admits
// only members.
func (a *Acceptor) Step(m paxos.Message) error {
	if m.Type == paxos.MsgSnapshotted {
		a.handleSnapshotted(m)
		return nil
	}
	if m.Ballot.Node != m.From {
		return fmt.Errorf("acceptor: %s from %d carries ballot %v of node %d", m.Type, m.From, m.Ballot, m.Ballot.Node)
	}
	switch m.Type {
	case paxos.MsgHeartbeat, paxos.MsgConfirm:
		// NB: the answer's Ballot is the promise, whatever the sender's
		// ballot: a leader counts a confirmation only at its own, and
		// steps down at a higher one.
		a.quiet = 0
		a.send(paxos.Message{Type: paxos.MsgHeartbeatAck, To: m.From, Ballot: a.promised, Slot: m.Slot})
	case paxos.MsgPreVote:
		// NB: a pre-vote changes nothing here, so granting it is always
		// safe; refusing it while a leader is heard is what keeps a
		// returning member from raising a ballot the others would adopt.
		a.send(paxos.Message{Type: paxos.MsgPreVoteReply, To: m.From, Ballot: a.promised, Slot: m.Slot,
			Grant: a.quiet >= a.sticky && a.promised.Less(m.Ballot)})
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
			if s >= m.Slot { // NB: every slot in accepted is above the floor
				entries = append(entries, e)
			}
		}
		// NB: the promise must carry every entry at or above m.Slot. A
		// proposer fills each slot it hears nothing about with a no-op, so
		// a cut-off list could overwrite a chosen value.
		slices.SortFunc(entries, func(x, y paxos.Entry) int { return cmp.Compare(x.Slot, y.Slot) })
	}
	// Commit carries the floor: the proposer must not propose, not even a
	// no-op, in a slot at or below it, because what was chosen there is no
	// longer reported.
	a.send(paxos.Message{Type: paxos.MsgPromise, To: m.From, Ballot: m.Ballot, Slot: m.Slot, Commit: a.floor, Entries: entries})
}

// handleAccept answers phase 2a with an accepted or a nack (§2.2): it accepts
// any ballot at or above its promise.
func (a *Acceptor) handleAccept(m paxos.Message) {
	if m.Ballot.Less(a.promised) {
		a.sendNack(m.From, m.Slot)
		return
	}
	if m.Slot <= a.floor {
		// NB: the slot is chosen and its vote forgotten. Accepting again
		// could count toward another value if m.Ballot is older than the
		// one that chose it, so refuse, and tell the proposer the slot is
		// chosen.
		a.send(paxos.Message{Type: paxos.MsgNack, To: m.From, Ballot: a.promised, Slot: m.Slot, Commit: a.floor})
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

// handleSnapshotted notes a learner's durable snapshot and truncates if it
// raised the safe floor.
func (a *Acceptor) handleSnapshotted(m paxos.Message) {
	if m.Slot > a.snapshots[m.From] {
		a.snapshots[m.From] = m.Slot
		a.maybeTruncate()
	}
}

// maybeTruncate drops accepted values that nobody will ask this acceptor
// for: every slot up to the highest slot that a majority of the learners
// reported covered by durable snapshots. Such slots are chosen; every
// Promise carries the floor, so a new leader proposes nothing at or below
// it, and a learner that still needs one gets it from a peer's log or
// snapshot. The whole argument, agreement and availability, is in
// docs/design.md, "Truncation"; the simulator checks it (invariant 8).
func (a *Acceptor) maybeTruncate() {
	learners := a.configs.Latest().Membership().Learners()
	reports := make([]paxos.Slot, 0, len(learners))
	for _, id := range learners {
		reports = append(reports, a.snapshots[id])
	}
	slices.SortFunc(reports, func(x, y paxos.Slot) int { return cmp.Compare(y, x) })
	f := reports[len(learners)/2] // the highest slot a majority covers
	if f <= a.floor {
		return
	}
	a.floor = f
	for s := range a.accepted {
		if s <= f {
			delete(a.accepted, s)
		}
	}
	a.rd.Writes = append(a.rd.Writes, paxos.Record{Type: paxos.RecTruncate, Slot: f})
}

func (a *Acceptor) sendNack(to paxos.NodeID, s paxos.Slot) {
	a.send(paxos.Message{Type: paxos.MsgNack, To: to, Ballot: a.promised, Slot: s})
}

func (a *Acceptor) send(m paxos.Message) {
	m.From = a.id
	a.rd.Messages = append(a.rd.Messages, m)
}

// Tick counts the time since a leader's heartbeat.
func (a *Acceptor) Tick() {
	if a.quiet < a.sticky {
		a.quiet++
	}
}

// Ready returns the writes and replies produced since the last Advance.
func (a *Acceptor) Ready() paxos.Ready { return a.rd }

// Advance forgets the work returned by Ready.
func (a *Acceptor) Advance() { a.rd = paxos.Ready{} }
