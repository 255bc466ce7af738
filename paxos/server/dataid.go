package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
)

// A member whose disk was lost and that is started again under its old ID
// (by a service manager that passes --bootstrap every time, say) comes
// back with an empty acceptor, which has forgotten its promises: letting it
// vote could break agreement. Each data directory therefore holds a random
// data ID, drawn when the directory is first used, which the member sends
// in its handshake (wire.Hello.Data). Each member remembers, in its own
// data directory, the data ID every peer sent first, and refuses a peer
// that comes back with another (docs/design.md, "The data directory").

// Files of the data directory beside the WAL.
const (
	dataIDFile   = "data-id"
	peerDataFile = "peer-data-ids"
)

// maxPeerDataFile bounds the file of peers' data IDs: a line per member.
const maxPeerDataFile = 1 << 20

// loadDataID returns the data directory's data ID, drawing and writing one
// if it has none yet (a new directory, or one of an earlier version).
func loadDataID(fs vfs.FS, dir string) (uint64, error) {
	path := fs.PathJoin(dir, dataIDFile)
	b, err := readSmall(fs, path, 64)
	switch {
	case err == nil:
		id, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if perr != nil || id == 0 {
			return 0, fmt.Errorf("server: %s holds %q, not a data ID; if it was damaged, remove it (a new one is drawn, and peers that knew the old one refuse this member: see docs/operations.md)", path, b)
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("server: read %s: %w", path, err)
	}
	var r [8]byte
	var id uint64
	for id == 0 {
		if _, err := rand.Read(r[:]); err != nil {
			return 0, err
		}
		id = binary.BigEndian.Uint64(r[:])
	}
	if err := writeAtomic(fs, dir, dataIDFile, []byte(fmt.Sprintf("%016x\n", id))); err != nil {
		return 0, fmt.Errorf("server: write %s: %w", path, err)
	}
	return id, nil
}

// peerData is what this member remembers of its peers' data IDs.
type peerData struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger

	mu    sync.Mutex
	known map[paxos.NodeID]uint64
	dirty bool // known holds what the file does not: a write failed
}

// loadPeerData reads the peers' data IDs this member remembers.
func loadPeerData(fs vfs.FS, dir string, logger *slog.Logger) (*peerData, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &peerData{fs: fs, dir: dir, logger: logger, known: map[paxos.NodeID]uint64{}}
	path := fs.PathJoin(dir, peerDataFile)
	b, err := readSmall(fs, path, maxPeerDataFile)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: read %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		idStr, dataStr, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		id, err1 := strconv.ParseUint(idStr, 10, 64)
		data, err2 := strconv.ParseUint(dataStr, 16, 64)
		if !ok || err1 != nil || err2 != nil || id == 0 || data == 0 {
			return nil, fmt.Errorf("server: %s, line %d: %q is not 'NODE DATAID'; if the file was damaged, remove it (this member then learns its peers' data IDs anew)", path, line, sc.Text())
		}
		p.known[paxos.NodeID(id)] = data
	}
	return p, nil
}

// check is the transport's CheckData: it refuses an acceptor whose data ID
// differs from the one it showed before, and remembers the newest of any
// other peer: a learner that lost its data lost no promise, and catches up.
func (p *peerData) check(id paxos.NodeID, data uint64, acceptor bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dirty {
		p.dirty = p.save() != nil // NB: tried again at every handshake until it works
	}
	switch have, ok := p.known[id]; {
	case ok && have == data:
		return nil
	case ok && !acceptor:
		p.logger.Info("a peer that is no acceptor came back with other data; it lost no promise, and is let in", "peer", id)
	case ok:
		return fmt.Errorf("node %d came back with other data than it had (data ID %016x, before %016x): it lost its data and was started again under its old ID. Its acceptor forgot its promises, which could break agreement, so it is refused. Remove it ('paxosd member remove %d') and add it again under a new ID, as docs/operations.md says", id, data, have, id)
	}
	p.known[id] = data
	if err := p.save(); err != nil {
		// NB: kept in memory all the same, and written at a later
		// handshake. A full disk must not cut this member off.
		p.dirty = true
		p.logger.Warn("a peer's data ID not written down yet; it is remembered meanwhile", "peer", id, "err", err)
	}
	return nil
}

// save writes the known data IDs; p.mu is held.
func (p *peerData) save() error {
	ids := make([]paxos.NodeID, 0, len(p.known))
	for id := range p.known {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b bytes.Buffer
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %016x\n", id, p.known[id])
	}
	return writeAtomic(p.fs, p.dir, peerDataFile, b.Bytes())
}

// readSmall reads a file of at most limit bytes.
func readSmall(fs vfs.FS, path string, limit int64) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// writeAtomic replaces dir/name with b: written to a temporary file,
// synced, renamed over, and the directory synced.
func writeAtomic(fs vfs.FS, dir, name string, b []byte) error {
	tmp := fs.PathJoin(dir, name+".tmp")
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, fs.PathJoin(dir, name))
	}
	if err != nil {
		_ = fs.Remove(tmp) // NB: the write's error is the one worth reporting
		return err
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
