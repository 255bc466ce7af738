package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/paxosd/paxosd/acceptor"
	"github.com/paxosd/paxosd/learner"
	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/proposer"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// Config configures a member.
type Config struct {
	// ID is this member's node ID; it must be in Members.
	ID paxos.NodeID
	// Members is the cluster membership and PeerAddrs every member's peer
	// address (this member's too: it is what peers dial).
	Members   paxos.Config
	PeerAddrs map[paxos.NodeID]string
	// ClusterToken distinguishes clusters with the same members; the
	// cluster ID is derived from it and the membership (see ClusterID).
	ClusterToken string
	// DataDir holds the WAL.
	DataDir string
	// Bootstrap allows initialising an empty DataDir. Give it to every
	// member on the first start of a new cluster, never on a restart.
	Bootstrap bool
	// PeerListener and ClientListener are where the member accepts peers
	// and clients. The caller creates them (so that tests can use port 0)
	// and the member closes them.
	PeerListener   net.Listener
	ClientListener net.Listener
	// ClientAddr is the client address advertised to peers for
	// redirects; empty means ClientListener's address.
	ClientAddr string
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
	// MaxFrame bounds peer frames (default paxos.DefaultMaxFrame).
	MaxFrame int
	// MaxClientConns bounds client connections at once (default 1024).
	MaxClientConns int
	// Logger receives the member's logs; nil discards them.
	Logger *slog.Logger
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

// MaxCommand is the largest command a client may propose. Bigger ones are
// refused before they are proposed.
const MaxCommand = statemachine.MaxValueSize + statemachine.MaxKeySize + 1024

// maxClientFrame bounds a client request frame.
const maxClientFrame = MaxCommand + 1024

// ErrNotBootstrapped reports an empty data directory without Bootstrap.
var ErrNotBootstrapped = errors.New("server: data directory was never initialised")

// ErrWrongIdentity reports a data directory from another cluster or member.
var ErrWrongIdentity = errors.New("server: data directory belongs to another member")

// ErrAlreadyBootstrapped reports Bootstrap given for a data directory that
// is already initialised.
var ErrAlreadyBootstrapped = errors.New("server: data directory already initialised")

// ClusterID derives the cluster ID from the token and the membership (IDs
// and roles, not addresses, so members may move). Every member computes the
// same ID, and the handshake refuses peers with another one.
func ClusterID(token string, members paxos.Config) uint64 {
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

// Server is a running member.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	cluster uint64
	store   *wal.Store
	snaps   *snapStore
	node    *paxos.Node
	tr      *paxos.TCPTransport
	acc     *acceptor.Acceptor
	prop    *proposer.Proposer
	lrn     *learner.Learner

	// Owned by the node's goroutine (touched only inside node.Do and
	// Apply): clients waiting for their commands, and the tag of the last
	// read proposed. Reads go through the log as session 0, numbered by
	// this member; no other member waits for them. NB: the numbering
	// starts at random, so that a read proposed before a restart and
	// chosen after it cannot answer a new read that reused its number.
	waiters  map[sessionSeq][]waiter
	lastRead uint64

	cancel  context.CancelFunc
	runErr  chan error // Run's result
	wg      sync.WaitGroup
	clients *clientListener

	stopOnce sync.Once
	stopErr  error
}

type sessionSeq struct{ session, seq uint64 }

type waiter struct {
	c        *clientConn
	id       uint64
	deadline time.Time
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
	if !cfg.Members.Has(cfg.ID, 0) {
		return nil, fmt.Errorf("server: node %d is not in the cluster list", cfg.ID)
	}
	setDefaults(&cfg)
	logger := cfg.Logger.With("node", cfg.ID)
	cluster := ClusterID(cfg.ClusterToken, cfg.Members)

	fresh, err := dirIsEmpty(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if fresh && !cfg.Bootstrap {
		return nil, fmt.Errorf("%w: %s is empty. If this is the first start of a new cluster, start every member once with --bootstrap. If this member lost its data, do not bootstrap it alone: an acceptor that forgot its promises can break agreement, and paxosd cannot replace a member yet", ErrNotBootstrapped, cfg.DataDir)
	}
	store, st, err := wal.Open(cfg.DataDir, wal.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	want := wal.Identity{Cluster: cluster, Node: cfg.ID}
	switch have := store.Identity(); {
	case have == (wal.Identity{}) && !cfg.Bootstrap:
		return nil, fmt.Errorf("%w: %s holds a store without an identity (was a bootstrap interrupted?); start with --bootstrap to finish it", ErrNotBootstrapped, cfg.DataDir)
	case have == (wal.Identity{}):
		if err := store.SetIdentity(want); err != nil {
			return nil, err
		}
		logger.Info("bootstrapped", "cluster", fmt.Sprintf("%016x", cluster), "dir", cfg.DataDir)
	case have.Node != cfg.ID:
		return nil, fmt.Errorf("%w: %s belongs to node %d, not node %d; check --id and --data-dir", ErrWrongIdentity, cfg.DataDir, have.Node, cfg.ID)
	case have.Cluster != cluster:
		return nil, fmt.Errorf("%w: %s belongs to cluster %016x, but this configuration makes cluster %016x; check --cluster (IDs and roles) and --cluster-token against the ones it was bootstrapped with", ErrWrongIdentity, cfg.DataDir, have.Cluster, cluster)
	case cfg.Bootstrap && !fresh:
		return nil, fmt.Errorf("%w: %s already holds this member's data; drop --bootstrap (it is for the first start only)", ErrAlreadyBootstrapped, cfg.DataDir)
	}

	snaps, err := openSnapStore(cfg.DataDir, wal.SnapshotMeta{Cluster: cluster, Members: cfg.Members.Members(), Machine: cfg.MachineName}, cfg.SnapshotRate, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			snaps.close()
		}
	}()
	s = &Server{cfg: cfg, logger: logger, cluster: cluster, store: store, snaps: snaps, waiters: map[sessionSeq][]waiter{}, runErr: make(chan error, 1),
		lastRead: seededRand().Uint64()}
	roles := memberRoles(cfg.Members, cfg.ID)
	// The cores, the node and the transport add the node ID themselves.
	raw := cfg.Logger
	nc := paxos.NodeConfig{ID: cfg.ID, Storage: store, Snapshots: snaps, Apply: s.apply, Logger: raw}
	if roles&paxos.RoleAcceptor != 0 {
		if s.acc, err = acceptor.New(acceptor.Config{ID: cfg.ID, Cluster: cfg.Members, Logger: raw}, st.Acceptor); err != nil {
			return nil, err
		}
		nc.Acceptor = s.acc
	}
	if roles&paxos.RoleProposer != 0 {
		pc := proposer.Config{ID: cfg.ID, Cluster: cfg.Members, ElectionTicks: cfg.ElectionTicks, HeartbeatTicks: cfg.HeartbeatTicks, Rand: seededRand(), Logger: raw}
		if s.prop, err = proposer.New(pc); err != nil {
			return nil, err
		}
		nc.Proposer = s.prop
	}
	if roles&paxos.RoleLearner != 0 {
		lc := learner.Config{ID: cfg.ID, Cluster: cfg.Members, Machine: cfg.Machine, Rand: seededRand(), Logger: raw,
			SnapshotEvery: max(cfg.SnapshotEvery, 0), SnapshotBytes: int(max(cfg.SnapshotBytes, 0)), LogRetain: max(cfg.LogRetain, 0),
			// A transfer waits up to 2 s for a chunk before it asks again.
			SnapshotTimeoutTicks: max(1, int(2*time.Second/cfg.TickInterval))}
		if s.lrn, err = s.startLearner(lc, st.Learner); err != nil {
			return nil, err
		}
		nc.Learner = s.lrn
	}
	clientAddr := cfg.ClientAddr
	if clientAddr == "" {
		clientAddr = cfg.ClientListener.Addr().String()
	}
	s.cfg.ClientAddr = clientAddr
	var node *paxos.Node
	tr, err := paxos.NewTCPTransport(paxos.TransportConfig{
		ID: cfg.ID, Cluster: cluster, Members: cfg.Members, Peers: cfg.PeerAddrs, ClientAddr: clientAddr,
		MaxFrame: cfg.MaxFrame, Logger: raw,
		Deliver: func(m paxos.Message) {
			// An error means the node stopped; the message is moot.
			_ = node.Receive(context.Background(), m)
		},
	})
	if err != nil {
		return nil, err
	}
	s.tr = tr
	nc.Transport = tr
	if node, err = paxos.NewNode(nc); err != nil {
		tr.Close()
		return nil, err
	}
	s.node = node
	snaps.node, snaps.tr, snaps.id = node, tr, cfg.ID
	snaps.start()

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.runErr <- node.Run(ctx, cfg.TickInterval)
	}()
	go func() {
		defer s.wg.Done()
		if err := tr.Serve(cfg.PeerListener); err != nil {
			logger.Error("peer listener failed", "err", err)
		}
	}()
	s.clients = newClientListener(s, cfg.ClientListener)
	go func() {
		defer s.wg.Done()
		s.clients.serve()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sweepLoop(ctx)
	}()
	logger.Info("started", "roles", roles.String(), "peer", cfg.PeerListener.Addr().String(), "client", clientAddr,
		"applied", st.Learner.Applied, "promised", st.Acceptor.Promised, "cluster", fmt.Sprintf("%016x", cluster))
	return s, nil
}

// startLearner starts the learner from the newest snapshot, if any, and the
// log after it, and times it.
func (s *Server) startLearner(lc learner.Config, st paxos.LearnerState) (*learner.Learner, error) {
	began := time.Now()
	r, err := s.snaps.load(st.Base)
	if err != nil {
		return nil, err
	}
	if r != nil {
		defer r.Close()
		st.Snapshot, st.SnapshotData = paxos.SnapshotMeta{Slot: r.Meta.Slot, Hash: r.Meta.Hash}, r
	}
	l, err := learner.New(lc, st)
	if r != nil {
		// NB: the checksum covers the whole file and is known only at its
		// end, so a damaged file may fail the restore first: check it
		// either way, and report damage as such.
		if ferr := r.Finish(); ferr != nil {
			return nil, fmt.Errorf("%w; %s", ferr, s.snaps.recoveryHint(st.Snapshot.Slot, st.Base))
		}
	}
	if err != nil {
		return nil, err
	}
	s.logger.Info("recovered", "snapshot", st.Snapshot.Slot, "replayed", l.Applied()-st.Snapshot.Slot, "applied", l.Applied(), "took", time.Since(began).Round(time.Millisecond))
	return l, nil
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
}

func closeListeners(cfg Config) {
	for _, l := range []net.Listener{cfg.PeerListener, cfg.ClientListener} {
		if l != nil {
			l.Close()
		}
	}
}

func memberRoles(c paxos.Config, id paxos.NodeID) paxos.Role {
	for _, m := range c.Members() {
		if m.ID == id {
			return m.Roles
		}
	}
	return 0
}

// seededRand returns a generator seeded from the system's randomness: the
// cores' jitter must differ between members.
func seededRand() *mrand.Rand {
	var b [16]byte
	// crypto/rand.Read never fails on supported platforms.
	_, _ = rand.Read(b[:])
	return mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])))
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

