package paxos

import (
	"cmp"
	"log/slog"
	"strconv"
)

// NodeID names a member of a cluster. Zero is never a valid member.
type NodeID uint64

// String returns the decimal form of id.
func (id NodeID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Slot is a position in the replicated log. Slots start at 1; zero means
// "none" (for example, nothing applied yet).
type Slot uint64

// String returns the decimal form of s.
func (s Slot) String() string { return strconv.FormatUint(uint64(s), 10) }

// Ballot is a proposal number. Ballots compare by round, then by node, so two
// proposers never share a ballot. The zero Ballot is lower than every ballot a
// proposer uses.
type Ballot struct {
	Round uint64 `msgpack:"r"`
	Node  NodeID `msgpack:"n"`
}

// Compare returns -1, 0 or +1 as b is below, equal to or above o.
func (b Ballot) Compare(o Ballot) int {
	if c := cmp.Compare(b.Round, o.Round); c != 0 {
		return c
	}
	return cmp.Compare(b.Node, o.Node)
}

// Less reports whether b is below o.
func (b Ballot) Less(o Ballot) bool { return b.Compare(o) < 0 }

// IsZero reports whether b is the zero ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// Max returns the higher of b and o.
func (b Ballot) Max(o Ballot) Ballot {
	if b.Less(o) {
		return o
	}
	return b
}

// String prints b as "round.node", for example "7.2".
func (b Ballot) String() string {
	return strconv.FormatUint(b.Round, 10) + "." + strconv.FormatUint(uint64(b.Node), 10)
}

// LogValue makes logs show b as String does, in JSON logs too.
func (b Ballot) LogValue() slog.Value { return slog.StringValue(b.String()) }

// Entry is one slot of the log as an acceptor or learner holds it: the value,
// and for an acceptor the ballot at which it was accepted.
type Entry struct {
	Slot   Slot   `msgpack:"s"`
	Ballot Ballot `msgpack:"b"`
	Value  Value  `msgpack:"v"`
}

// Decision is a chosen slot that a learner applied, with the state machine's
// answer to each command in it, in command order.
type Decision struct {
	Slot    Slot
	Value   Value
	Results []Result
}

// Result is the outcome of one applied command.
type Result struct {
	Session uint64
	Seq     uint64
	// Data is what the state machine returned. For a duplicate it is the
	// answer recorded when the command was first applied, or nil when the
	// session has already moved past Seq.
	Data []byte
	// Duplicate is true when (Session, Seq) had already been applied and the
	// state machine was not called again.
	Duplicate bool
	// Expired is true when the command was refused, not applied, because
	// its session is not open (statemachine.ErrSessionExpired).
	Expired bool
}
