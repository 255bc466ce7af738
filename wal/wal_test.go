package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/paxosd/paxosd/paxos"
)

func b(round uint64, node paxos.NodeID) paxos.Ballot { return paxos.Ballot{Round: round, Node: node} }

func open(t testing.TB, fs vfs.FS) (*Store, paxos.State) {
	t.Helper()
	s, st, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func TestRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s, st := open(t, fs)
	if !reflect.DeepEqual(st, paxos.State{}) {
		t.Fatalf("a new store recovered %+v", st)
	}
	batches := [][]paxos.Record{
		{{Type: paxos.RecPromise, Ballot: b(1, 2)}},
		{{Type: paxos.RecAccept, Slot: 2, Ballot: b(1, 2), Value: paxos.Value("two")}, {Type: paxos.RecAccept, Slot: 1, Ballot: b(1, 2)}},
		{{Type: paxos.RecPromise, Ballot: b(3, 1)}, {Type: paxos.RecAccept, Slot: 2, Ballot: b(3, 1), Value: paxos.Value("TWO")}},
		{{Type: paxos.RecChosen, Slot: 1}, {Type: paxos.RecChosen, Slot: 2, Value: paxos.Value("TWO")}, {Type: paxos.RecChosen, Slot: 4, Value: paxos.Value("four")}, {Type: paxos.RecApplied, Slot: 2}},
	}
	for _, recs := range batches {
		if err := s.Save(recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, st = open(t, fs)
	defer s.Close()
	want := paxos.State{
		Acceptor: paxos.AcceptorState{Promised: b(3, 1), Accepted: []paxos.Entry{{Slot: 1, Ballot: b(1, 2)}, {Slot: 2, Ballot: b(3, 1), Value: paxos.Value("TWO")}}},
		Learner:  paxos.LearnerState{Applied: 2, Chosen: []paxos.Entry{{Slot: 1}, {Slot: 2, Value: paxos.Value("TWO")}, {Slot: 4, Value: paxos.Value("four")}}},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("recovered\n%+v\nwant\n%+v", st, want)
	}
}

// rawDB writes keys straight into Pebble, bypassing the store's checks.
func rawDB(t *testing.T, fs vfs.FS, kvs map[string][]byte) {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: pebbleLogger{discard}})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kvs {
		if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionIsRefused(t *testing.T) {
	good := func(recs ...paxos.Record) map[string][]byte {
		m := map[string][]byte{string([]byte{prefixFormat}): seal(appendUvarint(formatVersion))}
		for _, r := range recs {
			k, v, err := encodeRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			m[string(k)] = v
		}
		return m
	}
	flip := func(m map[string][]byte, k []byte) map[string][]byte {
		v := bytes.Clone(m[string(k)])
		v[len(v)-1] ^= 1
		m[string(k)] = v
		return m
	}
	for _, tc := range []struct {
		name string
		kvs  map[string][]byte
		want string
	}{
		{"flipped bit", flip(good(paxos.Record{Type: paxos.RecAccept, Slot: 5, Ballot: b(1, 1), Value: paxos.Value("v")}, paxos.Record{Type: paxos.RecPromise, Ballot: b(1, 1)}), slotKey(prefixAccepted, 5)), "accepted/5: checksum"},
		{"accepted above promise", good(paxos.Record{Type: paxos.RecPromise, Ballot: b(1, 1)}, paxos.Record{Type: paxos.RecAccept, Slot: 3, Ballot: b(2, 2)}), "acceptor state: slot 3 accepted at ballot 2.2, above promised 1.1"},
		{"applied beyond a gap", good(paxos.Record{Type: paxos.RecChosen, Slot: 1}, paxos.Record{Type: paxos.RecChosen, Slot: 3}, paxos.Record{Type: paxos.RecApplied, Slot: 3}), "learner state: applied slot 3, but the chosen value of slot 2 is missing"},
		{"unknown key", map[string][]byte{"f": seal(appendUvarint(formatVersion)), "zzz": nil}, `"zzz": unknown key`},
		{"slot zero", map[string][]byte{"f": seal(appendUvarint(formatVersion)), string(slotKey(prefixChosen, 0)): seal(nil)}, "slot 0"},
		{"short value", map[string][]byte{"f": seal(appendUvarint(formatVersion)), "p": {1, 2}}, "promised: value of 2 bytes"},
		{"trailing bytes", map[string][]byte{"f": seal(appendUvarint(formatVersion)), "p": seal([]byte{1, 1, 7})}, "promised: 1 trailing bytes"},
		{"identity without node", map[string][]byte{"f": seal(appendUvarint(formatVersion)), "i": seal([]byte{5, 0})}, "identity: bad node ID"},
		{"no format key", map[string][]byte{"p": seal(appendBallot(nil, b(1, 1)))}, "format: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			rawDB(t, fs, tc.kvs)
			_, _, err := Open("db", Options{FS: fs})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want ErrCorrupt mentioning %q", err, tc.want)
			}
		})
	}
}

