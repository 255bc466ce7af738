package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
)

// Options configures a Store.
type Options struct {
	// FS is the file system Pebble uses; nil means the real one. Tests use
	// vfs.NewMem and vfs.NewCrashableMem.
	FS vfs.FS
	// Logger receives Pebble's logs and the store's warnings; nil discards
	// them.
	Logger *slog.Logger
	// SlowSync is how long a disk write may take before it is logged as
	// slow. Zero means 500ms.
	SlowSync time.Duration
	// Synced, if set, is told of every synced batch Save commits: how long
	// the commit took, and its records and bytes. It runs on the caller's
	// goroutine and must be quick.
	Synced func(took time.Duration, records, bytes int)
	// SlowDisk, if set, is told of every disk operation that took longer
	// than SlowSync (besides the warning logged), from Pebble's disk-health
	// checker's goroutine.
	SlowDisk func(op string, took time.Duration)
	// DiskFull, if set, is called when a write fails because the disk is
	// full (ENOSPC), with every other write held back until it returns;
	// then the write is tried once more. It should return once there is
	// room again: the write that failed, if it is the log's, fails the
	// store if it fails twice. Pebble retries writes only: a sync refused
	// with ENOSPC fails the store at once.
	DiskFull func()
}

// Store is the Pebble-backed paxos.Storage. Save and Close must not be called
// concurrently.
type Store struct {
	db     *pebble.DB
	health io.Closer // stops the disk-health checker
	logger *slog.Logger
	failed error // sticky ErrFailed
	ident  Identity
	config paxos.Config
	hasCfg bool
	synced func(took time.Duration, records, bytes int)
}

// Identity names the cluster and the member a store belongs to. A daemon
// records it when it bootstraps and checks it on every start, so that a data
// directory is never used by another member or cluster.
type Identity struct {
	Cluster uint64
	Node    paxos.NodeID
}

// Identity returns the store's identity; the zero Identity if it has none
// (a store that was never bootstrapped).
func (s *Store) Identity() Identity { return s.ident }

// Config returns the configuration the member started from (the one the
// cluster was bootstrapped with, or the one it joined), recorded with its
// identity; false if there is none (a store of an earlier version).
func (s *Store) Config() (paxos.Config, bool) { return s.config, s.hasCfg }

// SetIdentity records id and the configuration the member starts from,
// durably and together. A store's identity never changes: setting a
// different one is an error. A store of an earlier version, with an
// identity and no configuration, gets the configuration.
func (s *Store) SetIdentity(id Identity, c paxos.Config) error {
	if id.Cluster == 0 || id.Node == 0 {
		return fmt.Errorf("wal: identity needs a cluster ID and a node ID, got %+v", id)
	}
	if s.ident != (Identity{}) && s.ident != id {
		return fmt.Errorf("wal: store belongs to cluster %016x node %d, not cluster %016x node %d", s.ident.Cluster, s.ident.Node, id.Cluster, id.Node)
	}
	if s.ident == id && s.hasCfg {
		return nil
	}
	if s.failed != nil {
		return s.failed
	}
	b := s.db.NewBatch()
	defer b.Close()
	v := binary.AppendUvarint(nil, id.Cluster)
	v = binary.AppendUvarint(v, uint64(id.Node))
	_ = b.Set([]byte{prefixIdentity}, seal(v), nil)
	_ = b.Set([]byte{prefixConfig}, seal(paxos.History{c}.Encode(nil)), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("wal: write identity: %w", err)
	}
	s.ident, s.config, s.hasCfg = id, c, true
	return nil
}

// Open opens or creates the store in dir, recovers its state and checks it.
// A store that fails a check is closed again and an error wrapping
// ErrCorrupt says what is wrong (the key, or the slots that disagree).
func Open(dir string, opts Options) (*Store, paxos.State, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "wal")
	slow := opts.SlowSync
	if slow == 0 {
		slow = 500 * time.Millisecond
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.DiskFull != nil {
		fs = vfs.OnDiskFull(fs, opts.DiskFull)
	}
	fs, health := vfs.WithDiskHealthChecks(fs, slow, nil, func(info vfs.DiskSlowInfo) {
		logger.Warn("slow disk", "path", info.Path, "op", info.OpType.String(), "took", info.Duration)
		if opts.SlowDisk != nil {
			opts.SlowDisk(info.OpType.String(), info.Duration)
		}
	})
	po := &pebble.Options{
		// A larger memtable than the 4 MiB default flushes and compacts
		// less often; compactions competing with the WAL's fsyncs were
		// what p99 latency showed. Values are mostly client data that
		// compresses little, so compression only costs CPU.
		MemTableSize: 32 << 20,
		FS:           fs,
		Logger:       pebbleLogger{logger},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				logger.Error("pebble background error", "err", err)
			},
		},
	}
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	db, err := pebble.Open(dir, po)
	if err != nil {
		_ = health.Close() // NB: the open error is the one worth reporting
		return nil, paxos.State{}, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	s := &Store{db: db, health: health, logger: logger, synced: opts.Synced}
	st, err := s.load()
	if err != nil {
		_ = s.Close() // NB: the load error is the one worth reporting
		return nil, paxos.State{}, fmt.Errorf("wal: open %s: %w", dir, err)
	}
	return s, st, nil
}

