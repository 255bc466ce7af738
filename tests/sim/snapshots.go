package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/paxosd/paxosd/paxos"
)

// snapStore is the simulator's paxos.SnapshotStore for one node. Durable
// snapshots survive crashes; a snapshot being written and one being received
// do not, except that a crash may land after a write's rename (the snapshot
// is then durable, but the learner never heard so).
type snapStore struct {
	s  *sim
	id paxos.NodeID
	// durable snapshots by slot: what a restart finds on disk.
	durable map[paxos.Slot]snapFile
	// writing: snapshots being written, each finishing at a tick.
	writing []pendingSnap
	// recv is the snapshot being received, and recvSlot its slot.
	recv     []byte
	recvSlot paxos.Slot
	recvSize uint64
	// crashAfterInstall crashes the node once the install it is in made
	// the received snapshot durable, before the learner restores it.
	crashAfterInstall bool
}

type snapFile struct {
	meta paxos.SnapshotMeta
	data []byte
}

type pendingSnap struct {
	file snapFile
	at   int64
}

func newSnapStore(s *sim, id paxos.NodeID) *snapStore {
	return &snapStore{s: s, id: id, durable: map[paxos.Slot]snapFile{}}
}

// Save writes the snapshot now, as the daemon's background writer would
// capture it, and makes it durable a few ticks later.
func (st *snapStore) Save(job paxos.SnapshotJob) {
	var buf bytes.Buffer
	if err := job.Write(&buf); err != nil {
		st.s.fail("node %d: snapshot of slot %d: %v", st.id, job.Meta.Slot, err)
	}
	at := st.s.now + 1 + int64(st.s.rng.IntN(6))
	st.writing = append(st.writing, pendingSnap{snapFile{job.Meta, buf.Bytes()}, at})
	st.s.tracef("node %d writes snapshot of slot %d (%d bytes), durable at tick %d", st.id, job.Meta.Slot, buf.Len(), at)
}

// finishWrites makes due snapshots durable and tells the node.
func (st *snapStore) finishWrites(n *simNode) {
	kept := st.writing[:0]
	for _, p := range st.writing {
		if p.at > st.s.now {
			kept = append(kept, p)
			continue
		}
		st.makeDurable(p.file)
		st.s.stats.Snapshots++
		st.s.tracef("node %d: snapshot of slot %d durable", st.id, p.file.meta.Slot)
		n.n.SnapshotSaved(p.file.meta.Slot)
	}
	st.writing = kept
}

// makeDurable puts f in place and prunes all but the newest two, as the
// daemon does.
func (st *snapStore) makeDurable(f snapFile) {
	st.durable[f.meta.Slot] = f
	slots := slices.Sorted(maps.Keys(st.durable))
	for len(slots) > 2 {
		delete(st.durable, slots[0])
		slots = slots[1:]
	}
}

// crash loses what was not durable. A write in progress was renamed into
// place, or was not, at random.
func (st *snapStore) crash() {
	for _, p := range st.writing {
		if st.s.rng.IntN(2) == 0 {
			st.makeDurable(p.file)
			st.s.tracef("node %d: snapshot of slot %d made durable by the crash, unreported", st.id, p.file.meta.Slot)
		}
	}
	st.writing = nil
	st.recv, st.recvSlot, st.recvSize = nil, 0, 0
	st.crashAfterInstall = false
}

// newest returns the newest durable snapshot, if any.
func (st *snapStore) newest() (snapFile, bool) {
	if len(st.durable) == 0 {
		return snapFile{}, false
	}
	return st.durable[slices.Max(slices.Collect(maps.Keys(st.durable)))], true
}

func (st *snapStore) Receive(c paxos.SnapshotChunk) error {
	if c.Offset == 0 {
		st.recv, st.recvSlot, st.recvSize = nil, c.Slot, c.Size
	}
	if c.Slot != st.recvSlot || c.Offset != uint64(len(st.recv)) || c.Size != st.recvSize {
		st.s.fail("node %d: snapshot chunk %d+%d of slot %d out of order (have %d bytes of slot %d)", st.id, c.Offset, len(c.Data), c.Slot, len(st.recv), st.recvSlot)
	}
	st.recv = append(st.recv, c.Data...)
	return nil
}

var errInstallCrash = errors.New("sim: node crashed during snapshot install")

func (st *snapStore) Install(slot paxos.Slot) (paxos.SnapshotMeta, io.ReadCloser, error) {
	if slot != st.recvSlot || uint64(len(st.recv)) != st.recvSize {
		st.s.fail("node %d: install of slot %d with %d of %d bytes of slot %d", st.id, slot, len(st.recv), st.recvSize, st.recvSlot)
	}
	f, err := decodeSnapFile(st.recv)
	if err != nil {
		st.s.fail("node %d: received snapshot of slot %d does not decode: %v", st.id, slot, err)
	}
	st.recv, st.recvSlot, st.recvSize = nil, 0, 0
	st.makeDurable(f)
	if st.s.rng.Float64() < st.s.f.saveCrash*5 {
		st.crashAfterInstall = true
		return paxos.SnapshotMeta{}, nil, errInstallCrash
	}
	return f.meta, io.NopCloser(bytes.NewReader(f.data)), nil
}

// Serve answers a pull at once with one chunk of a durable snapshot.
func (st *snapStore) Serve(m paxos.Message) {
	reply := paxos.Message{Type: paxos.MsgSnapshotChunk, From: st.id, To: m.From, Slot: m.Slot, Offset: m.Offset}
	f, ok := st.durable[m.Slot]
	if ok {
		file := encodeSnapFile(f)
		if m.Offset >= uint64(len(file)) {
			st.s.fail("node %d: pull of slot %d at %d, beyond its %d bytes", st.id, m.Slot, m.Offset, len(file))
		}
		end := min(uint64(len(file)), m.Offset+uint64(st.s.chunkSize))
		reply.Value = file[m.Offset:end]
		reply.Size = uint64(len(file))
		reply.Sum = paxos.ChunkSum(reply.Value)
	}
	transport{st.s, st.id}.Send([]paxos.Message{reply})
}

// encodeSnapFile is the sim's snapshot file: slot, hash, then the data.
func encodeSnapFile(f snapFile) []byte {
	b := fmt.Appendf(nil, "%020d%020d", f.meta.Slot, f.meta.Hash)
	return append(b, f.data...)
}

func decodeSnapFile(b []byte) (snapFile, error) {
	var f snapFile
	if len(b) < 40 {
		return f, fmt.Errorf("%d bytes", len(b))
	}
	if _, err := fmt.Sscanf(string(b[:40]), "%020d%020d", &f.meta.Slot, &f.meta.Hash); err != nil {
		return f, err
	}
	f.data = bytes.Clone(b[40:])
	return f, nil
}
