// Package transport carries paxos.Messages between members over TCP.
//
// Each member dials one outbound connection to every peer and sends on it;
// it only reads from the connections its peers dialed. Every connection
// opens with a wire.Hello in each direction that names the cluster, the
// sender, the member it meant to reach and the protocol version, and a peer
// is known by its Hello, never by its address. A connection from another
// cluster, a non-member, the member itself, another protocol version or a
// dialer that meant another member is closed with a warning, and so is one
// that sends a bad frame, a message from a sender other than its Hello's, or
// a message type that never leaves a node. Nothing from a connection reaches
// the node unless it passed every check.
//
// Send never blocks: each peer has a bounded queue drained by a writer
// goroutine, which writes everything queued with one system call, and drops
// messages while the peer is unreachable (Paxos tolerates loss; the cores
// retransmit). Consecutive messages that encode alike (a broadcast, which
// differs only in the receiver, who is not on the wire) share one frame,
// encoded once.
package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/wire"
)

// Config configures a TCP transport.
type Config struct {
	ID paxos.NodeID
	// Cluster is the cluster ID; a peer with another one is refused.
	Cluster uint64
	// Membership says who may connect at first: only members. Reconfigure
	// changes it as the configurations change.
	Membership paxos.Membership
	// Peers maps every other member to the address to dial.
	Peers map[paxos.NodeID]string
	// Pinned are addresses an operator gave (paxosd serve --cluster): they
	// are dialed whatever the configurations say.
	Pinned map[paxos.NodeID]string
	// ClientAddr is where this node serves clients, and PeerAddr where it
	// serves peers; the handshake tells peers, so that they can redirect
	// clients to it and reach it before their configuration lists it.
	ClientAddr string
	PeerAddr   string
	// AdmitAny admits any node of the cluster that was not removed, member
	// or not: for a member that runs no learner, which cannot follow the
	// configurations and so never learns of members added later.
	AdmitAny bool
	// TLS, if set, runs every connection over mutual TLS with its
	// certificates: a peer's certificate must come from its CA and name
	// (certs.NodeURI) the node the peer's handshake claims, and the member
	// dialed must present one naming the node meant. Nil: plaintext, and
	// anyone who reaches the port and knows the cluster ID may act as a
	// member.
	TLS *certs.Source
	// DataID identifies this member's data directory (wire.Hello.Data).
	// CheckData, if set, is given every peer's, and whether the peer is an
	// acceptor in a configuration this transport knows; it refuses an
	// acceptor whose data differs from what it sent before (it lost its
	// disk and came back under its old ID), and remembers the newest.
	DataID    uint64
	CheckData func(id paxos.NodeID, data uint64, acceptor bool) error
	// Rejected, if set, is told why each inbound connection was refused
	// or cut off for bad input: "limit", "tls", "handshake" or "frame".
	Rejected func(reason string)

	MaxFrame         int           // default wire.DefaultMaxFrame
	MaxQueue         int           // messages queued per peer; default 4096
	MaxConns         int           // inbound connections at once; default 256
	DialTimeout      time.Duration // default 2s
	HandshakeTimeout time.Duration // default 5s
	WriteTimeout     time.Duration // default 5s
	// IdleTimeout closes an inbound connection that sends nothing, not even
	// a keep-alive, for this long. Writers send keep-alives at a third of
	// it. Default 15s.
	IdleTimeout time.Duration
	MinBackoff  time.Duration // first reconnect delay; default 50ms
	MaxBackoff  time.Duration // reconnect delays never exceed it; default 2s
	Logger      *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 4096
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 256
	}
	def(&c.DialTimeout, 2*time.Second)
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.WriteTimeout, 5*time.Second)
	def(&c.IdleTimeout, 15*time.Second)
	def(&c.MinBackoff, 50*time.Millisecond)
	def(&c.MaxBackoff, 2*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// readBufferSize is the read buffer of an established connection.
const readBufferSize = 32 << 10

// TCP is the TCP transport of one member. It implements paxos.Transport.
// Methods are safe for concurrent use.
type TCP struct {
	cfg       Config
	logger    *slog.Logger
	conns     chan struct{} // semaphore bounding inbound connections
	serverTLS *tls.Config   // with cfg.TLS: the peer listener's

	// pmu guards the peers, who may connect (members) and who may never
	// again (removed); Reconfigure changes them.
	pmu       sync.RWMutex
	peers     map[paxos.NodeID]*peer
	members   map[paxos.NodeID]bool
	removed   map[paxos.NodeID]bool
	acceptors map[paxos.NodeID]bool // in any configuration known

	mu        sync.Mutex
	listeners []net.Listener
	inbound   map[net.Conn]struct{}
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks cfg and starts a writer for each peer, so that Send works at
// once. Inbound connections are accepted only once Serve is called.
func New(cfg Config) (*TCP, error) {
	cfg.setDefaults()
	if cfg.ID == 0 {
		return nil, errors.New("transport: config needs a node ID")
	}
	if !cfg.Membership.Has(cfg.ID, 0) {
		return nil, fmt.Errorf("transport: node %d is not a member of the cluster", cfg.ID)
	}
	t := &TCP{
		cfg:       cfg,
		logger:    cfg.Logger.With("node", cfg.ID),
		peers:     map[paxos.NodeID]*peer{},
		members:   map[paxos.NodeID]bool{},
		removed:   map[paxos.NodeID]bool{},
		acceptors: map[paxos.NodeID]bool{},
		conns:     make(chan struct{}, cfg.MaxConns),
		inbound:   map[net.Conn]struct{}{},
	}
	if cfg.TLS != nil {
		t.serverTLS = cfg.TLS.PeerServer()
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, id := range cfg.Membership.Acceptors() {
		t.acceptors[id] = true
	}
	for _, m := range cfg.Membership.Members() {
		t.members[m.ID] = true
		if m.ID == cfg.ID {
			continue
		}
		addr, ok := cfg.Peers[m.ID]
		if !ok {
			return nil, fmt.Errorf("transport: no address for member %d", m.ID)
		}
		t.peers[m.ID] = &peer{t: t, id: m.ID, addr: addr, wake: make(chan struct{}, 1)}
	}
	for _, p := range t.peers {
		t.wg.Add(1)
		go p.run()
	}
	return t, nil
}

// Send queues msgs for their destinations and returns at once. A message for
// an unknown node or a full queue is dropped. Consecutive messages that
// encode alike (wire.Same) share one frame, encoded once by whichever
// writer needs it first.
func (t *TCP) Send(msgs []paxos.Message) {
	t.pmu.RLock()
	defer t.pmu.RUnlock()
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && wire.Same(&msgs[i], &msgs[j]) {
			j++
		}
		var shared *sharedFrame
		if j-i > 1 {
			shared = &sharedFrame{}
		}
		for _, m := range msgs[i:j] {
			p := t.peers[m.To]
			if p == nil {
				t.logger.Warn("message for unknown node dropped", "peer", m.To, "type", m.Type)
				continue
			}
			p.enqueue(outgoing{m: m, shared: shared})
		}
		i = j
	}
}

// outgoing is a queued message and, for one of a broadcast, the frame it
// shares with the others.
type outgoing struct {
	m      paxos.Message
	shared *sharedFrame
}

// sharedFrame is a frame encoded once for several receivers.
type sharedFrame struct {
	once sync.Once
	b    []byte
}

func (f *sharedFrame) bytes(m *paxos.Message) []byte {
	f.once.Do(func() { f.b = wire.Append(nil, m) })
	return f.b
}

// ClientAddr returns the client address member id advertised in its last
// handshake, or "" if it has not been heard from.
func (t *TCP) ClientAddr(id paxos.NodeID) string {
	if id == t.cfg.ID {
		return t.cfg.ClientAddr
	}
	t.pmu.RLock()
	p := t.peers[id]
	t.pmu.RUnlock()
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clientAddr
}

// Serve accepts peer connections on l until Close and hands every valid
// inbound message to deliver, from the connection's reader goroutine.
// deliver may block; the reader then stops reading, which pushes back on
// the sender through TCP. Serve returns nil after Close, or the listener's
// error.
func (t *TCP) Serve(l net.Listener, deliver func(paxos.Message)) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return l.Close()
	}
	t.listeners = append(t.listeners, l)
	t.mu.Unlock()
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("transport: accept peer connections: %w", err)
			}
			// Out of file descriptors and the like: wait and retry
			// rather than stop listening for good.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			t.logger.Warn("accepting a peer connection failed", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		select {
		case t.conns <- struct{}{}:
		default:
			t.logger.Warn("too many peer connections, refusing one", "remote", c.RemoteAddr().String(), "limit", t.cfg.MaxConns)
			t.rejected("limit")
			c.Close()
			continue
		}
		if !t.track(c) {
			<-t.conns
			return nil
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() { <-t.conns }()
			defer t.untrack(c)
			if err := t.serveConn(c, deliver); err != nil && t.ctx.Err() == nil {
				t.logger.Warn("peer connection closed", "remote", c.RemoteAddr().String(), "err", err)
				t.rejected(rejectReason(err))
			}
		}()
	}
}

