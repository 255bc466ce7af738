package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/paxosd/paxosd/acceptor"
	"github.com/paxosd/paxosd/learner"
	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/proposer"
	"github.com/paxosd/paxosd/statemachine"
)

// Shape is a cluster layout the simulator runs.
type Shape struct {
	Name   string
	Config paxos.Config
}

// Shapes are the layouts a seed picks from: three and five full members, and
// a split cluster of three acceptor-only voters, two proposer-learners and
// one learner-only member.
var Shapes = []Shape{
	{"n3", paxos.Uniform(3)},
	{"n5", paxos.Uniform(5)},
	{"split", paxos.MustConfig(
		paxos.Member{ID: 1, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 2, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 3, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 4, Roles: paxos.RoleProposer | paxos.RoleLearner},
		paxos.Member{ID: 5, Roles: paxos.RoleProposer | paxos.RoleLearner},
		paxos.Member{ID: 6, Roles: paxos.RoleLearner},
	)},
}

// Options configures one run.
type Options struct {
	Seed uint64
	// Rounds is how many ticks faults are injected for. Default 600.
	Rounds int
	// LivenessTicks bounds the calm phase after the faults stop: every
	// pending command must be decided and learned within it. Default 600.
	LivenessTicks int
	// Trace, if set, receives every event as it happens.
	Trace io.Writer
	// WAL runs every node's storage on the real wal.Store (Pebble on a
	// crashable in-memory file system) instead of the in-memory model alone.
	// Each crash then keeps a random part of the unsynced data, and what
	// Pebble recovers must equal what was synced.
	WAL bool
	// Drop, if set, loses every message it returns true for, on top of the
	// seed's faults and also after they stop. Regression tests use it to
	// pin down the condition a bug needed.
	Drop func(paxos.Message) bool
	// Scenario tests pin a run down further. DropAt is Drop with the
	// tick; Shape names the cluster layout; Quiet turns the seed's random
	// faults off; Tune adjusts the cores' settings after the seed drew
	// them; from tick ClientsStopAt on, clients start no new operations.
	// None of them changes what the seed draws, so other runs replay the
	// same.
	DropAt        func(tick int64, m paxos.Message) bool
	Shape         string
	Quiet         bool
	Tune          func(*proposer.Config, *learner.Config)
	ClientsStopAt int64
}

// Stats describes what a run exercised.
type Stats struct {
	Shape          string
	Steps          int64
	Ticks          int64
	Chosen         int // highest slot chosen
	Ops            int // client operations completed
	Retries        int // client resubmissions
	Crashes        int
	Partitions     int
	Elections      int // times some proposer became leader
	MaxBatch       int // most commands in one chosen value
	MultiBatches   int // chosen values with more than one command
	MaxPipeline    int // most slots proposed beyond the chosen prefix at once
	DuplicateApply int // retried commands the learners recognised as applied
	Snapshots      int // snapshots made durable by the learner that took them
	Installs       int // snapshots received from a peer and restored
	Truncations    int // acceptor floors raised
}

// Failure is a violated invariant, with what is needed to replay it.
type Failure struct {
	Seed   uint64
	Shape  string
	Step   int64
	Tick   int64
	Reason string
	Events []string // the last events before the failure
	Nodes  []string // each node's state at the failure
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sim: seed %d (%s) failed at step %d, tick %d: %s\n", f.Seed, f.Shape, f.Step, f.Tick, f.Reason)
	b.WriteString("nodes:\n")
	for _, n := range f.Nodes {
		b.WriteString("  " + n + "\n")
	}
	fmt.Fprintf(&b, "last %d events:\n", len(f.Events))
	for _, e := range f.Events {
		b.WriteString("  " + e + "\n")
	}
	fmt.Fprintf(&b, "replay: go test ./tests/sim -run 'TestSim$' -seed=%d -v", f.Seed)
	return b.String()
}