// ErrFailed reports a store that hit an error it cannot recover from, such
// as a failed fsync: the state on disk is unknown, so the store refuses all
// further writes and the node must stop. Restarting reopens and rechecks the
// store from what is on disk.
var ErrFailed = errors.New("wal: storage failed; stop the node and restart it")

// Save writes recs in one batch committed with pebble.Sync, which syncs
// every batch Write committed before it too; with no records it only syncs
// those. After an error wrapping ErrFailed every later call fails the same
// way.
func (s *Store) Save(recs []paxos.Record) error { return s.commit(recs, pebble.Sync) }

// Write writes recs in one batch committed with pebble.NoSync: a crash of
// the machine (not only of the process) may lose it, and every later batch,
// until a Save syncs them.
func (s *Store) Write(recs []paxos.Record) error { return s.commit(recs, pebble.NoSync) }

func (s *Store) commit(recs []paxos.Record, opts *pebble.WriteOptions) (err error) {
	if s.failed != nil {
		return s.failed
	}
	// NB: Pebble reports a failed WAL sync through Logger.Fatalf, which
	// panics with fatalError (see pebbleLogger). Turn it into an error for
	// the node, and never touch the database again: Pebble did not expect
	// to come back from that call.
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			s.failed = fmt.Errorf("%w: %s", ErrFailed, fe.msg)
			s.logger.Error("storage failed", "err", s.failed)
			err = s.failed
		}
	}()
	b := s.db.NewBatch()
	defer b.Close()
	for _, rec := range recs {
		k, v, err := encodeRecord(rec)
		if err != nil {
			return err
		}
		// A snapshot base or a floor drops the slots it covers, in the
		// same atomic batch that records it.
		var drop byte
		switch rec.Type {
		case paxos.RecSnapshot:
			drop = prefixChosen
		case paxos.RecTruncate:
			drop = prefixAccepted
		}
		if drop != 0 {
			if err := b.DeleteRange(slotKey(drop, 1), slotKey(drop, rec.Slot+1), nil); err != nil {
				return fmt.Errorf("wal: stage drop of %s up to %d: %w", keyName(slotKey(drop, 1)), rec.Slot, err)
			}
		}
		if err := b.Set(k, v, nil); err != nil {
			return fmt.Errorf("wal: stage %s: %w", keyName(k), err)
		}
	}
	if len(recs) == 0 {
		// NB: an empty batch never reaches the log; a log-only record
		// does, and commits with the sync it asks for.
		if err := b.LogData(nil, nil); err != nil {
			return fmt.Errorf("wal: stage a sync: %w", err)
		}
	}
	start := time.Now()
	if err := b.Commit(opts); err != nil {
		return fmt.Errorf("wal: commit %d records: %w", len(recs), err)
	}
	if s.synced != nil && opts == pebble.Sync {
		s.synced(time.Since(start), len(recs), b.Len())
	}
	return nil
}

