package learner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
)

// Config configures a Learner. Zero values take the defaults named.
type Config struct {
	ID paxos.NodeID
	// Proposer says a proposer runs on this node: the learner tells it
	// how far the log is applied (MsgLearned).
	Proposer bool
	// Machine is the state machine to apply chosen commands to. Required.
	Machine statemachine.Machine
	// CatchUpTicks is how long a gap may stand before the learner asks a
	// peer to fill it, and how long it waits before asking again. Default 3.
	CatchUpTicks int
	// MaxCatchUpEntries and MaxCatchUpBytes bound one catch-up reply.
	// Defaults 256 and 1 MiB.
	MaxCatchUpEntries int
	MaxCatchUpBytes   int
	// SnapshotEvery is how many applied slots, and SnapshotBytes how many
	// bytes of applied values, lead to a snapshot, whichever comes first.
	// Zero turns that trigger off; with both zero the learner never
	// snapshots on its own (it still installs snapshots peers send).
	SnapshotEvery int
	SnapshotBytes int
	// LogRetain is how many slots below its snapshot the learner keeps in
	// memory to serve peers that lag a little. Default 0.
	LogRetain int
	// SnapshotTimeoutTicks is how long a snapshot transfer may wait for the
	// next chunk before it asks again. Each further wait doubles, up to four
	// times this, and after five the transfer is given up and the learner
	// backs off. Default 10.
	SnapshotTimeoutTicks int
	// SnapshotReportTicks is how often the learner repeats MsgSnapshotted
	// to the acceptors. Default 20.
	SnapshotReportTicks int
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
	if c.SnapshotTimeoutTicks == 0 {
		c.SnapshotTimeoutTicks = 10
	}
	if c.SnapshotReportTicks == 0 {
		c.SnapshotReportTicks = 20
	}
}

// Validate reports what is wrong with c after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.ID == 0:
		return fmt.Errorf("learner: node ID 0 is reserved")
	case c.Machine == nil:
		return fmt.Errorf("learner: Config.Machine is required")
	case c.Rand == nil:
		return fmt.Errorf("learner: Config.Rand is required")
	case c.CatchUpTicks < 1 || c.MaxCatchUpEntries < 1 || c.MaxCatchUpBytes < 1:
		return fmt.Errorf("learner: CatchUpTicks, MaxCatchUpEntries and MaxCatchUpBytes must be positive")
	case c.SnapshotEvery < 0 || c.SnapshotBytes < 0 || c.LogRetain < 0:
		return fmt.Errorf("learner: SnapshotEvery, SnapshotBytes and LogRetain must not be negative")
	case c.SnapshotTimeoutTicks < 1 || c.SnapshotReportTicks < 1:
		return fmt.Errorf("learner: SnapshotTimeoutTicks and SnapshotReportTicks must be positive")
	}
	return nil
}

// ErrConflict reports a value for a slot that differs from the value already
// learned for it. It means agreement was broken somewhere; the value is
// refused.
var ErrConflict = errors.New("learner: conflicting value for a chosen slot")

// Learner is the learner core. It is not safe for concurrent use.
type Learner struct {
	cfg    Config
	logger *slog.Logger
	peers  []paxos.NodeID // other learners, asked to fill gaps
	leader paxos.NodeID   // the last leader heard from, asked too
	// configs are the configurations that govern the slots after applied:
	// the first governs applied+1. Applying a change appends one; applying
	// past a Start drops the one before.
	configs paxos.History

	sessions *statemachine.Sessions
	applied  paxos.Slot // Invariant: every slot <= applied was applied once, in order.
	hash     uint64     // chained over every applied value
	// log[i] is the value of slot logStart+i, for every slot from logStart
	// to applied; it answers peers' catch-up requests. Slots below
	// logStart are covered by snap. Invariant: logStart <= applied+1.
	log      []paxos.Value
	logStart paxos.Slot
	pending  map[paxos.Slot]paxos.Value // chosen slots above applied
	known    paxos.Slot                 // highest slot known to be chosen
	gap      int                        // ticks the current gap has stood

	// Snapshots taken here. snap is the newest durable snapshot (slot 0:
	// none); saving is the slot of the one being written, 0 if none.
	snap       paxos.SnapshotMeta
	saving     paxos.SnapshotMeta
	sinceSlots int // applied since the last snapshot was taken
	sinceBytes int
	reportAge  int  // ticks since MsgSnapshotted was last sent
	forceNext  bool // take a snapshot as soon as the one being written is done

	// Snapshot received from a peer: at most one at a time.
	xfer      *transfer
	backoff   int // ticks before another transfer may start
	xferFails int // transfers given up in a row

	rd paxos.Ready
}

