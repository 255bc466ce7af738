package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
)

// A snapshot file holds a learner's state as of one slot:
//
//	magic     "PXSNAP02"
//	header    4-byte big-endian length, then: uvarint slot, 8-byte applied
//	          hash, uvarint cluster ID, the configurations that govern
//	          the slots after the snapshot (paxos.History.Encode), uvarint
//	          length and the machine's name
//
// Files of version 1 ("PXSNAP01", written before paxosd had
// reconfiguration) hold the member list instead of the configurations:
// uvarint member count, per member uvarint ID and one byte of roles. They
// are read with Configs empty, which tells the member to start from its
// stored bootstrap configuration: nothing could change it back then.
//	data      the state, as the learner's Snapshot writes it
//	trailer   8-byte big-endian data length, 4-byte CRC-32C of every byte
//	          before it
//
// Files are written under a temporary name, synced, renamed into place and
// their directory synced, so a crash at any point leaves the previous
// snapshot or the new one, whole. A file that fails its checks is reported
// as ErrCorrupt, never skipped.

const (
	snapMagic     = "PXSNAP02"
	snapMagicV1   = "PXSNAP01"
	snapPrefix    = "snap-"
	snapSuffix    = ".pxsnap"
	snapTemp      = ".tmp"
	snapTrailer   = 12
	maxSnapHeader = 1 << 20
)

// SnapshotHeader is the header of a snapshot file: what the learner knows
// of the snapshot (its slot, the applied hash there and the configurations
// after it), and the cluster it belongs to, for checks and for people
// reading it. Members is the newest configuration's (or, in a version 1
// file, the bootstrap members); it is derived, not written.
type SnapshotHeader struct {
	paxos.SnapshotMeta
	Cluster uint64
	Members []paxos.Member
	Machine string
}

// Snapshots keeps snapshot files in one directory.
type Snapshots struct {
	fs  vfs.FS
	dir string
}

// OpenSnapshots opens (creating it if needed) the snapshot directory dir on
// fs (nil: the real file system) and removes files left by an interrupted
// write.
func OpenSnapshots(fs vfs.FS, dir string) (*Snapshots, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create snapshot directory: %w", err)
	}
	// The directory's own entry must survive a crash too.
	if err := syncDir(fs, fs.PathDir(dir)); err != nil {
		return nil, err
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list snapshot directory: %w", err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, snapTemp) {
			if err := fs.Remove(fs.PathJoin(dir, n)); err != nil {
				return nil, fmt.Errorf("wal: remove unfinished snapshot %s: %w", n, err)
			}
		}
	}
	return &Snapshots{fs: fs, dir: dir}, nil
}

// SnapshotFileName is the name a snapshot of slot s has in a snapshot
// directory.
func SnapshotFileName(s paxos.Slot) string { return snapName(s) }

func snapName(s paxos.Slot) string {
	return fmt.Sprintf("%s%020d%s", snapPrefix, uint64(s), snapSuffix)
}

// SnapshotFileSlot returns the slot of the snapshot file called name, and
// false if name is not the name of a snapshot file.
func SnapshotFileSlot(name string) (paxos.Slot, bool) {
	if !strings.HasPrefix(name, snapPrefix) || !strings.HasSuffix(name, snapSuffix) {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, snapPrefix), snapSuffix), 10, 64)
	if err != nil || name != snapName(paxos.Slot(v)) {
		return 0, false
	}
	return paxos.Slot(v), true
}

// slots returns the slots of the snapshot files present, ascending.
func (s *Snapshots) slots() ([]paxos.Slot, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list snapshot directory: %w", err)
	}
	var out []paxos.Slot
	for _, n := range names {
		if !strings.HasPrefix(n, snapPrefix) || !strings.HasSuffix(n, snapSuffix) {
			continue
		}
		slot, ok := SnapshotFileSlot(n)
		if !ok {
			return nil, fmt.Errorf("%w: snapshot file name %q", ErrCorrupt, n)
		}
		out = append(out, slot)
	}
	slices.Sort(out)
	return out, nil
}

// Dir returns the snapshot directory.
func (s *Snapshots) Dir() string { return s.dir }

// Slots returns the slots of the snapshots present, ascending.
func (s *Snapshots) Slots() ([]paxos.Slot, error) { return s.slots() }

// Adopt puts the snapshot file at tmp, written and synced by the caller,
// in place as the snapshot of slot, durably. tmp must be in the snapshot
// directory and end in ".tmp", so that a crash before Adopt leaves nothing
// a restart would take for a snapshot.
func (s *Snapshots) Adopt(tmp string, slot paxos.Slot) error {
	if err := s.fs.Rename(tmp, s.Path(slot)); err != nil {
		return fmt.Errorf("wal: put snapshot in place: %w", err)
	}
	return s.syncDir()
}

