package paxos

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ProtocolVersion is the version of the wire format. Both sides of a
// connection must speak the same one; the handshake checks it. Version 2
// left Message.To off the wire; version 3 added snapshot transfer (the
// Snapshot* message types and the Offset, Size and Sum fields).
const ProtocolVersion = 3

// HelloKind says what a connection is for.
type HelloKind uint8

// The kinds of connection.
const (
	_ HelloKind = iota
	// HelloPeer opens a member-to-member connection that carries Messages.
	HelloPeer
	// HelloClient opens a client connection that carries ClientRequests
	// and ClientResponses.
	HelloClient
)

// Hello is the first frame each side of a connection sends. The side that
// accepted the connection answers with its own Hello, so both sides learn who
// is at the other end from the handshake alone, never from the address.
type Hello struct {
	Kind    HelloKind `msgpack:"k"`
	Version uint64    `msgpack:"v"`
	// Cluster is the cluster ID. A client that does not know it sends 0.
	Cluster uint64 `msgpack:"c"`
	// From is the sender's node ID; 0 for a client.
	From NodeID `msgpack:"f"`
	// To is the node ID the dialer expects to reach; 0 for a client.
	To NodeID `msgpack:"o"`
	// ClientAddr is the address where the sender serves clients, so that
	// members can redirect clients to the leader.
	ClientAddr string `msgpack:"a"`
}

// maxAddr bounds an address in a frame.
const maxAddr = 256

// maxHelloFrame bounds the first frame of a connection: nothing is allocated
// for a stranger beyond this before it has identified itself.
const maxHelloFrame = 1024

func (h Hello) encode(e *msgpack.Encoder) error {
	e.EncodeMapLen(6)
	encodeKey(e, "k")
	e.EncodeUint(uint64(h.Kind))
	encodeKey(e, "v")
	e.EncodeUint(h.Version)
	encodeKey(e, "c")
	e.EncodeUint(h.Cluster)
	encodeKey(e, "f")
	e.EncodeUint(uint64(h.From))
	encodeKey(e, "o")
	e.EncodeUint(uint64(h.To))
	encodeKey(e, "a")
	return e.EncodeString(h.ClientAddr)
}

func (h *Hello) decode(x *decoder) error {
	return x.fields(3, func(k key) (uint32, error) {
		var err error
		var u uint64
		switch k.name() {
		case "k":
			u, err = x.uint()
			h.Kind = HelloKind(u)
			return 1, err
		case "v":
			h.Version, err = x.uint()
			return 2, err
		case "c":
			h.Cluster, err = x.uint()
			return 4, err
		case "f":
			u, err = x.uint()
			h.From = NodeID(u)
			return 8, err
		case "o":
			u, err = x.uint()
			h.To = NodeID(u)
			return 16, err
		case "a":
			h.ClientAddr, err = x.string(maxAddr, "client address")
			return 32, err
		}
		return 0, nil
	})
}

// RequestKind says what a client asks for.
type RequestKind uint8

// The kinds of client request.
const (
	_ RequestKind = iota
	// ReqCommand proposes Data as a command of session (Session, Seq). Only
	// the leader takes it; the answer is the state machine's result once
	// the command is applied. Linearizable reads are commands too.
	ReqCommand
	// ReqQuery asks the contacted member's own state machine (Data is the
	// query), without going through the log: a serializable read.
	ReqQuery
	// ReqStatus asks the member for its view of the cluster.
	ReqStatus
	// ReqRead proposes Data, a read-only command, through the log: it is
	// applied at its place in the order, like a write, so the answer is
	// linearizable. Unlike ReqCommand it takes no session: the member
	// tags it itself, and the session table does not keep its answer (a
	// read may be repeated; it changes nothing).
	ReqRead
	// ReqSnapshot reads a snapshot of the member's learner, a chunk per
	// request: Session 0 asks the member to take a fresh snapshot and
	// answers with its first chunk; otherwise Session names the snapshot's
	// slot and Seq the offset to read from. The answer carries the chunk
	// in Data and the snapshot's Slot and Size.
	ReqSnapshot
)