func TestNewerFormatIsRefused(t *testing.T) {
	fs := vfs.NewMem()
	// with a key this build does not know, which sorts before the format
	rawDB(t, fs, map[string][]byte{"f": seal(appendUvarint(formatVersion + 1)), "X": seal(nil)})
	if _, _, err := Open("db", Options{FS: fs}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open of a newer format: %v, want ErrUnsupported", err)
	}
}

// TestCrashKeepsSyncedWrites saves random batches and, at many points,
// takes the state the disk could be in after a power cut: exactly what was
// synced plus a random part of what was not. Every batch Save reported done
// must be there, whole, and the store must open.
func TestCrashKeepsSyncedWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	fs := vfs.NewCrashableMem()
	s, _ := open(t, fs)
	defer s.Close()
	var model paxos.State
	accepted := map[paxos.Slot]paxos.Entry{}
	var chosen []paxos.Entry
	promised := b(0, 0)
	crashes := 0
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		var recs []paxos.Record
		if promised.IsZero() || rng.IntN(4) == 0 {
			promised = b(promised.Round+1, paxos.NodeID(1+rng.IntN(3)))
			recs = append(recs, paxos.Record{Type: paxos.RecPromise, Ballot: promised})
		}
		for range 1 + rng.IntN(4) {
			e := paxos.Entry{Slot: paxos.Slot(1 + rng.IntN(50)), Ballot: promised, Value: paxos.Value(fmt.Sprintf("v%d-%d", i, rng.IntN(1000)))}
			accepted[e.Slot] = e
			recs = append(recs, paxos.Record{Type: paxos.RecAccept, Slot: e.Slot, Ballot: e.Ballot, Value: e.Value})
		}
		next := paxos.Slot(len(chosen) + 1)
		chosen = append(chosen, paxos.Entry{Slot: next, Value: paxos.Value(fmt.Sprintf("c%d", next))})
		recs = append(recs, paxos.Record{Type: paxos.RecChosen, Slot: next, Value: chosen[next-1].Value}, paxos.Record{Type: paxos.RecApplied, Slot: next})
		if err := s.Save(recs); err != nil {
			t.Fatal(err)
		}
		model.Acceptor.Promised = promised
		model.Learner.Applied = next
		if rng.IntN(10) != 0 {
			continue
		}
		crashes++
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(uint64(i), 1))})
		cs, st, err := Open("db", Options{FS: clone})
		if err != nil {
			t.Fatalf("after crash %d (batch %d): the store does not open: %v", crashes, i, err)
		}
		if st.Acceptor.Promised != model.Acceptor.Promised || st.Learner.Applied != model.Learner.Applied {
			t.Fatalf("after crash %d: promised %v applied %d; saved %v and %d", crashes, st.Acceptor.Promised, st.Learner.Applied, model.Acceptor.Promised, model.Learner.Applied)
		}
		got := map[paxos.Slot]paxos.Entry{}
		for _, e := range st.Acceptor.Accepted {
			got[e.Slot] = e
		}
		for slot, e := range accepted {
			if g, ok := got[slot]; !ok || g.Ballot != e.Ballot || !bytes.Equal(g.Value, e.Value) {
				t.Fatalf("after crash %d: slot %d recovered as %+v (%v), saved %+v", crashes, slot, g, ok, e)
			}
		}
		if len(st.Learner.Chosen) != len(chosen) {
			t.Fatalf("after crash %d: %d chosen entries, saved %d", crashes, len(st.Learner.Chosen), len(chosen))
		}
		if err := cs.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if crashes < 3 {
		t.Fatalf("only %d crash points were tested", crashes)
	}
}

