package client

import (
	"errors"
	"strings"
	"testing"

	"github.com/paxosd/paxosd/statemachine"
)

// The cursor moves past each answer, refuses answers from behind the place
// it asked for, and ends on compaction.
func TestWatchCursor(t *testing.T) {
	w := NewWatchCursor("k", WatchOptions{Rev: 5})
	if q, err := statemachine.DecodeKVWatch(w.Request().Data); err != nil || !q.Ranged || string(q.End) != "k\x00" || q.Rev != 5 {
		t.Fatalf("a watch of one key asks %+v, %v", q, err)
	}
	ans := statemachine.KVWatchResponse{Status: statemachine.KVOK, NextRev: 7, NextSkip: 1,
		Events: []statemachine.KVEvent{{Key: []byte("k"), Value: []byte("v"), Rev: 5, CreateRev: 5, Version: 1}, {Delete: true, Key: []byte("k"), Rev: 7}}}
	evs, err := w.Take(ans.Encode())
	if err != nil || len(evs) != 2 || !evs[1].Delete || evs[0].ModRevision != 5 {
		t.Fatalf("took %+v, %v", evs, err)
	}
	if rev, skip := w.Next(); rev != 7 || skip != 1 {
		t.Fatalf("next at %d skip %d, want 7 skip 1", rev, skip)
	}
	for _, bad := range []statemachine.KVWatchResponse{
		{Status: statemachine.KVOK, NextRev: 7}, // behind: skip 0 < 1
		{Status: statemachine.KVOK, NextRev: 6}, // behind
		{Status: statemachine.KVOK, NextRev: 9, Events: []statemachine.KVEvent{{Key: []byte("k"), Rev: 6}}}, // an event before the place
	} {
		if _, err := w.Take(bad.Encode()); err == nil || !strings.Contains(err.Error(), "revision") {
			t.Fatalf("answer %+v taken: %v", bad, err)
		}
		if rev, skip := w.Next(); rev != 7 || skip != 1 {
			t.Fatalf("a refused answer moved the cursor to %d skip %d", rev, skip)
		}
	}
	_, err = w.Take(statemachine.KVWatchResponse{Status: statemachine.KVCompacted, Err: "gone", Compacted: 8}.Encode())
	if !errors.Is(err, ErrCompacted) {
		t.Fatalf("compacted answer: %v", err)
	}
	if _, err := w.Take([]byte{1, 2}); err == nil {
		t.Fatal("garbage taken")
	}
}
