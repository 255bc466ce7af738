package sim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// simNode is one member across its incarnations: what survives a crash (its
// file system and the model of its durable records) and the member running
// now, built by server.NewMember exactly as the daemon builds one.
type simNode struct {
	s     *sim
	id    paxos.NodeID
	roles paxos.Role
	// fs holds the member's snapshot files and, with Options.WAL, its
	// Pebble store. A crash keeps what was synced and a random part of
	// the rest (vfs.MemFS.CrashClone).
	fs *vfs.MemFS
	// model is what must survive a crash: every record Save reported
	// durable. Without Options.WAL it is the storage itself.
	model *memStore
	wal   *wal.Store // the real WAL, with Options.WAL

	member *server.Member
	inc    int // incarnation: bumped by every boot
	// heard are the peers this incarnation has had a message from. As a
	// daemon learns a peer's client address from its handshake, a member
	// here knows the client address of those peers only (for redirects).
	heard     map[paxos.NodeID]bool
	up        bool
	restartAt int64
	// work is the member's slow snapshot work (server.Executor), run at
	// a later tick.
	work []pendingWork
	// crashNext makes the next Save crash the node, its batch kept whole
	// or lost whole at random.
	crashNext bool
	// pausedUntil is the tick a paused member resumes at. drift is its
	// clock's error: negative skips ticks, positive doubles them, each
	// with that probability.
	pausedUntil int64
	// fullUntil is when a full disk has room again (0: it has), and
	// fullFlushes counts the flushes since it filled up.
	fullUntil   int64
	fullFlushes int
	drift       float64

	rec      *recorder
	checked  int          // recorder calls verified against the reference
	callBase int          // index in the reference of the recorder's first call
	promised paxos.Ballot // promise seen at the last check, this incarnation
	leading  bool
	// bootstrap is the configuration the member starts from: the cluster's
	// first, or for a member that joined, the one it was given. removed
	// says it was removed from the cluster and is down for good.
	bootstrap paxos.Config
	removed   bool
	// joining says the member was added and has not started yet: its
	// first start seeds it with a snapshot from a member that knows it.
	joining bool
	// removeAt is the slot from which a configuration without the member
	// governs; the operator stops it once the chosen prefix passes it.
	removeAt paxos.Slot
	// configMade is the Made of the newest configuration its learner had
	// after its last flush, when all it applied was durable (invariant 10:
	// it never goes back, across restarts too).
	configMade paxos.Slot
}

type pendingWork struct {
	at int64
	f  func()
}

// snapDir is where the member keeps snapshots in its file system.
const snapDir = "snap"

func newSimNode(s *sim, m paxos.Member) *simNode {
	n := &simNode{s: s, id: m.ID, roles: m.Roles, fs: vfs.NewCrashableMem(), model: newMemStore(),
		drift: s.f.drift * (2*s.rng.Float64() - 1)}
	n.model.onRecord = func(r paxos.Record) { s.ck.onRecord(n, r) }
	return n
}

// clientAddr is member id's client address in the simulation.
func clientAddr(id paxos.NodeID) string { return "node" + id.String() + ":7001" }

// peerAddr is member id's peer address in the simulation.
func peerAddr(id paxos.NodeID) string { return "node" + id.String() + ":7101" }

// nodeAt is the member whose client address is addr, 0 if none.
func nodeAt(addr string) paxos.NodeID {
	var id uint64
	if _, err := fmt.Sscanf(addr, "node%d:7001", &id); err != nil {
		return 0
	}
	return paxos.NodeID(id)
}