// failed carries a Failure out of the simulation loop as a panic.
type failed struct{ f *Failure }

// faults are the per-seed fault rates.
type faults struct {
	drop, dup, delay float64 // per delivered message
	crash            float64 // per delivery step: crash a random node
	saveCrash        float64 // per flush: crash in the middle of the synced batch
	partition, heal  float64 // per tick
	leaderCrash      float64 // per tick: crash whichever node leads
	replyDrop        float64 // per client reply
	flush            float64 // per delivery: flush the receiver at once
}

type simNode struct {
	id        paxos.NodeID
	roles     paxos.Role
	store     *memStore
	disk      *disk // the real WAL, when Options.WAL is set
	snaps     *snapStore
	up        bool
	restartAt int64
	n         *paxos.Node
	acc       *acceptor.Acceptor
	prop      *proposer.Proposer
	lrn       *learner.Learner
	rec       *recorder
	checked   int          // recorder calls verified against the reference
	callBase  int          // index in the reference of the recorder's first call
	promised  paxos.Ballot // promise seen at the last check, this incarnation
	leading   bool
}

type envelope struct {
	m  paxos.Message
	at int64 // tick from which it may be delivered
}

type sim struct {
	opts  Options
	shape Shape
	rng   *rand.Rand
	f     faults
	pcfg  proposer.Config
	lcfg  learner.Config
	now   int64
	step  int64
	ids   []paxos.NodeID
	nodes map[paxos.NodeID]*simNode
	net   []envelope
	cut   map[[2]paxos.NodeID]bool // directed links that drop everything
	// frameBuf and wireDec carry messages through the wire codec.
	frameBuf []byte
	wireDec  *paxos.Decoder
	// chunkSize is the most snapshot bytes one chunk carries.
	chunkSize int
	clients   []*client
	history   []porcupine.Operation
	ck        checker
	events    []string // ring of recent events
	evNext    int
	stats     Stats
	logger    *slog.Logger
}

const eventRing = 120

// Run simulates one seed. It returns what the run exercised, or a *Failure.
func Run(opts Options) (st Stats, err error) {
	if opts.Rounds == 0 {
		opts.Rounds = 600
	}
	if opts.LivenessTicks == 0 {
		opts.LivenessTicks = 600
	}
	s := &sim{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x9a05d)), wireDec: paxos.NewDecoder()}
	defer func() {
		if r := recover(); r != nil {
			fl, ok := r.(failed)
			if !ok {
				fl = failed{s.failure(fmt.Sprintf("panic: %v", r))}
			}
			err = fl.f
		}
		st = s.stats
	}()
	s.setup()
	for range opts.Rounds {
		s.round()
	}
	s.calm()
	s.finalChecks()
	s.close()
	return s.stats, nil
}

