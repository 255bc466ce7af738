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
	// Configs are the configurations that govern the slots after Slot.
	// Snapshots written before version 5 hold none.
	Configs History
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

// SnapshotStore is where a node keeps learner snapshots: package server
// keeps them in files, written in the background. Node calls every method
// from its own goroutine.
type SnapshotStore interface {
	// Save starts making job durable and returns at once.
	Save(job SnapshotJob)
	// Saved returns the slots of the snapshots Save made durable since the
	// last call, in the order they became durable; 0 stands for a job that
	// failed. Node asks on every Tick and tells the learner. A job that a
	// crash cuts short is never reported; the learner takes another later.
	Saved() []Slot
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
