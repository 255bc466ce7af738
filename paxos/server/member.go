package server

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/acceptor"
	"github.com/paxosd/paxosd/learner"
	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/proposer"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// MemberConfig says what a member is: its identity in the cluster, its
// state machine and the settings of its cores.
type MemberConfig struct {
	ID paxos.NodeID
	// Bootstrap is the configuration the member starts from when neither
	// a snapshot nor its log says otherwise: the one the cluster was
	// bootstrapped with, or the one a joining member was given. Its Start
	// is 1.
	Bootstrap paxos.Config
	// Cluster is the cluster ID. Snapshots record it, and a snapshot of
	// another cluster is refused.
	Cluster uint64
	// Machine is the state machine; it must be fresh (nothing applied).
	// MachineName is recorded in snapshots, for people reading them.
	Machine     statemachine.Machine
	MachineName string
	// Proposer and Learner tune the cores. NewMember fills in their ID,
	// Configs, Machine, Rand and Logger.
	Proposer proposer.Config
	Learner  learner.Config
	// RequestTimeout bounds how long a proposed command waits to be
	// applied before its client is told the outcome is unknown. Default 5s.
	RequestTimeout time.Duration
	// Rand is the source of every random choice the member makes (the
	// cores' timeouts, the numbering of reads). nil means one seeded from
	// the system; the simulator passes a seeded one.
	Rand *mrand.Rand
	// Logger receives the member's logs; nil discards them.
	Logger *slog.Logger
	// LeaseGrace is added to every lease's TTL when this member becomes
	// leader, for keep-alives its predecessor took that it cannot know of:
	// at least an election timeout. Default 1s.
	LeaseGrace time.Duration
	// Observe, if set, sees every batch of applied decisions, after the
	// member answered the clients waiting for them. The simulator checks
	// them.
	Observe func([]paxos.Decision)
	// Metrics, if set, are kept by the member: what it sends, the slots it
	// applies, and its state whenever SampleMetrics is called.
	Metrics *Metrics
}

// MemberIO is what a member runs on: its durable state, where its
// snapshots live, how it reaches peers, how its slow work runs, and its
// clock. The daemon gives it Pebble, real files, TCP, goroutines and the
// wall clock; the simulator gives it the same WAL or a model of it,
// Pebble's crashable in-memory file system, a simulated network, its own
// scheduling and virtual time.
type MemberIO struct {
	// Storage makes the cores' records durable, and State is what it
	// recovered. NewMember checks State before it trusts it.
	Storage paxos.Storage
	State   paxos.State
	// FS and SnapshotDir are where the learner's snapshots are kept.
	FS          vfs.FS
	SnapshotDir string
	// SnapshotRate bounds the bytes per second sent to peers catching up
	// by snapshot (0: no limit), and SnapshotChunk the bytes of one chunk
	// (0: 1 MiB).
	SnapshotRate  int64
	SnapshotChunk int
	// Transport carries messages to peers; Executor runs the slow part of
	// snapshot work.
	Transport paxos.Transport
	Executor  Executor
	// Now is the member's clock, for request deadlines.
	Now func() time.Time
	// ClientAddr and PeerAddr return a member's addresses as this member
	// knows them ("" when unknown), for redirects and status; LogBytes the
	// size of the log store. Any may be nil.
	ClientAddr func(paxos.NodeID) string
	PeerAddr   func(paxos.NodeID) string
	LogBytes   func() uint64
}