func (s *sim) setup() {
	s.shape = Shapes[s.rng.IntN(len(Shapes))]
	for _, sh := range Shapes {
		if sh.Name == s.opts.Shape {
			s.shape = sh
		}
	}
	s.stats.Shape = s.shape.Name
	s.logger = slog.New(slog.DiscardHandler)
	r := s.rng
	pick := func(xs ...float64) float64 { return xs[r.IntN(len(xs))] }
	s.f = faults{
		drop:        pick(0, 0.02, 0.1, 0.25),
		dup:         pick(0, 0.02, 0.1),
		delay:       pick(0, 0.05, 0.2),
		crash:       pick(0, 0.0005, 0.002, 0.005),
		saveCrash:   pick(0, 0.005, 0.02),
		partition:   pick(0, 0.01, 0.04),
		leaderCrash: pick(0, 0, 0.01, 0.03),
		heal:        pick(0.05, 0.2),
		replyDrop:   pick(0, 0.1, 0.3),
		flush:       pick(0.2, 0.6, 1),
	}
	s.pcfg = proposer.Config{
		Cluster:         s.shape.Config,
		Window:          []int{1, 2, 4, 32}[r.IntN(4)],
		MaxBatch:        []int{1, 2, 5, 64}[r.IntN(4)],
		MaxBatchBytes:   []int{40, 1 << 20}[r.IntN(2)],
		HeartbeatTicks:  2,
		ElectionTicks:   []int{6, 10}[r.IntN(2)],
		RetransmitTicks: []int{3, 6}[r.IntN(2)],
		MaxQueue:        []int{4, 1000}[r.IntN(2)],
		Logger:          s.logger,
	}
	s.lcfg = learner.Config{
		Cluster:              s.shape.Config,
		CatchUpTicks:         []int{2, 4}[r.IntN(2)],
		MaxCatchUpEntries:    []int{1, 3, 256}[r.IntN(3)],
		SnapshotEvery:        []int{0, 3, 10, 40}[r.IntN(4)],
		SnapshotBytes:        []int{0, 0, 300}[r.IntN(3)],
		LogRetain:            []int{0, 2, 8}[r.IntN(3)],
		SnapshotTimeoutTicks: []int{2, 5}[r.IntN(2)],
		SnapshotReportTicks:  []int{3, 10}[r.IntN(2)],
		Logger:               s.logger,
	}
	s.chunkSize = []int{16, 100, 1 << 20}[r.IntN(3)]
	if s.opts.Quiet {
		s.f = faults{flush: 1}
	}
	if s.opts.Tune != nil {
		s.opts.Tune(&s.pcfg, &s.lcfg)
	}
	s.nodes = map[paxos.NodeID]*simNode{}
	s.ck = checker{s: s}
	s.ck.init()
	for _, m := range s.shape.Config.Members() {
		n := &simNode{id: m.ID, roles: m.Roles, store: newMemStore(), snaps: newSnapStore(s, m.ID)}
		n.store.onRecord = func(r paxos.Record) { s.ck.onRecord(n, r) }
		if s.opts.WAL {
			n.disk = newDisk()
			n.disk.model = n.store
		}
		s.ids = append(s.ids, m.ID)
		s.nodes[m.ID] = n
		s.boot(n)
	}
	for i := range 2 + r.IntN(4) {
		s.clients = append(s.clients, newClient(s, i))
	}
	s.tracef("seed %d shape %s faults %+v window %d batch %d", s.opts.Seed, s.shape.Name, s.f, s.pcfg.Window, s.pcfg.MaxBatch)
}