// remoteAlert reports a TLS alert the other side sent: it refused us.
func remoteAlert(err error) bool {
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "remote error"
}

// errTLS marks a failed TLS handshake.
var errTLS = errors.New("TLS")

// rejectReason classifies why serveConn ended: "" for a connection that
// simply failed or closed.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, errTLS), errors.Is(err, wire.ErrTLS):
		return "tls"
	case errors.Is(err, wire.ErrHandshake):
		return "handshake"
	case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrFrameTooLarge):
		return "frame"
	}
	return ""
}

func (t *TCP) rejected(reason string) {
	if reason != "" && t.cfg.Rejected != nil {
		t.cfg.Rejected(reason)
	}
}

// Inbound returns how many inbound connections are open.
func (t *TCP) Inbound() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.inbound)
}

func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.inbound[c] = struct{}{}
	return true
}

func (t *TCP) untrack(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.inbound, c)
	t.mu.Unlock()
}

// serveConn runs the handshake on an inbound connection, then delivers its
// messages until it fails.
func (t *TCP) serveConn(c net.Conn, deliver func(paxos.Message)) error {
	d := wire.NewDecoder()
	var certNode paxos.NodeID
	if t.cfg.TLS != nil {
		tc := tls.Server(c, t.serverTLS)
		c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			if errors.Is(err, io.EOF) {
				// Closed before a byte: a TCP health check, not a peer.
				t.logger.Debug("connection closed before the TLS handshake", "remote", c.RemoteAddr().String())
				return nil
			}
			hint := "a peer needs a certificate from this member's --peer-ca that has not expired"
			if _, plain := errors.AsType[tls.RecordHeaderError](err); plain {
				hint = "the peer speaks plaintext: does it run without --peer-cert?"
			}
			if remoteAlert(err) {
				hint = "the peer refused this member's certificate: is --peer-cert signed by the CA the other members trust (their --peer-ca), and not expired?"
			}
			return fmt.Errorf("%w: %w: %w (%s)", wire.ErrHandshake, errTLS, err, hint)
		}
		c = tc
		certNode = certs.NodeOf(tc.ConnectionState().PeerCertificates[0])
	}
	from, err := t.acceptHello(c, d, certNode)
	if err != nil {
		return err
	}
	t.logger.Debug("peer connected", "peer", from, "remote", c.RemoteAddr().String())
	// Buffered from here on, so that one read system call brings in many
	// frames; the handshake was read unbuffered, so nothing is lost, and
	// a stranger never got a buffer.
	br := bufio.NewReaderSize(c, readBufferSize)
	var buf []byte
	for {
		c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		body, err := wire.ReadFrame(br, t.cfg.MaxFrame, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read from node %d: %w", from, err)
		}
		buf = body[:0]
		if cap(buf) > wire.ReadChunk {
			buf = nil // do not keep a big frame's buffer for the next small one
		}
		if len(body) == 0 {
			continue // keep-alive
		}
		var m paxos.Message
		if err := d.Decode(body, &m); err != nil {
			return fmt.Errorf("from node %d: %w", from, err)
		}
		if m.From != from {
			return fmt.Errorf("%w: node %d sent %v", wire.ErrBadFrame, from, m)
		}
		if m.Type.IsLocal() {
			return fmt.Errorf("%w: node %d sent a local-only %s", wire.ErrBadFrame, from, m.Type)
		}
		m.To = t.cfg.ID // the handshake named the receiver
		deliver(m)
	}
}

