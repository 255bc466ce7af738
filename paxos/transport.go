package paxos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// TransportConfig configures a TCPTransport.
type TransportConfig struct {
	ID NodeID
	// Cluster is the cluster ID; a peer with another one is refused.
	Cluster uint64
	// Members is the membership: only members may connect.
	Members Config
	// Peers maps every other member to the address to dial.
	Peers map[NodeID]string
	// ClientAddr is where this node serves clients; the handshake tells
	// peers, so that they can redirect clients to it.
	ClientAddr string
	// Deliver receives every valid inbound message, from the connection's
	// reader goroutine. It may block; the reader then stops reading, which
	// pushes back on the sender through TCP.
	Deliver func(Message)

	MaxFrame         int           // default DefaultMaxFrame
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

func (c *TransportConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
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

// ErrHandshake reports a connection refused during the handshake: another
// cluster, an unknown node, a wrong protocol version.
var ErrHandshake = errors.New("paxos: handshake refused")

// TCPTransport carries Messages between members over TCP. Each member dials
// one outbound connection to every peer and sends on it; it only reads from
// the connections its peers dialed. A peer is known by its handshake, never
// by its address.
//
// Send never blocks: each peer has a bounded queue drained by a writer
// goroutine, which writes everything queued with one system call, and drops
// messages while the peer is unreachable (Paxos tolerates loss; the cores
// retransmit). Methods are safe for concurrent use.
type TCPTransport struct {
	cfg    TransportConfig
	logger *slog.Logger
	peers  map[NodeID]*peer
	conns  chan struct{} // semaphore bounding inbound connections

	mu        sync.Mutex
	listeners []net.Listener
	inbound   map[net.Conn]struct{}
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewTCPTransport checks cfg and starts a writer for each peer. Call Serve
// with the peer listener to accept inbound connections, and Close to stop.
func NewTCPTransport(cfg TransportConfig) (*TCPTransport, error) {
	cfg.setDefaults()
	if cfg.ID == 0 || cfg.Deliver == nil {
		return nil, fmt.Errorf("paxos: transport needs a node ID and a Deliver function")
	}
	if !cfg.Members.Has(cfg.ID, 0) {
		return nil, fmt.Errorf("paxos: node %d is not a member of the cluster", cfg.ID)
	}
	t := &TCPTransport{
		cfg:     cfg,
		logger:  cfg.Logger.With("node", cfg.ID),
		peers:   map[NodeID]*peer{},
		conns:   make(chan struct{}, cfg.MaxConns),
		inbound: map[net.Conn]struct{}{},
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, m := range cfg.Members.Members() {
		if m.ID == cfg.ID {
			continue
		}
		addr, ok := cfg.Peers[m.ID]
		if !ok {
			return nil, fmt.Errorf("paxos: no address for member %d", m.ID)
		}
		p := &peer{t: t, id: m.ID, addr: addr, wake: make(chan struct{}, 1)}
		t.peers[m.ID] = p
	}
	for _, p := range t.peers {
		t.wg.Add(1)
		go p.run()
	}
	return t, nil
}

// Send queues msgs for their destinations and returns at once. A message for
// an unknown node or a full queue is dropped. Consecutive messages that
// differ only in their receiver (a broadcast) share one frame, encoded once
// by whichever writer needs it first.
func (t *TCPTransport) Send(msgs []Message) {
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && sameContent(msgs[i], msgs[j]) {
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
	m      Message
	shared *sharedFrame
}

// sharedFrame is a frame encoded once for several receivers. The receiver
// is not on the wire, so their frames are the same bytes.
type sharedFrame struct {
	once sync.Once
	b    []byte
}

func (f *sharedFrame) bytes(m Message) []byte {
	f.once.Do(func() { f.b = AppendFrame(nil, m) })
	return f.b
}

// sameContent reports whether a and b encode alike: equal but for the
// receiver, with the very same slices (as the cores' broadcasts have).
func sameContent(a, b Message) bool {
	return a.Type == b.Type && a.From == b.From && a.Ballot == b.Ballot && a.Slot == b.Slot && a.Commit == b.Commit &&
		sameSlice(a.Value, b.Value) && sameSlice(a.Entries, b.Entries) && sameSlice(a.Cmds, b.Cmds)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// ClientAddr returns the client address member id advertised in its last
// handshake, or "" if it has not been heard from.
func (t *TCPTransport) ClientAddr(id NodeID) string {
	if id == t.cfg.ID {
		return t.cfg.ClientAddr
	}
	p := t.peers[id]
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clientAddr
}

// Serve accepts peer connections on l until Close. It returns nil after
// Close, or the listener's error.
func (t *TCPTransport) Serve(l net.Listener) error {
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
				return fmt.Errorf("paxos: accept peer connections: %w", err)
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
			if err := t.serveConn(c); err != nil && t.ctx.Err() == nil {
				t.logger.Warn("peer connection closed", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (t *TCPTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.inbound[c] = struct{}{}
	return true
}

func (t *TCPTransport) untrack(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.inbound, c)
	t.mu.Unlock()
}

// serveConn runs the handshake on an inbound connection, then delivers its
// messages until it fails. Any bad input ends the connection; nothing from
// it reaches the node unless it passed every check.
func (t *TCPTransport) serveConn(c net.Conn) error {
	var buf []byte
	d := NewDecoder()
	c.SetReadDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	body, err := ReadFrame(c, maxHelloFrame, buf)
	if err != nil {
		return fmt.Errorf("read handshake: %w", err)
	}
	h, err := d.Hello(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if err := t.checkHello(h, 0); err != nil {
		return err
	}
	if h.To != t.cfg.ID {
		return fmt.Errorf("%w: node %d dialed node %d but reached node %d", ErrHandshake, h.From, h.To, t.cfg.ID)
	}
	if p := t.peers[h.From]; p != nil {
		p.setClientAddr(h.ClientAddr)
	}
	c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	if _, err := c.Write(EncodeHello(nil, t.hello(h.From))); err != nil {
		return fmt.Errorf("answer handshake: %w", err)
	}
	c.SetWriteDeadline(time.Time{})
	t.logger.Debug("peer connected", "peer", h.From, "remote", c.RemoteAddr().String())
	// Buffered from here on, so that one read system call brings in many
	// frames; the handshake was read unbuffered, so nothing is lost, and
	// a stranger never got a buffer.
	br := bufio.NewReaderSize(c, readBufferSize)
	for {
		c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		body, err := ReadFrame(br, t.cfg.MaxFrame, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read from node %d: %w", h.From, err)
		}
		buf = body[:0]
		if len(body) == 0 {
			continue // keep-alive
		}
		m, err := d.Message(body)
		if err != nil {
			return fmt.Errorf("from node %d: %w", h.From, err)
		}
		if m.From != h.From {
			return fmt.Errorf("%w: node %d sent %v", ErrBadFrame, h.From, m)
		}
		m.To = t.cfg.ID // the handshake named the receiver
		if m.Type.IsLocal() {
			return fmt.Errorf("%w: node %d sent a local-only %s", ErrBadFrame, h.From, m.Type)
		}
		if cap(buf) > frameChunk {
			buf = nil // do not keep a big frame's buffer for the next small one
		}
		t.cfg.Deliver(m)
	}
}

// checkHello validates a peer's hello; want is the node expected, or 0.
func (t *TCPTransport) checkHello(h Hello, want NodeID) error {
	switch {
	case h.Kind != HelloPeer:
		return fmt.Errorf("%w: not a peer connection (kind %d); clients use the client port", ErrHandshake, h.Kind)
	case h.Version != ProtocolVersion:
		return fmt.Errorf("%w: node %d speaks protocol version %d, this node %d", ErrHandshake, h.From, h.Version, ProtocolVersion)
	case h.Cluster != t.cfg.Cluster:
		return fmt.Errorf("%w: node %d belongs to cluster %016x, this node to cluster %016x", ErrHandshake, h.From, h.Cluster, t.cfg.Cluster)
	case h.From == t.cfg.ID || !t.cfg.Members.Has(h.From, 0):
		return fmt.Errorf("%w: node %d is not a member of this cluster", ErrHandshake, h.From)
	case want != 0 && h.From != want:
		return fmt.Errorf("%w: expected node %d at this address, found node %d", ErrHandshake, want, h.From)
	}
	return nil
}

func (t *TCPTransport) hello(to NodeID) Hello {
	return Hello{Kind: HelloPeer, Version: ProtocolVersion, Cluster: t.cfg.Cluster, From: t.cfg.ID, To: to, ClientAddr: t.cfg.ClientAddr}
}

// Close stops the listeners, the writers and every connection, and waits
// for their goroutines.
func (t *TCPTransport) Close() error {
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
	for _, p := range t.peers {
		p.close()
	}
	t.wg.Wait()
	return nil
}

// peer is the outbound side of one member: a queue and the writer goroutine
// that owns the connection.
type peer struct {
	t    *TCPTransport
	id   NodeID
	addr string
	wake chan struct{} // capacity 1: "the queue has something"

	mu         sync.Mutex
	queue      []outgoing
	clientAddr string
	conn       net.Conn // set while connected, so close can interrupt a write
	dropped    int      // messages dropped since the last report
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

func (p *peer) close() {
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// run is the writer goroutine: connect, then write whatever is queued, all
// of it in one write; reconnect with capped, jittered exponential back-off.
func (p *peer) run() {
	defer p.t.wg.Done()
	cfg := &p.t.cfg
	log := p.t.logger.With("peer", p.id)
	enc := newEncoder()
	keepalive := time.NewTicker(cfg.IdleTimeout / 3)
	defer keepalive.Stop()
	var conn net.Conn
	backoff := cfg.MinBackoff
	var nextDial time.Time
	lastIO := time.Now()
	// A peer that is down is reported once it stays down for
	// reportAfter: members of a cluster that start together miss each
	// other for a moment, and that is no news.
	const reportAfter = 3 * time.Second
	var downSince time.Time
	reported := false
	disconnect := func(err error) {
		if conn != nil {
			conn.Close()
			p.mu.Lock()
			p.conn = nil
			p.mu.Unlock()
			conn = nil
			log.Info("peer connection lost", "addr", p.addr, "err", err)
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if !reported && time.Since(downSince) >= reportAfter {
			log.Warn("peer unreachable", "addr", p.addr, "err", err, "since", downSince.Format(time.RFC3339))
			reported = true
		}
		// Full jitter: anywhere in [backoff/2, backoff).
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		nextDial = time.Now().Add(wait)
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
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
		if conn == nil && !time.Now().Before(nextDial) {
			c, err := p.dial()
			if err != nil {
				disconnect(err)
			} else {
				p.mu.Lock()
				if p.t.ctx.Err() != nil {
					p.mu.Unlock()
					c.Close()
					return
				}
				p.conn = c
				p.mu.Unlock()
				conn = c
				backoff = cfg.MinBackoff
				if reported {
					log.Info("peer reachable again", "addr", p.addr)
				}
				downSince, reported = time.Time{}, false
			}
		}
		if conn == nil {
			// Drop what is queued: the cores retransmit what matters,
			// and old messages only slow a recovering peer down.
			p.take()
			timer.Reset(time.Until(nextDial))
			continue
		}
		msgs, dropped := p.take()
		if dropped > 0 {
			log.Warn("peer queue full, messages dropped", "dropped", dropped)
		}
		enc.w.b = enc.w.b[:0]
		for _, o := range msgs {
			start := len(enc.w.b)
			if o.shared != nil {
				enc.w.b = append(enc.w.b, o.shared.bytes(o.m)...)
			} else if err := enc.frame(o.m); err != nil {
				panic(fmt.Sprintf("paxos: encode %v: %v", o.m, err))
			}
			if size := len(enc.w.b) - start - FrameHeaderSize; size > cfg.MaxFrame {
				// The receiver would refuse it and drop the connection.
				log.Error("message exceeds frame limit, dropped", "type", o.m.Type, "bytes", size, "limit", cfg.MaxFrame)
				enc.w.b = enc.w.b[:start]
			}
		}
		if len(enc.w.b) == 0 && time.Since(lastIO) >= cfg.IdleTimeout/3 {
			enc.w.b = append(enc.w.b, 0, 0, 0, 0) // keep-alive
		}
		if len(enc.w.b) == 0 {
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if _, err := conn.Write(enc.w.b); err != nil {
			disconnect(err)
			continue
		}
		lastIO = time.Now()
		if cap(enc.w.b) > 4*frameChunk {
			enc = newEncoder() // let a burst's buffer go
		}
	}
}

// dial connects to the peer and runs the handshake.
func (p *peer) dial() (net.Conn, error) {
	cfg := &p.t.cfg
	dl := net.Dialer{Timeout: cfg.DialTimeout}
	c, err := dl.DialContext(p.t.ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if _, err := c.Write(EncodeHello(nil, p.t.hello(p.id))); err != nil {
		c.Close()
		return nil, fmt.Errorf("send handshake: %w", err)
	}
	body, err := ReadFrame(c, maxHelloFrame, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read handshake answer (the peer may have refused us; see its log): %w", err)
	}
	h, err := NewDecoder().Hello(body)
	if err == nil {
		err = p.t.checkHello(h, p.id)
	}
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