// ClientRequest is a frame from a client. A client may have many requests
// outstanding on one connection; ID matches each response to its request.
type ClientRequest struct {
	ID      uint64      `msgpack:"i"`
	Kind    RequestKind `msgpack:"k"`
	Session uint64      `msgpack:"s"`
	Seq     uint64      `msgpack:"q"`
	Data    []byte      `msgpack:"d"`
}

func (r ClientRequest) encode(e *msgpack.Encoder) error {
	e.EncodeMapLen(5)
	encodeKey(e, "i")
	e.EncodeUint(r.ID)
	encodeKey(e, "k")
	e.EncodeUint(uint64(r.Kind))
	encodeKey(e, "s")
	e.EncodeUint(r.Session)
	encodeKey(e, "q")
	e.EncodeUint(r.Seq)
	encodeKey(e, "d")
	return e.EncodeBytes(nonNil(r.Data))
}

func (r *ClientRequest) decode(x *decoder) error {
	return x.fields(3, func(k key) (uint32, error) {
		var err error
		var u uint64
		switch k.name() {
		case "i":
			r.ID, err = x.uint()
			return 1, err
		case "k":
			u, err = x.uint()
			if err == nil && (u < uint64(ReqCommand) || u > uint64(ReqSnapshot)) {
				err = fmt.Errorf("%w: unknown request kind %d", ErrBadFrame, u)
			}
			r.Kind = RequestKind(u)
			return 2, err
		case "s":
			r.Session, err = x.uint()
			return 4, err
		case "q":
			r.Seq, err = x.uint()
			return 8, err
		case "d":
			r.Data, err = x.bytes(maxInt, "request data")
			return 16, err
		}
		return 0, nil
	})
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
)

var codeNames = [...]string{"ok", "not leader", "overloaded", "timeout", "bad request", "unavailable", "stale"}

// String names the code.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", c)
}

// ClientResponse answers the ClientRequest with the same ID.
type ClientResponse struct {
	ID   uint64 `msgpack:"i"`
	Code Code   `msgpack:"e"`
	// Message explains a code other than CodeOK.
	Message    string `msgpack:"m"`
	Leader     NodeID `msgpack:"l"`
	LeaderAddr string `msgpack:"a"`
	// Data is the state machine's answer.
	Data []byte `msgpack:"d"`
	// Status answers ReqStatus.
	Status *Status `msgpack:"S"`
	// Slot and Size describe the snapshot a ReqSnapshot reads.
	Slot Slot   `msgpack:"s"`
	Size uint64 `msgpack:"z"`
}

const maxMessage = 4096

func (r ClientResponse) encode(e *msgpack.Encoder) error {
	n := 6
	for _, present := range []bool{r.Status != nil, r.Slot != 0, r.Size != 0} {
		if present {
			n++
		}
	}
	e.EncodeMapLen(n)
	encodeKey(e, "i")
	e.EncodeUint(r.ID)
	encodeKey(e, "e")
	e.EncodeUint(uint64(r.Code))
	encodeKey(e, "m")
	e.EncodeString(r.Message)
	encodeKey(e, "l")
	e.EncodeUint(uint64(r.Leader))
	encodeKey(e, "a")
	e.EncodeString(r.LeaderAddr)
	encodeKey(e, "d")
	e.EncodeBytes(nonNil(r.Data))
	if r.Slot != 0 {
		encodeKey(e, "s")
		e.EncodeUint(uint64(r.Slot))
	}
	if r.Size != 0 {
		encodeKey(e, "z")
		e.EncodeUint(r.Size)
	}
	if r.Status != nil {
		encodeKey(e, "S")
		return r.Status.encode(e)
	}
	return nil
}

