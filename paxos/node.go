package paxos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Core is a deterministic role core: an acceptor, proposer or learner. Its
// only inputs are Step and Tick; its only output is Ready. A core never
// starts goroutines, blocks, reads the clock or does I/O.
type Core interface {
	// Step handles one message. An error means the message was bad input
	// and was dropped; the core's state is unchanged.
	Step(m Message) error
	// Tick advances the core's notion of time by one tick.
	Tick()
	// Ready returns the work produced since the last Advance. Calling it
	// again before Advance returns the same work and more.
	Ready() Ready
	// Advance tells the core that the driver finished the work of the last
	// Ready: its Writes are durable, its Messages sent, its Decided applied.
	Advance()
}

// Storage makes records durable. Implementations: wal.Store (Pebble) and the
// simulator's in-memory store.
type Storage interface {
	// Save makes recs durable, in order, as one atomic batch: after a crash
	// either all of them are present or none. It returns only once they are
	// synced, together with every batch written before them. An error means
	// the state on disk is unknown; the node stops.
	Save(recs []Record) error
	// Write is Save without waiting for the disk: the batch is ordered
	// after every earlier one and becomes durable with the next Save. A
	// crash keeps the unsynced batches up to some point, each whole or not
	// at all, and loses the rest.
	Write(recs []Record) error
}

// Transport sends messages. Send must not block on the network and may drop
// messages; it must not modify them.
type Transport interface {
	Send(msgs []Message)
}

// NodeConfig configures a Node. Acceptor, Proposer and Learner are the cores
// of the roles this node runs; nil means the role is not run here.
type NodeConfig struct {
	ID        NodeID
	Acceptor  Core
	Proposer  Core
	Learner   Core
	Storage   Storage
	Transport Transport
	// Apply receives decisions after their writes were saved (a learner's
	// copy of a chosen value may not be synced yet: see Record.Lazy) and
	// the messages of the same flush were sent, in slot order. It routes
	// results to waiting clients. It may be nil.
	Apply func([]Decision)
	// Reads receives the proposer's answers to ReadIndex calls, after
	// Apply got the decisions of the same flush. It may be nil.
	Reads func([]ReadState)
	// Snapshots keeps the learner's snapshots and serves them to peers. It
	// is required with a learner that takes or receives snapshots (one
	// that implements SnapshotLearner); nil means snapshot work is dropped
	// with a warning.
	Snapshots SnapshotStore
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
}

// SnapshotLearner is a learner core that restores received snapshots. Node
// calls it from Flush, after the snapshot is durable.
type SnapshotLearner interface {
	Core
	// RestoreSnapshot replaces the learner's state with the snapshot r
	// holds, which meta describes.
	RestoreSnapshot(meta SnapshotMeta, r io.Reader) error
	// AbortSnapshot gives up the transfer of snapshot slot, which could not
	// be kept or installed.
	AbortSnapshot(slot Slot)
}

// ErrStopped is returned by a Node whose storage failed: after a failed sync
// the state on disk is unknown, so the node refuses all further work.
var ErrStopped = errors.New("paxos: node stopped after a storage failure")

// ErrNoRole reports a message for a role this node does not run.
var ErrNoRole = errors.New("paxos: message for a role this node does not run")

// Node drives the cores of one member. Its methods are synchronous and not
// safe for concurrent use, except Receive and Do: the daemon calls them from
// Run's goroutine, the simulator from its single loop.
type Node struct {
	cfg    NodeConfig
	cores  []Core // non-nil cores in a fixed order: acceptor, proposer, learner
	logger *slog.Logger
	failed error // sticky storage failure
	// unsynced is set while lazy writes wait for the next sync.
	unsynced bool
	// paused: the node neither ticks nor takes messages (Pause).
	paused bool

	// Run's inputs from other goroutines, and done, closed when Run
	// returns so that nobody waits on a loop that is gone.
	inbox chan Message
	calls chan func()
	done  chan struct{}
}

// NewNode returns a Node for cfg.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.ID == 0 {
		return nil, fmt.Errorf("paxos: node ID 0 is reserved")
	}
	if cfg.Storage == nil || cfg.Transport == nil {
		return nil, fmt.Errorf("paxos: node %d needs storage and a transport", cfg.ID)
	}
	n := &Node{cfg: cfg, logger: cfg.Logger,
		inbox: make(chan Message, inboxSize), calls: make(chan func(), inboxSize), done: make(chan struct{})}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	for _, c := range []Core{cfg.Acceptor, cfg.Proposer, cfg.Learner} {
		if c != nil {
			n.cores = append(n.cores, c)
		}
	}
	if len(n.cores) == 0 {
		return nil, fmt.Errorf("paxos: node %d runs no role", cfg.ID)
	}
	return n, nil
}

