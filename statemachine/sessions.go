package statemachine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
)

// Sessions puts a client session table in front of a Machine so that a
// command is applied at most once however many slots it is chosen in. A
// client numbers its commands 1, 2, 3, … within its session and has one
// outstanding at a time; a retry reuses the number. For each session the
// table keeps the highest number applied and the answer it got, so a retry of
// that command receives the same answer without being applied again.
//
// The table is part of the replicated state: Snapshot writes it, in session
// order, ahead of the machine's own snapshot, so the encoding is
// deterministic.
//
// TODO: sessions never expire, so the table grows with the number of clients
// ever seen. Expiry must be deterministic (driven by the log, not a clock);
// it comes with client session registration in the daemon.
type Sessions struct {
	m     Machine
	table map[uint64]session
}

type session struct {
	seq    uint64
	result []byte
}

// NewSessions returns an empty session table in front of m.
func NewSessions(m Machine) *Sessions {
	return &Sessions{m: m, table: map[uint64]session{}}
}

// Machine returns the machine behind the table.
func (s *Sessions) Machine() Machine { return s.m }

// Len returns the number of sessions in the table.
func (s *Sessions) Len() int { return len(s.table) }

// Apply applies cmd unless (sessionID, seq) was applied already. Session 0
// means "no session": the command is always applied. For a duplicate it
// returns the recorded answer (nil if the session has moved past seq) and
// dup=true.
func (s *Sessions) Apply(slot, sessionID, seq uint64, cmd []byte) (result []byte, dup bool) {
	if sessionID == 0 {
		return s.m.Apply(slot, cmd), false
	}
	if e, ok := s.table[sessionID]; ok && seq <= e.seq {
		if seq == e.seq {
			return e.result, true
		}
		return nil, true
	}
	result = s.m.Apply(slot, cmd)
	s.table[sessionID] = session{seq: seq, result: result}
	return result, false
}

const (
	sessionsMagic   = "PXSS"
	sessionsVersion = 1
	// maxResult bounds one recorded answer in a snapshot being restored.
	maxResult = 64 << 20
)

// Snapshot writes the session table, then the machine's snapshot.
func (s *Sessions) Snapshot(w io.Writer) error {
	return writeSessions(w, s.table, s.m.Snapshot)
}

// Freeze captures the table and the machine for a snapshot written later,
// possibly from another goroutine, while Apply goes on. The table is copied;
// the machine is frozen if it is a Freezer, and otherwise written to memory
// now.
func (s *Sessions) Freeze() func(w io.Writer) error {
	table := maps.Clone(s.table)
	var machine func(io.Writer) error
	if f, ok := s.m.(Freezer); ok {
		machine = f.Freeze()
	} else {
		var buf bytes.Buffer
		err := s.m.Snapshot(&buf)
		machine = func(w io.Writer) error {
			if err != nil {
				return err
			}
			_, err := w.Write(buf.Bytes())
			return err
		}
	}
	return func(w io.Writer) error { return writeSessions(w, table, machine) }
}

func writeSessions(w io.Writer, table map[uint64]session, machine func(io.Writer) error) error {
	bw := bufio.NewWriter(w)
	err := writeHeader(bw, sessionsMagic, sessionsVersion)
	if err == nil {
		err = putUvarint(bw, uint64(len(table)))
	}
	for _, id := range slices.Sorted(maps.Keys(table)) {
		if err != nil {
			break
		}
		e := table[id]
		if err = putUvarint(bw, id); err == nil {
			if err = putUvarint(bw, e.seq); err == nil {
				err = putBytes(bw, e.result)
			}
		}
	}
	if err == nil {
		err = machine(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("statemachine: write session snapshot: %w", err)
	}
	return nil
}

// Restore replaces the table and the machine's state with a snapshot written
// by Snapshot. On error the table is unchanged; the machine is in whatever
// state its Restore left it.
func (s *Sessions) Restore(r io.Reader) error {
	br := asBufioReader(r)
	if err := readHeader(br, sessionsMagic, sessionsVersion); err != nil {
		return err
	}
	n, err := readUvarint(br, "session count")
	if err != nil {
		return err
	}
	table := map[uint64]session{}
	var prev uint64
	for i := uint64(0); i < n; i++ {
		id, err := readUvarint(br, "session id")
		if err != nil {
			return err
		}
		if id == 0 || (i > 0 && id <= prev) {
			return fmt.Errorf("%w: session %d out of order after %d", ErrBadSnapshot, id, prev)
		}
		prev = id
		seq, err := readUvarint(br, "session seq")
		if err != nil {
			return err
		}
		res, err := readBytes(br, maxResult, "session result")
		if err != nil {
			return err
		}
		table[id] = session{seq: seq, result: res}
	}
	if err := s.m.Restore(br); err != nil {
		return err
	}
	s.table = table
	return nil
}
