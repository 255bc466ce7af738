package paxos

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// MsgType says what a Message is.
type MsgType uint8

// The message types. Values are part of the wire format: append new types,
// never renumber.
const (
	_ MsgType = iota
	// MsgPrepare is phase 1a: Ballot, and Slot, the first slot the proposer
	// does not know to be chosen. Proposer to acceptors.
	MsgPrepare
	// MsgPromise is phase 1b: Ballot (the one promised), Slot (echoed) and
	// Entries, every value the acceptor accepted at or above Slot.
	MsgPromise
	// MsgAccept is phase 2a: Ballot, Slot and Value. Leader to acceptors.
	MsgAccept
	// MsgAccepted is phase 2b: Ballot and Slot. Acceptor to the proposer.
	MsgAccepted
	// MsgNack refuses a Prepare or Accept: Ballot is the acceptor's promise,
	// which is above the one asked for; Slot is the refused slot, if any.
	MsgNack
	// MsgDecide announces chosen values: Entries. Leader to learners and
	// proposers.
	MsgDecide
	// MsgHeartbeat says the leader is alive: Ballot, and Commit, the prefix
	// of the log the leader knows to be chosen. Leader to proposers and
	// learners.
	MsgHeartbeat
	// MsgCatchUp asks a learner for chosen values from Slot on. Learner to
	// learner.
	MsgCatchUp
	// MsgCatchUpReply answers MsgCatchUp: Entries (chosen values from the
	// asked slot, in slot order, possibly fewer than asked) and Commit, the
	// highest slot the sender knows to be chosen.
	MsgCatchUpReply
	// MsgPropose hands client commands (Cmds) to a proposer, with Time, the
	// proposing member's clock in Unix milliseconds, which the batches it
	// goes into are stamped with.
	MsgPropose
	// MsgLearned tells the proposer on the same node that every slot up to
	// Commit is chosen and durable in the local learner.
	MsgLearned
	// MsgSnapshotted tells an acceptor that the sending learner holds a
	// durable snapshot covering every slot up to Slot. Acceptors use it to
	// decide what they may forget. Learner to acceptors.
	MsgSnapshotted
	// MsgSnapshotOffer answers a MsgCatchUp for slots the learner no longer
	// keeps: Slot is the snapshot it can send instead, Commit the highest
	// slot it knows to be chosen. Learner to learner.
	MsgSnapshotOffer
	// MsgSnapshotPull asks for the bytes of snapshot Slot from Offset on.
	// Learner to learner.
	MsgSnapshotPull
	// MsgSnapshotChunk carries bytes of snapshot Slot: Value from Offset,
	// Size the whole snapshot's size and Sum the ChunkSum of Value. Size 0 says the sender no longer has that snapshot.
	MsgSnapshotChunk
	// MsgSnapshotSaved tells the learner on the same node that its snapshot
	// of Slot is durable. Driver to learner.
	MsgSnapshotSaved
	// MsgPreVote asks an acceptor whether it would promise a new ballot
	// (Ballot, the one the sender would use), without changing anything.
	// An acceptor that heard a leader within its sticky time says no.
	// Proposer to acceptors.
	MsgPreVote
	// MsgPreVoteReply answers MsgPreVote: Grant, and Ballot, the
	// acceptor's promise. Acceptor to proposer.
	MsgPreVoteReply
	// MsgHeartbeatAck answers a leader's heartbeat or MsgConfirm: Ballot is
	// the acceptor's promise, Slot the confirmation round it answers (0
	// for a heartbeat). It tells the leader which acceptors it reaches.
	// Acceptor to proposer.
	MsgHeartbeatAck
	// MsgProgress answers a leader's heartbeat with Commit, the learner's
	// applied slot; the leader promotes joining members by it. Learner to
	// proposer.
	MsgProgress
	// MsgTimeoutNow hands leadership over: the receiver campaigns at once,
	// without a pre-vote, above Ballot. Leader to proposer.
	MsgTimeoutNow
	// MsgConfirm asks an acceptor to confirm that the sender still leads:
	// Ballot, and Slot, the number of the confirmation round, echoed in the
	// MsgHeartbeatAck. Linearizable reads wait for one round (docs/design.md,
	// "Reads"). Leader to acceptors.
	MsgConfirm
)