func (r *ClientResponse) decode(x *decoder) error {
	return x.fields(3, func(k key) (uint32, error) {
		var err error
		var u uint64
		switch k.name() {
		case "i":
			r.ID, err = x.uint()
			return 1, err
		case "e":
			u, err = x.uint()
			if err == nil && u > uint64(CodeStale) {
				err = fmt.Errorf("%w: unknown response code %d", ErrBadFrame, u)
			}
			r.Code = Code(u)
			return 2, err
		case "m":
			r.Message, err = x.string(maxMessage, "message")
			return 4, err
		case "l":
			u, err = x.uint()
			r.Leader = NodeID(u)
			return 8, err
		case "a":
			r.LeaderAddr, err = x.string(maxAddr, "leader address")
			return 16, err
		case "d":
			r.Data, err = x.bytes(maxInt, "response data")
			return 32, err
		case "S":
			r.Status = &Status{}
			return 64, r.Status.decode(x)
		case "s":
			u, err = x.uint()
			r.Slot = Slot(u)
			return 128, err
		case "z":
			r.Size, err = x.uint()
			return 256, err
		}
		return 0, nil
	})
}

// Status is one member's view of itself and the cluster, as `paxosd status`
// shows it.
type Status struct {
	// MemberInfo is the member itself: ID, roles and addresses.
	MemberInfo
	// Leader is the leader this member knows of (0: none); IsLeader says
	// whether it is this member.
	Leader   NodeID `msgpack:"l"`
	IsLeader bool   `msgpack:"L"`
	// Promised is the acceptor's promised ballot (zero without the role).
	Promised Ballot `msgpack:"b"`
	// Chosen is the highest slot this member knows to be chosen.
	Chosen Slot `msgpack:"c"`
	// Applied is the learner's applied slot, and AppliedHash its running
	// hash over every value applied up to it.
	Applied     Slot   `msgpack:"A"`
	AppliedHash uint64 `msgpack:"h"`
	// SnapshotSlot is the slot of the learner's newest durable snapshot
	// (0: none), and LogBytes the size of the member's log store on disk.
	SnapshotSlot Slot   `msgpack:"n"`
	LogBytes     uint64 `msgpack:"g"`
	// Members lists the cluster with the addresses this member knows.
	Members []MemberInfo `msgpack:"M"`
}

// MemberInfo is a member as another member knows it: its roles and
// addresses. ClientAddr is empty until the member has been heard from.
type MemberInfo struct {
	ID         NodeID `msgpack:"i"`
	Roles      Role   `msgpack:"r"`
	PeerAddr   string `msgpack:"p"`
	ClientAddr string `msgpack:"a"`
}

const minMemberInfoSize = 9 // {"i":0,"r":0,"p":"","a":""}

func (s *Status) encode(e *msgpack.Encoder) error {
	e.EncodeMapLen(13)
	s.MemberInfo.encodeFields(e)
	encodeKey(e, "l")
	e.EncodeUint(uint64(s.Leader))
	encodeKey(e, "L")
	e.EncodeBool(s.IsLeader)
	encodeKey(e, "b")
	s.Promised.encode(e)
	encodeKey(e, "c")
	e.EncodeUint(uint64(s.Chosen))
	encodeKey(e, "A")
	e.EncodeUint(uint64(s.Applied))
	encodeKey(e, "h")
	e.EncodeUint(s.AppliedHash)
	encodeKey(e, "n")
	e.EncodeUint(uint64(s.SnapshotSlot))
	encodeKey(e, "g")
	e.EncodeUint(s.LogBytes)
	encodeKey(e, "M")
	e.EncodeArrayLen(len(s.Members))
	for _, m := range s.Members {
		e.EncodeMapLen(4)
		m.encodeFields(e)
	}
	return nil
}

// encodeFields writes m's four keys, for a map of its own or a Status.
func (m MemberInfo) encodeFields(e *msgpack.Encoder) {
	encodeKey(e, "i")
	e.EncodeUint(uint64(m.ID))
	encodeKey(e, "r")
	e.EncodeUint(uint64(m.Roles))
	encodeKey(e, "p")
	e.EncodeString(m.PeerAddr)
	encodeKey(e, "a")
	e.EncodeString(m.ClientAddr)
}

