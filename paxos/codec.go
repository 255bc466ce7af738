package paxos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// A frame is a 4-byte big-endian length followed by that many bytes of one
// msgpack-encoded body. A zero-length frame carries nothing; connections use
// it as a keep-alive.
//
// Bodies are msgpack maps with short string keys (the msgpack struct tags on
// the types document them). Decoding is strict: an unknown key, a missing
// required key or a value of the wrong type is ErrBadFrame. Changing the wire
// format means bumping ProtocolVersion, which the handshake checks.
//
// NB: decoding never trusts a length inside the body. Every byte string and
// array is checked against the bytes left in the frame before anything is
// allocated, so a frame of N bytes costs at most a small multiple of N
// (FuzzDecodeMessage measures this).

// FrameHeaderSize is the size of a frame's length prefix.
const FrameHeaderSize = 4

// DefaultMaxFrame is the largest frame a peer connection accepts unless
// configured otherwise. It must hold the largest message the cores produce:
// a Decide or catch-up reply with several 1 MiB slot values.
const DefaultMaxFrame = 64 << 20

// ErrFrameTooLarge reports a frame whose declared length is above the limit.
// Nothing was allocated for it; the connection must be closed.
var ErrFrameTooLarge = errors.New("paxos: frame exceeds size limit")

// ErrBadFrame reports a frame body that is not a valid encoding.
var ErrBadFrame = errors.New("paxos: malformed frame")

// frameChunk is how much of a frame body is read, and allocated, at a time:
// a sender that declares a large frame must deliver the bytes before we pay
// for them.
const frameChunk = 64 << 10

// ReadFrame reads one frame from r and returns its body, reusing buf when it
// is large enough. A body above max bytes is refused with ErrFrameTooLarge
// before anything is allocated. The returned slice is valid until the next
// call with the same buf.
func ReadFrame(r io.Reader, max int, buf []byte) ([]byte, error) {
	var hdr [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > int64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	size := int(n)
	if size <= cap(buf) {
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, unexpectedEOF(err)
		}
		return buf, nil
	}
	// Grow as the bytes arrive, so a peer that declares a big frame and
	// then stalls holds at most one chunk of our memory beyond what it sent.
	buf = buf[:0]
	for len(buf) < size {
		step := min(size-len(buf), frameChunk)
		buf = append(buf, make([]byte, step)...)
		if _, err := io.ReadFull(r, buf[len(buf)-step:]); err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return buf, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// encoder appends msgpack frames to a byte slice. It is not safe for
// concurrent use; each writer goroutine owns one, and appendFrame borrows one
// from a pool.
type encoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

// appendWriter is the encoder's output: writes append to b and never fail.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

func newEncoder() *encoder {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	return e
}

var encoders = sync.Pool{New: func() any { return newEncoder() }}

// frame appends one frame holding v's encoding.
func (e *encoder) frame(v wireEncoder) error {
	start := len(e.w.b)
	e.w.b = append(e.w.b, 0, 0, 0, 0)
	if err := v.encode(e.enc); err != nil {
		e.w.b = e.w.b[:start]
		return err
	}
	n := len(e.w.b) - start - FrameHeaderSize
	binary.BigEndian.PutUint32(e.w.b[start:], uint32(n))
	return nil
}

// wireEncoder and wireDecoder are the types that travel in frames.
type wireEncoder interface {
	encode(e *msgpack.Encoder) error
}
type wireDecoder interface{ decode(d *decoder) error }

// AppendFrame appends a frame holding m to dst and returns the result.
func AppendFrame(dst []byte, m Message) []byte { return appendFrame(dst, m) }

// DecodeMessage decodes a frame body holding a Message. The Message does not
// share memory with body. Its To is zero: the receiver is not on the wire.
func DecodeMessage(body []byte) (Message, error) {
	var m Message
	err := newDecoder().body(body, &m)
	return m, err
}

// DecodeFrame reads one frame of at most DefaultMaxFrame bytes from r and
// decodes the Message in it.
func DecodeFrame(r io.Reader) (Message, error) {
	body, err := ReadFrame(r, DefaultMaxFrame, nil)
	if err != nil {
		return Message{}, err
	}
	return DecodeMessage(body)
}

// decoder reads one frame body with bounds checks. The msgpack decoder reads
// straight from the bytes.Reader (it needs no buffering of its own), so
// r.Len() is exactly what is left of the body.
type decoder struct {
	r  bytes.Reader
	d  *msgpack.Decoder
	kb [8]byte // see key
}

func newDecoder() *decoder {
	x := &decoder{}
	x.d = msgpack.NewDecoder(&x.r)
	return x
}

// body decodes all of b into v; trailing bytes are an error.
func (x *decoder) body(b []byte, v wireDecoder) error {
	x.r.Reset(b)
	x.d.ResetReader(&x.r)
	if err := v.decode(x); err != nil {
		return wrapBad(err)
	}
	if x.r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadFrame, x.r.Len())
	}
	return nil
}

func wrapBad(err error) error {
	if errors.Is(err, ErrBadFrame) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBadFrame, err)
}

