package sim

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/paxosd/paxosd/learner"
	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/proposer"
)

// Shape is a cluster layout the simulator runs.
type Shape struct {
	Name       string
	Membership paxos.Membership
}

// Shapes are the layouts a seed picks from: two to five full members (even
// numbers of acceptors among them), and split clusters of acceptor-only,
// proposer-learner, acceptor-learner and learner-only members. A member
// that proposes always learns too: the membership rule requires it, because
// a proposer answers its clients from its own learner.
var Shapes = []Shape{
	{"n3", paxos.Uniform(3)},
	{"n5", paxos.Uniform(5)},
	{"split", paxos.MustMembership(
		paxos.Member{ID: 1, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 2, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 3, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 4, Roles: paxos.RoleProposer | paxos.RoleLearner},
		paxos.Member{ID: 5, Roles: paxos.RoleProposer | paxos.RoleLearner},
		paxos.Member{ID: 6, Roles: paxos.RoleLearner},
	)},
	{"n2", paxos.Uniform(2)},
	{"n4", paxos.Uniform(4)},
	// Four acceptors (a quorum is three), one of them a learner too; one
	// proposer; a learner-only member.
	{"split4", paxos.MustMembership(
		paxos.Member{ID: 1, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 2, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 3, Roles: paxos.RoleAcceptor},
		paxos.Member{ID: 4, Roles: paxos.RoleAcceptor | paxos.RoleLearner},
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
	// Check, if set, is given the client history at the end of a run; an
	// error fails the run (invariant 6). The tests pass a linearizability
	// checker; the simulator itself links none.
	Check func(history []Op) error
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
	Ops            int // client operations answered
	Unknown        int // client operations given up with an unknown outcome
	NotApplied     int // client operations given up as certainly not applied
	Retries        int // client attempts after the first of an operation
	Redirects      int // attempts a member redirected to the leader
	Timeouts       int // attempts a member answered as timed out
	Ghosts         int // old requests replayed after a newer one was answered
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
	Reconfigs      int // configuration changes that took effect in the chosen log
	Joins          int // members started by joining a running cluster
	Removals       int // members removed and stopped for good
	Transfers      int // leadership handed over on request
	Pauses         int // members paused and resumed
	DiskFulls      int // members whose disk filled up, then had room again
	// SessionsOpened and SessionsExpired count client sessions opened and
	// expired in the chosen log; ExpiredRefused commands refused because
	// their session was not open.
	SessionsOpened  int
	SessionsExpired int
	ExpiredRefused  int
	IndexReads      int // linearizable reads a leader served without the log (read index)
	WatchEvents     int // changes watches reported, each checked against the log
	Watches         int // watches started
	LeasesGranted   int // leases clients were granted
	KeepAlives      int // keep-alives a leader took
	LeaseRevokes    int // revocations in the chosen log that deleted keys
}

// Add adds the counts of o to st (the shape is kept; maxima are maxima).
func (st *Stats) Add(o Stats) {
	st.Steps += o.Steps
	st.Ticks += o.Ticks
	st.Ops += o.Ops
	st.Unknown += o.Unknown
	st.NotApplied += o.NotApplied
	st.Retries += o.Retries
	st.Redirects += o.Redirects
	st.Timeouts += o.Timeouts
	st.Ghosts += o.Ghosts
	st.Crashes += o.Crashes
	st.Pauses += o.Pauses
	st.DiskFulls += o.DiskFulls
	st.SessionsOpened += o.SessionsOpened
	st.SessionsExpired += o.SessionsExpired
	st.ExpiredRefused += o.ExpiredRefused
	st.IndexReads += o.IndexReads
	st.WatchEvents += o.WatchEvents
	st.Watches += o.Watches
	st.LeasesGranted += o.LeasesGranted
	st.KeepAlives += o.KeepAlives
	st.LeaseRevokes += o.LeaseRevokes
	st.Partitions += o.Partitions
	st.Elections += o.Elections
	st.MultiBatches += o.MultiBatches
	st.DuplicateApply += o.DuplicateApply
	st.Snapshots += o.Snapshots
	st.Installs += o.Installs
	st.Truncations += o.Truncations
	st.Reconfigs += o.Reconfigs
	st.Joins += o.Joins
	st.Removals += o.Removals
	st.Transfers += o.Transfers
	st.Chosen = max(st.Chosen, o.Chosen)
	st.MaxBatch = max(st.MaxBatch, o.MaxBatch)
	st.MaxPipeline = max(st.MaxPipeline, o.MaxPipeline)
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
	reset            float64 // per client response: the connection breaks instead
	ghost            float64 // per tick: replay an old client request
	flush            float64 // per delivery: flush the receiver at once
	snapDelay        int     // most ticks a snapshot write or a pull waits
	// pause is per tick: a random member stops (a GC or VM pause, SIGSTOP)
	// for up to two election timeouts, its messages and requests held
	// until it resumes, while the clock moves on. drift is how far the
	// members' tick rates stray: each member's clock runs slow or fast by
	// up to this share (ticks skipped or doubled).
	pause float64
	drift float64
	// diskFull is per tick: a random member's disk fills up for up to
	// three election timeouts (server.Member.SetDiskFull).
	diskFull float64
}

// tickLength is the virtual time one tick stands for: the members' clocks
// (request deadlines) and the clients' waits are in it.
const tickLength = 10 * time.Millisecond

// epoch is the virtual clock at tick 0.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type sim struct {
	opts  Options
	shape Shape
	rng   *rand.Rand
	f     faults
	pcfg  proposer.Config
	lcfg  learner.Config
	// requestTimeout is the members', callTimeout the clients' (in ticks).
	requestTimeout time.Duration
	callTimeout    int64
	chunkSize      int
	now            int64
	step           int64
	ids            []paxos.NodeID
	nodes          map[paxos.NodeID]*simNode
	// bootstrap is the configuration the cluster starts with.
	bootstrap paxos.Config
	// reconfig is the per-tick chance of an operator's configuration
	// change; nextID the ID the next added member gets.
	reconfig float64
	nextID   paxos.NodeID
	net      []envelope
	cut      map[[2]paxos.NodeID]bool // directed links that drop everything
	// frameBuf and wireDec carry messages through the wire codec.
	frameBuf []byte
	wireDec  *wire.Decoder
	clients  []*client
	requests []request // client requests in flight
	replies  []reply   // client responses in flight
	history  []Op
	ck       checker
	events   []string // ring of recent events
	evNext   int
	stats    Stats
	logger   *slog.Logger
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
	s := &sim{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x9a05d)), wireDec: wire.NewDecoder()}
	defer func() {
		if r := recover(); r != nil {
			fl, ok := r.(failed)
			if !ok {
				fl = failed{s.failure(fmt.Sprintf("panic: %v", r))}
			}
			err = fl.f
		}
		s.stats.Steps = s.step
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
		reset:       pick(0, 0.02, 0.1),
		ghost:       pick(0, 0.01, 0.05),
		flush:       pick(0.2, 0.6, 1),
		snapDelay:   []int{1, 6}[r.IntN(2)],
		pause:       pick(0, 0, 0.005, 0.02),
		drift:       pick(0, 0.1, 0.3),
		diskFull:    pick(0, 0, 0.003, 0.01),
	}
	s.reconfig = pick(0, 0.005, 0.02)
	s.pcfg = proposer.Config{
		Window:          []int{1, 2, 4, 32, 128}[r.IntN(5)], // 128 > α: the configuration gate binds
		MaxBatch:        []int{1, 2, 5, 64}[r.IntN(4)],
		MaxBatchBytes:   []int{40, 1 << 20}[r.IntN(2)],
		HeartbeatTicks:  2,
		ElectionTicks:   []int{6, 10}[r.IntN(2)],
		RetransmitTicks: []int{3, 6}[r.IntN(2)],
		MaxQueue:        []int{4, 1000}[r.IntN(2)],
	}
	s.lcfg = learner.Config{
		CatchUpTicks:         []int{2, 4}[r.IntN(2)],
		MaxCatchUpEntries:    []int{1, 3, 256}[r.IntN(3)],
		SnapshotEvery:        []int{0, 3, 10, 40}[r.IntN(4)],
		SnapshotBytes:        []int{0, 0, 300}[r.IntN(3)],
		LogRetain:            []int{0, 2, 8}[r.IntN(3)],
		SnapshotTimeoutTicks: []int{2, 5}[r.IntN(2)],
		SnapshotReportTicks:  []int{3, 10}[r.IntN(2)],
	}
	s.chunkSize = []int{64, 400, 1 << 20}[r.IntN(3)] // NB: snapshots carry the KV history, some KiB
	s.requestTimeout = []time.Duration{200 * time.Millisecond, 600 * time.Millisecond}[r.IntN(2)]
	s.callTimeout = []int64{40, 200, 500, 3000}[r.IntN(4)]
	if s.opts.Quiet {
		s.f = faults{flush: 1, snapDelay: 1}
		s.reconfig = 0
	}
	if s.opts.Tune != nil {
		s.opts.Tune(&s.pcfg, &s.lcfg)
	}
	s.nodes = map[paxos.NodeID]*simNode{}
	s.ck = checker{s: s}
	s.ck.init()
	var peers []paxos.Peer
	for _, m := range s.shape.Membership.Members() {
		peers = append(peers, paxos.Peer{ID: m.ID, Roles: m.Roles, PeerAddr: peerAddr(m.ID), ClientAddr: clientAddr(m.ID)})
		s.nextID = max(s.nextID, m.ID+1)
	}
	var err error
	if s.bootstrap, err = paxos.NewConfig(1, 0, peers, nil); err != nil {
		s.fail("shape %s: %v", s.shape.Name, err)
	}
	s.ck.configs = paxos.History{s.bootstrap}
	for _, m := range s.shape.Membership.Members() {
		n := newSimNode(s, m)
		n.bootstrap = s.bootstrap
		s.ids = append(s.ids, m.ID)
		s.nodes[m.ID] = n
		s.boot(n)
	}
	for i := range 2 + r.IntN(4) {
		s.clients = append(s.clients, newClient(s, i))
	}
	for range 1 + r.IntN(2) {
		c := newClient(s, len(s.clients))
		s.newWatcher(c)
		s.stats.Watches++
		s.clients = append(s.clients, c)
	}
	s.tracef("seed %d shape %s faults %+v window %d batch %d request timeout %v call timeout %d ticks", s.opts.Seed, s.shape.Name, s.f, s.pcfg.Window, s.pcfg.MaxBatch, s.requestTimeout, s.callTimeout)
}

