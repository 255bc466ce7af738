package statemachine

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Sessions puts a client session table in front of a Machine so that a
// command is applied at most once however many slots it is chosen in. A
// client opens a session through the log (Open), numbers its commands 1, 2,
// 3, … within it and has one outstanding at a time; a retry reuses the
// number. For each session the table keeps the highest number applied and
// the answer it got, so a retry of that command receives the same answer
// without being applied again.
//
// The table is bounded. Time is the log's: the highest time stamp of the
// batches applied (Advance), which leaders take from their clocks. A session
// idle for longer than its timeout expires, and when MaxSessions are open,
// opening another expires the one closest to its timeout. A command of a
// session that expired, or that was never opened, is refused (Apply's
// ErrSessionExpired) rather than applied: it may be a retry of one applied
// before. Every learner applies the same batches, so every learner expires
// the same sessions at the same slot.
//
// The table is part of the replicated state: Snapshot writes it, in session
// order, ahead of the machine's own snapshot, so the encoding is
// deterministic.
type Sessions struct {
	m     Machine
	table map[uint64]*session
	// byExpiry orders the sessions by when they expire, then by ID.
	byExpiry expiryHeap
	// next is the ID the next session opened gets: every ID below it was
	// opened once.
	next uint64
	// now is the log's time, in Unix milliseconds.
	now uint64
}

type session struct {
	id, seq uint64
	result  []byte
	// used is the log time of the session's last command; ttl its idle
	// timeout in milliseconds.
	used, ttl uint64
	index     int // in byExpiry
}

func (e *session) expires() uint64 { return e.used + e.ttl }

// Session limits. They are part of the replicated state machine's rules, so
// every member must use the same: they are constants, not settings.
const (
	// MaxSessions bounds the session table.
	MaxSessions = 100_000
	// DefaultSessionTTL is the idle timeout of a session opened without
	// one; MinSessionTTL and MaxSessionTTL bound the ones asked for.
	DefaultSessionTTL = 10 * time.Minute
	MinSessionTTL     = time.Second
	MaxSessionTTL     = 24 * time.Hour
)

// ErrSessionExpired refuses a command whose session is not open: it expired
// (idle for longer than its timeout, or pushed out when the table was full)
// or was never opened. The command was not applied now; a retry may have
// been applied before.
var ErrSessionExpired = errors.New("statemachine: client session expired")

// NewSessions returns an empty session table in front of m.
func NewSessions(m Machine) *Sessions {
	return &Sessions{m: m, table: map[uint64]*session{}, next: 1}
}

// Machine returns the machine behind the table.
func (s *Sessions) Machine() Machine { return s.m }

// Len returns the number of sessions in the table.
func (s *Sessions) Len() int { return len(s.table) }

// Now returns the log's time, in Unix milliseconds.
func (s *Sessions) Now() uint64 { return s.now }

// Advance moves the log's time to ms, if that is later, and expires the
// sessions idle for longer than their timeouts. It returns how many
// expired.
func (s *Sessions) Advance(ms uint64) int {
	s.now = max(s.now, ms)
	n := 0
	for len(s.byExpiry) > 0 && s.byExpiry[0].expires() < s.now {
		s.drop(s.byExpiry[0])
		n++
	}
	return n
}

// Open opens a session with idle timeout ttl (0: DefaultSessionTTL; others
// are clamped to [MinSessionTTL, MaxSessionTTL]) and returns its ID. A full
// table first expires the session closest to its timeout.
func (s *Sessions) Open(ttl time.Duration) uint64 {
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	ttl = min(max(ttl, MinSessionTTL), MaxSessionTTL)
	e := &session{id: s.next, used: s.now, ttl: uint64(ttl / time.Millisecond)}
	s.next++
	s.add(e)
	return e.id
}

// add puts e in the table, first expiring the session closest to its
// timeout if the table is full.
func (s *Sessions) add(e *session) {
	if len(s.table) >= MaxSessions {
		s.drop(s.byExpiry[0])
	}
	s.table[e.id] = e
	heap.Push(&s.byExpiry, e)
}

func (s *Sessions) drop(e *session) {
	heap.Remove(&s.byExpiry, e.index)
	delete(s.table, e.id)
}

// Apply applies cmd unless (sessionID, seq) was applied already. Session 0
// means "no session": the command is always applied. For a duplicate it
// returns the recorded answer (nil if the session has moved past seq) and
// dup=true. A session that is not open gets ErrSessionExpired, and cmd is
// not applied. A command or duplicate counts as the session's use.
func (s *Sessions) Apply(slot, sessionID, seq uint64, cmd []byte) (result []byte, dup bool, err error) {
	if sessionID == 0 {
		return s.m.Apply(slot, cmd), false, nil
	}
	e, ok := s.table[sessionID]
	if !ok {
		return nil, false, ErrSessionExpired
	}
	e.used = s.now
	heap.Fix(&s.byExpiry, e.index)
	if seq <= e.seq {
		if seq == e.seq {
			return e.result, true, nil
		}
		return nil, true, nil
	}
	result = s.m.Apply(slot, cmd)
	e.seq, e.result = seq, result
	return result, false, nil
}

// ApplyLegacy is Apply for a command of a batch written before sessions
// were opened through the log: a session it does not know is opened, with
// the default timeout, as the first command of a session used to open it.
// Replaying such a log after an upgrade applies what it applied before.
func (s *Sessions) ApplyLegacy(slot, sessionID, seq uint64, cmd []byte) (result []byte, dup bool, err error) {
	if _, ok := s.table[sessionID]; sessionID != 0 && !ok {
		s.add(&session{id: sessionID, used: s.now, ttl: uint64(DefaultSessionTTL / time.Millisecond)})
		if sessionID < ^uint64(0) {
			s.next = max(s.next, sessionID+1)
		}
	}
	return s.Apply(slot, sessionID, seq, cmd)
}