func (x *decoder) left() int { return x.r.Len() }

// mapLen reads a map header. Every entry takes at least two bytes.
func (x *decoder) mapLen() (int, error) {
	n, err := x.d.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: nil where a map belongs", ErrBadFrame)
	}
	if n > x.left()/2 {
		return 0, fmt.Errorf("%w: map of %d entries in %d bytes", ErrBadFrame, n, x.left())
	}
	return n, nil
}

// arrayLen reads an array header whose elements take at least minElem bytes.
func (x *decoder) arrayLen(minElem int) (int, error) {
	n, err := x.d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, nil
	}
	if n > x.left()/minElem {
		return 0, fmt.Errorf("%w: array of %d elements in %d bytes", ErrBadFrame, n, x.left())
	}
	return n, nil
}

// key is a map key: a string of at most 8 bytes, held by value so that
// decoding one costs no allocation.
type key struct {
	b [8]byte
	n uint8
}

func (k key) name() string { return string(k.b[:k.n]) }

// key reads a map key. The bytes are read through x.kb, which lives as long
// as the decoder (a buffer handed to the msgpack reader escapes).
func (x *decoder) key() (key, error) {
	n, err := x.d.DecodeBytesLen()
	if err != nil {
		return key{}, err
	}
	if n < 0 || n > len(x.kb) {
		return key{}, fmt.Errorf("%w: bad key length %d", ErrBadFrame, n)
	}
	if err := x.d.ReadFull(x.kb[:n]); err != nil {
		return key{}, err
	}
	return key{b: x.kb, n: uint8(n)}, nil
}