// Path returns the file name of the snapshot at slot.
func (s *Snapshots) Path(slot paxos.Slot) string { return s.fs.PathJoin(s.dir, snapName(slot)) }

// Write makes a snapshot: it writes meta and whatever data writes, syncs it
// and puts it in place durably. It returns the file's path.
func (s *Snapshots) Write(meta SnapshotHeader, data func(io.Writer) error) (path string, err error) {
	final := s.Path(meta.Slot)
	tmp := final + snapTemp
	f, err := s.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return "", fmt.Errorf("wal: create snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = s.fs.Remove(tmp) // NB: the write error is the one worth reporting
		}
	}()
	crc := crc32.New(crcTable)
	// NB: the checksum sees the bytes first. A file may overwrite the
	// buffer it was handed once it has it (Pebble's in-memory file system
	// does in race and invariant builds, to catch callers that reuse it).
	bw := bufio.NewWriterSize(io.MultiWriter(crc, f), 256<<10)
	hdr := encodeSnapHeader(meta)
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(hdr)))
	// A bufio.Writer's error is sticky: the Flush below reports any.
	bw.WriteString(snapMagic)
	bw.Write(lenBuf[:])
	bw.Write(hdr)
	cw := &countWriter{w: bw}
	if err := data(cw); err != nil {
		return "", fmt.Errorf("wal: write snapshot data: %w", err)
	}
	var tail [8]byte
	binary.BigEndian.PutUint64(tail[:], uint64(cw.n))
	bw.Write(tail[:])
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("wal: write snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	if _, err := f.Write(sum[:]); err != nil {
		return "", fmt.Errorf("wal: write snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("wal: sync snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("wal: close snapshot: %w", err)
	}
	if err := s.fs.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("wal: put snapshot in place: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return "", err
	}
	return final, nil
}

func (s *Snapshots) syncDir() error { return syncDir(s.fs, s.dir) }

// syncDir makes the entries of directory dir durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("wal: open directory %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("wal: sync directory %s: %w", dir, err)
	}
	return d.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Latest returns the newest snapshot's slot; ok is false if there is none.
func (s *Snapshots) Latest() (slot paxos.Slot, ok bool, err error) {
	slots, err := s.slots()
	if err != nil || len(slots) == 0 {
		return 0, false, err
	}
	return slots[len(slots)-1], true, nil
}

// Prune removes all but the newest keep snapshots.
func (s *Snapshots) Prune(keep int) error {
	slots, err := s.slots()
	if err != nil {
		return err
	}
	for len(slots) > keep {
		if err := s.fs.Remove(s.Path(slots[0])); err != nil {
			return fmt.Errorf("wal: remove old snapshot: %w", err)
		}
		slots = slots[1:]
	}
	return s.syncDir()
}

// ReadSnapshot opens the snapshot file at path on fs (nil: the real file
// system), checks it, and hands its data to restore. The checksum covers
// the whole file and is known only at the end, so restore must load into
// state it can throw away: on an error wrapping ErrCorrupt, discard what
// restore built.
func ReadSnapshot(fs vfs.FS, path string, restore func(SnapshotHeader, io.Reader) error) (SnapshotHeader, error) {
	r, err := OpenSnapshot(fs, path)
	if err != nil {
		return SnapshotHeader{}, err
	}
	defer r.Close()
	if err := restore(r.Header, r); err != nil {
		return r.Header, fmt.Errorf("wal: restore snapshot %s: %w", filepath.Base(path), err)
	}
	return r.Header, r.Finish()
}

// VerifySnapshot reads the whole snapshot file at path and checks it.
func VerifySnapshot(fs vfs.FS, path string) (SnapshotHeader, error) {
	return ReadSnapshot(fs, path, func(SnapshotHeader, io.Reader) error { return nil })
}

// SnapshotReader reads the data of one snapshot file as a stream. The
// checksum covers the whole file, so it is known only once Finish has read
// to the end: whatever was built from the data must be thrown away if
// Finish fails.
type SnapshotReader struct {
	Header SnapshotHeader
	f      vfs.File
	path   string
	br     *bufio.Reader
	crc    hash.Hash32
	data   *io.LimitedReader
	size   int64 // data bytes
}