// transfer is a snapshot being received.
type transfer struct {
	peer       paxos.NodeID
	slot       paxos.Slot
	size       uint64 // 0 until the first chunk
	offset     uint64 // bytes received and handed to the driver
	idle       int    // ticks since the last chunk
	timeout    int    // ticks to wait for the next chunk
	retries    int    // pulls repeated since the last chunk
	installing bool   // received whole; the driver is installing it
}

// maxPullRetries is how many times a transfer asks again for a chunk before
// it is given up.
const maxPullRetries = 5

// maxPullWait bounds the wait for a snapshot chunk, in SnapshotTimeoutTicks.
const maxPullWait = 4

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
		sessions: statemachine.NewSessions(cfg.Machine),
		hash:     hashSeed,
		logStart: 1,
		pending:  map[paxos.Slot]paxos.Value{},
		// the first tick reports a snapshot recovered at start
		reportAge: cfg.SnapshotReportTicks,
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	l.logger = l.logger.With("node", cfg.ID, "role", "learner")
	l.configs = st.Configs
	if len(st.Snapshot.Configs) > 0 {
		l.configs = st.Snapshot.Configs
	}
	if len(l.configs) == 0 {
		return nil, fmt.Errorf("learner: no configuration to start from")
	}
	l.configsChanged()
	if st.Base > st.Snapshot.Slot {
		return nil, fmt.Errorf("learner: the log was truncated up to slot %d, but the newest snapshot covers only slot %d", st.Base, st.Snapshot.Slot)
	}
	if st.Snapshot.Slot > 0 {
		if st.SnapshotData == nil {
			return nil, fmt.Errorf("learner: snapshot of slot %d has no data", st.Snapshot.Slot)
		}
		if err := l.sessions.Restore(st.SnapshotData); err != nil {
			return nil, fmt.Errorf("learner: restore snapshot of slot %d: %w", st.Snapshot.Slot, err)
		}
		l.applied, l.hash, l.known = st.Snapshot.Slot, st.Snapshot.Hash, st.Snapshot.Slot
		l.logStart = l.applied + 1
		l.snap = st.Snapshot
	}
	for _, e := range st.Chosen {
		if e.Slot == 0 {
			return nil, fmt.Errorf("learner: recovered a value for slot 0")
		}
		if e.Slot <= st.Snapshot.Slot {
			continue // covered by the snapshot; RecSnapshot drops it later
		}
		if _, dup := l.pending[e.Slot]; dup || e.Slot <= l.applied {
			return nil, fmt.Errorf("learner: recovered slot %d twice", e.Slot)
		}
		l.pending[e.Slot] = e.Value
		l.known = max(l.known, e.Slot)
		l.applyReady(false)
	}
	l.pruneConfigs()
	l.rd.Configs = nil // the node starts its cores with Configs()
	if l.applied < st.Applied {
		return nil, fmt.Errorf("learner: recovered applied slot %d, but the chosen log stops at %d", st.Applied, l.applied)
	}
	if st.Snapshot.Slot > st.Base {
		// NB: a crash came after the snapshot was durable and before its
		// slot was recorded (a background write, or an install). Record
		// it now, with the applied slot, before anything is applied
		// beyond it: the chosen log between the old base and the snapshot
		// may have gaps that only the snapshot covers, and storage refuses
		// an applied slot with gaps below it.
		l.rd.Writes = append(l.rd.Writes,
			paxos.Record{Type: paxos.RecSnapshot, Slot: st.Snapshot.Slot},
			paxos.Record{Type: paxos.RecApplied, Slot: l.applied})
	}
	l.reportLearned()
	return l, nil
}

