package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
)

func testMeta(slot paxos.Slot) SnapshotHeader {
	ms := paxos.MustMembership(paxos.Member{ID: 1, Roles: paxos.RoleAll}, paxos.Member{ID: 2, Roles: paxos.RoleAcceptor})
	boot := paxos.InitialConfig(ms)
	next, err := paxos.NewConfig(slot+paxos.ConfigDelay, slot, []paxos.Peer{{ID: 1, Roles: paxos.RoleAll, PeerAddr: "a:1", ClientAddr: "a:2"},
		{ID: 2, Roles: paxos.RoleAcceptor, PeerAddr: "b:1"}, {ID: 3, Roles: paxos.RoleLearner, Target: paxos.RoleAll, PeerAddr: "c:1"}}, []paxos.NodeID{7})
	if err != nil {
		panic(err)
	}
	return SnapshotHeader{SnapshotMeta: paxos.SnapshotMeta{Slot: slot, Hash: uint64(slot) * 7919, Configs: paxos.History{boot, next}},
		Cluster: 0xc1, Machine: "kv", Members: next.Membership().Members()}
}

// A snapshot file of version 1 (before reconfiguration) is read with its
// member list and no configurations.
func TestSnapshotVersion1(t *testing.T) {
	fs := vfs.NewMem()
	s, err := OpenSnapshots(fs, "snap")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("state")
	hdr := binary.AppendUvarint(nil, 9)
	hdr = binary.BigEndian.AppendUint64(hdr, 0xabc)
	hdr = binary.AppendUvarint(hdr, 0xc1)
	hdr = append(hdr, 2, 1, byte(paxos.RoleAll), 2, byte(paxos.RoleAcceptor))
	hdr = append(hdr, 2, 'k', 'v')
	file := append([]byte(snapMagicV1), byte(len(hdr)>>24), byte(len(hdr)>>16), byte(len(hdr)>>8), byte(len(hdr)))
	file = append(append(file, hdr...), data...)
	file = binary.BigEndian.AppendUint64(file, uint64(len(data)))
	file = binary.BigEndian.AppendUint32(file, crc32.Checksum(file, crcTable))
	f, err := fs.Create(s.Path(9), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(file); err != nil {
		t.Fatal(err)
	}
	f.Close()
	meta, got, err := readAll(t, fs, s.Path(9))
	if err != nil {
		t.Fatal(err)
	}
	want := []paxos.Member{{ID: 1, Roles: paxos.RoleAll}, {ID: 2, Roles: paxos.RoleAcceptor}}
	if meta.Slot != 9 || meta.Hash != 0xabc || meta.Cluster != 0xc1 || meta.Machine != "kv" || meta.Configs != nil ||
		fmt.Sprint(meta.Members) != fmt.Sprint(want) || string(got) != "state" {
		t.Fatalf("version 1 file read as %+v, %q", meta, got)
	}
}

// snapData is the state a test snapshot at slot holds.
func snapData(slot paxos.Slot, size int) []byte {
	pat := []byte(fmt.Sprintf("state@%d;", slot))
	return bytes.Repeat(pat, size/len(pat)+1)[:size]
}

func readAll(t *testing.T, fs vfs.FS, path string) (SnapshotHeader, []byte, error) {
	t.Helper()
	var got []byte
	meta, err := ReadSnapshot(fs, path, func(_ SnapshotHeader, r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	return meta, got, err
}

func TestSnapshotRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s, err := OpenSnapshots(fs, "snap")
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range []paxos.Slot{5, 17, 300} {
		data := snapData(slot, int(slot)*100)
		path, err := s.Write(testMeta(slot), func(w io.Writer) error { _, err := w.Write(data); return err })
		if err != nil {
			t.Fatal(err)
		}
		meta, got, err := readAll(t, fs, path)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(meta) != fmt.Sprint(testMeta(slot)) || !bytes.Equal(got, data) {
			t.Fatalf("slot %d: read back %+v and %d bytes; wrote %+v and %d bytes", slot, meta, len(got), testMeta(slot), len(data))
		}
	}
	if latest, ok, err := s.Latest(); err != nil || !ok || latest != 300 {
		t.Fatalf("Latest() = %d, %v, %v; want 300", latest, ok, err)
	}
	if err := s.Prune(2); err != nil {
		t.Fatal(err)
	}
	if slots, _ := s.slots(); fmt.Sprint(slots) != "[17 300]" {
		t.Fatalf("after Prune(2): %v", slots)
	}
}

func TestSnapshotCorruptionIsReported(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := OpenSnapshots(fs, "snap")
	path, err := s.Write(testMeta(9), func(w io.Writer) error { _, err := w.Write(snapData(9, 5000)); return err })
	if err != nil {
		t.Fatal(err)
	}
	good := fileBytes(t, fs, path)
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"flipped data bit", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, "checksum"},
		{"flipped header bit", func(b []byte) []byte { b[13] ^= 0x40; return b }, ""},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }, ""},
		{"cut to the header", func(b []byte) []byte { return b[:20] }, ""},
		{"not a snapshot", func(b []byte) []byte { return []byte("hello, world, this is not one") }, "bad magic"},
		{"huge header length", func(b []byte) []byte { b[8], b[9] = 0x7f, 0xff; return b }, "header of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.edit(bytes.Clone(good))
			writeFile(t, fs, "bad"+snapSuffix, bad)
			_, _, err := readAll(t, fs, "bad"+snapSuffix)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want ErrCorrupt mentioning %q", err, tc.want)
			}
		})
	}
}

