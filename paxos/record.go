package paxos

import (
	"fmt"
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
	// values up to Slot. When that is safe: docs/design.md, "Truncation".
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

// Lazy reports whether r may be written without waiting for the disk: a
// learner's copy of a chosen value and its applied slot. Both restate what a
// quorum of acceptors already holds synced, so a crash that loses them loses
// nothing a client was told: the learner learns the slots again. Every other
// record is a promise to peers (an acceptor's promise, vote or floor) or
// lets peers drop data (a snapshot base), and is synced before any message
// that depends on it. Why this is safe: docs/design.md, "Durability".
func (r Record) Lazy() bool { return r.Type == RecChosen || r.Type == RecApplied }

// ReadState answers a linearizable read the leader was asked to confirm
// (proposer.ReadIndex): with OK, the read may be served from the local
// learner's state once it applied slot Index; without, leadership was lost
// first and the read should be retried at the leader.
type ReadState struct {
	ID    uint64
	Index Slot
	OK    bool
}

// Ready is the work a core hands to its driver.
type Ready struct {
	// Writes must be durable (synced) before any of Messages is sent,
	// except Lazy ones, which need only be written before them, and synced
	// before a message that reports the learner's progress (MsgProgress).
	Writes []Record
	// Messages may be lost, reordered or duplicated in flight.
	Messages []Message
	// Decided are newly applied slots, gap-free and in slot order.
	Decided []Decision
	// Reads answer the proposer's ReadIndex calls.
	Reads []ReadState
	// Snapshot is a snapshot the learner captured, for the driver to make
	// durable after Writes (see SnapshotStore.Save).
	Snapshot *SnapshotJob
	// Chunks are snapshot bytes received from a peer, in order, for the
	// driver to keep (SnapshotStore.Receive).
	Chunks []SnapshotChunk
	// Install, when not zero, is the slot of a snapshot received whole: the
	// driver makes it durable and hands it to the learner (Node.Flush).
	Install Slot
	// Configs, when not nil, are the learner's configurations, changed
	// since the last Ready: the node hands them to its other cores.
	Configs History
}

// Empty reports whether rd holds no work.
func (rd Ready) Empty() bool {
	return len(rd.Writes) == 0 && len(rd.Messages) == 0 && len(rd.Decided) == 0 &&
		rd.Snapshot == nil && len(rd.Chunks) == 0 && rd.Install == 0 && rd.Configs == nil
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
	// Configs are the configurations as of Base, filled in by the driver:
	// the ones the snapshot recorded, or the stored bootstrap
	// configuration for a snapshot without them or no snapshot.
	Configs History
}

// Check reports what is wrong with a recovered acceptor state: a value
// accepted above the promise (invariant 3 of docs/design.md, as stored), or
// a slot at or below the floor, which the truncation that raised the floor
// dropped. Storage and the member assembly both call it.
func (st AcceptorState) Check() error {
	for i, e := range st.Accepted {
		switch {
		case st.Promised.Less(e.Ballot):
			return fmt.Errorf("slot %d accepted at ballot %v, above promised %v", e.Slot, e.Ballot, st.Promised)
		case e.Slot <= st.Floor:
			return fmt.Errorf("slot %d accepted at or below the floor %d", e.Slot, st.Floor)
		case i > 0 && e.Slot <= st.Accepted[i-1].Slot:
			return fmt.Errorf("slot %d recovered out of order, after slot %d", e.Slot, st.Accepted[i-1].Slot)
		}
	}
	return nil
}

// Check reports what is wrong with a recovered learner state: the applied
// slot must be at or above the snapshot base, the chosen log must start
// above the base, in order, and hold every slot from the base up to the
// applied slot (a restart replays them). Storage and the member assembly
// both call it.
func (st LearnerState) Check() error {
	if st.Applied < st.Base {
		return fmt.Errorf("applied slot %d is below the snapshot base %d", st.Applied, st.Base)
	}
	next := st.Base + 1 // the next slot the replay needs
	for i, e := range st.Chosen {
		switch {
		case e.Slot <= st.Base:
			return fmt.Errorf("chosen slot %d is at or below the snapshot base %d", e.Slot, st.Base)
		case i > 0 && e.Slot <= st.Chosen[i-1].Slot:
			return fmt.Errorf("chosen slot %d recovered out of order, after slot %d", e.Slot, st.Chosen[i-1].Slot)
		case e.Slot == next:
			next++
		}
	}
	if next <= st.Applied {
		return fmt.Errorf("applied slot %d, but the chosen value of slot %d is missing (snapshot base %d)", st.Applied, next, st.Base)
	}
	return nil
}

// State is everything a node recovers from storage on start.
type State struct {
	Acceptor AcceptorState
	Learner  LearnerState
}
