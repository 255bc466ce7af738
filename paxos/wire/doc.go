// Package wire is the frame codec of paxosd: how a paxos.Message, a
// handshake and a client request or response travel as bytes.
//
// A frame is a 4-byte big-endian length followed by that many bytes of one
// msgpack map. A zero-length frame carries nothing; connections use it as a
// keep-alive. The map's keys are the short names in the `msgpack` struct tags
// of the type being sent, and those tags are the one definition of each
// type's wire form: the encoder, the decoder and Same all read them (by
// reflection, once per type), so a field added to a struct is on the wire,
// checked and compared without anyone listing it again. The rules:
//
//   - every exported field carries a tag; `msgpack:"-"` keeps a field off
//     the wire (paxos.Message.To: the connection names the receiver);
//   - `omitempty` fields are left out when zero and may be missing when
//     decoded; every other field is always written and must be present;
//   - an embedded struct without a tag name is flattened into its parent;
//   - supported field types are unsigned integers, bool, string, byte
//     slices, structs, pointers to structs and slices of structs. A type
//     with a `Valid() bool` method (the enums) is checked when decoded.
//
// Decoding treats every byte as hostile. A frame above the reader's limit is
// refused before anything is allocated, and its body is read in 64 KiB steps
// as it arrives. Inside a body every declared length is checked against the
// bytes left (an array against what its elements take: the least bytes they
// can be encoded in, and at least an eighth of their size in memory), so
// decoding N bytes allocates at most about 8N. Unknown keys, repeated keys,
// missing required keys, values of the wrong type (nil included), negative
// or overflowing integers and unknown enum values are all ErrBadFrame.
//
// Encoding is canonical: equal values (with nil and empty slices alike)
// give equal bytes. Same reports, without encoding, whether two values are
// sure to encode alike; the transport uses it to encode a broadcast once.
//
// Hello, the first frame of every connection, is defined here because both
// the peer transport and the client protocol open with it. Its keys never
// change, and its decoding skips keys it does not know (holding a number or
// a string), so that a member can always read another version's Hello and
// say which version it speaks.
package wire
