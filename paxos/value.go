package paxos

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Command is one client request. Session and Seq identify it for
// deduplication: a learner applies a command whose session is non-zero at
// most once, however many slots it was chosen in. Data is opaque to the
// protocol and interpreted by the state machine.
//
// A command of kind CmdOpenSession instead opens a client session: Data is
// the session's idle timeout, a uvarint of milliseconds (empty: the
// default), and Seq a tag its proposer matches the answer by.
type Command struct {
	Session uint64      `msgpack:"s"`
	Seq     uint64      `msgpack:"q"`
	Data    []byte      `msgpack:"d"`
	Kind    CommandKind `msgpack:"k,omitempty"`
}

// CommandKind says what a Command asks the learners to do.
type CommandKind uint8

// The command kinds. Values are part of the log format.
const (
	// CmdApply applies Data to the state machine.
	CmdApply CommandKind = iota
	// CmdOpenSession opens a client session.
	CmdOpenSession
)

// Valid reports whether k is a known command kind.
func (k CommandKind) Valid() bool { return k <= CmdOpenSession }

// Value is the encoded content of one slot: a batch of commands. The empty
// Value is the no-op that a new leader uses to fill holes in the log.
// Acceptors store and return values without decoding them; learners decode
// them with DecodeBatch.
type Value []byte

// IsLegacyBatch reports whether v is a batch in the format written before
// protocol version 6 (EncodeBatch's): no time, and sessions that were never
// opened through the log.
func (v Value) IsLegacyBatch() bool { return len(v) > 0 && v[0] == batchTag }

// IsNoop reports whether v is the no-op.
func (v Value) IsNoop() bool { return len(v) == 0 }

// batchTag is the first byte of a batch without a time, timedBatchTag of
// one with the time its leader proposed it at and a kind per command. A
// future encoding takes a new tag, so a learner can tell the formats apart.
const (
	batchTag      = 0x01
	timedBatchTag = 0x03
)

// ErrBadValue reports a Value that does not decode.
var ErrBadValue = errors.New("paxos: malformed value")

// EncodeBatch encodes cmds as one Value without a time; every command must
// be of kind CmdApply. An empty cmds gives the no-op. Leaders propose
// EncodeBatchAt's values; this older form is still read.
func EncodeBatch(cmds []Command) Value { return encodeBatch(batchTag, 0, cmds) }

// EncodeBatchAt encodes cmds as one Value stamped with ms, the proposing
// leader's clock in Unix milliseconds: the learners measure the idle time
// of client sessions by the highest stamp they applied. An empty cmds gives
// the no-op.
func EncodeBatchAt(ms uint64, cmds []Command) Value { return encodeBatch(timedBatchTag, ms, cmds) }

func encodeBatch(tag byte, ms uint64, cmds []Command) Value {
	if len(cmds) == 0 {
		return nil
	}
	n := 1 + 2*binary.MaxVarintLen64
	for _, c := range cmds {
		n += 1 + 3*binary.MaxVarintLen64 + len(c.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, tag)
	if tag == timedBatchTag {
		b = binary.AppendUvarint(b, ms)
	}
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		if tag == timedBatchTag {
			b = append(b, byte(c.Kind))
		}
		b = binary.AppendUvarint(b, c.Session)
		b = binary.AppendUvarint(b, c.Seq)
		b = binary.AppendUvarint(b, uint64(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}

// DecodeBatch decodes a Value made by EncodeBatch or EncodeBatchAt.
func DecodeBatch(v Value) ([]Command, error) {
	cmds, _, err := DecodeBatchAt(v)
	return cmds, err
}

// DecodeBatchAt decodes a Value made by EncodeBatch or EncodeBatchAt, and
// returns its time stamp (0 for EncodeBatch's form). The Data of each
// returned command aliases v. It never allocates more than a small multiple
// of len(v), whatever counts the bytes declare.
func DecodeBatchAt(v Value) (cmds []Command, ms uint64, err error) {
	if len(v) == 0 {
		return nil, 0, nil
	}
	tag := v[0]
	if tag != batchTag && tag != timedBatchTag {
		return nil, 0, fmt.Errorf("%w: unknown tag %#x", ErrBadValue, v[0])
	}
	rest := v[1:]
	if tag == timedBatchTag {
		if ms, rest, err = uvarint(rest, "time"); err != nil {
			return nil, 0, err
		}
	}
	cmds, err = decodeCommands(tag, rest)
	return cmds, ms, err
}

func decodeCommands(tag byte, rest []byte) ([]Command, error) {
	count, rest, err := uvarint(rest, "command count")
	if err != nil {
		return nil, err
	}
	// Each command takes at least three bytes, so a count above len/3 is a lie.
	if count == 0 || count > uint64(len(rest)/3) {
		return nil, fmt.Errorf("%w: %d commands in %d bytes", ErrBadValue, count, len(rest))
	}
	cmds := make([]Command, count)
	for i := range cmds {
		var c Command
		var n uint64
		if tag == timedBatchTag {
			if len(rest) == 0 || !CommandKind(rest[0]).Valid() {
				return nil, fmt.Errorf("%w: command %d has no known kind", ErrBadValue, i)
			}
			c.Kind, rest = CommandKind(rest[0]), rest[1:]
		}
		if c.Session, rest, err = uvarint(rest, "session"); err != nil {
			return nil, err
		}
		if c.Seq, rest, err = uvarint(rest, "seq"); err != nil {
			return nil, err
		}
		if n, rest, err = uvarint(rest, "data length"); err != nil {
			return nil, err
		}
		if n > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: command %d declares %d bytes, %d left", ErrBadValue, i, n, len(rest))
		}
		c.Data, rest = rest[:n:n], rest[n:]
		cmds[i] = c
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadValue, len(rest))
	}
	return cmds, nil
}

func uvarint(b []byte, what string) (uint64, []byte, error) {
	x, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(x) {
		return 0, nil, fmt.Errorf("%w: bad %s", ErrBadValue, what)
	}
	return x, b[n:], nil
}

// uvarintLen is the length of the shortest encoding of x; the decoder
// refuses longer ones so that every value has exactly one encoding.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}