// Member is one assembled member: its cores, the Node that drives them, its
// snapshot store and the client requests waiting for answers. NewMember is
// the only place a member is put together; the daemon (Start) and the
// simulator both call it. Every method runs on the node's goroutine, like
// the Node's own.
type Member struct {
	cfg    MemberConfig
	io     MemberIO
	logger *slog.Logger
	node   *paxos.Node
	acc    *acceptor.Acceptor
	prop   *proposer.Proposer
	lrn    *learner.Learner
	snaps  *snapshotStore
	roles  paxos.Role

	// Clients waiting for their commands, and the tag of the last read
	// proposed. Reads go through the log as session 0, numbered by this
	// member; no other member waits for them. NB: the numbering starts
	// at random, so that a read proposed before a restart and chosen
	// after it cannot answer a new read that reused its number.
	waiters  map[sessionSeq][]waiter
	lastRead uint64
	// changes maps a proposed configuration change's value to the key its
	// waiters are filed under; lastChange numbers them.
	changes    map[string]sessionSeq
	lastChange uint64
	// diskFull says why the disk is full; "" when it is not (SetDiskFull).
	diskFull string
	effects  []effect
	// reads are linearizable reads served without the log (reads.go),
	// by the tag given to the proposer's ReadIndex; readTag numbers them.
	reads       map[uint64]*read
	readTag     uint64
	readsServed uint64
	// watches are the watch requests held until changes are applied
	// (watches.go), in the order they came.
	watches []*watch
	// leases are the leader's lease deadlines (leases.go).
	leases leaseTracker
}

type sessionSeq struct{ session, seq uint64 }

type waiter struct {
	c        Responder
	id       uint64
	deadline time.Time
}

// ErrCorruptState reports recovered state that fails the checks of
// docs/design.md; it wraps wal.ErrCorrupt.
var ErrCorruptState = fmt.Errorf("%w: recovered state", wal.ErrCorrupt)