// Configs returns the configurations that govern the slots after the
// applied one.
func (l *Learner) Configs() paxos.History { return l.configs }

// Applied returns the highest slot applied.
func (l *Learner) Applied() paxos.Slot { return l.applied }

// Known returns the highest slot known to be chosen.
func (l *Learner) Known() paxos.Slot { return l.known }

// Hash returns the running hash over every applied value.
func (l *Learner) Hash() uint64 { return l.hash }

// SnapshotSlot returns the slot of the newest durable snapshot here, 0 if
// none.
func (l *Learner) SnapshotSlot() paxos.Slot { return l.snap.Slot }

// LogLen returns how many applied slots the learner keeps in its log.
func (l *Learner) LogLen() int { return len(l.log) }

// Snapshot writes the replicated state (session table and machine) as of
// the applied slot.
func (l *Learner) Snapshot(w io.Writer) error { return l.sessions.Snapshot(w) }

// ErrNoQuery is returned by Query when the state machine answers no queries
// (it does not implement statemachine.Querier).
var ErrNoQuery = errors.New("learner: state machine does not answer queries")

// Sessions returns how many client sessions are open.
func (l *Learner) Sessions() int { return l.sessions.Len() }

// Machine returns the state machine behind the session table. Callers run
// on the node's goroutine and only read it.
func (l *Learner) Machine() statemachine.Machine { return l.sessions.Machine() }

