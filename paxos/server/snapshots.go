package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/time/rate"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/wal"
)

// snapKeep is how many snapshot files a member keeps. The older one lets a
// transfer that began before the newest was written finish.
const snapKeep = 2

// snapDir is the snapshot directory inside the data directory.
const snapDir = "snap"

// snapChunk is the most bytes of a snapshot one message carries.
const snapChunk = 1 << 20

// Executor runs the slow part of snapshot work (writing a snapshot, reading
// and pacing the chunks a peer pulls) away from the node's loop. The daemon
// runs each function on a goroutine of its own (GoExecutor); the simulator
// runs them on its one goroutine, at ticks it draws. Functions given to Go
// are safe to run on any goroutine, in any order, at any later time.
type Executor interface {
	Go(f func())
}

// GoExecutor runs every function on a goroutine of its own; Wait waits for
// them.
type GoExecutor struct{ wg sync.WaitGroup }

// Go runs f on a new goroutine.
func (e *GoExecutor) Go(f func()) { e.wg.Go(f) }

// Wait blocks until every function given to Go returned.
func (e *GoExecutor) Wait() { e.wg.Wait() }

// snapshotStore is a member's paxos.SnapshotStore: snapshot files in one
// directory of a vfs.FS (the data directory's snap/ for the daemon, Pebble's
// crashable in-memory file system in the simulator). A snapshot is written
// by an Executor function and reported through Saved; a peer's pull is read
// and paced by another and answered through the transport. Receive and
// Install run on the node's goroutine, as does everything marked so.
type snapshotStore struct {
	files   *wal.Snapshots
	fs      vfs.FS
	header  wal.SnapshotHeader // Cluster, Members and Machine of every snapshot
	logger  *slog.Logger
	id      paxos.NodeID
	send    paxos.Transport
	exec    Executor
	chunk   int           // most bytes one chunk carries
	limiter *rate.Limiter // nil: no limit
	ctx     context.Context
	cancel  context.CancelFunc

	// The snapshot being received (node goroutine).
	recv     vfs.File
	recvPath string
	recvSlot paxos.Slot
	recvSize uint64
	recvLen  uint64

	// pulls counts pulls being served, to bound them.
	pulls chan struct{}

	mu      sync.Mutex
	saved   []paxos.Slot  // written since the last Saved call
	newest  paxos.Slot    // newest durable snapshot, for status and save
	change  chan struct{} // closed and replaced whenever newest changes
	metrics *Metrics      // nil: none kept
}

// maxPulls bounds the pulls being served at once, and so the chunk buffers
// waiting for the rate limit (a lagging peer has one pull outstanding);
// more are dropped and the peer asks again.
const maxPulls = 8

// snapshotStoreConfig is what a snapshot store needs.
type snapshotStoreConfig struct {
	FS     vfs.FS
	Dir    string // the snapshot directory
	Header wal.SnapshotHeader
	ID     paxos.NodeID
	Send   paxos.Transport
	Exec   Executor
	// Rate bounds the bytes per second served to peers; 0 means no limit.
	Rate int64
	// Chunk is the most bytes one chunk carries; 0 means 1 MiB.
	Chunk  int
	Logger *slog.Logger
	// Metrics, if set, count the snapshots received and installed.
	Metrics *Metrics
}

func openSnapshotStore(cfg snapshotStoreConfig) (*snapshotStore, error) {
	files, err := wal.OpenSnapshots(cfg.FS, cfg.Dir)
	if err != nil {
		return nil, err
	}
	slots, err := files.Slots()
	if err != nil {
		return nil, err
	}
	st := &snapshotStore{files: files, fs: cfg.FS, header: cfg.Header, logger: cfg.Logger.With("component", "snapshots"),
		id: cfg.ID, send: cfg.Send, metrics: cfg.Metrics, exec: cfg.Exec, chunk: cfg.Chunk, pulls: make(chan struct{}, maxPulls), change: make(chan struct{})}
	if st.chunk <= 0 {
		st.chunk = snapChunk
	}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	if cfg.Rate > 0 {
		st.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), max(st.chunk, int(min(cfg.Rate, 1<<30))))
	}
	if len(slots) > 0 {
		st.newest = slots[len(slots)-1]
	}
	return st, nil
}

// close ends pacing waits and drops a half-received snapshot. The caller
// waits for the executor's functions afterwards.
func (st *snapshotStore) close() {
	st.cancel()
	st.dropReceived()
}