// DiskUsage returns the bytes the store's files take on disk.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// Close closes the database. Records already saved stay durable. A store
// that failed is not closed (Pebble may be stuck inside the failed call);
// Close returns its error and the process should exit.
func (s *Store) Close() error {
	if s.failed != nil {
		return s.failed
	}
	err := s.db.Close()
	if herr := s.health.Close(); err == nil {
		err = herr
	}
	if err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// load reads and checks every key, then the state they make. A new, empty
// store gets its format key; a format 1 store is upgraded.
func (s *Store) load() (paxos.State, error) {
	// The format key first: a store of a newer format may hold keys this
	// build does not know, which is not corruption.
	if err := s.refuseNewer(); err != nil {
		return paxos.State{}, err
	}
	st, version, nkeys, err := s.scan()
	if err != nil {
		return st, err
	}
	switch {
	case nkeys == 0:
		if err := s.db.Set([]byte{prefixFormat}, seal(appendUvarint(formatVersion)), pebble.Sync); err != nil {
			return st, fmt.Errorf("wal: write format version: %w", err)
		}
		return st, nil
	case version == 0:
		return st, corruptKey([]byte{prefixFormat}, "missing from a store that holds %d keys", nkeys)
	case version == 1:
		if err := s.db.Set([]byte{prefixFormat}, seal(appendUvarint(formatVersion)), pebble.Sync); err != nil {
			return st, fmt.Errorf("wal: upgrade format 1 to %d: %w", formatVersion, err)
		}
		s.logger.Info("store format upgraded", "from", 1, "to", formatVersion)
	case version != formatVersion:
		return st, fmt.Errorf("wal: store format %d, this build reads %d: %w", version, formatVersion, errors.ErrUnsupported)
	}
	if err := st.Acceptor.Check(); err != nil {
		return st, fmt.Errorf("%w: acceptor state: %w", ErrCorrupt, err)
	}
	if err := st.Learner.Check(); err != nil {
		return st, fmt.Errorf("%w: learner state: %w", ErrCorrupt, err)
	}
	return st, nil
}

// refuseNewer reads the format key, if any, and refuses a newer format.
func (s *Store) refuseNewer() error {
	v, closer, err := s.db.Get([]byte{prefixFormat})
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wal: read format version: %w", err)
	}
	d, derr := decodeKV([]byte{prefixFormat}, v)
	closer.Close()
	if derr == nil && d.version > formatVersion {
		return fmt.Errorf("wal: store format %d, this build reads %d: %w", d.version, formatVersion, errors.ErrUnsupported)
	}
	return nil // NB: a damaged format key is reported by the scan
}

// scan reads and checks every key, in order, into the state they hold. It
// returns the format version found (0: none) and the number of keys.
func (s *Store) scan() (st paxos.State, version uint64, nkeys int, err error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return st, 0, 0, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		nkeys++
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return st, 0, 0, fmt.Errorf("wal: read key %s: %w", keyName(k), err)
		}
		d, err := decodeKV(k, v)
		if err != nil {
			return st, 0, 0, corruptKey(k, "%v", err)
		}
		switch d.kind {
		case prefixFormat:
			version = d.version
		case prefixPromised:
			st.Acceptor.Promised = d.ballot
		case prefixAccepted:
			st.Acceptor.Accepted = append(st.Acceptor.Accepted, paxos.Entry{Slot: d.slot, Ballot: d.ballot, Value: bytes.Clone(d.value)})
		case prefixChosen:
			st.Learner.Chosen = append(st.Learner.Chosen, paxos.Entry{Slot: d.slot, Value: bytes.Clone(d.value)})
		case prefixApplied:
			st.Learner.Applied = d.applied
		case prefixBase:
			st.Learner.Base = d.applied
		case prefixFloor:
			st.Acceptor.Floor = d.applied
		case prefixIdentity:
			s.ident = d.ident
		case prefixConfig:
			s.config, s.hasCfg = d.config, true
		}
	}
	if err := it.Error(); err != nil {
		return st, 0, 0, fmt.Errorf("wal: scan: %w", err)
	}
	return st, version, nkeys, nil
}

// corruptKey reports damage at key k.
func corruptKey(k []byte, format string, args ...any) error {
	return fmt.Errorf("%w: key %s: %s", ErrCorrupt, keyName(k), fmt.Sprintf(format, args...))
}

func appendUvarint(x uint64) []byte {
	return binary.AppendUvarint(nil, x)
}

// pebbleLogger routes Pebble's logs into slog. Pebble's info lines are
// routine (compactions, flushes), so they go to Debug.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("pebble", "line", fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble", "line", fmt.Sprintf(format, args...))
}

// fatalError is the panic value of pebbleLogger.Fatalf.
type fatalError struct{ msg string }

// Fatalf is called by Pebble when it cannot go on, for example after a
// failed WAL sync. Pebble expects it not to return; a library may not exit
// the process, so it panics with a fatalError, which Save turns into
// ErrFailed. From a background goroutine the panic ends the process.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("pebble fatal", "line", msg)
	panic(fatalError{"pebble: " + msg})
}

// Check reads the store's identity key back from Pebble: an error means the
// store cannot be read (it failed, or its files are gone).
func (s *Store) Check() error {
	if s.failed != nil {
		return s.failed
	}
	_, closer, err := s.db.Get([]byte{prefixIdentity})
	if errors.Is(err, pebble.ErrNotFound) {
		return nil // a store being bootstrapped has none yet
	}
	if err != nil {
		return fmt.Errorf("wal: read: %w", err)
	}
	return closer.Close()
}