// acceptHello reads and checks the dialer's Hello and answers it. It returns
// the peer's node ID.
// With TLS, certNode is the node the peer's certificate names, which must
// be the one its Hello claims.
func (t *TCP) acceptHello(c net.Conn, d *wire.Decoder, certNode paxos.NodeID) (paxos.NodeID, error) {
	c.SetReadDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	body, err := wire.ReadFrame(c, wire.MaxHelloFrame, nil)
	if errors.Is(err, wire.ErrTLS) {
		return 0, fmt.Errorf("%w: %w: give every member the same --peer-cert, --peer-key and --peer-ca flags, or none", wire.ErrHandshake, err)
	}
	if err != nil {
		return 0, fmt.Errorf("read handshake: %w", err)
	}
	var h wire.Hello
	if err := d.Decode(body, &h); err != nil {
		return 0, fmt.Errorf("%w: %w", wire.ErrHandshake, err)
	}
	if err := t.checkHello(h, 0); err != nil {
		if h.Kind == wire.HelloPeer && h.Version != wire.ProtocolVersion {
			// Answer before closing, so that the peer's log says which
			// version this member speaks.
			c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
			answer := t.hello(h.From)
			_, _ = c.Write(wire.Append(nil, &answer)) // NB: the refusal is the error worth reporting
		}
		return 0, err
	}
	if h.To != t.cfg.ID {
		return 0, fmt.Errorf("%w: node %d dialed node %d but reached node %d", wire.ErrHandshake, h.From, h.To, t.cfg.ID)
	}
	if t.cfg.TLS != nil && certNode != h.From {
		return 0, fmt.Errorf("%w: a peer says it is node %d, but its certificate is for %s; each member needs its own certificate", wire.ErrHandshake, h.From, certs.DescribeNode(certNode))
	}
	if err := t.checkData(h); err != nil {
		return 0, err
	}
	t.heardFrom(h)
	c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	answer := t.hello(h.From)
	if _, err := c.Write(wire.Append(nil, &answer)); err != nil {
		return 0, fmt.Errorf("answer handshake: %w", err)
	}
	c.SetWriteDeadline(time.Time{})
	return h.From, nil
}