// boot starts n from what its store holds, as a restarted daemon would.
func (s *sim) boot(n *simNode) {
	var st paxos.State
	var storage paxos.Storage = n.store
	if n.disk != nil {
		st, storage = n.disk.open(s, n.id), n.disk
	} else {
		st = n.store.load()
		// The checks wal.Open makes, so that a sweep without the real
		// WAL also catches a store it would refuse.
		if err := checkLearnerStore(st.Learner); err != nil {
			s.fail("node %d: its store would not open: %v", n.id, err)
		}
	}
	n.rec = &recorder{kv: statemachine.NewKV()}
	n.checked, n.callBase = 0, 0
	n.acc, n.prop, n.lrn = nil, nil, nil
	cfg := paxos.NodeConfig{
		ID:        n.id,
		Storage:   storage,
		Transport: transport{s, n.id},
		Snapshots: n.snaps,
		Apply:     func(ds []paxos.Decision) { s.onApply(n, ds) },
		Logger:    s.logger,
	}
	var err error
	if n.roles&paxos.RoleAcceptor != 0 {
		if n.acc, err = acceptor.New(acceptor.Config{ID: n.id, Cluster: s.shape.Config, Logger: s.logger}, st.Acceptor); err != nil {
			s.fail("boot node %d: %v", n.id, err)
		}
		cfg.Acceptor = n.acc
		n.promised = n.acc.Promised()
		if sent := s.ck.externalized[n.id]; n.promised.Less(sent) {
			s.fail("invariant 3/4: acceptor %d restarted with promise %v below ballot %v it already sent", n.id, n.promised, sent)
		}
	}
	if n.roles&paxos.RoleProposer != 0 {
		pc := s.pcfg
		pc.ID, pc.Rand = n.id, s.childRand()
		if n.prop, err = proposer.New(pc); err != nil {
			s.fail("boot node %d: %v", n.id, err)
		}
		cfg.Proposer = n.prop
	}
	if n.roles&paxos.RoleLearner != 0 {
		lc := s.lcfg
		lc.ID, lc.Rand, lc.Machine = n.id, s.childRand(), n.rec
		// A restart begins from the newest durable snapshot, as the
		// daemon's does.
		if f, ok := n.snaps.newest(); ok {
			if f.meta.Slot < st.Learner.Base {
				s.fail("node %d truncated its log up to slot %d, but its newest snapshot covers %d", n.id, st.Learner.Base, f.meta.Slot)
			}
			st.Learner.Snapshot, st.Learner.SnapshotData = f.meta, bytes.NewReader(f.data)
			n.callBase = s.ck.refIndex(f.meta.Slot)
		} else if st.Learner.Base > 0 {
			s.fail("node %d truncated its log up to slot %d, but has no snapshot", n.id, st.Learner.Base)
		}
		if n.lrn, err = learner.New(lc, st.Learner); err != nil {
			s.fail("boot node %d: %v", n.id, err)
		}
		cfg.Learner = n.lrn
	}
	if n.n, err = paxos.NewNode(cfg); err != nil {
		s.fail("boot node %d: %v", n.id, err)
	}
	n.up, n.leading = true, false
	n.rec.restored = false
	s.tracef("node %d up (promised %v, floor %d, %d accepted, base %d, snapshot %d, %d chosen)", n.id, st.Acceptor.Promised, st.Acceptor.Floor, len(st.Acceptor.Accepted), st.Learner.Base, st.Learner.Snapshot.Slot, len(st.Learner.Chosen))
}

// checkLearnerStore makes wal.Open's check of the learner's state: the
// applied slot is at or above the snapshot base, and every slot between them
// is in the chosen log.
func checkLearnerStore(st paxos.LearnerState) error {
	if st.Applied < st.Base {
		return fmt.Errorf("applied slot %d is below the snapshot base %d", st.Applied, st.Base)
	}
	have := map[paxos.Slot]bool{}
	for _, e := range st.Chosen {
		have[e.Slot] = true
	}
	for sl := st.Base + 1; sl <= st.Applied; sl++ {
		if !have[sl] {
			return fmt.Errorf("applied slot %d, but chosen/%d is missing (base %d)", st.Applied, sl, st.Base)
		}
	}
	return nil
}

func (s *sim) childRand() *rand.Rand { return rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())) }

func (s *sim) crash(n *simNode, why string) {
	if n.disk != nil {
		n.disk.crash(s.rng)
	}
	n.snaps.crash()
	n.up = false
	n.n, n.acc, n.prop, n.lrn = nil, nil, nil, nil
	n.restartAt = s.now + 3 + int64(s.rng.IntN(25))
	s.stats.Crashes++
	s.tracef("node %d crashed (%s); restarts at tick %d", n.id, why, n.restartAt)
}

// round is one tick: faults, clients, message delivery, ticks, flushes.
func (s *sim) round() {
	s.now++
	s.stats.Ticks++
	for _, id := range s.ids {
		if n := s.nodes[id]; !n.up && n.restartAt <= s.now {
			s.boot(n)
		}
	}
	s.maybePartition()
	if s.rng.Float64() < s.f.leaderCrash {
		if id := s.leader(); id != 0 {
			s.crash(s.nodes[id], "leader fault")
		}
	}
	if s.opts.ClientsStopAt != 0 && s.now == s.opts.ClientsStopAt {
		for _, c := range s.clients {
			c.opsLeft = 0
		}
	}
	for _, c := range s.clients {
		c.act()
	}
	s.deliverDue()
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up {
			s.step++
			n.snaps.finishWrites(n)
			n.n.Tick()
			s.check()
		}
	}
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up {
			s.flush(n)
		}
	}
}