// ID returns the member's node ID.
func (s *Server) ID() paxos.NodeID { return s.cfg.ID }

// ClusterID returns the cluster ID.
func (s *Server) ClusterID() uint64 { return s.cluster }

// ClientAddr returns the address the member serves clients on.
func (s *Server) ClientAddr() string { return s.cfg.ClientAddr }

// PeerAddr returns the address the member accepts peers on.
func (s *Server) PeerAddr() string { return s.cfg.PeerListener.Addr().String() }

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

// Stop stops the member cleanly: the node finishes the flush it is in (so
// every sync in flight completes), connections close, and the WAL closes.
// It is safe to call more than once and from several goroutines.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		s.snaps.cancel() // ends snapshot waits and serving; close waits for them
		s.clients.close()
		err := s.Wait()
		s.tr.Close()
		s.wg.Wait()
		if s.lrn != nil {
			s.logger.Info("stopped", "applied", s.lrn.Applied(), "applied_hash", fmt.Sprintf("%016x", s.lrn.Hash()))
		} else {
			s.logger.Info("stopped")
		}
		s.snaps.close()
		if cerr := s.store.Close(); err == nil {
			err = cerr
		}
		s.stopErr = err
	})
	return s.stopErr
}

// appliedLogEvery is how often (in slots) the applied slot and hash are
// logged, so that logs of different members can be compared.
const appliedLogEvery = 10000

