package wire

import (
	"errors"
	"strconv"

	"github.com/paxosd/paxosd/paxos"
)

// ProtocolVersion is the version of the wire format. Both sides of a
// connection must speak the same one; the handshake checks it. Version 2 left
// Message.To off the wire; version 3 added snapshot transfer (the Snapshot*
// message types and the Offset, Size and Sum fields); version 4 encodes
// every message from its struct tags (an empty byte string is always an
// empty bin, never nil) and gives the client protocol real fields for a
// snapshot's slot and offset. Version 5 added reconfiguration and stable
// leadership: the PreVote, PreVoteReply, HeartbeatAck, Progress and
// TimeoutNow messages, Message.Grant, and the client's ReqMembers and
// ReqTransfer with Request.Change. Version 6 added Confirm, and the round
// a HeartbeatAck answers in its Slot, for reads without the log, and client
// sessions opened through the log. Version 7 changed no message but the KV
// machine's commands (ranges, delete-range, transactions, revisions), which
// members of version 6 would apply differently. Version 8 added ReqWatch
// with Request.Wait, and the KV machine's history: compaction, reads at a
// past revision, and snapshots that members of version 7 cannot read.
const ProtocolVersion = 8

// HelloKind says what a connection is for.
type HelloKind uint8

// The kinds of connection.
const (
	_ HelloKind = iota
	// HelloPeer opens a member-to-member connection that carries
	// paxos.Messages.
	HelloPeer
	// HelloClient opens a client connection that carries the requests and
	// responses of package clientapi.
	HelloClient
)

// Valid reports whether k is a known kind.
func (k HelloKind) Valid() bool { return k == HelloPeer || k == HelloClient }

// String names the kind.
func (k HelloKind) String() string {
	switch k {
	case HelloPeer:
		return "peer"
	case HelloClient:
		return "client"
	}
	return "HelloKind(" + strconv.Itoa(int(k)) + ")"
}

// Hello is the first frame each side of a connection sends. The side that
// accepted the connection answers with its own Hello, so both sides learn who
// is at the other end from the handshake alone, never from the address.
//
// NB: these keys are frozen. A member reads another version's Hello to tell
// an operator which version it speaks: it skips keys it does not know that
// hold numbers or strings, so a later version may add such keys but must
// not change these.
type Hello struct {
	Kind    HelloKind `msgpack:"k"`
	Version uint64    `msgpack:"v"`
	// Cluster is the cluster ID. A client that does not know it sends 0.
	Cluster uint64 `msgpack:"c,omitempty"`
	// From is the sender's node ID; 0 for a client.
	From paxos.NodeID `msgpack:"f,omitempty"`
	// To is the node ID the dialer expects to reach; 0 for a client.
	To paxos.NodeID `msgpack:"o,omitempty"`
	// ClientAddr is the address where the sender serves clients, so that
	// members can redirect clients to the leader.
	ClientAddr string `msgpack:"a,omitempty"`
	// PeerAddr is where the sending member accepts peers, so that a member
	// that does not know it yet (it joined later) can answer it. Added in
	// version 5; older members skip it.
	PeerAddr string `msgpack:"p,omitempty"`
	// Data identifies the sending member's data directory: a random number
	// drawn when it was initialised. A member that comes back under the
	// same node ID with other data lost its disk, and its peers refuse it.
	// Added in issue 14's version of protocol 8; older members send none,
	// and are not checked.
	Data uint64 `msgpack:"d,omitempty"`
}

// lenientKeys makes the decoder skip keys it does not know in a Hello (if
// they hold a number or a string): a later version may add a key, and this
// one must still read the version.
func (Hello) lenientKeys() {}

// MaxHelloFrame bounds the first frame of a connection: nothing is
// allocated for a stranger beyond this before it has identified itself.
const MaxHelloFrame = 1024

// ErrHandshake reports a connection refused during the handshake: another
// cluster, an unknown node, a wrong protocol version.
var ErrHandshake = errors.New("wire: handshake refused")
