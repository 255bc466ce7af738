package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/learner"
	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/transport"
	"github.com/paxosd/paxosd/proposer"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// Config configures a member run as a daemon.
type Config struct {
	// ID is this member's node ID.
	ID paxos.NodeID
	// Membership is the cluster's members, and PeerAddrs every member's
	// peer address (this member's too: it is what peers dial). They are
	// needed to bootstrap; after that the member takes its configuration
	// from its data, and if they are given they must agree with it.
	Membership paxos.Membership
	PeerAddrs  map[paxos.NodeID]string
	// ClusterToken distinguishes clusters with the same members; the
	// cluster ID is derived from it and the bootstrap membership (see
	// ClusterID), and stored: later changes of members do not change it.
	ClusterToken string
	// DataDir holds the WAL and, in DataDir/snap, the snapshots.
	DataDir string
	// Bootstrap allows initialising an empty DataDir. Give it to every
	// member on the first start of a new cluster, never on a restart.
	Bootstrap bool
	// Join initialises an empty DataDir from a snapshot of a running
	// cluster, fetched by the caller from one of its members (paxosd serve
	// --join): the file's header names the cluster and its
	// configurations, which must list this member. The file is removed
	// once it is in place.
	Join string
	// JoinCluster is the cluster ID of the members a restart was told to
	// join (paxosd serve --join on a data directory that holds data);
	// data of another cluster is then refused. Zero: not checked.
	JoinCluster uint64
	// PeerListener and ClientListener are where the member accepts peers
	// and clients. The caller creates them (so that tests can use port 0)
	// and the member closes them.
	PeerListener   net.Listener
	ClientListener net.Listener
	// ClientAddr is the client address advertised to peers for
	// redirects; empty means ClientListener's address.
	ClientAddr string
	// PeerTLS, if set, runs the peer port over mutual TLS with these
	// certificates (transport.Config.TLS); nil: plaintext.
	PeerTLS *certs.Source
	// ClientTLS, if set, serves clients over TLS with its certificate; if
	// it has a CA, clients must present a certificate from it, and
	// ClientRoles gives each its role by its certificate's common name
	// (nil: every such client is RoleAdmin). Nil: plaintext, and every
	// client may do anything.
	ClientTLS   *certs.Source
	ClientRoles ClientRoles
	// Machine is the state machine; it must be fresh (nothing applied).
	// MachineName is recorded in snapshots, for people reading them.
	Machine     statemachine.Machine
	MachineName string

	// SnapshotEvery and SnapshotBytes: the learner snapshots its state
	// every SnapshotEvery applied slots or SnapshotBytes bytes of applied
	// log, whichever comes first, and the log before the snapshot is
	// dropped. Zero means the default (10000 slots, 32 MiB); a negative
	// value turns that trigger off.
	SnapshotEvery int
	SnapshotBytes int64
	// SnapshotRate bounds the bytes per second this member sends to peers
	// catching up by snapshot. Zero means 64 MiB/s; negative, no limit.
	SnapshotRate int64
	// LogRetain is how many slots below its snapshot the learner keeps in
	// memory for peers that lag a little. Zero means 1000; negative, none.
	LogRetain int

	// TickInterval is the length of one tick. Election timeouts and
	// heartbeats are counted in ticks. Default 20ms.
	TickInterval   time.Duration
	ElectionTicks  int // default 10
	HeartbeatTicks int // default 2
	// RequestTimeout bounds how long a proposed command waits to be
	// applied before the client is told the outcome is unknown. Default 5s.
	RequestTimeout time.Duration
	// MaxFrame bounds peer frames (default wire.DefaultMaxFrame).
	MaxFrame int
	// MaxClientConns bounds client connections at once (default 1024).
	MaxClientConns int
	// Logger receives the member's logs; nil discards them.
	Logger *slog.Logger
	// Version is the build's version, for the paxosd_info metric.
	Version string
	// FS is the file system of the data directory; nil means the real
	// one. Tests inject faults with it.
	FS vfs.FS
	// DiskReserve is the free space below which the member counts its
	// disk as full: it stops writing before the disk refuses it (see
	// Member.SetDiskFull), and resumes once a quarter more than this is
	// free. Zero means 64 MiB; negative, only a write refused with ENOSPC
	// counts.
	DiskReserve int64
	// DiskStall is how long an fsync may take before a leader hands
	// leadership to another member. Zero means 1s; negative, never.
	DiskStall time.Duration
}