func fileBytes(t testing.TB, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A crash at any point of writing a snapshot leaves the last snapshot that
// was fully written (or the new one, if the crash came after its rename was
// synced) whole and readable.
func TestSnapshotCrashLeavesOldOrNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	fs := vfs.NewCrashableMem()
	s, err := OpenSnapshots(fs, "snap")
	if err != nil {
		t.Fatal(err)
	}
	done := paxos.Slot(0) // the newest snapshot whose Write returned
	checks := 0
	check := func(when string, clone *vfs.MemFS, newest paxos.Slot) {
		t.Helper()
		checks++
		cs, err := OpenSnapshots(clone, "snap")
		if err != nil {
			t.Fatalf("%s: snapshots do not open after a crash: %v", when, err)
		}
		latest, ok, err := cs.Latest()
		if err != nil {
			t.Fatal(err)
		}
		if done == 0 && !ok {
			return
		}
		if !ok || (latest != done && latest != newest) {
			t.Fatalf("%s: latest snapshot %d (ok %v); want %d or %d", when, latest, ok, done, newest)
		}
		meta, got, err := readAll(t, clone, cs.Path(latest))
		if err != nil {
			t.Fatalf("%s: snapshot %d does not read: %v", when, latest, err)
		}
		if meta.Slot != latest || !bytes.Equal(got, snapData(latest, int(latest)*37)) {
			t.Fatalf("%s: snapshot %d holds other data", when, latest)
		}
	}
	for i := 1; i <= 40; i++ {
		slot := paxos.Slot(i * 10)
		data := snapData(slot, int(slot)*37)
		crashAt := rng.IntN(len(data) + 1)
		_, err := s.Write(testMeta(slot), func(w io.Writer) error {
			if _, err := w.Write(data[:crashAt]); err != nil {
				return err
			}
			check(fmt.Sprintf("crash in the middle of snapshot %d", slot),
				fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(uint64(i), 9))}), slot)
			_, err := w.Write(data[crashAt:])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		done = slot
		check(fmt.Sprintf("crash after snapshot %d", slot),
			fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(uint64(i), 10))}), slot)
		if i%5 == 0 {
			if err := s.Prune(2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if checks < 80 {
		t.Fatalf("only %d crash points checked", checks)
	}
}

func FuzzReadSnapshot(f *testing.F) {
	fs := vfs.NewMem()
	s, _ := OpenSnapshots(fs, "snap")
	path, _ := s.Write(testMeta(3), func(w io.Writer) error { _, err := w.Write([]byte("state")); return err })
	f.Add(fileBytes(f, fs, path))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := vfs.NewMem()
		writeFile(t, fs, "f", b)
		_, _, err := func() (SnapshotHeader, []byte, error) {
			var got []byte
			meta, err := ReadSnapshot(fs, "f", func(_ SnapshotHeader, r io.Reader) error {
				var err error
				got, err = io.ReadAll(r)
				return err
			})
			return meta, got, err
		}()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}