// deliverDue delivers, in random order, every message due by now; each may
// be dropped, delayed or duplicated instead.
func (s *sim) deliverDue() {
	var due []envelope
	kept := s.net[:0]
	for _, e := range s.net {
		if e.at <= s.now {
			due = append(due, e)
		} else {
			kept = append(kept, e)
		}
	}
	s.net = kept
	s.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, e := range due {
		if s.rng.Float64() < s.f.crash {
			if up := s.upNodes(); len(up) > 0 {
				s.crash(up[s.rng.IntN(len(up))], "fault")
			}
		}
		s.step++
		switch r := s.rng.Float64(); {
		case r < s.f.drop:
			s.tracef("drop %v", e.m)
			continue
		case r < s.f.drop+s.f.delay:
			e.at = s.now + 1 + int64(s.rng.IntN(8))
			s.net = append(s.net, e)
			continue
		}
		if s.rng.Float64() < s.f.dup {
			s.net = append(s.net, envelope{m: e.m, at: s.now + 1 + int64(s.rng.IntN(4))})
		}
		dst := s.nodes[e.m.To]
		if !dst.up || s.cut[[2]paxos.NodeID{e.m.From, e.m.To}] {
			s.tracef("lost %v", e.m)
			continue
		}
		s.deliver(dst, e.m)
		if s.rng.Float64() < s.f.flush {
			s.flush(dst)
		}
		s.check()
	}
}

func (s *sim) deliver(n *simNode, m paxos.Message) {
	s.tracef("deliver %v", m)
	var before paxos.Ballot
	var nw int
	if n.acc != nil {
		before, nw = n.acc.Promised(), len(n.acc.Ready().Writes)
	}
	if err := n.n.Deliver(m); err != nil {
		// The simulator only sends what the cores produced, so a refusal
		// means a core produced bad output or saw broken state.
		s.fail("node %d refused %v: %v", n.id, m, err)
	}
	if n.acc != nil {
		for _, w := range n.acc.Ready().Writes[nw:] {
			if w.Type == paxos.RecAccept && w.Ballot.Less(before) {
				s.fail("invariant 3: acceptor %d accepted slot %d at %v, below its promise %v", n.id, w.Slot, w.Ballot, before)
			}
		}
	}
}

func (s *sim) flush(n *simNode) {
	if s.rng.Float64() < s.f.saveCrash {
		n.store.crashNext, n.store.keepOnCrash = true, s.rng.IntN(2) == 0
	}
	s.step++
	err := n.n.Flush()
	n.store.crashNext = false
	switch {
	case errors.Is(err, errCrash):
		s.crash(n, fmt.Sprintf("during sync, batch kept=%v", n.store.keepOnCrash))
	case err == nil && n.snaps.crashAfterInstall:
		s.crash(n, "during snapshot install, after the snapshot was durable")
	case err != nil:
		s.fail("node %d flush: %v", n.id, err)
	}
	s.check()
}