// boot starts n from what survived, as a restarted daemon would: the WAL
// (or the model) and the snapshot files, through server.NewMember.
func (s *sim) boot(n *simNode) {
	n.inc++
	n.pausedUntil, n.fullUntil = 0, 0 // NB: a restarted daemon looks at its disk afresh
	n.heard = map[paxos.NodeID]bool{n.id: true}
	var st paxos.State
	if s.opts.WAL {
		store, recovered, err := wal.Open("wal", wal.Options{FS: n.fs, Logger: s.logger})
		if err != nil {
			s.fail("node %d: the WAL does not open after a crash: %v", n.id, err)
		}
		// What Pebble recovers must be the synced writes and a prefix of
		// the unsynced batches, each whole.
		k := len(n.model.pending)
		for ; k >= 0; k-- {
			if reflect.DeepEqual(normalizeState(recovered), normalizeState(n.model.withPending(k))) {
				break
			}
		}
		if k < 0 {
			s.fail("node %d: the WAL recovered %s; the synced writes were %s, and %d unsynced batches followed", n.id, describeState(recovered), describeState(n.model.withPending(0)), len(n.model.pending))
		}
		n.model.keep(k)
		n.wal, st = store, recovered
	} else {
		n.model.keep(s.rng.IntN(len(n.model.pending) + 1))
		st = n.model.load()
	}
	if n.joining {
		seeded, ok := s.seedJoiner(n)
		if !ok {
			n.closeStore()
			n.restartAt = s.now + 5 // no member to take a snapshot from yet
			return
		}
		st = seeded
	}
	n.rec = &recorder{kv: statemachine.NewKV()}
	n.checked, n.callBase = 0, 0
	m, err := server.NewMember(server.MemberConfig{
		ID: n.id, Bootstrap: n.bootstrap, Cluster: 1, Machine: n.rec, MachineName: "kv",
		Proposer: s.pcfg, Learner: s.lcfg, RequestTimeout: s.requestTimeout,
		LeaseGrace: 2 * time.Duration(s.pcfg.ElectionTicks) * tickLength,
		Rand:       s.childRand(), Logger: s.logger,
		Observe: func(ds []paxos.Decision) { s.onApply(n, ds) },
		// NB: kept under every fault, so that the daemon's metrics code
		// runs here too; nothing reads them.
		Metrics: server.NewMetrics(server.MetricsConfig{ID: n.id}),
	}, server.MemberIO{
		Storage: n, State: st,
		FS: n.fs, SnapshotDir: snapDir, SnapshotChunk: s.chunkSize,
		Transport: transport{s, n, n.inc}, Executor: n, Now: s.clock,
		ClientAddr: func(id paxos.NodeID) string {
			if !n.heard[id] {
				return "" // not heard from yet: a redirect names no address
			}
			return clientAddr(id)
		},
		PeerAddr: peerAddr,
	})
	if err != nil {
		s.fail("node %d does not start from what survived its crash: %v", n.id, err)
	}
	n.member, n.up, n.leading = m, true, false
	if n.rec.restored {
		// The learner began from a snapshot: the recorder's calls are
		// the replay of the log after it.
		n.rec.restored = false
		n.callBase = s.ck.refIndex(m.Learner().SnapshotSlot())
	}
	if a := m.Acceptor(); a != nil {
		n.promised = a.Promised()
		if sent := s.ck.externalized[n.id]; n.promised.Less(sent) {
			s.fail("invariant 3: acceptor %d restarted with promise %v below ballot %v it already sent", n.id, n.promised, sent)
		}
	}
	snap := paxos.Slot(0)
	if l := m.Learner(); l != nil {
		snap = l.SnapshotSlot()
	}
	s.tracef("node %d up (promised %v, floor %d, %d accepted, base %d, snapshot %d, %d chosen)", n.id, st.Acceptor.Promised, st.Acceptor.Floor, len(st.Acceptor.Accepted), st.Learner.Base, snap, len(st.Learner.Chosen))
}

// crash stops n as a power cut would. Snapshot work in progress finished
// before the cut, or did not, at random; the file system keeps what was
// synced and a random part of the rest.
func (s *sim) crash(n *simNode, why string) {
	n.up = false
	for _, w := range n.work {
		if s.rng.IntN(2) == 0 {
			w.f() // its messages go nowhere: the node is down
			s.tracef("node %d: snapshot work finished just before the crash", n.id)
		}
	}
	n.work = nil
	clone := n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: rand.New(rand.NewPCG(s.rng.Uint64(), 0))})
	n.closeStore() // NB: the crashed copy is already taken; this only frees the old one
	n.fs = clone
	s.stats.IndexReads += int(n.member.ReadsServed())
	n.member = nil
	n.restartAt = s.now + 3 + int64(s.rng.IntN(25))
	s.stats.Crashes++
	s.tracef("node %d crashed (%s); restarts at tick %d", n.id, why, n.restartAt)
	s.dropConns(n.id)
}

func (n *simNode) closeStore() {
	if n.wal != nil {
		if err := n.wal.Close(); err != nil && n.up {
			n.s.fail("node %d: close WAL: %v", n.id, err)
		}
		n.wal = nil
	}
}

// errCrash is what a store returns when the simulator crashes its node in
// the middle of a synced batch.
var errCrash = errors.New("sim: node crashed during sync")

// Save is the member's paxos.Storage: the real WAL (with Options.WAL) and
// the model beside it. A crash the simulator injects in the middle of a
// batch keeps it whole or loses it whole, as a Pebble batch does. A batch
// that records a snapshot is crashed more often: that is the moment a
// snapshot file is durable and the log does not know it yet.
func (n *simNode) Save(recs []paxos.Record) error {
	s := n.s
	n.checkFull(recs)
	crash := n.crashNext
	n.crashNext = false
	if !crash && slices.ContainsFunc(recs, func(r paxos.Record) bool { return r.Type == paxos.RecSnapshot }) {
		crash = s.rng.Float64() < 5*s.f.saveCrash
	}
	keep := !crash || s.rng.IntN(2) == 0
	if keep {
		if n.wal != nil {
			if err := n.wal.Save(recs); err != nil {
				return err
			}
		}
		n.model.save(recs)
	}
	if crash {
		s.tracef("node %d crashes during a sync of %d records (batch kept: %v)", n.id, len(recs), keep)
		return errCrash
	}
	return nil
}