// checkHello validates a peer's hello; want is the node expected, or 0.
func (t *TCP) checkHello(h wire.Hello, want paxos.NodeID) error {
	switch {
	case h.Kind != wire.HelloPeer:
		return fmt.Errorf("%w: not a peer connection (kind %s); clients use the client port", wire.ErrHandshake, h.Kind)
	case h.Version != wire.ProtocolVersion:
		return fmt.Errorf("%w: node %d speaks protocol version %d, this node %d; run the same paxosd version on every member", wire.ErrHandshake, h.From, h.Version, wire.ProtocolVersion)
	case h.Cluster != t.cfg.Cluster:
		return fmt.Errorf("%w: node %d belongs to cluster %016x, this node to cluster %016x", wire.ErrHandshake, h.From, h.Cluster, t.cfg.Cluster)
	case h.From == t.cfg.ID:
		return fmt.Errorf("%w: node %d is this node", wire.ErrHandshake, h.From)
	case t.isRemoved(h.From):
		return fmt.Errorf("%w: node %d was removed from this cluster and may never return; a member that lost its data joins again under a new ID (see 'paxosd member add')", wire.ErrHandshake, h.From)
	case !t.isMember(h.From):
		return fmt.Errorf("%w: node %d is not a member of this cluster (add it with 'paxosd member add' first)", wire.ErrHandshake, h.From)
	case want != 0 && h.From != want:
		return fmt.Errorf("%w: expected node %d at this address, found node %d", wire.ErrHandshake, want, h.From)
	}
	return nil
}

