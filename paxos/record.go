package paxos

import (
	"io"
	"strconv"
)

// RecordType says what a Record makes durable.
type RecordType uint8

// The record types.
const (
	_ RecordType = iota
	// RecPromise stores the acceptor's promised Ballot.
	RecPromise
	// RecAccept stores the value an acceptor accepted in Slot at Ballot.
	RecAccept
	// RecChosen stores a value a learner knows to be chosen in Slot.
	RecChosen
	// RecApplied stores the learner's applied slot (in Slot).
	RecApplied
	// RecSnapshot stores that the learner's state up to Slot is in a
	// durable snapshot, and drops its chosen values up to Slot.
	RecSnapshot
	// RecTruncate stores the acceptor's floor, Slot, and drops its accepted
	// values up to Slot. See acceptor.maybeTruncate for when that is safe.
	RecTruncate
)

var recordTypeNames = [...]string{
	RecPromise:  "Promise",
	RecAccept:   "Accept",
	RecChosen:   "Chosen",
	RecApplied:  "Applied",
	RecSnapshot: "Snapshot",
	RecTruncate: "Truncate",
}

// String returns the record type's name.
func (t RecordType) String() string {
	if int(t) < len(recordTypeNames) && recordTypeNames[t] != "" {
		return recordTypeNames[t]
	}
	return "RecordType(" + strconv.Itoa(int(t)) + ")"
}

// Record is one write a core asks its driver to make durable before the
// messages of the same Ready are sent.
type Record struct {
	Type   RecordType
	Slot   Slot
	Ballot Ballot
	Value  Value
}

// Ready is the work a core hands to its driver.
type Ready struct {
	// Writes must be durable (synced) before any of Messages is sent.
	Writes []Record
	// Messages may be lost, reordered or duplicated in flight.
	Messages []Message
	// Decided are newly applied slots, gap-free and in slot order.
	Decided []Decision
	// Snapshot is a snapshot the learner captured, for the driver to make
	// durable after Writes (see SnapshotStore.Save).
	Snapshot *SnapshotJob
	// Chunks are snapshot bytes received from a peer, in order, for the
	// driver to keep (SnapshotStore.Receive).
	Chunks []SnapshotChunk
	// Install, when not zero, is the slot of a snapshot received whole: the
	// driver makes it durable and hands it to the learner (Node.Flush).
	Install Slot
}

// Empty reports whether rd holds no work.
func (rd Ready) Empty() bool {
	return len(rd.Writes) == 0 && len(rd.Messages) == 0 && len(rd.Decided) == 0 &&
		rd.Snapshot == nil && len(rd.Chunks) == 0 && rd.Install == 0
}

// AcceptorState is what an acceptor recovers from storage.
type AcceptorState struct {
	Promised Ballot
	// Floor is the slot up to which the acceptor dropped what it accepted.
	Floor    Slot
	Accepted []Entry // in slot order, all above Floor
}

// LearnerState is what a learner recovers from storage.
type LearnerState struct {
	// Base is the slot of the last snapshot the learner recorded with
	// RecSnapshot: chosen values up to Base may be gone, and a restart
	// needs a snapshot at Base or later.
	Base    Slot
	Chosen  []Entry // in slot order; Ballot is unused
	Applied Slot
	// Snapshot and SnapshotData are filled in by the driver, not the WAL:
	// the newest snapshot at Base or later, which the learner restores
	// before it replays Chosen. Slot 0 means none.
	Snapshot     SnapshotMeta
	SnapshotData io.Reader
}

// State is everything a node recovers from storage on start.
type State struct {
	Acceptor AcceptorState
	Learner  LearnerState
}