func (s *sim) maybePartition() {
	if len(s.cut) > 0 {
		if s.rng.Float64() < s.f.heal {
			s.cut = nil
			s.tracef("partition healed")
		}
		return
	}
	if s.rng.Float64() >= s.f.partition {
		return
	}
	s.stats.Partitions++
	s.cut = map[[2]paxos.NodeID]bool{}
	leader := s.leader()
	switch kind := s.rng.IntN(4); {
	case kind == 0 || (kind >= 2 && leader == 0):
		// Symmetric: split the nodes in two groups.
		side := map[paxos.NodeID]bool{}
		for _, id := range s.ids {
			side[id] = s.rng.IntN(2) == 0
		}
		for _, a := range s.ids {
			for _, b := range s.ids {
				if side[a] != side[b] {
					s.cut[[2]paxos.NodeID{a, b}] = true
				}
			}
		}
	case kind == 1:
		// One-way: some directed links drop everything.
		for range 1 + s.rng.IntN(len(s.ids)) {
			a, b := s.ids[s.rng.IntN(len(s.ids))], s.ids[s.rng.IntN(len(s.ids))]
			if a != b {
				s.cut[[2]paxos.NodeID{a, b}] = true
			}
		}
	case kind == 2:
		// Isolate the leader from everyone.
		for _, id := range s.ids {
			if id != leader {
				s.cut[[2]paxos.NodeID{leader, id}] = true
				s.cut[[2]paxos.NodeID{id, leader}] = true
			}
		}
	default:
		// The leader still reaches the acceptors, but its heartbeats and
		// decisions no longer reach the other proposers, which campaign
		// against it: duelling ballots.
		for _, id := range s.shape.Config.Proposers() {
			if id != leader {
				s.cut[[2]paxos.NodeID{leader, id}] = true
			}
		}
	}
	s.tracef("partition %v", sortedLinks(s.cut))
}

func sortedLinks(cut map[[2]paxos.NodeID]bool) []string {
	var out []string
	for l := range cut {
		out = append(out, fmt.Sprintf("%d->%d", l[0], l[1]))
	}
	slices.Sort(out)
	return out
}

// leader returns the node with the highest ballot among those that believe
// they lead, or 0.
func (s *sim) leader() paxos.NodeID {
	var best paxos.NodeID
	var bb paxos.Ballot
	for _, n := range s.upNodes() {
		if n.prop != nil && n.prop.IsLeader() && bb.Less(n.prop.Ballot()) {
			best, bb = n.id, n.prop.Ballot()
		}
	}
	return best
}

func (s *sim) upNodes() []*simNode {
	var up []*simNode
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up {
			up = append(up, n)
		}
	}
	return up
}

// calm heals every fault and runs until every client's command is answered
// and every learner has learned every chosen slot (invariant 7).
func (s *sim) calm() {
	s.f = faults{flush: 1}
	s.cut = nil
	for _, id := range s.ids {
		if n := s.nodes[id]; !n.up {
			n.restartAt = s.now
		}
	}
	for _, c := range s.clients {
		c.opsLeft = 0
	}
	s.tracef("faults stopped")
	for range s.opts.LivenessTicks {
		s.round()
		if s.settled() {
			return
		}
	}
	var pending []string
	for _, c := range s.clients {
		if c.op != nil {
			pending = append(pending, fmt.Sprintf("client %d seq %d (%v)", c.idx, c.op.seq, c.op.in.op))
		}
	}
	s.fail("invariant 7: %d ticks after faults stopped, still pending: %v; chosen up to %d", s.opts.LivenessTicks, pending, s.ck.maxChosen)
}

func (s *sim) settled() bool {
	for _, c := range s.clients {
		if c.op != nil {
			return false
		}
	}
	for _, id := range s.ids {
		n := s.nodes[id]
		if n.lrn != nil && (n.lrn.Applied() < s.ck.maxChosen || n.lrn.Known() > n.lrn.Applied()) {
			return false
		}
	}
	return true
}

// finalChecks compares the learners' replicated state and checks the client
// history for linearizability (invariant 6).
func (s *sim) finalChecks() {
	var ref []byte
	var refID paxos.NodeID
	for _, id := range s.ids {
		n := s.nodes[id]
		if n.lrn == nil {
			continue
		}
		var b strings.Builder
		if err := n.lrn.Snapshot(&b); err != nil {
			s.fail("snapshot of learner %d: %v", id, err)
		}
		if ref == nil {
			ref, refID = []byte(b.String()), id
		} else if b.String() != string(ref) {
			s.fail("invariant 5: learners %d and %d applied the same slots but hold different state", refID, id)
		}
	}
	if res := porcupine.CheckOperationsTimeout(kvModel, s.history, 0); res != porcupine.Ok {
		var msg strings.Builder
		fmt.Fprintf(&msg, "invariant 6: client history of %d operations is not linearizable (%s)", len(s.history), res)
		for _, op := range s.history {
			fmt.Fprintf(&msg, "\n    c%d [%d,%d] %s", op.ClientId, op.Call, op.Return, kvModel.DescribeOperation(op.Input, op.Output))
		}
		s.fail("%s", msg.String())
	}
}