// apply runs on the node's goroutine with newly applied decisions: it
// answers the clients waiting for them.
func (s *Server) apply(ds []paxos.Decision) {
	for _, d := range ds {
		for _, r := range d.Results {
			k := sessionSeq{r.Session, r.Seq}
			ws := s.waiters[k]
			if len(ws) == 0 {
				continue
			}
			delete(s.waiters, k)
			resp := paxos.ClientResponse{Code: paxos.CodeOK, Data: r.Data}
			if r.Duplicate && r.Data == nil {
				resp = paxos.ClientResponse{Code: paxos.CodeStale, Message: "the session moved past this command; it was applied at most once, and its answer is gone"}
			}
			for _, w := range ws {
				resp.ID = w.id
				w.c.respond(resp)
			}
		}
		if d.Slot%appliedLogEvery == 0 && s.lrn != nil {
			s.logger.Info("applied", "slot", d.Slot, "applied_hash", fmt.Sprintf("%016x", s.lrn.Hash()))
		}
	}
}

// sweepLoop times out waiters whose commands were not applied in time.
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
		_ = s.node.Do(ctx, s.sweep)
	}
}

func (s *Server) sweep() {
	now := time.Now()
	for k, ws := range s.waiters {
		keep := ws[:0]
		for _, w := range ws {
			if now.Before(w.deadline) {
				keep = append(keep, w)
				continue
			}
			w.c.respond(paxos.ClientResponse{ID: w.id, Code: paxos.CodeTimeout,
				Message: fmt.Sprintf("proposed, but not applied within %v; it may still be applied: retry with the same session and sequence number to find out", s.cfg.RequestTimeout)})
		}
		if len(keep) == 0 {
			delete(s.waiters, k)
		} else {
			s.waiters[k] = keep
		}
	}
}