func (st *snapshotStore) dropReceived() {
	if st.recv != nil {
		st.recv.Close()
		_ = st.fs.Remove(st.recvPath) // NB: a leftover .tmp is removed on the next start anyway
		st.recv = nil
	}
}

// load opens the newest snapshot at base or later, for the learner to
// restore at start. It returns a nil reader when there is none and base is
// 0. The caller restores from the reader, then calls Finish.
func (st *snapshotStore) load(base paxos.Slot) (*wal.SnapshotReader, error) {
	slots, err := st.files.Slots()
	if err != nil {
		return nil, err
	}
	if len(slots) == 0 || slots[len(slots)-1] < base {
		if base == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: the log was truncated up to slot %d, but no snapshot covers it in %s", wal.ErrCorrupt, base, st.files.Dir())
	}
	newest := slots[len(slots)-1]
	path := st.files.Path(newest)
	r, err := wal.OpenSnapshot(st.fs, path)
	if err != nil {
		return nil, err
	}
	if r.Header.Slot != newest {
		r.Close()
		return nil, fmt.Errorf("%w: %s holds the snapshot of slot %d; rename it to %s", wal.ErrCorrupt, path, r.Header.Slot, filepath.Base(st.files.Path(r.Header.Slot)))
	}
	if r.Header.Cluster != st.header.Cluster {
		r.Close()
		return nil, fmt.Errorf("%w: snapshot %s belongs to cluster %016x, not %016x", ErrWrongIdentity, path, r.Header.Cluster, st.header.Cluster)
	}
	return r, nil
}

// recoveryHint tells an operator what to do about a damaged snapshot at
// slot, for a learner whose log begins after base.
func (st *snapshotStore) recoveryHint(slot, base paxos.Slot) string {
	slots, _ := st.files.Slots() // NB: only a hint; the damage is the error
	for i := len(slots) - 1; i >= 0; i-- {
		if slots[i] < slot && slots[i] >= base {
			return fmt.Sprintf("move that file out of %s and start again: the member then starts from its snapshot of slot %d", st.files.Dir(), slots[i])
		}
	}
	return fmt.Sprintf("no other snapshot here covers slot %d, where this member's log begins. Remove the damaged file, take a snapshot from a healthy member with 'paxosd snapshot save FILE' (it covers a later slot, which is fine), and put it in %s under the name 'paxosd snapshot inspect FILE' prints",
		base, st.files.Dir())
}

// Save writes the snapshot through the executor.
func (st *snapshotStore) Save(job paxos.SnapshotJob) {
	st.exec.Go(func() { st.write(job) })
}