// close releases the real WALs.
func (s *sim) close() {
	for _, id := range s.ids {
		if d := s.nodes[id].disk; d != nil && d.store != nil {
			if err := d.store.Close(); err != nil {
				s.fail("node %d: close WAL: %v", id, err)
			}
			d.store = nil
		}
	}
}

func (s *sim) onApply(n *simNode, ds []paxos.Decision) {
	for _, d := range ds {
		// Clients hear of a slot only once it is chosen by durable votes
		// and this learner's record of it is durable: a crash cannot
		// take back an answer.
		if v, ok := s.ck.chosen[d.Slot]; !ok || !bytes.Equal(v, d.Value) {
			s.fail("node %d applied slot %d before it was durably chosen", n.id, d.Slot)
		}
		if v, ok := n.store.chosen[d.Slot]; !ok || !bytes.Equal(v, d.Value) {
			s.fail("node %d applied slot %d before its own record of it was durable", n.id, d.Slot)
		}
		for _, r := range d.Results {
			if r.Duplicate {
				s.stats.DuplicateApply++
			}
			if c := s.clientOf(r.Session); c != nil {
				c.reply(n.id, r)
			}
		}
	}
}

func (s *sim) clientOf(session uint64) *client {
	i := int(session) - sessionBase
	if i < 0 || i >= len(s.clients) {
		return nil
	}
	return s.clients[i]
}

// check runs the invariants that are checked after every step.
func (s *sim) check() {
	if s.ck.dropped {
		s.ck.checkAvailable()
	}
	for _, id := range s.ids {
		n := s.nodes[id]
		if !n.up {
			continue
		}
		if n.acc != nil {
			p := n.acc.Promised()
			if p.Less(n.promised) {
				s.fail("invariant 3: acceptor %d promise went from %v down to %v", id, n.promised, p)
			}
			n.promised = p
			if p.Less(n.acc.MaxAccepted()) {
				s.fail("invariant 3: acceptor %d accepted %v above its promise %v", id, n.acc.MaxAccepted(), p)
			}
		}
		if n.lrn != nil {
			s.ck.checkApplied(n)
		}
		if n.prop != nil {
			if l := n.prop.IsLeader(); l && !n.leading {
				s.stats.Elections++
				s.tracef("node %d leads at ballot %v", id, n.prop.Ballot())
			}
			n.leading = n.prop.IsLeader()
		}
	}
}

// transport is a node's view of the simulated network.
type transport struct {
	s  *sim
	id paxos.NodeID
}

// wire encodes m into a frame and decodes it again, as the TCP transport
// would. A message that does not fit in a frame, or does not survive the
// trip, fails the run.
func (t transport) wire(m paxos.Message) paxos.Message {
	s := t.s
	frame := paxos.AppendFrame(s.frameBuf[:0], m)
	s.frameBuf = frame
	if n := len(frame) - paxos.FrameHeaderSize; n > paxos.DefaultMaxFrame {
		s.fail("node %d sent %v of %d bytes, above the frame limit %d", t.id, m, n, paxos.DefaultMaxFrame)
	}
	got, err := s.wireDec.Message(frame[paxos.FrameHeaderSize:])
	if err != nil {
		s.fail("node %d sent %v, which does not decode: %v", t.id, m, err)
	}
	got.To = m.To // the connection names the receiver, as in the transport
	return got
}