// checkData checks the data directory a peer's Hello names, last: only a
// peer that passed every other check (its certificate's node too) may make
// this member remember what it sent.
func (t *TCP) checkData(h wire.Hello) error {
	if h.Data == 0 || t.cfg.CheckData == nil {
		return nil
	}
	t.pmu.RLock()
	acceptor := t.acceptors[h.From]
	t.pmu.RUnlock()
	if err := t.cfg.CheckData(h.From, h.Data, acceptor); err != nil {
		return fmt.Errorf("%w: %w", wire.ErrHandshake, err)
	}
	return nil
}

func (t *TCP) hello(to paxos.NodeID) wire.Hello {
	return wire.Hello{Kind: wire.HelloPeer, Version: wire.ProtocolVersion, Cluster: t.cfg.Cluster, From: t.cfg.ID, To: to, ClientAddr: t.cfg.ClientAddr, PeerAddr: t.cfg.PeerAddr, Data: t.cfg.DataID}
}

func (t *TCP) isRemoved(id paxos.NodeID) bool {
	t.pmu.RLock()
	defer t.pmu.RUnlock()
	return t.removed[id]
}

func (t *TCP) isMember(id paxos.NodeID) bool {
	t.pmu.RLock()
	defer t.pmu.RUnlock()
	return t.members[id] || t.cfg.AdmitAny
}

// heardFrom notes what an accepted peer's Hello says: its client address,
// and where to reach it, if this member has no writer for it yet (it
// joined after this member's configuration was last read).
func (t *TCP) heardFrom(h wire.Hello) {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	p := t.peers[h.From]
	if p == nil && h.PeerAddr != "" {
		p = t.addPeer(h.From, h.PeerAddr)
	}
	if p != nil {
		p.setClientAddr(h.ClientAddr)
	}
}

// addPeer starts a writer for member id at addr; the caller holds pmu for
// writing. It returns nil once the transport is closed.
func (t *TCP) addPeer(id paxos.NodeID, addr string) *peer {
	if t.ctx.Err() != nil {
		return nil
	}
	p := &peer{t: t, id: id, addr: addr, wake: make(chan struct{}, 1)}
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
	return p
}

// Reconfigure follows the configurations h, the first of which governs
// now: members of any of them may connect, members the first removed may
// not, ever; a member new to this
// transport gets a writer, one removed loses its writer, and one that
// moved is dialed at its new address on the next connection.
func (t *TCP) Reconfigure(h paxos.History) {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	members := map[paxos.NodeID]bool{t.cfg.ID: true}
	for _, c := range h {
		for _, id := range c.Membership().Acceptors() {
			t.acceptors[id] = true // NB: never forgotten: its promises may still count
		}
		for _, p := range c.Peers {
			members[p.ID] = true
			if p.ID == t.cfg.ID || p.PeerAddr == "" {
				continue
			}
			addr := p.PeerAddr
			if pin, ok := t.cfg.Pinned[p.ID]; ok {
				addr = pin
			}
			if old := t.peers[p.ID]; old == nil {
				t.addPeer(p.ID, addr)
			} else {
				old.setAddr(addr)
			}
		}
	}
	// NB: a removal counts from the slot it governs, not from the one
	// that chose it: until then the configuration before it needs the
	// removed member. The first configuration governs now (a learner's
	// configurations begin with the one of the slot after its applied).
	for _, id := range h[0].Removed {
		t.removed[id] = true
		if p := t.peers[id]; p != nil {
			// NB: not at once. A removed leader hands over once its
			// removal governs and it heard that a remaining learner has
			// the slots before it; answers on the connection it has must
			// reach it until then. The writer ends when its connection
			// does, and is never dialed again.
			p.retire()
		}
	}
	t.members = members
}