func FuzzDecodeKV(f *testing.F) {
	for _, r := range []paxos.Record{
		{Type: paxos.RecPromise, Ballot: b(3, 2)},
		{Type: paxos.RecAccept, Slot: 9, Ballot: b(1, 1), Value: paxos.Value("abc")},
		{Type: paxos.RecChosen, Slot: 1, Value: paxos.Value("x")},
		{Type: paxos.RecApplied, Slot: 77},
	} {
		k, v, err := encodeRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(k, v)
	}
	f.Fuzz(func(t *testing.T, k, v []byte) {
		d, err := decodeKV(k, v)
		if err != nil {
			return
		}
		var rec paxos.Record
		switch d.kind {
		case prefixPromised:
			rec = paxos.Record{Type: paxos.RecPromise, Ballot: d.ballot}
		case prefixAccepted:
			rec = paxos.Record{Type: paxos.RecAccept, Slot: d.slot, Ballot: d.ballot, Value: d.value}
		case prefixChosen:
			rec = paxos.Record{Type: paxos.RecChosen, Slot: d.slot, Value: d.value}
		case prefixApplied:
			rec = paxos.Record{Type: paxos.RecApplied, Slot: d.applied}
		default:
			return
		}
		k2, v2, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if d2, err := decodeKV(k2, v2); err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip of %+v: %+v, %v", d, d2, err)
		}
	})
}

// BenchmarkSave measures one synced group commit of a 256-byte accepted
// value on the real file system (what one acceptor flush costs).
func BenchmarkSave(b *testing.B) {
	s, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v := paxos.Value(bytes.Repeat([]byte("v"), 256))
	ballot := paxos.Ballot{Round: 1, Node: 1}
	if err := s.Save([]paxos.Record{{Type: paxos.RecPromise, Ballot: ballot}}); err != nil {
		b.Fatal(err)
	}
	var slot paxos.Slot
	b.ReportAllocs()
	for b.Loop() {
		slot++
		if err := s.Save([]paxos.Record{{Type: paxos.RecAccept, Slot: slot, Ballot: ballot, Value: v}}); err != nil {
			b.Fatal(err)
		}
	}
}

var discard = slog.New(slog.DiscardHandler)

// Write's batches are lost by a crash until a Save, even an empty one,
// syncs them; a crash in between keeps a prefix of them, each whole.
func TestUnsyncedWrites(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, _ := open(t, fs)
	defer s.Close()
	chosen := func(sl paxos.Slot) []paxos.Record {
		return []paxos.Record{{Type: paxos.RecChosen, Slot: sl, Value: paxos.Value(fmt.Sprint("c", sl))}, {Type: paxos.RecApplied, Slot: sl}}
	}
	if err := s.Save(chosen(1)); err != nil {
		t.Fatal(err)
	}
	for sl := paxos.Slot(2); sl <= 20; sl++ {
		if err := s.Write(chosen(sl)); err != nil {
			t.Fatal(err)
		}
	}
	recover := func(pct int, seed uint64) paxos.State {
		t.Helper()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(seed, 1))})
		cs, st, err := Open("db", Options{FS: clone})
		if err != nil {
			t.Fatalf("after a crash: %v", err)
		}
		if err := cs.Close(); err != nil {
			t.Fatal(err)
		}
		if len(st.Learner.Chosen) != int(st.Learner.Applied) {
			t.Fatalf("after a crash: applied %d with %d chosen values: a batch was split", st.Learner.Applied, len(st.Learner.Chosen))
		}
		return st
	}
	if st := recover(0, 1); st.Learner.Applied != 1 {
		t.Fatalf("a crash that kept no unsynced data recovered applied %d, want the synced 1", st.Learner.Applied)
	}
	for seed := range uint64(10) {
		if st := recover(50, seed); st.Learner.Applied < 1 || st.Learner.Applied > 20 {
			t.Fatalf("seed %d: recovered applied %d, outside the written 1..20", seed, st.Learner.Applied)
		}
	}
	if err := s.Save(nil); err != nil {
		t.Fatal(err)
	}
	if st := recover(0, 2); st.Learner.Applied != 20 {
		t.Fatalf("after an empty Save a crash recovered applied %d, want 20", st.Learner.Applied)
	}
}