func (s *Status) decode(x *decoder) error {
	return x.fields(1, func(k key) (uint32, error) {
		if bit, err := s.MemberInfo.field(x, k); bit != 0 {
			return bit, err
		}
		var err error
		var u uint64
		switch k.name() {
		case "l":
			u, err = x.uint()
			s.Leader = NodeID(u)
			return 16, err
		case "L":
			s.IsLeader, err = x.bool()
			return 32, err
		case "b":
			return 64, s.Promised.decode(x)
		case "c":
			u, err = x.uint()
			s.Chosen = Slot(u)
			return 128, err
		case "A":
			u, err = x.uint()
			s.Applied = Slot(u)
			return 256, err
		case "h":
			s.AppliedHash, err = x.uint()
			return 512, err
		case "M":
			n, err := x.arrayLen(minMemberInfoSize)
			if err != nil || n == 0 {
				return 1024, err
			}
			s.Members = make([]MemberInfo, n)
			for i := range s.Members {
				m := &s.Members[i]
				if err := x.fields(1, func(k key) (uint32, error) { return m.field(x, k) }); err != nil {
					return 1024, err
				}
			}
			return 1024, nil
		case "n":
			u, err = x.uint()
			s.SnapshotSlot = Slot(u)
			return 2048, err
		case "g":
			s.LogBytes, err = x.uint()
			return 4096, err
		}
		return 0, nil
	})
}

// field decodes one of MemberInfo's keys (bits 1 to 8); bit 0 means k is
// not one of them.
func (m *MemberInfo) field(x *decoder, k key) (uint32, error) {
	var err error
	var u uint64
	switch k.name() {
	case "i":
		u, err = x.uint()
		m.ID = NodeID(u)
		return 1, err
	case "r":
		u, err = x.uint()
		m.Roles = Role(u) & RoleAll
		return 2, err
	case "p":
		m.PeerAddr, err = x.string(maxAddr, "peer address")
		return 4, err
	case "a":
		m.ClientAddr, err = x.string(maxAddr, "client address")
		return 8, err
	}
	return 0, nil
}

// Frame encoders and decoders for the transport, the server and the client.

// EncodeClientRequest appends a frame holding r to dst.
func EncodeClientRequest(dst []byte, r ClientRequest) []byte { return appendFrame(dst, r) }

// EncodeClientResponse appends a frame holding r to dst.
func EncodeClientResponse(dst []byte, r ClientResponse) []byte { return appendFrame(dst, r) }

// EncodeHello appends a frame holding h to dst.
func EncodeHello(dst []byte, h Hello) []byte { return appendFrame(dst, h) }

func appendFrame(dst []byte, v wireEncoder) []byte {
	e := encoders.Get().(*encoder)
	e.w.b = dst
	if err := e.frame(v); err != nil {
		// The encoder's writer never fails, so neither does encoding.
		panic(fmt.Sprintf("paxos: encode %T: %v", v, err))
	}
	out := e.w.b
	e.w.b = nil
	encoders.Put(e)
	return out
}

// Decoder decodes frame bodies. It keeps no state between calls except
// reusable buffers; it is not safe for concurrent use.
type Decoder struct{ x *decoder }

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{x: newDecoder()} }

// Message decodes a body holding a Message.
func (d *Decoder) Message(body []byte) (Message, error) {
	var m Message
	return m, d.x.body(body, &m)
}

// Hello decodes a body holding a Hello.
func (d *Decoder) Hello(body []byte) (Hello, error) {
	var h Hello
	return h, d.x.body(body, &h)
}

// ClientRequest decodes a body holding a ClientRequest.
func (d *Decoder) ClientRequest(body []byte) (ClientRequest, error) {
	var r ClientRequest
	return r, d.x.body(body, &r)
}

// ClientResponse decodes a body holding a ClientResponse.
func (d *Decoder) ClientResponse(body []byte) (ClientResponse, error) {
	var r ClientResponse
	return r, d.x.body(body, &r)
}