func (t transport) Send(msgs []paxos.Message) {
	s := t.s
	for _, m := range msgs {
		if m.From != t.id {
			s.fail("node %d sent %v with the wrong sender", t.id, m)
		}
		s.ck.onSend(s.nodes[t.id], m)
		// Every message crosses the wire codec, as it does between
		// daemons, so a field the codec loses breaks the run.
		m = t.wire(m)
		if s.cut[[2]paxos.NodeID{m.From, m.To}] || (s.opts.Drop != nil && s.opts.Drop(m)) || (s.opts.DropAt != nil && s.opts.DropAt(s.now, m)) {
			s.tracef("cut %v", m)
			continue
		}
		if s.opts.Trace != nil {
			fmt.Fprintf(s.opts.Trace, "%6d t%-4d send %v\n", s.step, s.now, m)
		}
		s.net = append(s.net, envelope{m: m, at: s.now + 1})
	}
}

// recorder is the state machine the learners apply to: the KV machine, with
// a log of every command it was given.
type recorder struct {
	kv    *statemachine.KV
	calls []call
	// restored is set when a snapshot replaced the state: calls start
	// again from the snapshot's slot.
	restored bool
}

type call struct {
	slot paxos.Slot
	cmd  string
}

func (r *recorder) Apply(slot uint64, cmd []byte) []byte {
	r.calls = append(r.calls, call{paxos.Slot(slot), string(cmd)})
	return r.kv.Apply(slot, cmd)
}

func (r *recorder) Snapshot(w io.Writer) error { return r.kv.Snapshot(w) }

// Freeze lets the learner snapshot the KV in the background, as the daemon
// does, so that the sim checks the copy-on-write shards too.
func (r *recorder) Freeze() func(io.Writer) error { return r.kv.Freeze() }

func (r *recorder) Restore(rd io.Reader) error {
	if err := r.kv.Restore(rd); err != nil {
		return err
	}
	r.calls, r.restored = nil, true
	return nil
}

func (s *sim) tracef(format string, args ...any) {
	e := fmt.Sprintf("%6d t%-4d ", s.step, s.now) + fmt.Sprintf(format, args...)
	if s.opts.Trace != nil {
		fmt.Fprintln(s.opts.Trace, e)
	}
	if len(s.events) < eventRing {
		s.events = append(s.events, e)
		return
	}
	s.events[s.evNext] = e
	s.evNext = (s.evNext + 1) % eventRing
}

func (s *sim) fail(format string, args ...any) {
	panic(failed{s.failure(fmt.Sprintf(format, args...))})
}

func (s *sim) failure(reason string) *Failure {
	f := &Failure{Seed: s.opts.Seed, Shape: s.shape.Name, Step: s.step, Tick: s.now, Reason: reason}
	f.Events = append(f.Events, s.events[s.evNext:]...)
	f.Events = append(f.Events, s.events[:s.evNext]...)
	for _, id := range s.ids {
		n := s.nodes[id]
		if n == nil {
			continue
		}
		if !n.up {
			f.Nodes = append(f.Nodes, fmt.Sprintf("%d: down until tick %d", id, n.restartAt))
			continue
		}
		line := fmt.Sprintf("%d:", id)
		if n.prop != nil {
			line += fmt.Sprintf(" proposer %s ballot %v leader %d decided %d;", n.prop.State(), n.prop.Ballot(), n.prop.Leader(), n.prop.Decided())
		}
		if n.acc != nil {
			line += fmt.Sprintf(" acceptor promised %v floor %d;", n.acc.Promised(), n.acc.Floor())
		}
		if n.lrn != nil {
			line += fmt.Sprintf(" learner applied %d known %d snapshot %d hash %016x", n.lrn.Applied(), n.lrn.Known(), n.lrn.SnapshotSlot(), n.lrn.Hash())
		}
		f.Nodes = append(f.Nodes, line)
	}
	return f
}