// TestPebbleLogsGoThroughOurLogger checks that Pebble's own log lines reach
// the store's slog logger (tagged component=wal), not stderr.
func TestPebbleLogsGoThroughOurLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, _, err := Open("db", Options{FS: vfs.NewMem(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "msg=pebble component=wal line=") {
		t.Fatalf("no Pebble log line reached the logger; got:\n%s", out)
	}
}

// TestSyncFailureStopsTheStore injects a failing fdatasync into Pebble's WAL.
// Save must report ErrFailed (not panic, not succeed), and refuse every write
// after it: after a failed sync the state on disk is unknown.
func TestSyncFailureStopsTheStore(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			return errors.New("injected: disk is gone")
		}
		return nil
	}))
	s, _, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	rec := []paxos.Record{{Type: paxos.RecPromise, Ballot: b(1, 1)}}
	if err := s.Save(rec); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	err = s.Save(rec)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "injected: disk is gone") {
		t.Fatalf("Save with a failing fsync: %v; want ErrFailed naming the cause", err)
	}
	failing.Store(false)
	if err := s.Save(rec); !errors.Is(err, ErrFailed) {
		t.Fatalf("Save after the failure: %v; want ErrFailed again", err)
	}
	if err := s.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close after the failure: %v; want ErrFailed", err)
	}
}

func TestIdentity(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := open(t, fs)
	if id := s.Identity(); id != (Identity{}) {
		t.Fatalf("new store has identity %+v", id)
	}
	if _, ok := s.Config(); ok {
		t.Fatal("new store has a configuration")
	}
	want := Identity{Cluster: 0xabc, Node: 2}
	cfg := paxos.InitialConfig(paxos.Uniform(3))
	if err := s.SetIdentity(want, cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = open(t, fs)
	defer s.Close()
	if got := s.Identity(); got != want {
		t.Fatalf("identity after reopen: got %+v, want %+v", got, want)
	}
	if got, ok := s.Config(); !ok || !got.Equal(cfg) || got.Start != 1 {
		t.Fatalf("configuration after reopen: %+v, %v", got, ok)
	}
	if err := s.SetIdentity(want, cfg); err != nil {
		t.Fatalf("setting the same identity again: %v", err)
	}
	if err := s.SetIdentity(Identity{Cluster: 0xabc, Node: 3}, cfg); err == nil {
		t.Fatal("SetIdentity changed a store's node ID")
	}
}

// RecSnapshot and RecTruncate drop the slots they cover in the same batch,
// and a restart recovers the base and the floor.
func TestSnapshotBaseAndFloor(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := open(t, fs)
	var recs []paxos.Record
	for sl := paxos.Slot(1); sl <= 6; sl++ {
		recs = append(recs,
			paxos.Record{Type: paxos.RecAccept, Slot: sl, Ballot: b(1, 2), Value: paxos.Value{byte(sl)}},
			paxos.Record{Type: paxos.RecChosen, Slot: sl, Value: paxos.Value{byte(sl)}})
	}
	recs = append(recs, paxos.Record{Type: paxos.RecPromise, Ballot: b(1, 2)}, paxos.Record{Type: paxos.RecApplied, Slot: 5})
	for _, batch := range [][]paxos.Record{recs,
		{{Type: paxos.RecSnapshot, Slot: 4}},
		{{Type: paxos.RecTruncate, Slot: 3}}} {
		if err := s.Save(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, st := open(t, fs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Learner.Base != 4 || st.Learner.Applied != 5 || len(st.Learner.Chosen) != 2 || st.Learner.Chosen[0].Slot != 5 {
		t.Fatalf("learner recovered %+v, want base 4, applied 5, chosen 5 and 6", st.Learner)
	}
	if st.Acceptor.Floor != 3 || len(st.Acceptor.Accepted) != 3 || st.Acceptor.Accepted[0].Slot != 4 {
		t.Fatalf("acceptor recovered %+v, want floor 3 and slots 4..6", st.Acceptor)
	}
	// An applied slot below the base means the store is damaged.
	fs = vfs.NewMem()
	rawDB(t, fs, map[string][]byte{"f": seal(appendUvarint(formatVersion)), "b": seal(appendUvarint(9)), "l": seal(appendUvarint(3))})
	if _, _, err := Open("db", Options{FS: fs}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("applied below the base: %v, want ErrCorrupt", err)
	}
}

// A format 1 store (before snapshots) opens and is upgraded in place.
func TestFormat1IsUpgraded(t *testing.T) {
	fs := vfs.NewMem()
	rawDB(t, fs, map[string][]byte{"f": seal(appendUvarint(1)), "p": seal(appendBallot(nil, b(3, 1)))})
	s, st := open(t, fs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Acceptor.Promised != b(3, 1) {
		t.Fatalf("format 1 store recovered %+v", st)
	}
	db, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: pebbleLogger{discard}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, closer, err := db.Get([]byte{prefixFormat})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if d, err := decodeKV([]byte{prefixFormat}, v); err != nil || d.version != formatVersion {
		t.Fatalf("format after the upgrade: %d (%v), want %d", d.version, err, formatVersion)
	}
}
