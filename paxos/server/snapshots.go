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

// snapStore is the daemon's paxos.SnapshotStore: snapshot files in the data
// directory, written in the background, served to peers at a limited rate.
//
// Save's writer and the serve loop run on their own goroutines; Receive and
// Install run on the node's, as do the fields marked so.
type snapStore struct {
	files   *wal.Snapshots
	fs      vfs.FS
	header  wal.SnapshotMeta // Cluster, Members and Machine of every snapshot
	logger  *slog.Logger
	node    *paxos.Node
	tr      paxos.Transport
	id      paxos.NodeID
	chunk   int
	limiter *rate.Limiter // nil: no limit

	// The snapshot being received (node goroutine).
	recv     vfs.File
	recvPath string
	recvSlot paxos.Slot
	recvSize uint64
	recvLen  uint64

	pulls  chan paxos.Message
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	newest paxos.Slot    // newest durable snapshot, for status and save
	saved  chan struct{} // closed and replaced whenever newest changes
}

// snapChunk is the most bytes of a snapshot one message carries.
const snapChunk = 1 << 20

func openSnapStore(dataDir string, header wal.SnapshotMeta, rateBytes int64, logger *slog.Logger) (*snapStore, error) {
	files, err := wal.OpenSnapshots(nil, filepath.Join(dataDir, snapDir))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &snapStore{files: files, fs: vfs.Default, header: header, logger: logger.With("component", "snapshots"),
		chunk: snapChunk, pulls: make(chan paxos.Message, 64), ctx: ctx, cancel: cancel, saved: make(chan struct{})}
	if rateBytes > 0 {
		st.limiter = rate.NewLimiter(rate.Limit(rateBytes), max(st.chunk, int(min(rateBytes, 1<<30))))
	}
	slots, err := files.Slots()
	if err != nil {
		cancel()
		return nil, err
	}
	if len(slots) > 0 {
		st.newest = slots[len(slots)-1]
	}
	return st, nil
}

// start begins serving pulls; node and tr must be set.
func (st *snapStore) start() {
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		st.serveLoop()
	}()
}

// close stops serving, waits for a snapshot being written, and drops a
// half-received one.
func (st *snapStore) close() {
	st.cancel()
	st.wg.Wait()
	if st.recv != nil {
		st.recv.Close()
		_ = st.fs.Remove(st.recvPath) // NB: a leftover is removed on the next start anyway
		st.recv = nil
	}
}

// load opens the newest snapshot at base or later, for the learner to
// restore at start. It returns a nil reader when there is none and base is
// 0. The caller restores from the reader, then calls Finish.
func (st *snapStore) load(base paxos.Slot) (*wal.SnapshotReader, error) {
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
	if r.Meta.Slot != newest {
		r.Close()
		return nil, fmt.Errorf("%w: %s holds the snapshot of slot %d; rename it to %s", wal.ErrCorrupt, path, r.Meta.Slot, filepath.Base(st.files.Path(r.Meta.Slot)))
	}
	if r.Meta.Cluster != st.header.Cluster {
		r.Close()
		return nil, fmt.Errorf("%w: snapshot %s belongs to cluster %016x, not %016x", ErrWrongIdentity, path, r.Meta.Cluster, st.header.Cluster)
	}
	return r, nil
}

// recoveryHint tells an operator what to do about a damaged snapshot at
// slot, for a learner whose log begins after base.
func (st *snapStore) recoveryHint(slot, base paxos.Slot) string {
	slots, _ := st.files.Slots() // NB: only a hint; the damage is the error
	for i := len(slots) - 1; i >= 0; i-- {
		if slots[i] < slot && slots[i] >= base {
			return fmt.Sprintf("move that file out of %s and start again: the member then starts from its snapshot of slot %d", st.files.Dir(), slots[i])
		}
	}
	return fmt.Sprintf("no other snapshot here covers slot %d, where this member's log begins. Remove the damaged file, take a snapshot from a healthy member with 'paxosd snapshot save FILE' (it covers a later slot, which is fine), and put it in %s under the name 'paxosd snapshot inspect FILE' prints",
		base, st.files.Dir())
}