// clock is the virtual time of the current tick.
func (s *sim) clock() time.Time { return epoch.Add(time.Duration(s.now) * tickLength) }

func (s *sim) childRand() *rand.Rand { return rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())) }

// round is one tick: faults, clients, message delivery, ticks, flushes.
func (s *sim) round() {
	s.now++
	s.stats.Ticks++
	s.stopRemoved()
	for _, id := range s.ids {
		n := s.nodes[id]
		if !n.up && n.restartAt <= s.now {
			s.boot(n)
		}
	}
	if s.rng.Float64() < s.reconfig {
		s.changeMembers()
	}
	s.maybePartition()
	s.maybePause()
	s.maybeFillDisk()
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
	s.deliverClientTraffic()
	for _, c := range s.clients {
		c.act()
	}
	if s.rng.Float64() < s.f.ghost {
		s.replayGhost()
	}
	s.deliverDue()
	for _, id := range s.ids {
		if n := s.nodes[id]; n.running(s.now) {
			s.step++
			n.runDue()
			for range n.ticks() {
				n.member.Node().Tick()
			}
			n.member.Sweep()
			n.member.SampleMetrics()
			s.check()
		}
	}
	for _, id := range s.ids {
		if n := s.nodes[id]; n.running(s.now) {
			s.flush(n)
		}
	}
}