// OpenSnapshot opens the snapshot file at path on fs (nil: the real file
// system) and reads its header.
func OpenSnapshot(fs vfs.FS, path string) (*SnapshotReader, error) {
	if fs == nil {
		fs = vfs.Default
	}
	f, err := fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wal: open snapshot: %w", err)
	}
	r, err := newSnapshotReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func newSnapshotReader(f vfs.File, path string) (*SnapshotReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("wal: stat snapshot: %w", err)
	}
	size := st.Size()
	sr := &SnapshotReader{f: f, path: path, crc: crc32.New(crcTable)}
	// Everything read through r feeds the checksum, except the checksum
	// itself, which is read from br.
	sr.br = bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 256<<10)
	r := io.TeeReader(sr.br, sr.crc)
	var magic [8]byte
	var hlen [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || (string(magic[:]) != snapMagic && string(magic[:]) != snapMagicV1) {
		return nil, sr.corrupt("not a snapshot file (bad magic)")
	}
	v1 := string(magic[:]) == snapMagicV1
	if _, err := io.ReadFull(r, hlen[:]); err != nil {
		return nil, sr.corrupt("truncated header")
	}
	n := int64(binary.BigEndian.Uint32(hlen[:]))
	if n > maxSnapHeader || 12+n+snapTrailer > size {
		return nil, sr.corrupt("header of %d bytes in a file of %d", n, size)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, sr.corrupt("truncated header")
	}
	if sr.Header, err = decodeSnapHeader(hdr, v1); err != nil {
		return nil, sr.corrupt("%v", err)
	}
	sr.size = size - 12 - n - snapTrailer
	sr.data = &io.LimitedReader{R: r, N: sr.size}
	return sr, nil
}

func (r *SnapshotReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: snapshot %s: %s", ErrCorrupt, filepath.Base(r.path), fmt.Sprintf(format, args...))
}

// Read reads the snapshot's data (the state), stopping at its end.
func (r *SnapshotReader) Read(p []byte) (int, error) { return r.data.Read(p) }

// Finish reads what is left of the data and checks the trailer and the
// checksum. Any failure wraps ErrCorrupt.
func (r *SnapshotReader) Finish() error {
	if _, err := io.Copy(io.Discard, r.data); err != nil {
		return r.corrupt("%v", err)
	}
	tr := io.TeeReader(r.br, r.crc)
	var tail [8]byte
	if _, err := io.ReadFull(tr, tail[:]); err != nil {
		return r.corrupt("truncated trailer")
	}
	if got := int64(binary.BigEndian.Uint64(tail[:])); got != r.size {
		return r.corrupt("trailer says %d data bytes, file holds %d", got, r.size)
	}
	want := r.crc.Sum32() // covers everything up to the checksum
	var sum [4]byte
	if _, err := io.ReadFull(r.br, sum[:]); err != nil {
		return r.corrupt("truncated checksum")
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return r.corrupt("checksum %#08x, stored %#08x", want, got)
	}
	return nil
}

// Close closes the file.
func (r *SnapshotReader) Close() error { return r.f.Close() }

func encodeSnapHeader(m SnapshotHeader) []byte {
	b := binary.AppendUvarint(nil, uint64(m.Slot))
	b = binary.BigEndian.AppendUint64(b, m.Hash)
	b = binary.AppendUvarint(b, m.Cluster)
	b = m.Configs.Encode(b)
	b = binary.AppendUvarint(b, uint64(len(m.Machine)))
	return append(b, m.Machine...)
}

func decodeSnapHeader(b []byte, v1 bool) (SnapshotHeader, error) {
	var m SnapshotHeader
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("bad %s", what)
		}
		b = b[n:]
		return v, nil
	}
	v, err := next("slot")
	if err != nil {
		return m, err
	}
	m.Slot = paxos.Slot(v)
	if len(b) < 8 {
		return m, errors.New("bad hash")
	}
	m.Hash, b = binary.BigEndian.Uint64(b), b[8:]
	if m.Cluster, err = next("cluster ID"); err != nil {
		return m, err
	}
	if v1 {
		if m.Members, err = decodeMembersV1(next, &b); err != nil {
			return m, err
		}
	} else {
		if m.Configs, b, err = paxos.DecodeHistory(b); err != nil {
			return m, fmt.Errorf("configurations: %w", err)
		}
		if len(m.Configs) > 0 {
			m.Members = m.Configs.Latest().Membership().Members()
		}
	}
	l, err := next("machine name length")
	if err != nil {
		return m, err
	}
	if l != uint64(len(b)) {
		return m, fmt.Errorf("machine name of %d bytes, %d left", l, len(b))
	}
	m.Machine = string(b)
	return m, nil
}

// decodeMembersV1 reads the member list of a version 1 header.
func decodeMembersV1(next func(string) (uint64, error), b *[]byte) ([]paxos.Member, error) {
	count, err := next("member count")
	if err != nil {
		return nil, err
	}
	if count > uint64(len(*b)/2) {
		return nil, fmt.Errorf("%d members in %d bytes", count, len(*b))
	}
	var ms []paxos.Member
	for range count {
		id, err := next("member ID")
		if err != nil {
			return nil, err
		}
		if len(*b) < 1 {
			return nil, errors.New("bad member roles")
		}
		ms = append(ms, paxos.Member{ID: paxos.NodeID(id), Roles: paxos.Role((*b)[0])})
		*b = (*b)[1:]
	}
	return ms, nil
}
