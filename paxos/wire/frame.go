package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// HeaderSize is the size of a frame's length prefix.
const HeaderSize = 4

// DefaultMaxFrame is the largest frame a peer connection accepts unless
// configured otherwise. It must hold the largest message the cores produce:
// a Decide or catch-up reply with several 1 MiB slot values.
const DefaultMaxFrame = 64 << 20

// ErrFrameTooLarge reports a frame whose declared length is above the limit.
// Nothing was allocated for it; the connection must be closed.
var ErrFrameTooLarge = errors.New("wire: frame exceeds size limit")

// ErrBadFrame reports a frame body that is not a valid encoding.
var ErrBadFrame = errors.New("wire: malformed frame")

// ErrTLS reports a frame that is the start of a TLS handshake: the other
// side speaks TLS to a port that does not.
var ErrTLS = errors.New("wire: the other side speaks TLS, and this port does not")

// tlsHandshakeRecord and tlsAlertRecord are the first byte of a TLS
// handshake or alert record; the second is 3 (the major version of every
// TLS). As a frame header they make a length far beyond any limit, so no
// frame is mistaken for one.
const (
	tlsHandshakeRecord = 0x16
	tlsAlertRecord     = 0x15
)

// ReadChunk is how much of a frame body is read, and allocated, at a time:
// a sender that declares a large frame must deliver the bytes before we pay
// for them. Readers also use it as the size above which a frame's buffer is
// not kept for the next frame.
const ReadChunk = 64 << 10

// ReadFrame reads one frame from r and returns its body, reusing buf when it
// is large enough. A body above max bytes is refused with ErrFrameTooLarge
// before anything is allocated. The returned slice is valid until the next
// call with the same buf.
func ReadFrame(r io.Reader, max int, buf []byte) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > int64(max) && (hdr[0] == tlsHandshakeRecord || hdr[0] == tlsAlertRecord) && hdr[1] == 3 {
		return nil, ErrTLS
	}
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
		step := min(size-len(buf), ReadChunk)
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

// AppendKeepAlive appends an empty frame to dst.
func AppendKeepAlive(dst []byte) []byte { return append(dst, 0, 0, 0, 0) }

// Append appends a frame holding the encoding of *v to dst and returns the
// result. v must be a non-nil pointer to a struct that follows the tag rules
// of the package comment; anything else is a programming error and panics.
func Append(dst []byte, v any) []byte {
	e := encoders.Get().(*encoder)
	e.w.b = dst
	start := len(dst)
	e.w.b = append(e.w.b, 0, 0, 0, 0)
	p := planOf(v)
	p.encode(e.enc, structValue(v))
	binary.BigEndian.PutUint32(e.w.b[start:], uint32(len(e.w.b)-start-HeaderSize))
	out := e.w.b
	e.w.b = nil
	encoders.Put(e)
	return out
}

// encoder appends msgpack to a byte slice. The msgpack encoder's errors all
// come from its writer, and appendWriter never fails, so encoding never
// fails either.
type encoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	return e
}}

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

// Decoder decodes frame bodies. It keeps no state between calls except
// reusable buffers; it is not safe for concurrent use.
type Decoder struct{ x *decoder }

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{x: newDecoder()} }

// Decode decodes body, a whole frame body, into *v, which it zeroes first.
// v must be a non-nil pointer to a struct that follows the tag rules. Every
// error wraps ErrBadFrame; the decoded value shares no memory with body.
func (d *Decoder) Decode(body []byte, v any) error {
	p := planOf(v)
	rv := structValue(v)
	rv.SetZero()
	x := d.x
	x.r.Reset(body)
	x.body = body
	defer func() { x.body = nil }() // do not keep a big frame alive
	x.d.ResetReader(&x.r)
	if err := p.decode(x, rv); err != nil {
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