// handle runs a client request on the node's goroutine.
func (s *Server) handle(c *clientConn, req paxos.ClientRequest) {
	resp := paxos.ClientResponse{ID: req.ID}
	switch req.Kind {
	case paxos.ReqStatus:
		st := s.status()
		resp.Status = &st
	case paxos.ReqQuery:
		if s.lrn == nil {
			resp.Code, resp.Message = paxos.CodeUnavailable, fmt.Sprintf("node %d runs no learner, so it has no state to read; ask a learner", s.cfg.ID)
			break
		}
		data, err := s.lrn.Query(req.Data)
		if err != nil {
			resp.Code, resp.Message = paxos.CodeBadRequest, err.Error()
			break
		}
		resp.Data = data
	case paxos.ReqSnapshot:
		if s.lrn == nil {
			resp.Code, resp.Message = paxos.CodeUnavailable, fmt.Sprintf("node %d runs no learner, so it has no snapshot; ask a learner", s.cfg.ID)
			break
		}
		slot := paxos.Slot(req.Session)
		if slot == 0 {
			if slot = s.lrn.TakeSnapshot(); slot == 0 {
				resp.Code, resp.Message = paxos.CodeUnavailable, "nothing applied yet, so there is nothing to snapshot"
				break
			}
		}
		// Waiting for the write and reading the file happen off the
		// node's goroutine.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.respond(s.snapshotChunk(req, slot))
		}()
		return
	case paxos.ReqCommand, paxos.ReqRead:
		if len(req.Data) > MaxCommand {
			resp.Code, resp.Message = paxos.CodeBadRequest, fmt.Sprintf("command of %d bytes is larger than the limit of %d", len(req.Data), MaxCommand)
			break
		}
		if req.Kind == paxos.ReqRead {
			s.lastRead++
			req.Session, req.Seq = 0, s.lastRead
		} else if req.Session == 0 || req.Seq == 0 {
			resp.Code, resp.Message = paxos.CodeBadRequest, "a command needs a non-zero session and sequence number"
			break
		}
		err := s.node.Propose([]paxos.Command{{Session: req.Session, Seq: req.Seq, Data: req.Data}})
		var nl *paxos.NotLeaderError
		switch {
		case err == nil:
			k := sessionSeq{req.Session, req.Seq}
			s.waiters[k] = append(s.waiters[k], waiter{c: c, id: req.ID, deadline: time.Now().Add(s.cfg.RequestTimeout)})
			return
		case errors.As(err, &nl):
			resp.Code, resp.Message = paxos.CodeNotLeader, err.Error()
			resp.Leader = nl.Leader
			if nl.Leader != 0 {
				resp.LeaderAddr = s.tr.ClientAddr(nl.Leader)
			}
		case errors.Is(err, paxos.ErrOverloaded):
			resp.Code, resp.Message = paxos.CodeOverloaded, err.Error()
		default:
			resp.Code, resp.Message = paxos.CodeUnavailable, err.Error()
		}
	}
	c.respond(resp)
}