// write makes job durable, keeps the newest snapKeep snapshots, and notes
// the outcome for Saved.
func (st *snapshotStore) write(job paxos.SnapshotJob) {
	hdr := st.header
	hdr.SnapshotMeta = job.Meta
	path, err := st.files.Write(hdr, job.Write)
	if err == nil {
		err = st.files.Prune(snapKeep)
	}
	slot := job.Meta.Slot
	if err != nil {
		st.logger.Error("snapshot not written; the log is kept until the next one", "slot", slot, "err", err)
		slot = 0
	} else {
		st.logger.Info("snapshot written", "slot", slot, "path", path)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.saved = append(st.saved, slot)
	st.setNewestLocked(slot)
}

// Saved returns the outcomes of the writes finished since the last call.
func (st *snapshotStore) Saved() []paxos.Slot {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.saved
	st.saved = nil
	return s
}

func (st *snapshotStore) setNewestLocked(s paxos.Slot) {
	if s > st.newest {
		st.newest = s
		close(st.change)
		st.change = make(chan struct{})
	}
}

// Newest returns the newest durable snapshot's slot, and a channel closed
// when it changes.
func (st *snapshotStore) Newest() (paxos.Slot, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.newest, st.change
}

// Receive appends a chunk of the snapshot being received to its file. The
// file is synced only once whole, by Install.
func (st *snapshotStore) Receive(c paxos.SnapshotChunk) error {
	if c.Offset == 0 {
		st.dropReceived() // a transfer given up: its bytes are of no use
		st.recvPath = st.files.Path(c.Slot) + ".in.tmp"
		f, err := st.fs.Create(st.recvPath, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("server: create %s: %w", st.recvPath, err)
		}
		st.recv, st.recvSlot, st.recvSize, st.recvLen = f, c.Slot, c.Size, 0
	}
	if st.recv == nil || c.Slot != st.recvSlot || c.Offset != st.recvLen || c.Size != st.recvSize {
		return fmt.Errorf("server: chunk %d+%d of snapshot %d does not follow the %d bytes of snapshot %d received", c.Offset, len(c.Data), c.Slot, st.recvLen, st.recvSlot)
	}
	if _, err := st.recv.Write(c.Data); err != nil {
		return fmt.Errorf("server: write %s: %w", st.recvPath, err)
	}
	st.recvLen += uint64(len(c.Data))
	if st.metrics != nil {
		st.metrics.snapRecvBytes.Add(float64(len(c.Data)))
	}
	return nil
}

// Install checks the snapshot received whole, puts it in place durably and
// opens it for the learner.
func (st *snapshotStore) Install(slot paxos.Slot) (paxos.SnapshotMeta, io.ReadCloser, error) {
	f, path := st.recv, st.recvPath
	st.recv = nil
	if f == nil || slot != st.recvSlot || st.recvLen != st.recvSize {
		if f != nil {
			f.Close()
			_ = st.fs.Remove(path) // NB: the mismatch is the error worth reporting
		}
		return paxos.SnapshotMeta{}, nil, fmt.Errorf("server: install of snapshot %d, but %d of %d bytes of snapshot %d were received", slot, st.recvLen, st.recvSize, st.recvSlot)
	}
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return paxos.SnapshotMeta{}, nil, fmt.Errorf("server: sync %s: %w", path, err)
	}
	hdr, err := wal.VerifySnapshot(st.fs, path)
	switch {
	case err != nil:
	case hdr.Slot != slot:
		err = fmt.Errorf("%w: received snapshot %d holds slot %d", wal.ErrCorrupt, slot, hdr.Slot)
	case hdr.Cluster != st.header.Cluster:
		err = fmt.Errorf("%w: received snapshot belongs to cluster %016x, not %016x", ErrWrongIdentity, hdr.Cluster, st.header.Cluster)
	}
	if err == nil {
		err = st.files.Adopt(path, slot)
	}
	if err != nil {
		_ = st.fs.Remove(path) // NB: the check's error is the one worth reporting
		return paxos.SnapshotMeta{}, nil, err
	}
	st.mu.Lock()
	st.setNewestLocked(slot)
	st.mu.Unlock()
	if st.metrics != nil {
		st.metrics.snapInstalls.Inc()
	}
	if err := st.files.Prune(snapKeep); err != nil {
		st.logger.Warn("old snapshots not removed", "err", err)
	}
	r, err := wal.OpenSnapshot(st.fs, st.files.Path(slot))
	if err != nil {
		return paxos.SnapshotMeta{}, nil, err
	}
	return hdr.SnapshotMeta, r, nil
}

// Serve reads, paces and sends the chunk a peer pulls, through the
// executor. With too many pulls in flight it drops this one; the peer asks
// again.
func (st *snapshotStore) Serve(m paxos.Message) {
	select {
	case st.pulls <- struct{}{}:
	default:
		st.logger.Warn("snapshot pull dropped: too many waiting", "peer", m.From)
		return
	}
	st.exec.Go(func() {
		defer func() { <-st.pulls }()
		reply, err := st.readChunk(m)
		if err != nil {
			st.logger.Warn("snapshot pull not served", "peer", m.From, "slot", m.Slot, "err", err)
			return
		}
		if st.limiter != nil && len(reply.Value) > 0 {
			if err := st.limiter.WaitN(st.ctx, len(reply.Value)); err != nil {
				return // stopping
			}
		}
		st.send.Send([]paxos.Message{reply})
	})
}

// readChunk reads the chunk m asks for. A snapshot that is gone is answered
// with Size 0.
func (st *snapshotStore) readChunk(m paxos.Message) (paxos.Message, error) {
	reply := paxos.Message{Type: paxos.MsgSnapshotChunk, From: st.id, To: m.From, Slot: m.Slot, Offset: m.Offset}
	f, err := st.fs.Open(st.files.Path(m.Slot))
	if errors.Is(err, os.ErrNotExist) {
		return reply, nil
	}
	if err != nil {
		return reply, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return reply, err
	}
	size := uint64(info.Size())
	if m.Offset >= size {
		return reply, fmt.Errorf("offset %d beyond the snapshot's %d bytes", m.Offset, size)
	}
	buf := make([]byte, min(uint64(st.chunk), size-m.Offset))
	if _, err := f.ReadAt(buf, int64(m.Offset)); err != nil {
		return reply, err
	}
	reply.Value, reply.Size = buf, size
	reply.Sum = paxos.ChunkSum(buf)
	return reply, nil
}