// inboxSize bounds the messages and calls waiting for Run.
const inboxSize = 1024

// maxBatch bounds how many inputs Run handles before it flushes. Handling
// many inputs per flush is the group commit: their writes share one synced
// batch.
const maxBatch = 512

// Run drives the node from one goroutine until ctx is done or storage fails:
// it ticks every tick, handles messages given to Receive and functions given
// to Do, and flushes after each batch of them. It returns ctx's error, or the
// storage error that stopped the node. Run must be called once.
//
// Stopping is clean at any moment: Run only checks ctx between flushes, so
// every input it took was handled and made durable before it returns.
func (n *Node) Run(ctx context.Context, tick time.Duration) error {
	defer close(n.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			n.Tick()
		case m := <-n.inbox:
			n.deliverRemote(m)
		case f := <-n.calls:
			f()
		}
	drain:
		for range maxBatch {
			select {
			case m := <-n.inbox:
				n.deliverRemote(m)
			case f := <-n.calls:
				f()
			default:
				break drain
			}
		}
		if err := n.Flush(); err != nil {
			return err
		}
	}
}

func (n *Node) deliverRemote(m Message) {
	if err := n.Deliver(m); err != nil && n.failed == nil {
		n.logger.Warn("message dropped", "node", n.cfg.ID, "peer", m.From, "type", m.Type, "err", err)
	}
}

// ErrNotRunning is returned by Receive and Do once Run has returned.
var ErrNotRunning = errors.New("paxos: node is not running")