// Close stops the listeners, the writers and every connection, and waits
// for their goroutines.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.cancel()
	for _, l := range t.listeners {
		l.Close()
	}
	for c := range t.inbound {
		c.Close()
	}
	t.mu.Unlock()
	t.pmu.RLock()
	for _, p := range t.peers {
		p.close()
	}
	t.pmu.RUnlock()
	t.wg.Wait()
	return nil
}

// peer is the outbound side of one member: a queue and the writer goroutine
// that owns the connection.
type peer struct {
	t    *TCP
	id   paxos.NodeID
	addr string
	wake chan struct{} // capacity 1: "the queue has something"

	mu         sync.Mutex
	queue      []outgoing
	clientAddr string
	conn       net.Conn // set while connected, so close can interrupt a write
	dropped    int      // messages dropped since the last report
	stopped    bool     // removed from the cluster: the writer ends
}

func (p *peer) enqueue(m outgoing) {
	p.mu.Lock()
	if len(p.queue) >= p.t.cfg.MaxQueue {
		p.dropped++
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, m)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// setAddr makes the next connection to the peer dial addr.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	p.addr = addr
	p.mu.Unlock()
}

func (p *peer) dialAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// retire lets the peer's writer end once it is not connected: the peer was
// removed.
func (p *peer) retire() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *peer) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *peer) setClientAddr(a string) {
	p.mu.Lock()
	p.clientAddr = a
	p.mu.Unlock()
}

func (p *peer) take() ([]outgoing, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, d := p.queue, p.dropped
	p.queue, p.dropped = nil, 0
	return q, d
}

func (p *peer) setConn(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil && p.t.ctx.Err() != nil {
		return false // closed meanwhile: close could not interrupt c
	}
	p.conn = c
	return true
}

func (p *peer) close() {
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// writer is the state of a peer's writer goroutine.
type writer struct {
	p       *peer
	log     *slog.Logger
	conn    net.Conn
	buf     []byte
	lastIO  time.Time
	backoff time.Duration
	// nextDial is when the next dial may start; downSince is when the
	// peer was last found down, and reported whether that was logged.
	nextDial  time.Time
	downSince time.Time
	reported  bool
}

// reportAfter is how long a peer stays down before it is reported: members
// of a cluster that start together miss each other for a moment, and that
// is no news.
const reportAfter = 3 * time.Second

// run is the writer goroutine: connect, then write whatever is queued, all
// of it in one write; reconnect with capped, jittered exponential back-off.
func (p *peer) run() {
	defer p.t.wg.Done()
	cfg := &p.t.cfg
	w := &writer{p: p, log: p.t.logger.With("peer", p.id), lastIO: time.Now(), backoff: cfg.MinBackoff}
	defer w.disconnect(nil)
	keepalive := time.NewTicker(cfg.IdleTimeout / 3)
	defer keepalive.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.t.ctx.Done():
			return
		case <-p.wake:
		case <-keepalive.C:
		case <-timer.C:
		}
		if w.conn == nil && p.isStopped() {
			return
		}
		if w.conn == nil && !time.Now().Before(w.nextDial) && !w.connect() {
			return
		}
		if w.conn == nil {
			// Drop what is queued: the cores retransmit what matters,
			// and old messages only slow a recovering peer down.
			p.take()
			timer.Reset(time.Until(w.nextDial))
			continue
		}
		w.flush()
	}
}

// connect dials the peer. It returns false when the transport closed.
func (w *writer) connect() bool {
	c, err := w.p.dial()
	if err != nil {
		w.failed(err)
		return true
	}
	if !w.p.setConn(c) {
		c.Close()
		return false
	}
	w.conn = c
	w.backoff = w.p.t.cfg.MinBackoff
	if w.reported {
		w.log.Info("peer reachable again", "addr", w.p.dialAddr())
	}
	w.downSince, w.reported = time.Time{}, false
	return true
}

