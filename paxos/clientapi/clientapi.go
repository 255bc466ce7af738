package clientapi

import (
	"strconv"

	"github.com/paxosd/paxosd/paxos"
)

// RequestKind says what a client asks for.
type RequestKind uint8

// The kinds of client request. Values are part of the protocol: append new
// kinds, never renumber.
const (
	_ RequestKind = iota
	// ReqCommand proposes Data as a command of session (Session, Seq). Only
	// the leader takes it; the answer is the state machine's result once
	// the command is applied.
	ReqCommand
	// ReqQuery asks the contacted member's own state machine (Data is the
	// query), without going through the log: a serializable read.
	ReqQuery
	// ReqStatus asks the member for its view of the cluster.
	ReqStatus
	// ReqRead asks for a linearizable answer to Data, a read-only command.
	// The leader answers it from its learner's state once a round of its
	// acceptors confirmed that it still leads (docs/design.md, "Reads");
	// with a machine that answers no queries, it proposes Data through the
	// log and answers once it is applied at its place in the order. Unlike
	// ReqCommand it takes no session: a read may be repeated; it changes
	// nothing.
	ReqRead
	// ReqSnapshot reads a snapshot of the member's learner, a chunk per
	// request. Slot 0 asks the member to take a fresh snapshot and answers
	// with its first chunk; otherwise Slot names the snapshot and Offset
	// the byte to read from. The answer carries the chunk in Data and the
	// snapshot's Slot and Size.
	ReqSnapshot
	// ReqMembers changes the configuration as Change says. Only the leader
	// takes it; the answer comes once the change is chosen, with the slot
	// that chose it in Slot (it governs from Slot+paxos.ConfigDelay on).
	ReqMembers
	// ReqTransfer asks the leader to hand leadership to Change.ID.
	ReqTransfer
	// ReqSession opens a client session through the log. Data is its idle
	// timeout (statemachine.EncodeSessionTTL; empty: the default). The
	// answer's Data is the session's ID, a uvarint. Only the leader takes
	// it; retrying one whose outcome is unknown at worst opens a session
	// that nobody uses, which expires.
	ReqSession
	// ReqWatch asks the contacted member for the changes a watch query
	// (Data, machine-defined: statemachine.KVWatch) names, from its
	// learner's state. If there are none yet, the member holds the request
	// for up to Wait milliseconds (at most its request timeout) and answers
	// once some are applied, or with nothing when the wait ends. Either
	// way the answer says where the next request continues, so a client
	// that follows them, at any member, sees every change once.
	ReqWatch
	// ReqKeepAlive renews lease Data (a uvarint) at the leader: its
	// deadline becomes its TTL from now. The answer's Data is the TTL in
	// milliseconds (a uvarint), or empty if the lease is not granted.
	ReqKeepAlive
)

var requestKindNames = [...]string{ReqCommand: "command", ReqQuery: "query", ReqStatus: "status", ReqRead: "read", ReqSnapshot: "snapshot",
	ReqMembers: "members", ReqTransfer: "transfer", ReqSession: "session", ReqWatch: "watch", ReqKeepAlive: "keep-alive"}

// ChangeOp says what a ReqMembers does.
type ChangeOp uint8

// The configuration changes. Values are part of the protocol.
const (
	_ ChangeOp = iota
	// ChangeAdd adds member ID with PeerAddr and ClientAddr. It joins as a
	// learner only; the leader gives it Roles once it has caught up.
	ChangeAdd
	// ChangeRemove removes member ID for good: the ID may never return.
	ChangeRemove
	// ChangeRoles gives member ID Roles at once.
	ChangeRoles
)

var changeOpNames = [...]string{ChangeAdd: "add", ChangeRemove: "remove", ChangeRoles: "roles"}

// Valid reports whether o is a known change.
func (o ChangeOp) Valid() bool { return int(o) < len(changeOpNames) && changeOpNames[o] != "" }

// String names the change.
func (o ChangeOp) String() string {
	if o.Valid() {
		return changeOpNames[o]
	}
	return "ChangeOp(" + strconv.Itoa(int(o)) + ")"
}

// Change is the configuration change a ReqMembers asks for, or with
// ReqTransfer the member to hand leadership to (ID). Force skips the check
// that the new configuration keeps a quorum of acceptors the leader reaches.
type Change struct {
	Op         ChangeOp     `msgpack:"o,omitempty"` // none for ReqTransfer
	ID         paxos.NodeID `msgpack:"i"`
	Roles      paxos.Role   `msgpack:"r,omitempty"`
	PeerAddr   string       `msgpack:"p,omitempty"`
	ClientAddr string       `msgpack:"a,omitempty"`
	Force      bool         `msgpack:"f,omitempty"`
}

// Valid reports whether k is a known kind.
func (k RequestKind) Valid() bool { return int(k) < len(requestKindNames) && requestKindNames[k] != "" }

// String names the kind.
func (k RequestKind) String() string {
	if k.Valid() {
		return requestKindNames[k]
	}
	return "RequestKind(" + strconv.Itoa(int(k)) + ")"
}

