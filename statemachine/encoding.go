package statemachine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrBadSnapshot reports a snapshot that does not decode.
var ErrBadSnapshot = errors.New("statemachine: malformed snapshot")

// snapshot helpers: a snapshot is a stream of uvarints and length-prefixed
// byte strings.

func putUvarint(w *bufio.Writer, x uint64) error {
	var b [binary.MaxVarintLen64]byte
	_, err := w.Write(b[:binary.PutUvarint(b[:], x)])
	return err
}

func putBytes(w *bufio.Writer, p []byte) error {
	if err := putUvarint(w, uint64(len(p))); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readUvarint(r *bufio.Reader, what string) (uint64, error) {
	x, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("%w: read %s: %w", ErrBadSnapshot, what, err)
	}
	return x, nil
}

// readBytes reads a length-prefixed byte string of at most limit bytes. It
// grows its buffer only as bytes arrive, so a declared length larger than the
// stream costs no large allocation.
func readBytes(r *bufio.Reader, limit uint64, what string) ([]byte, error) {
	n, err := readUvarint(r, what+" length")
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrBadSnapshot, what, n, limit)
	}
	if n <= 4096 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("%w: read %s: %w", ErrBadSnapshot, what, err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if got, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, fmt.Errorf("%w: read %s: %d of %d bytes: %w", ErrBadSnapshot, what, got, n, err)
	}
	return buf.Bytes(), nil
}

// readHeaderFrom reads a header of any version from oldest to newest and
// returns the version.
func readHeaderFrom(r *bufio.Reader, magic string, oldest, newest uint64) (uint64, error) {
	var got [4]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return 0, fmt.Errorf("%w: read header: %w", ErrBadSnapshot, err)
	}
	if string(got[:]) != magic {
		return 0, fmt.Errorf("%w: header %q, want %q", ErrBadSnapshot, got[:], magic)
	}
	v, err := readUvarint(r, "version")
	if err != nil {
		return 0, err
	}
	if v < oldest || v > newest {
		return 0, fmt.Errorf("%w: %s version %d, this build reads %d to %d", ErrBadSnapshot, magic, v, oldest, newest)
	}
	return v, nil
}

func writeHeader(w *bufio.Writer, magic string, version uint64) error {
	if _, err := w.WriteString(magic); err != nil {
		return err
	}
	return putUvarint(w, version)
}

// asBufioReader reuses r when it already is one, so that a reader shared by
// nested snapshots does not lose buffered bytes.
func asBufioReader(r io.Reader) *bufio.Reader {
	if br, ok := r.(*bufio.Reader); ok {
		return br
	}
	return bufio.NewReader(r)
}