// snapshotChunk answers a ReqSnapshot. A fresh snapshot (Session 0) is
// awaited until it is durable; then the chunk at Seq of the snapshot is read.
func (s *Server) snapshotChunk(req paxos.ClientRequest, slot paxos.Slot) paxos.ClientResponse {
	resp := paxos.ClientResponse{ID: req.ID}
	if req.Session == 0 {
		deadline := time.NewTimer(time.Minute)
		defer deadline.Stop()
		for {
			newest, changed := s.snaps.Newest()
			if newest >= slot {
				slot = newest
				break
			}
			select {
			case <-changed:
			case <-deadline.C:
				resp.Code, resp.Message = paxos.CodeUnavailable, fmt.Sprintf("the snapshot of slot %d was not written within a minute; see the member's log", slot)
				return resp
			case <-s.snaps.ctx.Done():
				resp.Code, resp.Message = paxos.CodeUnavailable, "the member is stopping"
				return resp
			}
		}
	}
	m, err := s.snaps.readChunk(paxos.Message{Slot: slot, Offset: req.Seq})
	switch {
	case err != nil:
		resp.Code, resp.Message = paxos.CodeBadRequest, fmt.Sprintf("read snapshot %d at %d: %v", slot, req.Seq, err)
	case m.Size == 0:
		resp.Code, resp.Message = paxos.CodeUnavailable, fmt.Sprintf("snapshot %d was replaced by a newer one while it was read; save again", slot)
	default:
		resp.Slot, resp.Size, resp.Data = slot, m.Size, m.Value
	}
	return resp
}

// status reports this member's view; it runs on the node's goroutine.
func (s *Server) status() paxos.Status {
	st := paxos.Status{MemberInfo: paxos.MemberInfo{ID: s.cfg.ID, Roles: memberRoles(s.cfg.Members, s.cfg.ID), PeerAddr: s.PeerAddr(), ClientAddr: s.cfg.ClientAddr}}
	if s.acc != nil {
		st.Promised = s.acc.Promised()
	}
	if s.prop != nil {
		st.Leader, st.IsLeader = s.prop.Leader(), s.prop.IsLeader()
		st.Chosen = s.prop.Decided()
	}
	if s.lrn != nil {
		st.Chosen = max(st.Chosen, s.lrn.Known())
		st.Applied, st.AppliedHash = s.lrn.Applied(), s.lrn.Hash()
		st.SnapshotSlot = s.lrn.SnapshotSlot()
	}
	st.LogBytes = s.store.DiskUsage()
	for _, m := range s.cfg.Members.Members() {
		st.Members = append(st.Members, paxos.MemberInfo{ID: m.ID, Roles: m.Roles, PeerAddr: s.cfg.PeerAddrs[m.ID], ClientAddr: s.tr.ClientAddr(m.ID)})
	}
	return st
}
