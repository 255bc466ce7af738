package learner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
)

// Config configures a Learner. Zero values take the defaults named.
type Config struct {
	ID      paxos.NodeID
	Cluster paxos.Config
	// Machine is the state machine to apply chosen commands to. Required.
	Machine statemachine.Machine
	// CatchUpTicks is how long a gap may stand before the learner asks a
	// peer to fill it, and how long it waits before asking again. Default 3.
	CatchUpTicks int
	// MaxCatchUpEntries and MaxCatchUpBytes bound one catch-up reply.
	// Defaults 256 and 1 MiB.
	MaxCatchUpEntries int
	MaxCatchUpBytes   int
	// Rand picks which peer to ask. Required.
	Rand   *rand.Rand
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.CatchUpTicks == 0 {
		c.CatchUpTicks = 3
	}
	if c.MaxCatchUpEntries == 0 {
		c.MaxCatchUpEntries = 256
	}
	if c.MaxCatchUpBytes == 0 {
		c.MaxCatchUpBytes = 1 << 20
	}
}

// Validate reports what is wrong with c after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case !c.Cluster.Has(c.ID, paxos.RoleLearner):
		return fmt.Errorf("learner: node %d is not a learner of the cluster", c.ID)
	case c.Machine == nil:
		return fmt.Errorf("learner: Config.Machine is required")
	case c.Rand == nil:
		return fmt.Errorf("learner: Config.Rand is required")
	case c.CatchUpTicks < 1 || c.MaxCatchUpEntries < 1 || c.MaxCatchUpBytes < 1:
		return fmt.Errorf("learner: CatchUpTicks, MaxCatchUpEntries and MaxCatchUpBytes must be positive")
	}
	return nil
}

// ErrConflict reports a value for a slot that differs from the value already
// learned for it. It means agreement was broken somewhere; the value is
// refused.
var ErrConflict = errors.New("learner: conflicting value for a chosen slot")

// Learner is the learner core. It is not safe for concurrent use.
type Learner struct {
	cfg      Config
	logger   *slog.Logger
	peers    []paxos.NodeID // other learners, asked to fill gaps
	proposer bool           // a proposer runs on this node and wants MsgLearned

	sessions *statemachine.Sessions
	applied  paxos.Slot // Invariant: every slot <= applied was applied once, in order.
	hash     uint64     // chained over every applied value
	// log[i] is the value of slot i+1, for every slot <= applied; it answers
	// peers' catch-up requests.
	log     []paxos.Value
	pending map[paxos.Slot]paxos.Value // chosen slots above applied
	known   paxos.Slot                 // highest slot known to be chosen
	gap     int                        // ticks the current gap has stood

	rd paxos.Ready
}