// bytes reads a byte or text string of at most max bytes. An empty or nil
// string decodes as nil.
func (x *decoder) bytes(max int, what string) ([]byte, error) {
	n, err := x.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n > max || n > x.left() {
		return nil, fmt.Errorf("%w: %s of %d bytes (limit %d, %d left in frame)", ErrBadFrame, what, n, max, x.left())
	}
	b := make([]byte, n)
	if err := x.d.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

func (x *decoder) string(max int, what string) (string, error) {
	b, err := x.bytes(max, what)
	return string(b), err
}

func (x *decoder) uint() (uint64, error) { return x.d.DecodeUint64() }

func (x *decoder) bool() (bool, error) { return x.d.DecodeBool() }

// fields decodes a map, calling field for each key. Keys must be distinct;
// the bit each key returns from field marks it seen, and want lists the bits
// that must be present.
func (x *decoder) fields(want uint32, field func(k key) (bit uint32, err error)) error {
	n, err := x.mapLen()
	if err != nil {
		return err
	}
	var seen uint32
	for range n {
		k, err := x.key()
		if err != nil {
			return err
		}
		bit, err := field(k)
		if err != nil {
			return err
		}
		if bit == 0 {
			return fmt.Errorf("%w: unknown key %q", ErrBadFrame, k.name())
		}
		if seen&bit != 0 {
			return fmt.Errorf("%w: repeated key %q", ErrBadFrame, k.name())
		}
		seen |= bit
	}
	if seen&want != want {
		return fmt.Errorf("%w: missing keys (have %#x, need %#x)", ErrBadFrame, seen, want)
	}
	return nil
}

// Minimum encoded sizes, used to bound array lengths before allocating. A
// test checks them against the smallest real encodings.
const (
	minBallotSize  = 7  // {"r":0,"n":0}
	minEntrySize   = 17 // {"s":0,"b":ballot,"v":bin8(0)}
	minCommandSize = 11 // {"s":0,"q":0,"d":bin8(0)}
)

func encodeKey(e *msgpack.Encoder, k string) error { return e.EncodeString(k) }

func (b Ballot) encode(e *msgpack.Encoder) error {
	if err := e.EncodeMapLen(2); err != nil {
		return err
	}
	encodeKey(e, "r")
	e.EncodeUint(b.Round)
	encodeKey(e, "n")
	return e.EncodeUint(uint64(b.Node))
}

func (b *Ballot) decode(x *decoder) error {
	return x.fields(3, func(k key) (uint32, error) {
		var err error
		switch k.name() {
		case "r":
			b.Round, err = x.uint()
			return 1, err
		case "n":
			var n uint64
			n, err = x.uint()
			b.Node = NodeID(n)
			return 2, err
		}
		return 0, nil
	})
}

func (en Entry) encode(e *msgpack.Encoder) error {
	e.EncodeMapLen(3)
	encodeKey(e, "s")
	e.EncodeUint(uint64(en.Slot))
	encodeKey(e, "b")
	en.Ballot.encode(e)
	encodeKey(e, "v")
	return e.EncodeBytes(nonNil(en.Value))
}

func (en *Entry) decode(x *decoder) error {
	return x.fields(7, func(k key) (uint32, error) {
		var err error
		switch k.name() {
		case "s":
			var s uint64
			s, err = x.uint()
			en.Slot = Slot(s)
			return 1, err
		case "b":
			return 2, en.Ballot.decode(x)
		case "v":
			en.Value, err = x.bytes(maxInt, "value")
			return 4, err
		}
		return 0, nil
	})
}

func (c Command) encode(e *msgpack.Encoder) error {
	e.EncodeMapLen(3)
	encodeKey(e, "s")
	e.EncodeUint(c.Session)
	encodeKey(e, "q")
	e.EncodeUint(c.Seq)
	encodeKey(e, "d")
	return e.EncodeBytes(nonNil(c.Data))
}

func (c *Command) decode(x *decoder) error {
	return x.fields(7, func(k key) (uint32, error) {
		var err error
		switch k.name() {
		case "s":
			c.Session, err = x.uint()
			return 1, err
		case "q":
			c.Seq, err = x.uint()
			return 2, err
		case "d":
			c.Data, err = x.bytes(maxInt, "command")
			return 4, err
		}
		return 0, nil
	})
}

// nonNil makes the encoder write an empty byte string rather than nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const maxInt = int(^uint(0) >> 1)

// NB: Message.To is not on the wire: a message travels on a connection to
// its receiver, which the handshake named, so the receiver fills it in. That
// makes the frames of a broadcast identical, so the transport encodes them
// once.
func (m Message) encode(e *msgpack.Encoder) error {
	n := 3
	for _, present := range []bool{m.Slot != 0, m.Commit != 0, len(m.Value) > 0, len(m.Entries) > 0, len(m.Cmds) > 0, m.Offset != 0, m.Size != 0, m.Sum != 0} {
		if present {
			n++
		}
	}
	e.EncodeMapLen(n)
	encodeKey(e, "t")
	e.EncodeUint(uint64(m.Type))
	encodeKey(e, "f")
	e.EncodeUint(uint64(m.From))
	encodeKey(e, "b")
	m.Ballot.encode(e)
	if m.Slot != 0 {
		encodeKey(e, "s")
		e.EncodeUint(uint64(m.Slot))
	}
	if m.Commit != 0 {
		encodeKey(e, "c")
		e.EncodeUint(uint64(m.Commit))
	}
	if len(m.Value) > 0 {
		encodeKey(e, "v")
		e.EncodeBytes(m.Value)
	}
	if len(m.Entries) > 0 {
		encodeKey(e, "e")
		e.EncodeArrayLen(len(m.Entries))
		for _, en := range m.Entries {
			en.encode(e)
		}
	}
	if len(m.Cmds) > 0 {
		encodeKey(e, "x")
		e.EncodeArrayLen(len(m.Cmds))
		for _, c := range m.Cmds {
			c.encode(e)
		}
	}
	if m.Offset != 0 {
		encodeKey(e, "p")
		e.EncodeUint(m.Offset)
	}
	if m.Size != 0 {
		encodeKey(e, "z")
		e.EncodeUint(m.Size)
	}
	if m.Sum != 0 {
		encodeKey(e, "k")
		e.EncodeUint(uint64(m.Sum))
	}
	// The encoder writes to a bytes.Buffer, which cannot fail; the errors of
	// the calls above are all nil.
	return nil
}

func (m *Message) decode(x *decoder) error {
	err := x.fields(1|2|8, func(k key) (uint32, error) {
		var err error
		var u uint64
		switch k.name() {
		case "t":
			u, err = x.uint()
			if err == nil && (u > 255 || !MsgType(u).Valid()) {
				err = fmt.Errorf("%w: unknown message type %d", ErrBadFrame, u)
			}
			m.Type = MsgType(u)
			return 1, err
		case "f":
			u, err = x.uint()
			m.From = NodeID(u)
			return 2, err
		case "b":
			return 8, m.Ballot.decode(x)
		case "s":
			u, err = x.uint()
			m.Slot = Slot(u)
			return 16, err
		case "c":
			u, err = x.uint()
			m.Commit = Slot(u)
			return 32, err
		case "v":
			m.Value, err = x.bytes(maxInt, "value")
			return 64, err
		case "e":
			n, err := x.arrayLen(minEntrySize)
			if err != nil || n == 0 {
				return 128, err
			}
			m.Entries = make([]Entry, n)
			for i := range m.Entries {
				if err := m.Entries[i].decode(x); err != nil {
					return 128, err
				}
			}
			return 128, nil
		case "x":
			n, err := x.arrayLen(minCommandSize)
			if err != nil || n == 0 {
				return 256, err
			}
			m.Cmds = make([]Command, n)
			for i := range m.Cmds {
				if err := m.Cmds[i].decode(x); err != nil {
					return 256, err
				}
			}
			return 256, nil
		case "p":
			m.Offset, err = x.uint()
			return 512, err
		case "z":
			m.Size, err = x.uint()
			return 1024, err
		case "k":
			u, err = x.uint()
			if err == nil && u > 1<<32-1 {
				err = fmt.Errorf("%w: checksum %d does not fit 32 bits", ErrBadFrame, u)
			}
			m.Sum = uint32(u)
			return 2048, err
		}
		return 0, nil
	})
	return err
}