// flush writes everything queued, or a keep-alive when the connection has
// been quiet, in one write.
func (w *writer) flush() {
	cfg := &w.p.t.cfg
	msgs, dropped := w.p.take()
	if dropped > 0 {
		w.log.Warn("peer queue full, messages dropped", "dropped", dropped)
	}
	w.buf = w.buf[:0]
	for i := range msgs {
		o := &msgs[i]
		start := len(w.buf)
		if o.shared != nil {
			w.buf = append(w.buf, o.shared.bytes(&o.m)...)
		} else {
			w.buf = wire.Append(w.buf, &o.m)
		}
		if size := len(w.buf) - start - wire.HeaderSize; size > cfg.MaxFrame {
			// The receiver would refuse it and drop the connection.
			w.log.Error("message exceeds frame limit, dropped", "type", o.m.Type, "bytes", size, "limit", cfg.MaxFrame)
			w.buf = w.buf[:start]
		}
	}
	if len(w.buf) == 0 && time.Since(w.lastIO) >= cfg.IdleTimeout/3 {
		w.buf = wire.AppendKeepAlive(w.buf)
	}
	if len(w.buf) == 0 {
		return
	}
	w.conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
	if _, err := w.conn.Write(w.buf); err != nil {
		w.disconnect(err)
		w.failed(err)
		return
	}
	w.lastIO = time.Now()
	if cap(w.buf) > 4*wire.ReadChunk {
		w.buf = nil // let a burst's buffer go
	}
}

// disconnect drops the connection, if any; err says why (nil: shutdown).
func (w *writer) disconnect(err error) {
	if w.conn == nil {
		return
	}
	w.conn.Close()
	w.p.setConn(nil)
	w.conn = nil
	if err != nil {
		w.log.Info("peer connection lost", "addr", w.p.dialAddr(), "err", err)
	}
}

// failed notes that the peer could not be reached and schedules the next
// dial: full jitter, anywhere in [backoff/2, backoff).
func (w *writer) failed(err error) {
	if w.downSince.IsZero() {
		w.downSince = time.Now()
	}
	if !w.reported && time.Since(w.downSince) >= reportAfter {
		w.log.Warn("peer unreachable", "addr", w.p.dialAddr(), "err", err, "since", w.downSince.Format(time.RFC3339))
		w.reported = true
	}
	wait := w.backoff/2 + time.Duration(rand.Int64N(int64(w.backoff/2)+1))
	w.nextDial = time.Now().Add(wait)
	w.backoff = min(2*w.backoff, w.p.t.cfg.MaxBackoff)
}

// dial connects to the peer and runs the handshake.
func (p *peer) dial() (net.Conn, error) {
	cfg := &p.t.cfg
	dl := net.Dialer{Timeout: cfg.DialTimeout}
	c, err := dl.DialContext(p.t.ctx, "tcp", p.dialAddr())
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		tc := tls.Client(c, cfg.TLS.PeerClient(p.id))
		c.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			if remoteAlert(err) {
				return nil, fmt.Errorf("%w: TLS with node %d: %w (it refused this member's certificate: is --peer-cert signed by the CA the other members trust, and not expired?)", wire.ErrHandshake, p.id, err)
			}
			return nil, fmt.Errorf("%w: TLS with node %d: %w", wire.ErrHandshake, p.id, err)
		}
		c = tc
	}
	h, err := p.handshake(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	p.setClientAddr(h.ClientAddr)
	c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}

func (p *peer) handshake(c net.Conn) (wire.Hello, error) {
	c.SetDeadline(time.Now().Add(p.t.cfg.HandshakeTimeout))
	h := p.t.hello(p.id)
	if _, err := c.Write(wire.Append(nil, &h)); err != nil {
		return h, fmt.Errorf("send handshake: %w", err)
	}
	body, err := wire.ReadFrame(c, wire.MaxHelloFrame, nil)
	if err != nil {
		return h, fmt.Errorf("read handshake answer (the peer may have refused us; see its log): %w", err)
	}
	if err := wire.NewDecoder().Decode(body, &h); err != nil {
		return h, fmt.Errorf("%w: %w", wire.ErrHandshake, err)
	}
	if err := p.t.checkHello(h, p.id); err != nil {
		return h, err
	}
	return h, p.t.checkData(h)
}