// NewMember assembles a member from its configuration and its I/O: it
// checks the recovered state, opens the snapshot store, restores the newest
// snapshot and replays the log after it into the learner, builds the cores
// of the member's roles and the Node. Nothing runs until the caller drives
// the Node. On error, nothing is left open.
func NewMember(cfg MemberConfig, mio MemberIO) (m *Member, err error) {
	if cfg.Machine == nil {
		return nil, errors.New("server: a member needs a state machine")
	}
	if mio.Storage == nil || mio.Transport == nil || mio.FS == nil || mio.Executor == nil || mio.Now == nil {
		return nil, errors.New("server: a member needs storage, a file system, a transport, an executor and a clock")
	}
	if err := mio.State.Acceptor.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
	}
	if err := mio.State.Learner.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.LeaseGrace <= 0 {
		cfg.LeaseGrace = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = seededRand()
	}
	m = &Member{cfg: cfg, io: mio, logger: cfg.Logger.With("node", cfg.ID),
		waiters: map[sessionSeq][]waiter{}, lastRead: cfg.Rand.Uint64(), changes: map[string]sessionSeq{},
		reads: map[uint64]*read{}}
	if cfg.Metrics != nil {
		mio.Transport = meteredTransport{Transport: mio.Transport, m: cfg.Metrics, now: mio.Now}
		m.io.Transport = mio.Transport
	}
	snaps, err := openSnapshotStore(snapshotStoreConfig{FS: mio.FS, Dir: mio.SnapshotDir,
		Header: wal.SnapshotHeader{Cluster: cfg.Cluster, Machine: cfg.MachineName}, Metrics: cfg.Metrics,
		ID: cfg.ID, Send: mio.Transport, Exec: mio.Executor, Rate: mio.SnapshotRate, Chunk: mio.SnapshotChunk, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	m.snaps = snaps
	defer func() {
		if err != nil {
			snaps.close()
		}
	}()
	// The cores and the node add the node ID to the logger themselves.
	nc := paxos.NodeConfig{ID: cfg.ID, Storage: mio.Storage, Transport: mio.Transport, Snapshots: m.snaps, Apply: m.apply, Reads: m.confirmed, Logger: cfg.Logger}
	// A member that learns runs all three cores: a change of roles then
	// takes effect without a restart, because the cores follow the
	// configurations its learner applies (a proposer campaigns only while
	// the newest one makes it a proposer; an acceptor's votes count only
	// where a configuration makes it an acceptor). A member that does not
	// learn cannot follow changes, so it runs the cores of its bootstrap
	// roles.
	configs := paxos.History{cfg.Bootstrap}
	roles := cfg.Bootstrap.Membership().Roles(cfg.ID)
	if roles == 0 {
		return nil, fmt.Errorf("server: node %d is not a member of the cluster", cfg.ID)
	}
	if roles&paxos.RoleLearner != 0 {
		lc := cfg.Learner
		lc.ID, lc.Proposer, lc.Machine, lc.Rand, lc.Logger = cfg.ID, true, cfg.Machine, childRand(cfg.Rand), cfg.Logger
		st := mio.State.Learner
		st.Configs = configs
		if m.lrn, err = m.startLearner(lc, st); err != nil {
			return nil, err
		}
		nc.Learner = m.lrn
		configs = m.lrn.Configs()
		roles = paxos.RoleAll
	}
	if roles&paxos.RoleAcceptor != 0 {
		ac := acceptor.Config{ID: cfg.ID, Configs: configs, StickyTicks: cfg.Proposer.ElectionTicks, Logger: cfg.Logger}
		if m.acc, err = acceptor.New(ac, mio.State.Acceptor); err != nil {
			return nil, err
		}
		nc.Acceptor = m.acc
	}
	if roles&paxos.RoleProposer != 0 {
		pc := cfg.Proposer
		pc.ID, pc.Configs, pc.Rand, pc.Logger = cfg.ID, configs, childRand(cfg.Rand), cfg.Logger
		if m.prop, err = proposer.New(pc); err != nil {
			return nil, err
		}
		nc.Proposer = m.prop
	}
	m.roles = roles
	if m.node, err = paxos.NewNode(nc); err != nil {
		return nil, err
	}
	return m, nil
}

// startLearner starts the learner from the newest snapshot, if any, and the
// log after it, and times it.
func (m *Member) startLearner(lc learner.Config, st paxos.LearnerState) (*learner.Learner, error) {
	began := time.Now()
	r, err := m.snaps.load(st.Base)
	if err != nil {
		return nil, err
	}
	if r != nil {
		defer r.Close()
		st.Snapshot, st.SnapshotData = r.Header.SnapshotMeta, r
	}
	l, err := learner.New(lc, st)
	if r != nil {
		// NB: the checksum covers the whole file and is known only at its
		// end, so a damaged file may fail the restore first: check it
		// either way, and report damage as such.
		if ferr := r.Finish(); ferr != nil {
			return nil, fmt.Errorf("%w; %s", ferr, m.snaps.recoveryHint(st.Snapshot.Slot, st.Base))
		}
	}
	if err != nil {
		return nil, err
	}
	m.logger.Info("recovered", "snapshot", st.Snapshot.Slot, "replayed", l.Applied()-st.Snapshot.Slot, "applied", l.Applied(), "took", time.Since(began).Round(time.Millisecond))
	return l, nil
}

// Close releases what the member holds outside its storage: it ends the
// pacing of snapshot transfers and drops a half-received snapshot. The
// caller stops driving the node first, and waits for the executor after.
func (m *Member) Close() { m.snaps.close() }

// Node returns the node that drives the member's cores.
func (m *Member) Node() *paxos.Node { return m.node }

// Acceptor returns the acceptor core, nil if the member runs none.
func (m *Member) Acceptor() *acceptor.Acceptor { return m.acc }

// Proposer returns the proposer core, nil if the member runs none.
func (m *Member) Proposer() *proposer.Proposer { return m.prop }

// Learner returns the learner core, nil if the member runs none.
func (m *Member) Learner() *learner.Learner { return m.lrn }

// Roles returns the member's roles as its newest configuration says.
func (m *Member) Roles() paxos.Role { return m.Configs().Latest().Membership().Roles(m.cfg.ID) }

// Configs returns the configurations this member knows: its learner's, or
// for a member that does not learn, the one it was started with.
func (m *Member) Configs() paxos.History {
	if m.lrn != nil {
		return m.lrn.Configs()
	}
	return paxos.History{m.cfg.Bootstrap}
}

// seededRand returns a generator seeded from the system's randomness: the
// cores' jitter must differ between members.
func seededRand() *mrand.Rand {
	var b [16]byte
	// crypto/rand.Read never fails on supported platforms.
	_, _ = rand.Read(b[:])
	return mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])))
}

func childRand(r *mrand.Rand) *mrand.Rand { return mrand.New(mrand.NewPCG(r.Uint64(), r.Uint64())) }