// Save writes the snapshot in the background and reports it to the node.
func (st *snapStore) Save(job paxos.SnapshotJob) {
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		meta := st.header
		meta.Slot, meta.Hash = job.Meta.Slot, job.Meta.Hash
		path, err := st.files.Write(meta, job.Write)
		if err == nil {
			err = st.files.Prune(snapKeep)
		}
		slot := job.Meta.Slot
		if err != nil {
			st.logger.Error("snapshot not written; the log is kept until the next one", "slot", slot, "err", err)
			slot = 0
		} else {
			st.logger.Info("snapshot written", "slot", slot, "path", path)
			st.setNewest(slot)
		}
		// An error means the node stopped; the snapshot is on disk and the
		// next start finds it.
		_ = st.node.Do(context.Background(), func() { st.node.SnapshotSaved(slot) })
	}()
}

func (st *snapStore) setNewest(s paxos.Slot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if s > st.newest {
		st.newest = s
		close(st.saved)
		st.saved = make(chan struct{})
	}
}

// Newest returns the newest durable snapshot's slot, and a channel closed
// when it changes.
func (st *snapStore) Newest() (paxos.Slot, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.newest, st.saved
}

// Receive appends a chunk of the snapshot being received to its file. The
// file is synced only once whole, by Install.
func (st *snapStore) Receive(c paxos.SnapshotChunk) error {
	if c.Offset == 0 {
		if st.recv != nil {
			// A transfer given up: its bytes are of no use.
			st.recv.Close()
			_ = st.fs.Remove(st.recvPath) // NB: a leftover .tmp is removed on the next start anyway
			st.recv = nil
		}
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
	return nil
}

// Install checks the snapshot received whole, puts it in place durably and
// opens it for the learner.
func (st *snapStore) Install(slot paxos.Slot) (paxos.SnapshotMeta, io.ReadCloser, error) {
	f, path := st.recv, st.recvPath
	st.recv = nil
	if f == nil || slot != st.recvSlot || st.recvLen != st.recvSize {
		return paxos.SnapshotMeta{}, nil, fmt.Errorf("server: install of snapshot %d, but %d of %d bytes of snapshot %d were received", slot, st.recvLen, st.recvSize, st.recvSlot)
	}
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return paxos.SnapshotMeta{}, nil, fmt.Errorf("server: sync %s: %w", path, err)
	}
	meta, err := wal.VerifySnapshot(st.fs, path)
	switch {
	case err != nil:
	case meta.Slot != slot:
		err = fmt.Errorf("%w: received snapshot %d holds slot %d", wal.ErrCorrupt, slot, meta.Slot)
	case meta.Cluster != st.header.Cluster:
		err = fmt.Errorf("%w: received snapshot belongs to cluster %016x, not %016x", ErrWrongIdentity, meta.Cluster, st.header.Cluster)
	}
	if err == nil {
		err = st.files.Adopt(path, slot)
	}
	if err != nil {
		_ = st.fs.Remove(path) // NB: the check's error is the one worth reporting
		return paxos.SnapshotMeta{}, nil, err
	}
	st.setNewest(slot)
	if err := st.files.Prune(snapKeep); err != nil {
		st.logger.Warn("old snapshots not removed", "err", err)
	}
	r, err := wal.OpenSnapshot(st.fs, st.files.Path(slot))
	if err != nil {
		return paxos.SnapshotMeta{}, nil, err
	}
	return paxos.SnapshotMeta{Slot: meta.Slot, Hash: meta.Hash}, r, nil
}

// Serve queues a peer's pull; a full queue drops it, and the peer asks
// again.
func (st *snapStore) Serve(m paxos.Message) {
	select {
	case st.pulls <- m:
	default:
		st.logger.Warn("snapshot pull dropped: too many waiting", "peer", m.From)
	}
}

func (st *snapStore) serveLoop() {
	for {
		select {
		case <-st.ctx.Done():
			return
		case m := <-st.pulls:
			reply, err := st.readChunk(m)
			if err != nil {
				st.logger.Warn("snapshot pull not served", "peer", m.From, "slot", m.Slot, "err", err)
				continue
			}
			if st.limiter != nil && len(reply.Value) > 0 {
				if err := st.limiter.WaitN(st.ctx, len(reply.Value)); err != nil {
					return
				}
			}
			st.tr.Send([]paxos.Message{reply})
		}
	}
}

// readChunk reads the chunk m asks for. A snapshot that is gone is answered
// with Size 0.
func (st *snapStore) readChunk(m paxos.Message) (paxos.Message, error) {
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