// expiryHeap is a min-heap of sessions by expiry time, then ID: the order
// is total, so every learner expires the same sessions.
type expiryHeap []*session

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	return a.expires() < b.expires() || (a.expires() == b.expires() && a.id < b.id)
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*session)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

const (
	sessionsMagic = "PXSS"
	// Version 1 had no session timeouts, log time or opened IDs; version
	// 2 (written now) has them.
	sessionsVersion = 2
	// maxResult bounds one recorded answer in a snapshot being restored.
	maxResult = 64 << 20
)

// tableCopy is the part of the table a snapshot writes.
type tableCopy struct {
	next, now uint64
	sessions  []session // in ID order
}

func (s *Sessions) copyTable() tableCopy {
	c := tableCopy{next: s.next, now: s.now, sessions: make([]session, 0, len(s.table))}
	for _, id := range slices.Sorted(maps.Keys(s.table)) {
		c.sessions = append(c.sessions, *s.table[id])
	}
	return c
}

// Snapshot writes the session table, then the machine's snapshot.
func (s *Sessions) Snapshot(w io.Writer) error {
	return writeSessions(w, s.copyTable(), s.m.Snapshot)
}

// Freeze captures the table and the machine for a snapshot written later,
// possibly from another goroutine, while Apply goes on. The table is copied;
// the machine is frozen if it is a Freezer, and otherwise written to memory
// now.
func (s *Sessions) Freeze() func(w io.Writer) error {
	table := s.copyTable()
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

func writeSessions(w io.Writer, t tableCopy, machine func(io.Writer) error) error {
	bw := bufio.NewWriter(w)
	err := writeHeader(bw, sessionsMagic, sessionsVersion)
	for _, x := range []uint64{t.next, t.now, uint64(len(t.sessions))} {
		if err == nil {
			err = putUvarint(bw, x)
		}
	}
	for _, e := range t.sessions {
		for _, x := range []uint64{e.id, e.seq, e.used, e.ttl} {
			if err == nil {
				err = putUvarint(bw, x)
			}
		}
		if err == nil {
			err = putBytes(bw, e.result)
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
// by Snapshot (or by a version 1 table, whose sessions it gives the log time
// 0 and the default timeout: they expire at the first stamped batch). On
// error the table is unchanged; the machine is in whatever state its
// Restore left it.
func (s *Sessions) Restore(r io.Reader) error {
	br := asBufioReader(r)
	version, err := readHeaderFrom(br, sessionsMagic, 1, sessionsVersion)
	if err != nil {
		return err
	}
	next, now := uint64(1), uint64(0)
	if version >= 2 {
		if next, err = readUvarint(br, "next session"); err != nil {
			return err
		}
		if now, err = readUvarint(br, "log time"); err != nil {
			return err
		}
	}
	n, err := readUvarint(br, "session count")
	if err != nil {
		return err
	}
	if version >= 2 && n > MaxSessions {
		return fmt.Errorf("%w: %d sessions, more than the %d allowed", ErrBadSnapshot, n, MaxSessions)
	}
	table := map[uint64]*session{}
	var byExpiry expiryHeap
	var prev uint64
	for i := uint64(0); i < n; i++ {
		e := &session{ttl: uint64(DefaultSessionTTL / time.Millisecond)}
		if e.id, err = readUvarint(br, "session id"); err != nil {
			return err
		}
		if e.id == 0 || (i > 0 && e.id <= prev) || (version >= 2 && e.id >= next) {
			return fmt.Errorf("%w: session %d out of order after %d, or not below the next ID %d", ErrBadSnapshot, e.id, prev, next)
		}
		prev = e.id
		if e.seq, err = readUvarint(br, "session seq"); err != nil {
			return err
		}
		if version >= 2 {
			if e.used, err = readUvarint(br, "session use"); err != nil {
				return err
			}
			if e.ttl, err = readUvarint(br, "session timeout"); err != nil {
				return err
			}
			if e.used > now || e.ttl > uint64(MaxSessionTTL/time.Millisecond) {
				return fmt.Errorf("%w: session %d last used at %d after the log time %d, or with a timeout of %d ms", ErrBadSnapshot, e.id, e.used, now, e.ttl)
			}
		}
		if e.result, err = readBytes(br, maxResult, "session result"); err != nil {
			return err
		}
		table[e.id] = e
		heap.Push(&byExpiry, e)
	}
	if version < 2 && prev < ^uint64(0) {
		next = prev + 1 // NB: old IDs were drawn at random; new ones go above
	}
	if err := s.m.Restore(br); err != nil {
		return err
	}
	s.table, s.byExpiry, s.next, s.now = table, byExpiry, next, now
	return nil
}

// EncodeSessionTTL encodes a session timeout as the Data of an open-session
// command (paxos.CmdOpenSession); Open clamps it.
func EncodeSessionTTL(ttl time.Duration) []byte {
	return binary.AppendUvarint(nil, uint64(max(ttl, 0)/time.Millisecond))
}

// DecodeSessionTTL decodes EncodeSessionTTL's bytes, at most
// MaxSessionTTL; empty bytes are 0, the default. ok is false for bytes that
// are not an encoding (they read as 0 too).
func DecodeSessionTTL(b []byte) (ttl time.Duration, ok bool) {
	if len(b) == 0 {
		return 0, true
	}
	ms, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, false
	}
	return time.Duration(min(ms, uint64(MaxSessionTTL/time.Millisecond))) * time.Millisecond, true
}