// CanQuery reports whether the machine answers queries (Query).
func (l *Learner) CanQuery() bool {
	_, ok := l.sessions.Machine().(statemachine.Querier)
	return ok
}

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
	// Any member may send these (the transport admits only members): a
	// joining learner is a peer before every member knows it is.
	switch m.Type {
	case paxos.MsgDecide, paxos.MsgHeartbeat:
	case paxos.MsgCatchUp, paxos.MsgCatchUpReply, paxos.MsgSnapshotOffer, paxos.MsgSnapshotChunk:
		if m.From == l.cfg.ID {
			return fmt.Errorf("learner: %s from itself", m.Type)
		}
	case paxos.MsgSnapshotSaved:
		if m.From != l.cfg.ID {
			return fmt.Errorf("learner: %s from %d, which is not this node", m.Type, m.From)
		}
	default:
		return fmt.Errorf("learner: unexpected %s from %d", m.Type, m.From)
	}
	switch m.Type {
	case paxos.MsgDecide:
		return l.learn(m.From, m.Entries)
	case paxos.MsgHeartbeat:
		l.known = max(l.known, m.Commit)
		l.leader = m.From
		l.send(paxos.Message{Type: paxos.MsgProgress, To: m.From, Commit: l.applied})
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
		if l.applied > before && l.known > l.applied && l.xfer == nil {
			l.askCatchUp(m.From)
		}
	case paxos.MsgSnapshotOffer:
		l.known = max(l.known, m.Commit)
		l.handleOffer(m)
	case paxos.MsgSnapshotChunk:
		return l.handleChunk(m)
	case paxos.MsgSnapshotSaved:
		l.handleSaved(m.Slot)
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
		if e.Slot < l.logStart {
			continue // covered by a snapshot; nothing left to compare with
		}
		if old, ok := l.value(e.Slot); ok && !bytes.Equal(old, e.Value) {
			l.logger.Error("conflicting value for a chosen slot", "slot", e.Slot, "peer", from)
			return fmt.Errorf("%w: slot %d from %d", ErrConflict, e.Slot, from)
		}
	}
	for _, e := range entries {
		if e.Slot <= l.applied {
			continue
		}
		if _, ok := l.pending[e.Slot]; ok {
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

// value returns the value learned for slot s, if any. Slots below logStart
// are applied but no longer kept.
func (l *Learner) value(s paxos.Slot) (paxos.Value, bool) {
	if s <= l.applied {
		if s < l.logStart {
			return nil, false
		}
		return l.log[s-l.logStart], true
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
		l.sinceSlots++
		l.sinceBytes += len(v)
		if report {
			l.rd.Decided = append(l.rd.Decided, d)
			l.maybeSnapshot()
		}
	}
	if l.applied > start {
		l.gap = 0
		l.pruneConfigs()
		return true
	}
	return false
}

// pruneConfigs drops configurations that govern no slot after the applied
// one, and reports the configurations to the node when they changed.
func (l *Learner) pruneConfigs() {
	if from := l.configs.From(l.applied + 1); len(from) < len(l.configs) {
		l.configs = slices.Clone(from)
		l.configsChanged()
	}
}

func (l *Learner) configsChanged() {
	l.rd.Configs = l.configs
	l.peers = slices.DeleteFunc(l.configs.Members(paxos.RoleLearner), func(id paxos.NodeID) bool { return id == l.cfg.ID })
	if t := l.xfer; t != nil && !t.installing && l.configs.Latest().IsRemoved(t.peer) {
		// The source was removed and stops; another learner has a
		// snapshot too. No back-off: nothing failed here.
		l.logger.Info("snapshot transfer dropped: its source was removed", "peer", t.peer, "slot", t.slot)
		l.xfer = nil
	}
}

// applyConfig takes in the configuration change chosen in slot s. A change
// computed from a configuration other than the newest is applied as a
// no-op, the same way by every learner.
func (l *Learner) applyConfig(s paxos.Slot, v paxos.Value) {
	c, err := paxos.DecodeConfig(v, s)
	if err != nil {
		l.logger.Error("chosen configuration does not decode; applied as a no-op", "slot", s, "err", err)
		return
	}
	if latest := l.configs.Latest(); c.Base != latest.Made {
		l.logger.Warn("configuration change made from an older configuration; applied as a no-op", "slot", s, "base", c.Base, "newest", latest.Made)
		return
	}
	l.configs = append(slices.Clip(l.configs), c)
	l.logger.Info("configuration chosen", "slot", s, "from", c.Start, "members", c.Membership().Members())
	l.configsChanged()
}

// apply runs the commands of slot s through the session table.
func (l *Learner) apply(s paxos.Slot, v paxos.Value) paxos.Decision {
	l.hash = chainHash(l.hash, s, v)
	d := paxos.Decision{Slot: s, Value: v}
	if v.IsConfig() {
		l.applyConfig(s, v)
		return d
	}
	cmds, ms, err := paxos.DecodeBatchAt(v)
	if err != nil {
		// Every learner decodes the same bytes the same way, so skipping
		// the slot keeps them identical; but a proposer wrote these bytes,
		// so this is a bug worth shouting about.
		l.logger.Error("chosen value does not decode; applied as a no-op", "slot", s, "err", err)
		return d
	}
	// The batch's time first: sessions idle for too long expire before
	// its commands apply.
	l.sessions.Advance(ms)
	if c, ok := l.sessions.Machine().(statemachine.Clocked); ok {
		c.Advance(ms)
	}
	if n, ok := l.sessions.Machine().(statemachine.Normalizer); ok {
		if v.IsLegacyBatch() {
			n.MarkLegacy()
		} else {
			n.Normalize()
		}
	}
	d.Results = make([]paxos.Result, len(cmds))
	for i, c := range cmds {
		r := paxos.Result{Session: c.Session, Seq: c.Seq}
		switch c.Kind {
		case paxos.CmdOpenSession:
			ttl, _ := statemachine.DecodeSessionTTL(c.Data) // NB: bad bytes mean the default, alike everywhere
			r.Data = binary.AppendUvarint(nil, l.sessions.Open(ttl))
		default:
			apply := l.sessions.Apply
			if v.IsLegacyBatch() {
				apply = l.sessions.ApplyLegacy
			}
			var err error
			r.Data, r.Duplicate, err = apply(uint64(s), c.Session, c.Seq, c.Data)
			r.Expired = err != nil
		}
		d.Results[i] = r
	}
	return d
}

// reportLearned tells the proposer on this node how far the chosen log is
// known and, once this Ready is flushed, durable here.
func (l *Learner) reportLearned() {
	if l.cfg.Proposer && l.applied > 0 {
		l.send(paxos.Message{Type: paxos.MsgLearned, To: l.cfg.ID, Commit: l.applied})
	}
}

// handleCatchUp sends a peer the chosen values it asked for, as many as the
// limits allow, and the highest slot known to be chosen here.
func (l *Learner) handleCatchUp(m paxos.Message) {
	if m.Slot == 0 {
		return
	}
	if m.Slot < l.logStart {
		// NB: logStart > 1 only once a snapshot covers the slots below it.
		l.send(paxos.Message{Type: paxos.MsgSnapshotOffer, To: m.From, Slot: l.snap.Slot, Commit: l.known})
		return
	}
	var entries []paxos.Entry
	size := 0
	for s := m.Slot; s <= l.applied && len(entries) < l.cfg.MaxCatchUpEntries; s++ {
		v := l.log[s-l.logStart]
		if size += len(v); len(entries) > 0 && size > l.cfg.MaxCatchUpBytes {
			break
		}
		entries = append(entries, paxos.Entry{Slot: s, Value: v})
	}
	l.send(paxos.Message{Type: paxos.MsgCatchUpReply, To: m.From, Slot: m.Slot, Commit: l.known, Entries: entries})
}

// Tick asks a random peer to fill a gap that has stood CatchUpTicks, keeps a
// snapshot transfer going, and repeats the snapshot report to the
// acceptors.
func (l *Learner) Tick() {
	if l.snap.Slot > 0 {
		if l.reportAge++; l.reportAge >= l.cfg.SnapshotReportTicks {
			l.reportSnapshot()
		}
	}
	if l.backoff > 0 {
		l.backoff--
	}
	if l.xfer != nil {
		l.tickTransfer()
		return
	}
	if l.known <= l.applied || (len(l.peers) == 0 && l.leader == 0) {
		l.gap = 0
		return
	}
	l.gap++
	if l.gap < l.cfg.CatchUpTicks {
		return
	}
	// NB: a learner far behind knows only the configurations of the slots
	// it has; the learners added since are not among its peers. The leader
	// it hears from is a learner that has what it misses, so it is asked
	// too, every other time.
	outside := l.leader != 0 && l.leader != l.cfg.ID && !slices.Contains(l.peers, l.leader)
	if outside && (len(l.peers) == 0 || l.cfg.Rand.IntN(2) == 0) {
		l.askCatchUp(l.leader)
		return
	}
	if len(l.peers) > 0 {
		l.askCatchUp(l.peers[l.cfg.Rand.IntN(len(l.peers))])
	}
}

// askCatchUp asks peer for the chosen values after the applied prefix.
func (l *Learner) askCatchUp(peer paxos.NodeID) {
	l.gap = 0
	l.send(paxos.Message{Type: paxos.MsgCatchUp, To: peer, Slot: l.applied + 1})
}

// maybeSnapshot captures a snapshot at the applied slot when enough was
// applied since the last one and none is being written.
func (l *Learner) maybeSnapshot() {
	if l.saving.Slot != 0 {
		return
	}
	due := (l.cfg.SnapshotEvery > 0 && l.sinceSlots >= l.cfg.SnapshotEvery) ||
		(l.cfg.SnapshotBytes > 0 && l.sinceBytes >= l.cfg.SnapshotBytes)
	if due {
		l.capture()
	}
}

func (l *Learner) capture() {
	// NB: only the configurations after the snapshot's slot, pruned here
	// though the apply loop prunes at its end: two learners' snapshots of
	// one slot must be the same bytes, since a transfer may switch between
	// them.
	l.saving = paxos.SnapshotMeta{Slot: l.applied, Hash: l.hash, Configs: l.configs.From(l.applied + 1)}
	l.sinceSlots, l.sinceBytes = 0, 0
	l.rd.Snapshot = &paxos.SnapshotJob{Meta: l.saving, Write: l.sessions.Freeze()}
}

// TakeSnapshot has a snapshot covering the applied slot taken, for an
// operator, and returns that slot (0 when nothing was applied). The caller
// waits for a durable snapshot at that slot or later. If one is being
// written already, and covers less, another is taken as soon as it is done.
func (l *Learner) TakeSnapshot() paxos.Slot {
	switch {
	case l.applied == 0 || l.applied == l.snap.Slot || l.applied == l.saving.Slot:
	case l.saving.Slot != 0:
		l.forceNext = true
	default:
		l.capture()
	}
	return l.applied
}

// handleSaved learns that the snapshot being written is durable (slot 0:
// that it failed). The log up to it is then dropped, in memory down to
// LogRetain slots below it and in storage entirely.
func (l *Learner) handleSaved(s paxos.Slot) {
	meta := l.saving
	if s != 0 && s != meta.Slot {
		return // not the one being written: stale
	}
	l.saving = paxos.SnapshotMeta{}
	if l.forceNext {
		// An operator asked for a snapshot while this one was written.
		l.forceNext = false
		if l.applied > max(s, l.snap.Slot) {
			defer l.capture() // after this snapshot is recorded
		}
	}
	if s == 0 || s <= l.snap.Slot {
		return // failed, or a newer snapshot was installed meanwhile
	}
	l.snap = meta
	l.truncateLog()
	l.rd.Writes = append(l.rd.Writes, paxos.Record{Type: paxos.RecSnapshot, Slot: s})
	l.reportSnapshot()
}

// truncateLog drops log entries more than LogRetain slots below the
// snapshot.
func (l *Learner) truncateLog() {
	keepFrom := l.snap.Slot + 1
	if paxos.Slot(l.cfg.LogRetain) < keepFrom {
		keepFrom -= paxos.Slot(l.cfg.LogRetain)
	} else {
		keepFrom = 1
	}
	if keepFrom <= l.logStart {
		return
	}
	// NB: copy, so that the dropped values can be collected.
	l.log = slices.Clone(l.log[keepFrom-l.logStart:])
	l.logStart = keepFrom
}

// reportSnapshot tells the acceptors which slots this learner's snapshot
// covers, so that they may forget them (docs/design.md, "Truncation").
func (l *Learner) reportSnapshot() {
	l.reportAge = 0
	for _, to := range l.configs.Members(paxos.RoleAcceptor) {
		l.send(paxos.Message{Type: paxos.MsgSnapshotted, To: to, Slot: l.snap.Slot})
	}
}

// handleOffer starts receiving a peer's snapshot, if it would move this
// learner forward and no other transfer runs.
func (l *Learner) handleOffer(m paxos.Message) {
	if m.Slot <= l.applied || l.xfer != nil || l.backoff > 0 {
		return
	}
	l.xfer = &transfer{peer: m.From, slot: m.Slot, timeout: l.cfg.SnapshotTimeoutTicks}
	l.logger.Info("receiving snapshot", "peer", m.From, "slot", m.Slot, "applied", l.applied)
	l.pull()
}

func (l *Learner) pull() {
	l.send(paxos.Message{Type: paxos.MsgSnapshotPull, To: l.xfer.peer, Slot: l.xfer.slot, Offset: l.xfer.offset})
}

// handleChunk takes the next chunk of the snapshot being received. A chunk
// that is not the next one is ignored: the transfer asks again on its
// timeout, from where it stands, so a broken connection costs one chunk.
func (l *Learner) handleChunk(m paxos.Message) error {
	t := l.xfer
	if t == nil || t.installing || m.From != t.peer || m.Slot != t.slot {
		return nil
	}
	if m.Size == 0 {
		// The peer no longer has that snapshot; ask anew.
		l.logger.Info("snapshot gone from peer", "peer", m.From, "slot", m.Slot)
		l.xfer = nil
		return nil
	}
	if m.Offset != t.offset {
		return nil
	}
	end := m.Offset + uint64(len(m.Value))
	switch {
	case len(m.Value) == 0 || end > m.Size || (t.size != 0 && m.Size != t.size):
		return fmt.Errorf("learner: chunk of snapshot %d from %d at %d+%d does not fit size %d", m.Slot, m.From, m.Offset, len(m.Value), m.Size)
	case paxos.ChunkSum(m.Value) != m.Sum:
		return fmt.Errorf("learner: chunk of snapshot %d from %d at %d fails its checksum", m.Slot, m.From, m.Offset)
	}
	t.size, t.offset = m.Size, end
	t.idle, t.retries, t.timeout = 0, 0, l.cfg.SnapshotTimeoutTicks
	l.rd.Chunks = append(l.rd.Chunks, paxos.SnapshotChunk{Slot: t.slot, Offset: m.Offset, Size: m.Size, Data: m.Value})
	if end < t.size {
		l.pull()
		return nil
	}
	t.installing = true
	l.rd.Install = t.slot
	l.logger.Info("snapshot received", "peer", t.peer, "slot", t.slot, "bytes", t.size)
	return nil
}

// tickTransfer asks again for a chunk that is late, waiting twice as long
// each time, and gives the transfer up after maxPullRetries.
func (l *Learner) tickTransfer() {
	t := l.xfer
	if t.installing {
		return
	}
	if t.idle++; t.idle < t.timeout {
		return
	}
	if t.retries++; t.retries > maxPullRetries {
		l.logger.Warn("snapshot transfer given up", "peer", t.peer, "slot", t.slot, "received", t.offset)
		l.AbortSnapshot(t.slot)
		return
	}
	t.idle = 0
	// NB: at most four times the first wait: a source that died (or was
	// removed) holds the learner up for 19 waits in all, not 63.
	t.timeout = min(2*t.timeout, maxPullWait*l.cfg.SnapshotTimeoutTicks)
	l.logger.Info("snapshot chunk late, asking again", "peer", t.peer, "slot", t.slot, "offset", t.offset, "try", t.retries)
	l.pull()
}

// AbortSnapshot gives up the transfer of snapshot slot and backs off before
// the next one: 2, 4, 8… times CatchUpTicks, at most 64 times.
func (l *Learner) AbortSnapshot(slot paxos.Slot) {
	if l.xfer == nil || l.xfer.slot != slot {
		return
	}
	l.xfer = nil
	l.xferFails = min(l.xferFails+1, 6)
	l.backoff = l.cfg.CatchUpTicks << l.xferFails
}

// RestoreSnapshot replaces the state with the received snapshot r holds, now
// durable in the snapshot store, and goes on from its slot.
func (l *Learner) RestoreSnapshot(meta paxos.SnapshotMeta, r io.Reader) error {
	t := l.xfer
	if t == nil || !t.installing || meta.Slot != t.slot {
		return fmt.Errorf("learner: snapshot of slot %d was not being received", meta.Slot)
	}
	l.xfer = nil
	if meta.Slot <= l.applied {
		return nil // the log got here first
	}
	if err := l.sessions.Restore(r); err != nil {
		l.AbortSnapshot(meta.Slot)
		return fmt.Errorf("learner: restore snapshot of slot %d: %w", meta.Slot, err)
	}
	l.xferFails = 0
	l.applied, l.hash = meta.Slot, meta.Hash
	l.known = max(l.known, meta.Slot)
	l.log, l.logStart = nil, meta.Slot+1
	for s := range l.pending {
		if s <= meta.Slot {
			delete(l.pending, s)
		}
	}
	l.snap = meta
	if len(meta.Configs) > 0 {
		l.configs = slices.Clone(meta.Configs)
		l.configsChanged()
	}
	l.sinceSlots, l.sinceBytes = 0, 0
	l.rd.Writes = append(l.rd.Writes,
		paxos.Record{Type: paxos.RecSnapshot, Slot: meta.Slot},
		paxos.Record{Type: paxos.RecApplied, Slot: meta.Slot})
	l.logger.Info("restored snapshot", "slot", meta.Slot)
	if l.applyReady(true) {
		l.rd.Writes = append(l.rd.Writes, paxos.Record{Type: paxos.RecApplied, Slot: l.applied})
	}
	l.reportLearned()
	l.reportSnapshot()
	return nil
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