// maybePause pauses a random running member: it handles nothing until it
// resumes, and what was sent to it waits.
func (s *sim) maybePause() {
	if s.rng.Float64() >= s.f.pause {
		return
	}
	var up []*simNode
	for _, id := range s.ids {
		if n := s.nodes[id]; n.running(s.now) {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return
	}
	n := up[s.rng.IntN(len(up))]
	n.pausedUntil = s.now + 1 + int64(s.rng.IntN(2*s.pcfg.ElectionTicks+2))
	s.stats.Pauses++
	s.tracef("node %d paused until tick %d", n.id, n.pausedUntil)
}

// maybeFillDisk fills a random running member's disk, and frees the disks
// whose time is up. A member with a full disk must write nothing once the
// flush under way when it learned so is done (Save, Write).
func (s *sim) maybeFillDisk() {
	var room []*simNode
	for _, id := range s.ids {
		n := s.nodes[id]
		if !n.running(s.now) {
			continue
		}
		switch {
		case n.fullUntil != 0 && n.fullUntil <= s.now:
			n.member.SetDiskFull("")
			n.fullUntil = 0
			s.tracef("node %d: disk has room again", n.id)
		case n.fullUntil == 0:
			room = append(room, n)
		}
	}
	if len(room) == 0 || s.rng.Float64() >= s.f.diskFull {
		return
	}
	n := room[s.rng.IntN(len(room))]
	n.member.SetDiskFull("simulated")
	n.fullUntil, n.fullFlushes = s.now+1+int64(s.rng.IntN(3*s.pcfg.ElectionTicks)), 0
	s.stats.DiskFulls++
	s.tracef("node %d: disk full until tick %d", n.id, n.fullUntil)
}

// leader returns the node with the highest ballot among those that believe
// they lead, or 0.
func (s *sim) leader() paxos.NodeID {
	var best paxos.NodeID
	var bb paxos.Ballot
	for _, n := range s.upNodes() {
		if p := n.member.Proposer(); p != nil && p.IsLeader() && bb.Less(p.Ballot()) {
			best, bb = n.id, p.Ballot()
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

// calm heals every fault and runs until every client's operation is
// answered and every learner has learned every chosen slot (invariant 7).
func (s *sim) calm() {
	s.f = faults{flush: 1, snapDelay: 1}
	s.reconfig = 0
	s.cut = nil
	for _, id := range s.ids {
		if n := s.nodes[id]; n.fullUntil != 0 {
			n.fullUntil = s.now // freed at the next tick
		}
	}
	for _, id := range s.ids {
		if n := s.nodes[id]; !n.up && !n.removed {
			n.restartAt = min(n.restartAt, s.now)
		}
	}
	for _, c := range s.clients {
		c.opsLeft = 0
		c.calm = true
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
		switch {
		case c.watch != nil && !c.watch.caughtUp(&s.ck):
			rev, skip := c.watch.cur.Next()
			pending = append(pending, fmt.Sprintf("client %d: watch of %q at revision %d skip %d, store at %d", c.idx, c.watch.prefix, rev, skip, s.ck.refKV.Rev()))
		case c.watch == nil && c.op != nil:
			pending = append(pending, fmt.Sprintf("client %d: %s", c.idx, c.op.in.Describe(KVOutput{Unknown: true})))
		}
	}
	s.fail("invariant 7: %d ticks after faults stopped, still pending: %v; chosen up to %d", s.opts.LivenessTicks, pending, s.ck.maxChosen)
}

func (s *sim) settled() bool {
	for _, c := range s.clients {
		if c.watch != nil {
			// NB: a watcher always has a poll out; it is done once it
			// reported every change.
			if !c.watch.caughtUp(&s.ck) {
				return false
			}
			continue
		}
		if c.op != nil {
			return false
		}
	}
	for _, id := range s.ids {
		n := s.nodes[id]
		if n.removed {
			continue
		}
		if n.member == nil {
			return false // a joining member not started yet
		}
		if l := n.member.Learner(); l != nil && (l.Applied() < s.ck.maxChosen || l.Known() > l.Applied()) {
			return false
		}
	}
	return true
}

// finalChecks compares the learners' replicated state, checks that no
// operation reported as not applied was applied (invariant 9), and hands
// the client history to the linearizability check (invariant 6).
func (s *sim) finalChecks() {
	var ref []byte
	var refID paxos.NodeID
	for _, id := range s.ids {
		if n := s.nodes[id]; n.up {
			s.stats.IndexReads += int(n.member.ReadsServed())
		}
	}
	for _, id := range s.ids {
		if s.nodes[id].removed {
			continue
		}
		l := s.nodes[id].member.Learner()
		if l == nil {
			continue
		}
		var b strings.Builder
		if err := l.Snapshot(&b); err != nil {
			s.fail("snapshot of learner %d: %v", id, err)
		}
		if ref == nil {
			ref, refID = []byte(b.String()), id
		} else if b.String() != string(ref) {
			s.fail("invariant 5: learners %d and %d applied the same slots but hold different state", refID, id)
		}
	}
	s.ck.checkNotApplied()
	if s.opts.Check != nil {
		if err := s.opts.Check(s.history); err != nil {
			s.fail("invariant 6: %v", err)
		}
	}
}

// close releases the real WALs.
func (s *sim) close() {
	for _, id := range s.ids {
		s.nodes[id].closeStore()
	}
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
		if a := n.member.Acceptor(); a != nil {
			p := a.Promised()
			if p.Less(n.promised) {
				s.fail("invariant 3: acceptor %d promise went from %v down to %v", id, n.promised, p)
			}
			n.promised = p
			if p.Less(a.MaxAccepted()) {
				s.fail("invariant 3: acceptor %d accepted %v above its promise %v", id, a.MaxAccepted(), p)
			}
		}
		if n.member.Learner() != nil {
			s.ck.checkApplied(n)
			s.checkConfigViews(n)
		}
		if p := n.member.Proposer(); p != nil {
			if l := p.IsLeader(); l && !n.leading {
				s.stats.Elections++
				s.tracef("node %d leads at ballot %v", id, p.Ballot())
			}
			n.leading = p.IsLeader()
		}
	}
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
		if !n.up || n.member == nil {
			f.Nodes = append(f.Nodes, fmt.Sprintf("%d: down until tick %d", id, n.restartAt))
			continue
		}
		line := fmt.Sprintf("%d:", id)
		if p := n.member.Proposer(); p != nil {
			line += fmt.Sprintf(" proposer %s ballot %v leader %d decided %d configs %s;", p.State(), p.Ballot(), p.Leader(), p.Decided(), describeConfigs(p.Configs()))
		}
		if a := n.member.Acceptor(); a != nil {
			line += fmt.Sprintf(" acceptor promised %v floor %d;", a.Promised(), a.Floor())
		}
		if l := n.member.Learner(); l != nil {
			line += fmt.Sprintf(" learner applied %d known %d snapshot %d hash %016x;", l.Applied(), l.Known(), l.SnapshotSlot(), l.Hash())
		}
		line += fmt.Sprintf(" %d client requests waiting", n.member.Waiting())
		f.Nodes = append(f.Nodes, line)
	}
	return f
}

// describeConfigs lists configurations as made@start for failure reports.
func describeConfigs(h paxos.History) string {
	var b strings.Builder
	for i, c := range h {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d@%d", c.Made, c.Start)
	}
	return b.String()
}