// Snapshot defaults; see Config.
const (
	DefaultSnapshotEvery = 10000
	// DefaultSnapshotBytes is half the peer frame limit: an acceptor holds
	// about this much log above its floor, and a Promise to a proposer
	// that lags far behind carries all of it.
	DefaultSnapshotBytes = 32 << 20
	DefaultSnapshotRate  = 64 << 20
)

// maxClientFrame bounds a client request frame.
const maxClientFrame = MaxCommand + 1024

// ErrNotBootstrapped reports an empty data directory without Bootstrap.
var ErrNotBootstrapped = errors.New("server: data directory was never initialised")

// ErrWrongIdentity reports a data directory from another cluster or member.
var ErrWrongIdentity = errors.New("server: data directory belongs to another member")

// ErrAlreadyBootstrapped reports a data directory that is already
// initialised where an empty one is needed (a join, a restore).
var ErrAlreadyBootstrapped = errors.New("server: data directory already initialised")

// ClusterID derives the cluster ID from the token and the membership (IDs
// and roles, not addresses, so members may move). Every member computes the
// same ID, and the handshake refuses peers with another one.
func ClusterID(token string, members paxos.Membership) uint64 {
	h := sha256.New()
	fmt.Fprintf(h, "paxosd cluster\x00%s\x00", token)
	for _, m := range members.Members() {
		fmt.Fprintf(h, "%d:%d;", m.ID, m.Roles)
	}
	id := binary.BigEndian.Uint64(h.Sum(nil))
	if id == 0 {
		id = 1
	}
	return id
}

// Server is a running member: a Member driven by its node's loop, with a
// Pebble WAL, snapshot files, a TCP transport and a client port.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	cluster uint64
	// bootstrap is the configuration the member starts from.
	bootstrap paxos.Config
	store     *wal.Store
	tr        *transport.TCP
	member    *Member
	node      *paxos.Node
	exec      GoExecutor // the snapshot store's writes and pulls

	// ctx ends when the member stops; cancel ends it.
	ctx     context.Context
	cancel  context.CancelFunc
	runErr  chan error // Run's result
	wg      sync.WaitGroup
	clients *clientListener
	metrics *Metrics
	disk    diskState

	stopOnce sync.Once
	stopErr  error
}