var msgTypeNames = [...]string{
	MsgPrepare:       "Prepare",
	MsgPromise:       "Promise",
	MsgAccept:        "Accept",
	MsgAccepted:      "Accepted",
	MsgNack:          "Nack",
	MsgDecide:        "Decide",
	MsgHeartbeat:     "Heartbeat",
	MsgCatchUp:       "CatchUp",
	MsgCatchUpReply:  "CatchUpReply",
	MsgPropose:       "Propose",
	MsgLearned:       "Learned",
	MsgSnapshotted:   "Snapshotted",
	MsgSnapshotOffer: "SnapshotOffer",
	MsgSnapshotPull:  "SnapshotPull",
	MsgSnapshotChunk: "SnapshotChunk",
	MsgSnapshotSaved: "SnapshotSaved",
	MsgPreVote:       "PreVote",
	MsgPreVoteReply:  "PreVoteReply",
	MsgHeartbeatAck:  "HeartbeatAck",
	MsgProgress:      "Progress",
	MsgTimeoutNow:    "TimeoutNow",
	MsgConfirm:       "Confirm",
}

// String returns the type's name, for example "Promise".
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is a known message type.
func (t MsgType) Valid() bool { return int(t) < len(msgTypeNames) && msgTypeNames[t] != "" }

// Message is what the roles send each other. Which fields mean something
// depends on Type; see the MsgType constants. A Message handed to a core or a
// transport is not modified afterwards by the one who handed it over, so
// slices in it may be shared.
//
// The msgpack tags are the wire format: package wire encodes, decodes and
// compares messages from them alone. Renaming a tag, or adding a field,
// changes the protocol and needs a new wire.ProtocolVersion.
type Message struct {
	Type    MsgType   `msgpack:"t"`
	From    NodeID    `msgpack:"f"`
	To      NodeID    `msgpack:"-"` // not on the wire; the receiver fills it in
	Ballot  Ballot    `msgpack:"b"`
	Slot    Slot      `msgpack:"s,omitempty"`
	Commit  Slot      `msgpack:"c,omitempty"`
	Value   Value     `msgpack:"v,omitempty"`
	Entries []Entry   `msgpack:"e,omitempty"`
	Cmds    []Command `msgpack:"x,omitempty"`
	Offset  uint64    `msgpack:"p,omitempty"`
	Size    uint64    `msgpack:"z,omitempty"`
	Sum     uint32    `msgpack:"k,omitempty"`
	Grant   bool      `msgpack:"g,omitempty"`
	Time    uint64    `msgpack:"m,omitempty"`
}

// IsLocal reports whether t only ever passes between the parts of one node,
// never over the network.
func (t MsgType) IsLocal() bool {
	return t == MsgPropose || t == MsgLearned || t == MsgSnapshotSaved
}

// String gives a compact description for logs and simulator traces: the
// type, sender, receiver and ballot, then every other field that is set,
// named by its wire key, for example "Accept 1->2 b=7.1 s=12 v=96B".
func (m Message) String() string {
	b := make([]byte, 0, 64)
	b = fmt.Appendf(b, "%s %d->%d b=%s", m.Type, m.From, m.To, m.Ballot)
	v := reflect.ValueOf(m)
	for _, f := range messageFields {
		fv := v.Field(f.index)
		if fv.IsZero() || (fv.Kind() == reflect.Slice && fv.Len() == 0) {
			continue
		}
		b = append(b, ' ')
		b = append(b, f.key...)
		b = append(b, '=')
		switch x := fv.Interface().(type) {
		case Value:
			b = fmt.Appendf(b, "%dB", len(x))
		case []Entry:
			b = fmt.Appendf(b, "[%d..%d]#%d", x[0].Slot, x[len(x)-1].Slot, len(x))
		case []Command:
			b = fmt.Appendf(b, "#%d", len(x))
		case uint32:
			b = fmt.Appendf(b, "%08x", x)
		default:
			b = fmt.Appendf(b, "%v", x)
		}
	}
	return string(b)
}

// messageFields are the fields String prints after its header, found from
// the struct tags, so that a field added later is printed too.
var messageFields = func() []struct {
	index int
	key   string
} {
	var out []struct {
		index int
		key   string
	}
	t := reflect.TypeFor[Message]()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		switch f.Name {
		case "Type", "From", "To", "Ballot":
			continue // in the header
		}
		out = append(out, struct {
			index int
			key   string
		}{i, key})
	}
	return out
}()