// Write is the member's unsynced write (paxos.Storage): kept by the model
// as pending until the next Save, or a crash keeps a prefix of the pending
// batches.
func (n *simNode) Write(recs []paxos.Record) error {
	n.checkFull(recs)
	if n.wal != nil {
		if err := n.wal.Write(recs); err != nil {
			return err
		}
	}
	n.model.write(recs)
	return nil
}

// checkFull fails the run if n writes records while its disk is full, after
// the flush that was under way when it filled up (invariant 13).
func (n *simNode) checkFull(recs []paxos.Record) {
	if n.fullUntil != 0 && n.fullFlushes > 1 && len(recs) > 0 {
		n.s.fail("invariant 13: node %d wrote %d records (first %v) while its disk was full", n.id, len(recs), recs[0].Type)
	}
}

// Go is the member's server.Executor: f runs at a later tick, on the
// simulator's goroutine.
func (n *simNode) Go(f func()) {
	n.work = append(n.work, pendingWork{at: n.s.now + 1 + int64(n.s.rng.IntN(max(n.s.f.snapDelay, 1))), f: f})
}

// running reports whether n is up and not paused at tick now.
func (n *simNode) running(now int64) bool { return n.up && n.pausedUntil <= now }

// ticks returns how many ticks n's clock counts in this round: one, or by
// its drift none or two.
func (n *simNode) ticks() int {
	switch {
	case n.drift < 0 && n.s.rng.Float64() < -n.drift:
		return 0
	case n.drift > 0 && n.s.rng.Float64() < n.drift:
		return 2
	}
	return 1
}

// runDue runs the work that is due, in the order it was given.
func (n *simNode) runDue() {
	for _, w := range takeDue(&n.work, func(w pendingWork) bool { return w.at <= n.s.now }) {
		w.f()
	}
}

// durableSnapshots returns the slots of n's snapshot files that survive a
// crash now, ascending.
func (n *simNode) durableSnapshots() []paxos.Slot {
	clone := n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	names, err := clone.List(snapDir)
	if err != nil {
		return nil // no directory yet: no snapshot
	}
	var out []paxos.Slot
	for _, name := range names {
		if slot, ok := wal.SnapshotFileSlot(name); ok {
			out = append(out, slot)
		}
	}
	slices.Sort(out)
	return out
}

// newestDurable returns the newest durable snapshot's slot, 0 if none.
func (n *simNode) newestDurable() paxos.Slot {
	if ss := n.durableSnapshots(); len(ss) > 0 {
		return ss[len(ss)-1]
	}
	return 0
}

func (s *sim) flush(n *simNode) {
	if s.rng.Float64() < s.f.saveCrash {
		n.crashNext = true
	}
	s.step++
	if n.fullUntil != 0 {
		n.fullFlushes++
	}
	err := n.member.Node().Flush()
	n.crashNext = false
	switch {
	case errors.Is(err, errCrash):
		s.crash(n, "during sync")
	case err != nil:
		s.fail("node %d flush: %v", n.id, err)
	default:
		if n.member.Learner() != nil {
			// Everything the learner applied is durable now.
			n.configMade = max(n.configMade, n.member.Configs().Latest().Made)
		}
	}
	s.check()
}

func normalizeState(st paxos.State) paxos.State {
	norm := func(es []paxos.Entry) []paxos.Entry {
		out := make([]paxos.Entry, len(es))
		for i, e := range es {
			if len(e.Value) == 0 {
				e.Value = nil
			}
			out[i] = e
		}
		return out
	}
	st.Acceptor.Accepted = norm(st.Acceptor.Accepted)
	st.Learner.Chosen = norm(st.Learner.Chosen)
	return st
}

func describeState(st paxos.State) string {
	return fmt.Sprintf("{promised %v, %d accepted, %d chosen, applied %d}", st.Acceptor.Promised, len(st.Acceptor.Accepted), len(st.Learner.Chosen), st.Learner.Applied)
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

// Query answers serializable reads, as the KV machine does.
func (r *recorder) Query(q []byte) ([]byte, error) { return r.kv.Query(q) }

// Watch and Advance pass the history's watches and the log's time on.
func (r *recorder) Watch(q []byte) (answer, next []byte, ready bool) { return r.kv.Watch(q) }
func (r *recorder) Advance(ms uint64)                                { r.kv.Advance(ms) }

// The KV's leases, for the leader's expiry (statemachine.Leaser).
func (r *recorder) LeaseTTL(id uint64) (time.Duration, bool) { return r.kv.LeaseTTL(id) }
func (r *recorder) EachLease(f func(uint64, time.Duration))  { r.kv.EachLease(f) }
func (r *recorder) LeaseGen() uint64                         { return r.kv.LeaseGen() }
func (r *recorder) RevokeCommand(id uint64) []byte           { return r.kv.RevokeCommand(id) }

func (r *recorder) Restore(rd io.Reader) error {
	if err := r.kv.Restore(rd); err != nil {
		return err
	}
	r.calls, r.restored = nil, true
	return nil
}
