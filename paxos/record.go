package paxos

import "strconv"

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
)

var recordTypeNames = [...]string{
	RecPromise: "Promise",
	RecAccept:  "Accept",
	RecChosen:  "Chosen",
	RecApplied: "Applied",
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
}

// Empty reports whether rd holds no work.
func (rd Ready) Empty() bool {
	return len(rd.Writes) == 0 && len(rd.Messages) == 0 && len(rd.Decided) == 0
}

// AcceptorState is what an acceptor recovers from storage.
type AcceptorState struct {
	Promised Ballot
	Accepted []Entry // in slot order
}

// LearnerState is what a learner recovers from storage.
type LearnerState struct {
	Chosen  []Entry // in slot order; Ballot is unused
	Applied Slot
}

// State is everything a node recovers from storage on start.
type State struct {
	Acceptor AcceptorState
	Learner  LearnerState
}
