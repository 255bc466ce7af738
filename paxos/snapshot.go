package paxos

import (
	"hash/crc32"
	"io"
)

// SnapshotMeta names a learner snapshot: the slot it covers and the
// learner's applied hash at that slot.
type SnapshotMeta struct {
	Slot Slot
	Hash uint64
}

// SnapshotJob is a snapshot a learner captured for its driver to write.
// Write writes the state as of Meta.Slot. It may be called once, from any
// goroutine, while the learner goes on applying: the learner froze the state
// it writes (statemachine.Freezer).
type SnapshotJob struct {
	Meta  SnapshotMeta
	Write func(w io.Writer) error
}

// SnapshotChunk is part of a snapshot received from a peer: Data belongs at
// Offset of snapshot Slot, which is Size bytes long in all.
type SnapshotChunk struct {
	Slot   Slot
	Offset uint64
	Size   uint64
	Data   []byte
}

// SnapshotStore is where a node keeps learner snapshots: the daemon keeps
// them in files (wal.Snapshots), the simulator in memory. Node calls every
// method from its own goroutine.
type SnapshotStore interface {
	// Save makes job durable, at once or in the background. Once it is
	// durable, the driver tells the node with Node.SnapshotSaved. A job that
	// fails, or that a crash cuts short, is never reported; the learner
	// takes another later.
	Save(job SnapshotJob)
	// Receive keeps c, part of a snapshot being received. Chunks arrive in
	// order; one at offset 0 starts the snapshot afresh.
	Receive(c SnapshotChunk) error
	// Install makes the snapshot received whole for slot durable and opens
	// it. The caller reads all of it and closes it.
	Install(slot Slot) (SnapshotMeta, io.ReadCloser, error)
	// Serve answers a peer's MsgSnapshotPull, at once or later, with a
	// MsgSnapshotChunk through the node's transport.
	Serve(m Message)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChunkSum is the checksum a MsgSnapshotChunk carries in Sum: the CRC-32C
// (Castagnoli) of its Value.
func ChunkSum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