// Start opens the data directory, checks it belongs to this member, and
// starts the member. On error nothing is left running and both listeners are
// closed.
func Start(cfg Config) (s *Server, err error) {
	defer func() {
		if err != nil {
			closeListeners(cfg)
		}
	}()
	if cfg.PeerListener == nil || cfg.ClientListener == nil || cfg.Machine == nil {
		return nil, errors.New("server: config needs both listeners and a state machine")
	}
	if len(cfg.Membership.Members()) > 0 && !cfg.Membership.Has(cfg.ID, 0) {
		return nil, fmt.Errorf("server: node %d is not in the cluster list", cfg.ID)
	}
	setDefaults(&cfg)
	srv := &Server{cfg: cfg, logger: cfg.Logger.With("node", cfg.ID), runErr: make(chan error, 1)}
	if srv.cfg.ClientAddr == "" {
		srv.cfg.ClientAddr = cfg.ClientListener.Addr().String()
	}
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	srv.metrics = NewMetrics(MetricsConfig{ID: cfg.ID, Version: cfg.Version, Conns: srv.connections, LogBytes: srv.logBytes})
	store, st, err := srv.openStore()
	if err != nil {
		return nil, err
	}
	srv.store = store
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	dataID, err := loadDataID(cfg.FS, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	peerData, err := loadPeerData(cfg.FS, cfg.DataDir, srv.logger)
	if err != nil {
		return nil, err
	}
	boot := srv.bootstrap
	addrs := map[paxos.NodeID]string{}
	for _, p := range boot.Peers {
		addrs[p.ID] = p.PeerAddr
	}
	for id, a := range cfg.PeerAddrs {
		addrs[id] = a // NB: what the operator says now wins over the data
	}
	srv.tr, err = transport.New(transport.Config{
		ID: cfg.ID, Cluster: srv.cluster, Membership: boot.Membership(), Peers: addrs, ClientAddr: srv.cfg.ClientAddr,
		PeerAddr: srv.PeerAddr(), AdmitAny: !boot.Membership().Has(cfg.ID, paxos.RoleLearner), Pinned: cfg.PeerAddrs,
		MaxFrame: cfg.MaxFrame, Logger: cfg.Logger, TLS: cfg.PeerTLS,
		Rejected: func(reason string) { srv.metrics.Rejected("peer", reason) },
		DataID:   dataID, CheckData: peerData.check,
	})
	if err != nil {
		return nil, err
	}
	if srv.member, err = NewMember(srv.memberConfig(), srv.memberIO(st)); err != nil {
		srv.tr.Close()
		return nil, err
	}
	if err := srv.checkFlags(); err != nil {
		srv.member.Close()
		srv.tr.Close()
		return nil, err
	}
	srv.tr.Reconfigure(srv.member.Configs())
	s = srv
	s.node = s.member.Node()
	s.run()
	s.logger.Info("started", "roles", s.member.Roles().String(), "peer", cfg.PeerListener.Addr().String(), "client", s.cfg.ClientAddr,
		"applied", st.Learner.Applied, "promised", st.Acceptor.Promised, "cluster", fmt.Sprintf("%016x", s.cluster))
	return s, nil
}

// memberConfig turns the daemon's flat settings into the member's.
func (s *Server) memberConfig() MemberConfig {
	cfg := &s.cfg
	return MemberConfig{
		ID: cfg.ID, Bootstrap: s.bootstrap, Cluster: s.cluster, Machine: cfg.Machine, MachineName: cfg.MachineName,
		Proposer: proposer.Config{ElectionTicks: cfg.ElectionTicks, HeartbeatTicks: cfg.HeartbeatTicks},
		Learner: learner.Config{
			SnapshotEvery: max(cfg.SnapshotEvery, 0), SnapshotBytes: int(max(cfg.SnapshotBytes, 0)), LogRetain: max(cfg.LogRetain, 0),
			// A transfer waits up to 2 s for a chunk before it asks again.
			SnapshotTimeoutTicks: max(1, int(2*time.Second/cfg.TickInterval)),
		},
		RequestTimeout: cfg.RequestTimeout,
		// NB: an election timeout, and as much again for the jitter of
		// elections and the old leader's last sweep.
		LeaseGrace: 2 * time.Duration(cfg.ElectionTicks) * cfg.TickInterval,
		Logger:     cfg.Logger,
		Metrics:    s.metrics,
	}
}

func (s *Server) memberIO(st paxos.State) MemberIO {
	return MemberIO{
		Storage: s.store, State: st,
		FS: s.cfg.FS, SnapshotDir: filepath.Join(s.cfg.DataDir, snapDir), SnapshotRate: max(s.cfg.SnapshotRate, 0),
		Transport: s.tr, Executor: &s.exec, Now: time.Now,
		ClientAddr: s.tr.ClientAddr,
		PeerAddr: func(id paxos.NodeID) string {
			if id == s.cfg.ID {
				return s.PeerAddr() // where it listens, which --listen-peer may set
			}
			p, _ := s.member.Configs().Latest().Peer(id)
			return p.PeerAddr
		},
		LogBytes: s.store.DiskUsage,
	}
}

// bootstrapConfig is the configuration a cluster starts with: its members,
// roles and peer addresses.
func bootstrapConfig(ms paxos.Membership, addrs map[paxos.NodeID]string) (paxos.Config, error) {
	var peers []paxos.Peer
	for _, m := range ms.Members() {
		peers = append(peers, paxos.Peer{ID: m.ID, Roles: m.Roles, PeerAddr: addrs[m.ID]})
	}
	return paxos.NewConfig(1, 0, peers, nil)
}

// openStore opens the WAL in the data directory and establishes who this
// member is: from the data, for a member that ran before; from the
// membership, for the first start of a new cluster (Bootstrap); from a
// running cluster's snapshot, for a member that joins (Join).
func (s *Server) openStore() (*wal.Store, paxos.State, error) {
	cfg := &s.cfg
	fresh, err := dirIsEmpty(cfg.DataDir)
	if err != nil {
		return nil, paxos.State{}, err
	}
	switch {
	case fresh && cfg.Bootstrap && cfg.Join != "":
		return nil, paxos.State{}, errors.New("server: --bootstrap starts a new cluster and --join joins a running one; give one of them")
	case fresh && cfg.Bootstrap && len(cfg.Membership.Members()) == 0:
		return nil, paxos.State{}, fmt.Errorf("%w: bootstrapping %s needs the cluster's members (--cluster)", ErrNotBootstrapped, cfg.DataDir)
	case fresh && !cfg.Bootstrap && cfg.Join == "":
		return nil, paxos.State{}, fmt.Errorf("%w: %s is empty. If this is the first start of a new cluster, start every member once with --bootstrap. To add this member to a running cluster, run 'paxosd member add' there, then start it with --join. If this member lost its data, do not bootstrap it alone: remove its old ID from the cluster and join under a new one (see the README, \"Disaster recovery\")", ErrNotBootstrapped, cfg.DataDir)
	case !fresh && cfg.Join != "":
		return nil, paxos.State{}, fmt.Errorf("%w: %s already holds a member's data; --join is for an empty data directory (drop it to restart this member)", ErrAlreadyBootstrapped, cfg.DataDir)
	}
	store, st, err := wal.Open(cfg.DataDir, wal.Options{FS: cfg.FS, Logger: s.logger, SlowSync: max(cfg.DiskStall, 0),
		Synced: s.synced, SlowDisk: s.slowDisk, DiskFull: s.waitForSpace})
	if err != nil {
		return nil, st, err
	}
	if err := s.establish(store, fresh, &st); err != nil {
		store.Close()
		return nil, st, err
	}
	return store, st, nil
}

// establish sets s.cluster and s.bootstrap from the store, or records them
// there on the first start.
func (s *Server) establish(store *wal.Store, fresh bool, st *paxos.State) error {
	cfg := &s.cfg
	have := store.Identity()
	stored, hasCfg := store.Config()
	switch {
	case cfg.Join != "" && have == (wal.Identity{}):
		return s.join(store, st)
	case have == (wal.Identity{}) && !cfg.Bootstrap:
		return fmt.Errorf("%w: %s holds a store without an identity (was a bootstrap interrupted?); start with --bootstrap to finish it", ErrNotBootstrapped, cfg.DataDir)
	case have == (wal.Identity{}):
		boot, err := bootstrapConfig(cfg.Membership, cfg.PeerAddrs)
		if err != nil {
			return err
		}
		s.cluster, s.bootstrap = ClusterID(cfg.ClusterToken, cfg.Membership), boot
		if err := store.SetIdentity(wal.Identity{Cluster: s.cluster, Node: cfg.ID}, boot); err != nil {
			return err
		}
		s.logger.Info("bootstrapped", "cluster", fmt.Sprintf("%016x", s.cluster), "dir", cfg.DataDir)
		return nil
	case have.Node != cfg.ID:
		return fmt.Errorf("%w: %s belongs to node %d, not node %d; check --id and --data-dir", ErrWrongIdentity, cfg.DataDir, have.Node, cfg.ID)
	case cfg.JoinCluster != 0 && cfg.JoinCluster != have.Cluster:
		return fmt.Errorf("%w: %s belongs to cluster %016x, but the --join members are of cluster %016x; a member joins another cluster only with an empty data directory (and a new ID)", ErrWrongIdentity, cfg.DataDir, have.Cluster, cfg.JoinCluster)
	case cfg.Bootstrap && !fresh && ClusterID(cfg.ClusterToken, cfg.Membership) != have.Cluster:
		return fmt.Errorf("%w: %s belongs to cluster %016x, but --bootstrap with this --cluster and --cluster-token makes cluster %016x; check them, or use another data directory", ErrWrongIdentity, cfg.DataDir, have.Cluster, ClusterID(cfg.ClusterToken, cfg.Membership))
	case cfg.Bootstrap && !fresh:
		// NB: as etcd's --initial-cluster-state new, --bootstrap only
		// matters on the first start, so that a service manager can give
		// the same flags every time. A member whose data was lost is not
		// caught here: docs/operations.md says what to do instead.
		s.logger.Info("the data directory holds this member's data already; --bootstrap is ignored (it only matters on the first start)", "dir", cfg.DataDir)
		if !hasCfg {
			return fmt.Errorf("%w: %s was written by an earlier paxosd; start it once without --bootstrap to upgrade it", ErrWrongIdentity, cfg.DataDir)
		}
	case !hasCfg:
		// Written by a version before reconfiguration: the identity is
		// there, the configuration is not. The cluster ID was derived from
		// the members then, so --cluster can be checked against it.
		if len(cfg.Membership.Members()) == 0 {
			return fmt.Errorf("%w: %s was written by an earlier paxosd, which did not store the cluster's configuration; start it once more with the --cluster and --cluster-token it was bootstrapped with, to upgrade it", ErrWrongIdentity, cfg.DataDir)
		}
		if want := ClusterID(cfg.ClusterToken, cfg.Membership); want != have.Cluster {
			return fmt.Errorf("%w: %s belongs to cluster %016x, but --cluster and --cluster-token make cluster %016x; give the ones it was bootstrapped with", ErrWrongIdentity, cfg.DataDir, have.Cluster, want)
		}
		boot, err := bootstrapConfig(cfg.Membership, cfg.PeerAddrs)
		if err != nil {
			return err
		}
		if err := store.SetIdentity(have, boot); err != nil {
			return err
		}
		s.logger.Info("upgraded the data directory: the cluster's configuration is stored now; --cluster is no longer needed", "dir", cfg.DataDir)
		stored = boot
	}
	s.cluster, s.bootstrap = have.Cluster, stored
	return nil
}

// join initialises a fresh store from the snapshot of a running cluster in
// cfg.Join.
func (s *Server) join(store *wal.Store, st *paxos.State) error {
	cfg := &s.cfg
	r, err := wal.OpenSnapshot(nil, cfg.Join)
	if err != nil {
		return fmt.Errorf("server: read the snapshot fetched to join: %w", err)
	}
	defer r.Close()
	hdr := r.Header
	if len(hdr.Configs) == 0 {
		return fmt.Errorf("server: the snapshot fetched to join has no configuration; the member it came from runs an older paxosd")
	}
	latest := hdr.Configs.Latest()
	switch {
	case latest.IsRemoved(cfg.ID):
		return fmt.Errorf("%w: node %d was removed from cluster %016x and may never return; add this member under a new ID ('paxosd member add') and join with that", ErrWrongIdentity, cfg.ID, hdr.Cluster)
	case !latest.Membership().Has(cfg.ID, 0):
		return fmt.Errorf("%w: cluster %016x (as of slot %d) has no member %d; run 'paxosd member add %d=PEERADDR --client ADDR' against it first, then join", ErrNotBootstrapped, hdr.Cluster, hdr.Slot, cfg.ID, cfg.ID)
	}
	snapDirPath := filepath.Join(cfg.DataDir, snapDir)
	if *st, err = Seed(cfg.FS, snapDirPath, store, hdr, func(w io.Writer) error {
		if _, err := io.Copy(w, r); err != nil {
			return err
		}
		return r.Finish()
	}); err != nil {
		return fmt.Errorf("server: seed the member from the fetched snapshot: %w", err)
	}
	if err := store.SetIdentity(wal.Identity{Cluster: hdr.Cluster, Node: cfg.ID}, latest); err != nil {
		return err
	}
	s.cluster, s.bootstrap = hdr.Cluster, latest
	os.Remove(cfg.Join) // in place now; a leftover in the temp directory is harmless
	s.logger.Info("joined", "cluster", fmt.Sprintf("%016x", hdr.Cluster), "snapshot", hdr.Slot, "dir", cfg.DataDir)
	return nil
}

// checkFlags compares a --cluster given to a member that ran before with the
// configuration its data holds: members or roles that disagree mean the
// flags are out of date, and the member refuses to start rather than guess.
// Addresses may differ (members moved); this member then dials the given
// ones.
func (s *Server) checkFlags() error {
	cfg := &s.cfg
	if len(cfg.Membership.Members()) == 0 || cfg.Bootstrap {
		return nil
	}
	given, err := bootstrapConfig(cfg.Membership, cfg.PeerAddrs)
	if err != nil {
		return err
	}
	if s.bootstrap.Made == 0 && sameMembers(given, s.bootstrap) && ClusterID(cfg.ClusterToken, cfg.Membership) != s.cluster {
		return fmt.Errorf("%w: %s belongs to cluster %016x, but --cluster and --cluster-token make cluster %016x; check --cluster-token (or drop both: the data says which cluster this is)", ErrWrongIdentity, cfg.DataDir, s.cluster, ClusterID(cfg.ClusterToken, cfg.Membership))
	}
	latest := s.member.Configs().Latest()
	if sameMembers(given, latest) {
		return nil
	}
	return fmt.Errorf("%w: --cluster says %s, but this member's data says the cluster is %s (as of slot %d); drop --cluster: after the first start a member takes its configuration from its data", ErrWrongIdentity, describeMembers(given), describeMembers(latest), latest.Made)
}

// sameMembers compares the IDs and roles of a and b.
func sameMembers(a, b paxos.Config) bool {
	if len(a.Peers) != len(b.Peers) {
		return false
	}
	for i, p := range a.Peers {
		if q := b.Peers[i]; p.ID != q.ID || p.Roles != q.Roles {
			return false
		}
	}
	return true
}

// describeMembers writes a configuration as --cluster would.
func describeMembers(c paxos.Config) string {
	parts := make([]string, len(c.Peers))
	for i, p := range c.Peers {
		parts[i] = fmt.Sprintf("%d=%s/%s", p.ID, p.PeerAddr, strings.ReplaceAll(p.Roles.String(), ",", "+"))
	}
	return strings.Join(parts, ",")
}

// run starts the member's goroutines: the node's loop, the peer listener
// (which hands messages to the node), the client listener and the sweep
// of requests that time out. The node exists before anything can call it.
func (s *Server) run() {
	ctx := s.ctx
	s.clients = newClientListener(s, s.cfg.ClientListener)
	deliver := func(m paxos.Message) {
		// An error means the node stopped; the message is moot.
		_ = s.node.Receive(context.Background(), m)
	}
	s.wg.Add(5)
	go func() {
		defer s.wg.Done()
		s.watchDisk(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.runErr <- s.node.Run(ctx, s.cfg.TickInterval)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.tr.Serve(s.cfg.PeerListener, deliver); err != nil {
			s.logger.Error("peer listener failed", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.clients.serve()
	}()
	go func() {
		defer s.wg.Done()
		s.sweepLoop(ctx)
	}()
}

func setDefaults(c *Config) {
	if c.TickInterval <= 0 {
		c.TickInterval = 20 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.MaxClientConns <= 0 {
		c.MaxClientConns = 1024
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.SnapshotRate == 0 {
		c.SnapshotRate = DefaultSnapshotRate
	}
	if c.LogRetain == 0 {
		c.LogRetain = 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.DiskReserve == 0 {
		c.DiskReserve = DefaultDiskReserve
	}
	if c.DiskStall == 0 {
		c.DiskStall = time.Second
	}
}

// DefaultDiskReserve is Config.DiskReserve's default.
const DefaultDiskReserve = 64 << 20

func closeListeners(cfg Config) {
	for _, l := range []net.Listener{cfg.PeerListener, cfg.ClientListener} {
		if l != nil {
			l.Close()
		}
	}
}

// dirIsEmpty reports whether dir is missing or holds no files.
func dirIsEmpty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("server: read data directory: %w", err)
	}
	return len(entries) == 0, nil
}

// Metrics returns the member's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// connections counts the inbound peer connections and the client
// connections open now.
func (s *Server) connections() (peer, client int) {
	if s.tr != nil {
		peer = s.tr.Inbound()
	}
	if s.clients != nil {
		client = s.clients.count()
	}
	return peer, client
}

// logBytes is the log store's size on disk, 0 before it is open.
func (s *Server) logBytes() uint64 {
	if s.store == nil {
		return 0
	}
	return s.store.DiskUsage()
}

// ID returns the member's node ID.
func (s *Server) ID() paxos.NodeID { return s.cfg.ID }

// ClusterID returns the cluster ID.
func (s *Server) ClusterID() uint64 { return s.cluster }

// ClientAddr returns the address the member serves clients on.
func (s *Server) ClientAddr() string { return s.cfg.ClientAddr }

// PeerAddr returns the address peers reach the member at: where it
// accepts them.
// When it listens on all interfaces (0.0.0.0, ::), that address means
// nothing to a peer, so it is the one the configuration gives this member.
func (s *Server) PeerAddr() string {
	addr := s.cfg.PeerListener.Addr()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		if a := s.cfg.PeerAddrs[s.cfg.ID]; a != "" {
			return a
		}
		if p, ok := s.bootstrap.Peer(s.cfg.ID); ok && p.PeerAddr != "" {
			return p.PeerAddr
		}
	}
	return addr.String()
}

// Wait blocks until the member stops, on its own (a storage failure) or
// because Stop was called, and returns why: nil after Stop.
func (s *Server) Wait() error {
	err := <-s.runErr
	s.runErr <- err
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Stop stops the member cleanly: a leader hands leadership over first (and
// waits, at most two election timeouts, until the other leads), the node
// finishes the flush it is in (so every sync in flight completes),
// connections close, snapshot work ends, and the WAL closes. It is safe to
// call more than once and from several goroutines.
func (s *Server) Stop() error { return s.stop(true) }

// stop stops the member, a leader first handing over if handOver is set.
func (s *Server) stop(handOver bool) error {
	s.stopOnce.Do(func() {
		if handOver {
			s.handOver()
		}
		s.cancel()
		s.member.snaps.cancel() // ends snapshot pacing and the waits of snapshot saves
		s.clients.close()
		err := s.Wait()
		s.tr.Close()
		s.wg.Wait()
		s.exec.Wait()
		s.member.Close()
		if lrn := s.member.Learner(); lrn != nil {
			s.logger.Info("stopped", "applied", lrn.Applied(), "applied_hash", fmt.Sprintf("%016x", lrn.Hash()))
		} else {
			s.logger.Info("stopped")
		}
		if cerr := s.store.Close(); err == nil {
			err = cerr
		}
		s.stopErr = err
	})
	return s.stopErr
}

// handOver passes leadership to another proposer before the member stops,
// and waits (two election timeouts at most) until that one leads: commands
// then keep flowing through a rolling restart, instead of stalling for an
// election timeout each time the leader goes.
func (s *Server) handOver() {
	prop := s.member.Proposer()
	if prop == nil {
		return
	}
	limit := 2 * time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	onNode := func(f func()) bool { return s.onNode(ctx, f) == nil }
	var to paxos.NodeID
	if !onNode(func() { to = prop.HandOver() }) || to == 0 {
		return
	}
	s.logger.Info("handing leadership over before stopping", "to", to)
	for {
		var took bool
		if !onNode(func() { took = prop.Leader() == to && !prop.LeaderBallot().IsZero() }) {
			s.logger.Warn("leadership hand-over not confirmed before stopping", "to", to)
			return
		}
		if took {
			s.logger.Info("leadership handed over", "to", to)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.TickInterval):
		}
	}
}

// sweepLoop times out requests whose commands were not applied in time.
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// An error means the node stopped; Stop answers nobody, the
		// connections close.
		_ = s.node.Do(ctx, func() {
			s.member.Sweep()
			s.member.SampleMetrics()
		})
	}
}

// handle serves a client request on the node's goroutine.
func (s *Server) handle(c *clientConn, req clientapi.Request) {
	if req.Kind == clientapi.ReqSnapshot {
		if req.Slot == 0 && s.member.DiskFull() != "" {
			c.Respond(clientapi.Response{ID: req.ID, Code: clientapi.CodeUnavailable, Message: s.member.fullMessage(req.Kind) + "; ask another member for a snapshot"})
			return
		}
		s.handleSnapshot(c, req)
		return
	}
	s.member.Handle(c, req)
}

// handleSnapshot starts answering a ReqSnapshot: with Slot 0 it has a fresh
// snapshot taken. Waiting for the write and reading the file happen off the
// node's goroutine.
func (s *Server) handleSnapshot(c *clientConn, req clientapi.Request) {
	lrn := s.member.Learner()
	if lrn == nil {
		c.Respond(clientapi.Response{ID: req.ID, Code: clientapi.CodeUnavailable, Message: fmt.Sprintf("node %d runs no learner, so it has no snapshot; ask a learner", s.cfg.ID)})
		return
	}
	slot := req.Slot
	if slot == 0 {
		if slot = lrn.TakeSnapshot(); slot == 0 {
			c.Respond(clientapi.Response{ID: req.ID, Code: clientapi.CodeUnavailable, Message: "nothing applied yet, so there is nothing to snapshot"})
			return
		}
	}
	s.exec.Go(func() { c.Respond(s.snapshotChunk(req, slot)) })
}

// snapshotChunk answers a ReqSnapshot. A fresh snapshot (Slot 0) is
// awaited until it is durable; then the chunk at Offset is read.
func (s *Server) snapshotChunk(req clientapi.Request, slot paxos.Slot) clientapi.Response {
	resp := clientapi.Response{ID: req.ID}
	snaps := s.member.snaps
	if req.Slot == 0 {
		deadline := time.NewTimer(time.Minute)
		defer deadline.Stop()
		for {
			newest, changed := snaps.Newest()
			if newest >= slot {
				slot = newest
				break
			}
			select {
			case <-changed:
			case <-deadline.C:
				resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("the snapshot of slot %d was not written within a minute; see the member's log", slot)
				return resp
			case <-snaps.ctx.Done():
				resp.Code, resp.Message = clientapi.CodeUnavailable, "the member is stopping"
				return resp
			}
		}
	}
	m, err := snaps.readChunk(paxos.Message{Slot: slot, Offset: req.Offset})
	switch {
	case err != nil:
		resp.Code, resp.Message = clientapi.CodeBadRequest, fmt.Sprintf("read snapshot %d at %d: %v", slot, req.Offset, err)
	case m.Size == 0:
		resp.Code, resp.Message = clientapi.CodeUnavailable, fmt.Sprintf("snapshot %d was replaced by a newer one while it was read; save again", slot)
	default:
		resp.Slot, resp.Size, resp.Data = slot, m.Size, m.Value
	}
	return resp
}