// Request is a frame from a client.
type Request struct {
	ID      uint64      `msgpack:"i"`
	Kind    RequestKind `msgpack:"k"`
	Session uint64      `msgpack:"s,omitempty"`
	Seq     uint64      `msgpack:"q,omitempty"`
	Data    []byte      `msgpack:"d,omitempty"`
	// Slot and Offset say which snapshot, and where in it, a ReqSnapshot
	// reads.
	Slot   paxos.Slot `msgpack:"n,omitempty"`
	Offset uint64     `msgpack:"p,omitempty"`
	// Change is what a ReqMembers or ReqTransfer asks for.
	Change *Change `msgpack:"c,omitempty"`
	// Wait is how long, in milliseconds, a ReqWatch may be held for
	// changes to happen.
	Wait uint32 `msgpack:"w,omitempty"`
}

// Code is the outcome of a client request.
type Code uint8

// The outcomes. Every code but CodeOK says whether the command may have been
// applied, which decides what a client may safely do next.
const (
	// CodeOK: done; Data holds the answer.
	CodeOK Code = iota
	// CodeNotLeader: this member does not lead, so the command was not
	// proposed. Leader and LeaderAddr name the leader if it is known.
	CodeNotLeader
	// CodeOverloaded: the leader's queue is full; not proposed.
	CodeOverloaded
	// CodeTimeout: proposed, but not applied in time. It may still be
	// applied; retry with the same (Session, Seq) to find out.
	CodeTimeout
	// CodeBadRequest: the request was refused as malformed or too large;
	// not proposed.
	CodeBadRequest
	// CodeUnavailable: the member cannot serve the request (for example
	// its storage failed, or it runs no learner for a query); not
	// proposed.
	CodeUnavailable
	// CodeStale: the command's session already moved past Seq, so its
	// answer is gone. It was applied at most once.
	CodeStale
	// CodeRefused: the request is well formed but cannot be done as
	// things stand (a configuration change that conflicts with the
	// configuration, or while another is in progress); nothing changed.
	CodeRefused
	// CodeSessionExpired: the command's session is not open (it was idle
	// for longer than its timeout, was pushed out of a full session table,
	// or was never opened), so the command was not applied now. If this
	// was a retry, an earlier attempt may have been applied.
	CodeSessionExpired
	// CodePermissionDenied: the client's certificate does not allow this
	// kind of request on this member; not proposed.
	CodePermissionDenied
)

var codeNames = [...]string{"ok", "not leader", "overloaded", "timeout", "bad request", "unavailable", "stale", "refused", "session expired", "permission denied"}

// Valid reports whether c is a known code.
func (c Code) Valid() bool { return int(c) < len(codeNames) }

// String names the code.
func (c Code) String() string {
	if c.Valid() {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Response answers the Request with the same ID.
type Response struct {
	ID   uint64 `msgpack:"i"`
	Code Code   `msgpack:"e"`
	// Message explains a code other than CodeOK.
	Message    string       `msgpack:"m,omitempty"`
	Leader     paxos.NodeID `msgpack:"l,omitempty"`
	LeaderAddr string       `msgpack:"a,omitempty"`
	// Data is the state machine's answer.
	Data []byte `msgpack:"d,omitempty"`
	// Status answers ReqStatus.
	Status *Status `msgpack:"S,omitempty"`
	// Slot and Size describe the snapshot a ReqSnapshot reads.
	Slot paxos.Slot `msgpack:"s,omitempty"`
	Size uint64     `msgpack:"z,omitempty"`
}

// Status is one member's view of itself and the cluster, as `paxosd status`
// shows it.
type Status struct {
	// MemberInfo is the member itself: ID, roles and addresses.
	MemberInfo
	// Leader is the leader this member knows of (0: none); IsLeader says
	// whether it is this member.
	Leader   paxos.NodeID `msgpack:"l,omitempty"`
	IsLeader bool         `msgpack:"L,omitempty"`
	// Promised is the acceptor's promised ballot (zero without the role).
	Promised paxos.Ballot `msgpack:"b,omitempty"`
	// Chosen is the highest slot this member knows to be chosen.
	Chosen paxos.Slot `msgpack:"c,omitempty"`
	// Applied is the learner's applied slot, and AppliedHash its running
	// hash over every value applied up to it.
	Applied     paxos.Slot `msgpack:"A,omitempty"`
	AppliedHash uint64     `msgpack:"h,omitempty"`
	// SnapshotSlot is the slot of the learner's newest durable snapshot
	// (0: none), and LogBytes the size of the member's log store on disk.
	SnapshotSlot paxos.Slot `msgpack:"n,omitempty"`
	LogBytes     uint64     `msgpack:"g,omitempty"`
	// Members lists the cluster, as this member's newest configuration
	// has it, with the addresses this member knows; ConfigSlot is the
	// slot whose value made that configuration (0: the bootstrap one).
	Members    []MemberInfo `msgpack:"M,omitempty"`
	ConfigSlot paxos.Slot   `msgpack:"C,omitempty"`
	// Cluster is the cluster ID.
	Cluster uint64 `msgpack:"k,omitempty"`
	// Sessions is how many client sessions the learner's table holds.
	Sessions uint64 `msgpack:"x,omitempty"`
}

// MemberInfo is a member as another member knows it: its roles and
// addresses. ClientAddr is empty until the member has been heard from.
type MemberInfo struct {
	ID         paxos.NodeID `msgpack:"i"`
	Roles      paxos.Role   `msgpack:"r,omitempty"`
	Target     paxos.Role   `msgpack:"t,omitempty"` // roles it gets once caught up
	PeerAddr   string       `msgpack:"p,omitempty"`
	ClientAddr string       `msgpack:"a,omitempty"`
}