// Receive queues an inbound message for Run. It blocks while the queue is
// full, which pushes back on the sender, until ctx is done or Run returns.
// It is safe for concurrent use.
func (n *Node) Receive(ctx context.Context, m Message) error {
	select {
	case <-n.done:
		return ErrNotRunning
	default:
	}
	select {
	case n.inbox <- m:
		return nil
	case <-n.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Do runs f on Run's goroutine, where f may call the node's methods and read
// its cores, and returns once f is queued (not once it ran). It blocks while
// the queue is full, until ctx is done or Run returns. It is safe for
// concurrent use.
func (n *Node) Do(ctx context.Context, f func()) error {
	select {
	case <-n.done:
		return ErrNotRunning
	default:
	}
	select {
	case n.calls <- f:
		return nil
	case <-n.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.cfg.ID }

// ErrPaused is returned by Propose while the node is paused.
var ErrPaused = errors.New("paxos: node paused")

// Pause stops the node from ticking and drops every message from other
// nodes, until Pause(false); Propose fails with ErrPaused. Its cores then
// produce no new work, so nothing more is written once the work they
// produced before is flushed: a member whose disk is full pauses. Its own
// cores' messages to each other are still delivered: only a crash may lose
// those (a leader's Decide to its own learner, which no one resends). To
// its peers a paused node is one that is cut off, which Paxos tolerates; it
// catches up once it resumes.
func (n *Node) Pause(paused bool) { n.paused = paused }

// Paused reports whether the node is paused.
func (n *Node) Paused() bool { return n.paused }

// Deliver hands an inbound message to the cores of the roles it is for. A
// message the node has no role for, or that a core rejects, returns an error
// and changes nothing.
func (n *Node) Deliver(m Message) error {
	if n.failed != nil {
		return n.failed
	}
	if n.paused && m.From != n.cfg.ID {
		return nil // NB: a lost message, which the cores retransmit
	}
	if m.To != n.cfg.ID {
		return fmt.Errorf("paxos: %v delivered to node %d", m, n.cfg.ID)
	}
	var targets [3]Core
	switch m.Type {
	case MsgPrepare, MsgAccept, MsgPreVote, MsgConfirm:
		targets[0] = n.cfg.Acceptor
	case MsgPromise, MsgAccepted, MsgNack, MsgPropose, MsgLearned, MsgPreVoteReply, MsgHeartbeatAck, MsgProgress, MsgTimeoutNow:
		targets[0] = n.cfg.Proposer
	case MsgCatchUp, MsgCatchUpReply, MsgSnapshotOffer, MsgSnapshotChunk, MsgSnapshotSaved:
		targets[0] = n.cfg.Learner
	case MsgSnapshotted:
		targets[0] = n.cfg.Acceptor
	case MsgSnapshotPull:
		// Serving snapshot bytes is I/O, not protocol: the store does it.
		if n.cfg.Learner == nil || n.cfg.Snapshots == nil {
			return fmt.Errorf("%w: %s from %d to %d", ErrNoRole, m.Type, m.From, n.cfg.ID)
		}
		n.cfg.Snapshots.Serve(m)
		return nil
	case MsgDecide:
		targets = [3]Core{n.cfg.Proposer, n.cfg.Learner}
	case MsgHeartbeat:
		targets = [3]Core{n.cfg.Proposer, n.cfg.Learner, n.cfg.Acceptor}
	default:
		return fmt.Errorf("paxos: unknown message type %d from %d", m.Type, m.From)
	}
	delivered := false
	for _, c := range targets {
		if c == nil {
			continue
		}
		delivered = true
		if err := c.Step(m); err != nil {
			return err
		}
	}
	if !delivered {
		return fmt.Errorf("%w: %s from %d to %d", ErrNoRole, m.Type, m.From, n.cfg.ID)
	}
	return nil
}

// Propose hands client commands to the local proposer, with now, the
// member's clock, which the batches they go into are stamped with. It
// returns a *NotLeaderError when this node does not lead (the commands were
// not proposed) and ErrOverloaded when the proposer's queue is full.
func (n *Node) Propose(now time.Time, cmds []Command) error {
	if n.failed != nil {
		return n.failed
	}
	if n.cfg.Proposer == nil {
		return &NotLeaderError{}
	}
	if n.paused {
		return ErrPaused
	}
	return n.cfg.Proposer.Step(Message{Type: MsgPropose, From: n.cfg.ID, To: n.cfg.ID, Cmds: cmds, Time: uint64(max(now.UnixMilli(), 0))})
}

// Tick tells the learner about snapshots the store made durable, then
// advances every core by one tick.
func (n *Node) Tick() {
	if n.failed != nil || n.paused {
		return
	}
	if n.cfg.Snapshots != nil && n.cfg.Learner != nil {
		for _, slot := range n.cfg.Snapshots.Saved() {
			n.snapshotSaved(slot)
		}
	}
	for _, c := range n.cores {
		c.Tick()
	}
}

// Flush does the cores' pending work in the order safety needs: make every
// write durable with one synced batch, then send the messages, then hand the
// decisions to Apply, then advance the cores. Messages a node sends to itself
// (a leader's Accept to its own acceptor, a Decide to its own learner) skip
// the network: Flush delivers them directly and repeats until no such work
// is left, so only a crash can lose them. A storage error is returned, and
// the node is stopped for good.
func (n *Node) Flush() error {
	for range maxLocalRounds {
		if n.failed != nil {
			return n.failed
		}
		var writes []Record
		var remote, local []Message
		var decided []Decision
		var reads []ReadState
		var snap snapWork
		var configs History
		for _, c := range n.cores {
			rd := c.Ready()
			snap.add(rd)
			if rd.Configs != nil {
				configs = rd.Configs
			}
			writes = append(writes, rd.Writes...)
			for _, m := range rd.Messages {
				if m.To == n.cfg.ID {
					local = append(local, m)
				} else {
					remote = append(remote, m)
				}
			}
			decided = append(decided, rd.Decided...)
			reads = append(reads, rd.Reads...)
		}
		if err := n.save(writes, remote, configs != nil); err != nil {
			n.failed = fmt.Errorf("%w: save %d records: %w", ErrStopped, len(writes), err)
			n.logger.Error("storage failed, node stopped", "node", n.cfg.ID, "err", err)
			return n.failed
		}
		if len(remote) > 0 {
			n.cfg.Transport.Send(remote)
		}
		if len(decided) > 0 && n.cfg.Apply != nil {
			n.cfg.Apply(decided)
		}
		if len(reads) > 0 && n.cfg.Reads != nil {
			n.cfg.Reads(reads)
		}
		for _, c := range n.cores {
			c.Advance()
		}
		if configs != nil {
			// Before the local messages: the proposer must know the
			// configurations up to the applied slot a MsgLearned reports.
			n.reconfigure(configs)
		}
		installed := n.doSnapshotWork(snap)
		if len(local) == 0 && !installed && configs == nil {
			return nil
		}
		for _, m := range local {
			if err := n.Deliver(m); err != nil {
				// The node's own cores produced it, so this is a bug.
				panic(fmt.Sprintf("paxos: node %d refused its own %v: %v", n.cfg.ID, m, err))
			}
		}
	}
	panic(fmt.Sprintf("paxos: node %d still has local work after %d rounds", n.cfg.ID, maxLocalRounds))
}

// save stores a flush's writes before its messages go out: synced, or
// only written when every write is Lazy, no message needs them synced, and
// the learner's configurations did not change (the other cores act on those
// at once, so they never go back across a crash). What needs a sync also
// syncs the lazy writes of earlier flushes, with an empty Save if this flush
// has none.
func (n *Node) save(writes []Record, remote []Message, reconfigured bool) error {
	if !reconfigured && !needsSync(writes, remote) {
		if len(writes) == 0 {
			return nil
		}
		n.unsynced = true
		return n.cfg.Storage.Write(writes)
	}
	if len(writes) == 0 && !n.unsynced {
		return nil
	}
	n.unsynced = false
	return n.cfg.Storage.Save(writes)
}

// needsSync reports whether a flush's writes must be synced before its
// messages go out: when one of them is not Lazy, or when a message reports
// the learner's applied slot to a peer, which may act on it (promote the
// member, or let another be removed) as on durable progress. A leader's
// answers to its clients need no sync of their own: the values they report
// are chosen, so a quorum of acceptors already synced them.
func needsSync(writes []Record, remote []Message) bool {
	for _, r := range writes {
		if !r.Lazy() {
			return true
		}
	}
	for _, m := range remote {
		if m.Type == MsgProgress {
			return true
		}
	}
	return false
}

// Reconfigurable is a core that follows the configurations the node's
// learner knows.
type Reconfigurable interface {
	Reconfigure(History)
}

// reconfigure hands the learner's configurations to the other cores and
// to the transport, if it follows them too (who may connect, where peers
// are).
func (n *Node) reconfigure(h History) {
	for _, c := range []Core{n.cfg.Acceptor, n.cfg.Proposer} {
		if r, ok := c.(Reconfigurable); ok && c != nil {
			r.Reconfigure(h)
		}
	}
	if r, ok := n.cfg.Transport.(Reconfigurable); ok {
		r.Reconfigure(h)
	}
}

// snapWork is the snapshot work of one Ready.
type snapWork struct {
	job     *SnapshotJob
	chunks  []SnapshotChunk
	install Slot
}

func (w *snapWork) add(rd Ready) {
	if rd.Snapshot != nil {
		w.job = rd.Snapshot
	}
	w.chunks = append(w.chunks, rd.Chunks...)
	if rd.Install != 0 {
		w.install = rd.Install
	}
}

// doSnapshotWork hands the learner's snapshot work to the store, after the
// Ready that produced it was advanced: a snapshot is captured after the
// writes it covers are durable, and restoring one makes new work for the
// next round. It reports whether it restored a snapshot.
func (n *Node) doSnapshotWork(w snapWork) bool {
	if w.job == nil && len(w.chunks) == 0 && w.install == 0 {
		return false
	}
	lrn, _ := n.cfg.Learner.(SnapshotLearner)
	if n.cfg.Snapshots == nil || lrn == nil {
		n.logger.Warn("snapshot work dropped: the node has no snapshot store", "node", n.cfg.ID)
		return false
	}
	if w.job != nil {
		n.cfg.Snapshots.Save(*w.job)
	}
	for _, c := range w.chunks {
		if err := n.cfg.Snapshots.Receive(c); err != nil {
			n.logger.Warn("snapshot transfer abandoned", "node", n.cfg.ID, "slot", c.Slot, "err", err)
			lrn.AbortSnapshot(c.Slot)
			return false
		}
	}
	if w.install == 0 {
		return false
	}
	meta, rc, err := n.cfg.Snapshots.Install(w.install)
	if err == nil {
		err = lrn.RestoreSnapshot(meta, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		n.logger.Warn("received snapshot not installed", "node", n.cfg.ID, "slot", w.install, "err", err)
		lrn.AbortSnapshot(w.install)
		return false
	}
	n.logger.Info("installed snapshot", "node", n.cfg.ID, "slot", meta.Slot)
	return true
}

// snapshotSaved tells the learner that its snapshot of slot is durable, or
// with slot 0 that writing it failed.
func (n *Node) snapshotSaved(slot Slot) {
	if err := n.cfg.Learner.Step(Message{Type: MsgSnapshotSaved, From: n.cfg.ID, To: n.cfg.ID, Slot: slot}); err != nil {
		n.logger.Warn("snapshot saved report refused", "node", n.cfg.ID, "slot", slot, "err", err)
	}
}

// maxLocalRounds bounds Flush's loop. A chain of local messages is short
// (Accept, Accepted, Decide, Learned), but a leader whose own acceptor is a
// quorum alone goes round it once per window of slots, and after a
// configuration change it fills up to ConfigDelay slots with no-ops.
const maxLocalRounds = 16 + 2*int(ConfigDelay)

// NotLeaderError is returned for commands given to a proposer that does not
// lead. Leader is the leader it knows of, or 0 when it knows none.
type NotLeaderError struct {
	Leader NodeID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "paxos: not the leader, and no leader is known; retry shortly"
	}
	return fmt.Sprintf("paxos: not the leader; node %d leads", e.Leader)
}

// ErrOverloaded is returned for commands a leader cannot queue: its queue is
// full. The commands were not proposed; retry later.
var ErrOverloaded = errors.New("paxos: proposer queue full; retry later")