// New returns a learner that resumes from st: it replays the recovered
// chosen log into cfg.Machine, which must be fresh. Replayed slots are not
// reported as Decided; nobody is waiting for them.
func New(cfg Config, st paxos.LearnerState) (*Learner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	l := &Learner{
		cfg:      cfg,
		logger:   cfg.Logger,
		proposer: cfg.Cluster.Has(cfg.ID, paxos.RoleProposer),
		sessions: statemachine.NewSessions(cfg.Machine),
		hash:     hashSeed,
		pending:  map[paxos.Slot]paxos.Value{},
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	l.logger = l.logger.With("node", cfg.ID, "role", "learner")
	for _, id := range cfg.Cluster.Learners() {
		if id != cfg.ID {
			l.peers = append(l.peers, id)
		}
	}
	for _, e := range st.Chosen {
		if e.Slot == 0 {
			return nil, fmt.Errorf("learner: recovered a value for slot 0")
		}
		if _, dup := l.pending[e.Slot]; dup || e.Slot <= l.applied {
			return nil, fmt.Errorf("learner: recovered slot %d twice", e.Slot)
		}
		l.pending[e.Slot] = e.Value
		l.known = max(l.known, e.Slot)
		l.applyReady(false)
	}
	if l.applied < st.Applied {
		return nil, fmt.Errorf("learner: recovered applied slot %d, but the chosen log stops at %d", st.Applied, l.applied)
	}
	l.reportLearned()
	return l, nil
}

// Applied returns the highest slot applied.
func (l *Learner) Applied() paxos.Slot { return l.applied }

// Known returns the highest slot known to be chosen.
func (l *Learner) Known() paxos.Slot { return l.known }

// Hash returns the running hash over every applied value.
func (l *Learner) Hash() uint64 { return l.hash }

// Snapshot writes the replicated state (session table and machine) as of
// the applied slot.
func (l *Learner) Snapshot(w io.Writer) error { return l.sessions.Snapshot(w) }

// ErrNoQuery is returned by Query when the state machine answers no queries
// (it does not implement statemachine.Querier).
var ErrNoQuery = errors.New("learner: state machine does not answer queries")

// Query asks the state machine, as of the applied slot, without going
// through the log: the answer may be stale (a serializable read).
func (l *Learner) Query(q []byte) ([]byte, error) {
	qm, ok := l.sessions.Machine().(statemachine.Querier)
	if !ok {
		return nil, ErrNoQuery
	}
	return qm.Query(q)
}

// Step handles MsgDecide, MsgHeartbeat, MsgCatchUp and MsgCatchUpReply.
func (l *Learner) Step(m paxos.Message) error {
	switch m.Type {
	case paxos.MsgDecide, paxos.MsgHeartbeat:
		if !l.cfg.Cluster.Has(m.From, paxos.RoleProposer) {
			return fmt.Errorf("learner: %s from %d, which is not a proposer", m.Type, m.From)
		}
	case paxos.MsgCatchUp, paxos.MsgCatchUpReply:
		if m.From == l.cfg.ID || !l.cfg.Cluster.Has(m.From, paxos.RoleLearner) {
			return fmt.Errorf("learner: %s from %d, which is not a peer learner", m.Type, m.From)
		}
	default:
		return fmt.Errorf("learner: unexpected %s from %d", m.Type, m.From)
	}
	switch m.Type {
	case paxos.MsgDecide:
		return l.learn(m.From, m.Entries)
	case paxos.MsgHeartbeat:
		l.known = max(l.known, m.Commit)
	case paxos.MsgCatchUp:
		l.handleCatchUp(m)
	case paxos.MsgCatchUpReply:
		l.known = max(l.known, m.Commit)
		before := l.applied
		if err := l.learn(m.From, m.Entries); err != nil {
			return err
		}
		// A reply that made progress while a gap remains is answered with
		// the next request at once, to the same peer: catching up runs at
		// the speed of the network, not one reply per CatchUpTicks. A reply
		// that made no progress (a duplicate, or a peer as far behind) waits
		// for the tick timeout, which asks a random peer.
		if l.applied > before && l.known > l.applied {
			l.askCatchUp(m.From)
		}
	}
	return nil
}

// learn records chosen values and applies what became contiguous. Entries
// are checked first, so a message with a bad entry changes nothing.
func (l *Learner) learn(from paxos.NodeID, entries []paxos.Entry) error {
	for _, e := range entries {
		if e.Slot == 0 {
			return fmt.Errorf("learner: value for slot 0 from %d", from)
		}
		if old, ok := l.value(e.Slot); ok && !bytes.Equal(old, e.Value) {
			l.logger.Error("conflicting value for a chosen slot", "slot", e.Slot, "peer", from)
			return fmt.Errorf("%w: slot %d from %d", ErrConflict, e.Slot, from)
		}
	}
	for _, e := range entries {
		if _, ok := l.value(e.Slot); ok {
			continue
		}
		l.pending[e.Slot] = e.Value
		l.known = max(l.known, e.Slot)
		l.rd.Writes = append(l.rd.Writes, paxos.Record{Type: paxos.RecChosen, Slot: e.Slot, Value: e.Value})
	}
	if l.applyReady(true) {
		l.rd.Writes = append(l.rd.Writes, paxos.Record{Type: paxos.RecApplied, Slot: l.applied})
		l.reportLearned()
	}
	return nil
}

// value returns the value learned for slot s, if any.
func (l *Learner) value(s paxos.Slot) (paxos.Value, bool) {
	if s <= l.applied {
		return l.log[s-1], true
	}
	v, ok := l.pending[s]
	return v, ok
}

// applyReady applies every pending slot that follows the applied prefix and
// reports whether it applied any. With report set, each applied slot is
// returned as a Decision.
func (l *Learner) applyReady(report bool) bool {
	start := l.applied
	for {
		v, ok := l.pending[l.applied+1]
		if !ok {
			break
		}
		delete(l.pending, l.applied+1)
		l.applied++
		d := l.apply(l.applied, v)
		l.log = append(l.log, v)
		if report {
			l.rd.Decided = append(l.rd.Decided, d)
		}
	}
	if l.applied > start {
		l.gap = 0
		return true
	}
	return false
}

// apply runs the commands of slot s through the session table.
func (l *Learner) apply(s paxos.Slot, v paxos.Value) paxos.Decision {
	l.hash = chainHash(l.hash, s, v)
	d := paxos.Decision{Slot: s, Value: v}
	cmds, err := paxos.DecodeBatch(v)
	if err != nil {
		// Every learner decodes the same bytes the same way, so skipping
		// the slot keeps them identical; but a proposer wrote these bytes,
		// so this is a bug worth shouting about.
		l.logger.Error("chosen value does not decode; applied as a no-op", "slot", s, "err", err)
		return d
	}
	d.Results = make([]paxos.Result, len(cmds))
	for i, c := range cmds {
		data, dup := l.sessions.Apply(uint64(s), c.Session, c.Seq, c.Data)
		d.Results[i] = paxos.Result{Session: c.Session, Seq: c.Seq, Data: data, Duplicate: dup}
	}
	return d
}

// reportLearned tells the proposer on this node how far the chosen log is
// known and, once this Ready is flushed, durable here.
func (l *Learner) reportLearned() {
	if l.proposer && l.applied > 0 {
		l.send(paxos.Message{Type: paxos.MsgLearned, To: l.cfg.ID, Commit: l.applied})
	}
}

// handleCatchUp sends a peer the chosen values it asked for, as many as the
// limits allow, and the highest slot known to be chosen here.
func (l *Learner) handleCatchUp(m paxos.Message) {
	if m.Slot == 0 {
		return
	}
	var entries []paxos.Entry
	size := 0
	for s := m.Slot; s <= l.applied && len(entries) < l.cfg.MaxCatchUpEntries; s++ {
		v := l.log[s-1]
		if size += len(v); len(entries) > 0 && size > l.cfg.MaxCatchUpBytes {
			break
		}
		entries = append(entries, paxos.Entry{Slot: s, Value: v})
	}
	l.send(paxos.Message{Type: paxos.MsgCatchUpReply, To: m.From, Slot: m.Slot, Commit: l.known, Entries: entries})
}

// Tick asks a random peer to fill a gap that has stood CatchUpTicks.
func (l *Learner) Tick() {
	if l.known <= l.applied || len(l.peers) == 0 {
		l.gap = 0
		return
	}
	l.gap++
	if l.gap < l.cfg.CatchUpTicks {
		return
	}
	l.askCatchUp(l.peers[l.cfg.Rand.IntN(len(l.peers))])
}

// askCatchUp asks peer for the chosen values after the applied prefix.
func (l *Learner) askCatchUp(peer paxos.NodeID) {
	l.gap = 0
	l.send(paxos.Message{Type: paxos.MsgCatchUp, To: peer, Slot: l.applied + 1})
}

// Ready returns the work produced since the last Advance.
func (l *Learner) Ready() paxos.Ready { return l.rd }

// Advance forgets the work returned by Ready.
func (l *Learner) Advance() { l.rd = paxos.Ready{} }

func (l *Learner) send(m paxos.Message) {
	m.From = l.cfg.ID
	l.rd.Messages = append(l.rd.Messages, m)
}

// The applied hash is 64-bit FNV-1a over the previous hash, the slot and the
// value, so equal hashes at equal slots mean equal histories (up to 64-bit
// collisions).
const (
	hashSeed  = 14695981039346656037
	hashPrime = 1099511628211
)

func chainHash(h uint64, s paxos.Slot, v paxos.Value) uint64 {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h)
	binary.BigEndian.PutUint64(b[8:], uint64(s))
	h = hashSeed
	for _, c := range b {
		h = (h ^ uint64(c)) * hashPrime
	}
	for _, c := range v {
		h = (h ^ uint64(c)) * hashPrime
	}
	return h
}
