package statemachine

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"
)

func put(k string) []byte { return KVRequest{Op: KVPut, Key: []byte(k), Value: []byte("v")}.Encode() }

// Sessions expire by the log's time, the same way wherever the same
// batches are applied, and a command of an expired session is refused.
func TestSessionsExpireByLogTime(t *testing.T) {
	s := NewSessions(NewKV())
	s.Advance(10_000)
	a := s.Open(2 * time.Second)
	b := s.Open(5 * time.Second)
	if a == b || a == 0 {
		t.Fatalf("opened sessions %d and %d", a, b)
	}
	if _, _, err := s.Apply(1, a, 1, put("x")); err != nil {
		t.Fatal(err)
	}
	s.Advance(11_000)
	s.Apply(2, b, 1, put("y")) // used at 11,000: expires after 16,000
	if n := s.Advance(12_000); n != 0 {
		t.Fatalf("%d sessions expired at their timeout, not after it", n)
	}
	if n := s.Advance(12_001); n != 1 || s.Len() != 1 {
		t.Fatalf("at 12,001: %d expired, %d left; want session %d gone", n, s.Len(), a)
	}
	if _, _, err := s.Apply(3, a, 1, put("x")); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("a retry in an expired session: %v, want ErrSessionExpired", err)
	}
	if _, _, err := s.Apply(3, 999, 1, put("x")); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("a session never opened: %v, want ErrSessionExpired", err)
	}
	if rev := s.Machine().(*KV).Rev(); rev != 2 {
		t.Fatalf("revision %d: a refused command was applied", rev)
	}
	// Time never goes back: a new leader's slower clock does not revive
	// anything or delay expiry.
	s.Advance(5_000)
	if s.Now() != 12_001 {
		t.Fatalf("log time went back to %d", s.Now())
	}
	if n := s.Advance(16_001); n != 1 || s.Len() != 0 {
		t.Fatalf("at 16,001: %d expired, %d left", n, s.Len())
	}
}

// A full table makes room by expiring the session closest to its timeout,
// so the table never holds more than MaxSessions, however many are opened.
func TestSessionsCap(t *testing.T) {
	s := NewSessions(NewKV())
	first := s.Open(MaxSessionTTL)
	for range MaxSessions - 1 {
		s.Open(time.Hour)
	}
	soon := s.Open(0) // evicts one of the hour-long ones, the lowest ID
	if s.Len() != MaxSessions {
		t.Fatalf("%d sessions, want the cap %d", s.Len(), MaxSessions)
	}
	if _, _, err := s.Apply(1, first+1, 1, put("x")); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("the session closest to its timeout was not the one expired: %v", err)
	}
	for _, id := range []uint64{first, soon} {
		if _, _, err := s.Apply(1, id, 1, put("x")); err != nil {
			t.Fatalf("session %d: %v", id, err)
		}
	}
}

func TestSessionsSnapshotKeepsTimes(t *testing.T) {
	s := NewSessions(NewKV())
	s.Advance(1_000)
	a := s.Open(time.Second)
	s.Apply(1, a, 1, put("x"))
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := NewSessions(NewKV())
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if r.Now() != 1_000 || r.Open(0) != a+1 {
		t.Fatalf("restored log time %d and next ID: want 1000 and %d", r.Now(), a+1)
	}
	if n := r.Advance(2_001); n != 1 {
		t.Fatalf("the restored session did not keep its timeout: %d expired", n)
	}
}

// A version 1 table (random IDs, no times) still restores; its sessions
// expire at the first stamped batch, and new IDs go above the old.
func TestSessionsRestoreVersion1(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	writeHeader(w, sessionsMagic, 1)
	for _, x := range []uint64{1, 77, 3} {
		putUvarint(w, x)
	}
	putBytes(w, []byte("answer"))
	w.Flush()
	if err := NewKV().Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	s := NewSessions(NewKV())
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if ans, dup, err := s.Apply(1, 77, 3, nil); err != nil || !dup || string(ans) != "answer" {
		t.Fatalf("old session's retry: %q %v %v", ans, dup, err)
	}
	s.Advance(uint64(DefaultSessionTTL/time.Millisecond) + 1)
	if s.Len() != 0 {
		t.Fatalf("%d sessions after the first stamped batches; the old one should be gone", s.Len())
	}
	if id := s.Open(0); id != 78 {
		t.Fatalf("new session %d, want 78 (above the old IDs)", id)
	}
}

func TestSessionTTLEncoding(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want time.Duration
		ok   bool
	}{{EncodeSessionTTL(3 * time.Second), 3 * time.Second, true}, {nil, 0, true}, {EncodeSessionTTL(0), 0, true},
		{[]byte{0x80}, 0, false}, {EncodeSessionTTL(1000 * time.Hour), MaxSessionTTL, true}, {append(EncodeSessionTTL(time.Second), 0), 0, false}} {
		if got, ok := DecodeSessionTTL(c.in); got != c.want || ok != c.ok {
			t.Errorf("DecodeSessionTTL(%x) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
