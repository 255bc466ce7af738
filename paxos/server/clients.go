package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
)

// Limits on client connections. A client that does not identify itself in
// time, sends nothing for idleTimeout, or stops reading its answers is cut
// off, so a stuck or hostile client holds bounded memory.
const (
	handshakeTimeout = 5 * time.Second
	idleTimeout      = 5 * time.Minute
	writeTimeout     = 10 * time.Second
	// maxInflight is how many requests one connection may have
	// outstanding; the reader stops reading beyond it.
	maxInflight = 1024
)

type clientListener struct {
	s     *Server
	l     net.Listener
	slots chan struct{} // semaphore bounding connections
	tls   *tls.Config   // nil: plaintext

	mu     sync.Mutex
	conns  map[*clientConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newClientListener(s *Server, l net.Listener) *clientListener {
	cl := &clientListener{s: s, l: l, slots: make(chan struct{}, s.cfg.MaxClientConns), conns: map[*clientConn]struct{}{}}
	if s.cfg.ClientTLS != nil {
		cl.tls = s.cfg.ClientTLS.ClientServer()
	}
	return cl
}

func (cl *clientListener) serve() {
	log := cl.s.logger
	var pause time.Duration
	for {
		nc, err := cl.l.Accept()
		if err != nil {
			cl.mu.Lock()
			closed := cl.closed
			cl.mu.Unlock()
			if closed {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				log.Error("client listener failed", "err", err)
				return
			}
			// Out of file descriptors and the like: wait and retry.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			log.Warn("accepting a client connection failed", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		select {
		case cl.slots <- struct{}{}:
		default:
			log.Warn("too many client connections, refusing one", "remote", nc.RemoteAddr().String(), "limit", cap(cl.slots))
			cl.s.metrics.Rejected("client", "limit")
			nc.Close()
			continue
		}
		c := &clientConn{s: cl.s, nc: nc, rw: nc, tls: cl.tls, started: map[uint64]arrival{}, out: make(chan clientapi.Response, maxInflight), inflight: make(chan struct{}, maxInflight), done: make(chan struct{})}
		cl.mu.Lock()
		if cl.closed {
			cl.mu.Unlock()
			nc.Close()
			return
		}
		cl.conns[c] = struct{}{}
		cl.wg.Add(1)
		cl.mu.Unlock()
		go func() {
			defer cl.wg.Done()
			defer func() { <-cl.slots }()
			c.run()
			cl.mu.Lock()
			delete(cl.conns, c)
			cl.mu.Unlock()
		}()
	}
}

// count returns how many client connections are open.
func (cl *clientListener) count() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.conns)
}

func (cl *clientListener) close() {
	cl.mu.Lock()
	cl.closed = true
	cl.l.Close()
	for c := range cl.conns {
		// shutdown, not just Close: it also frees a reader waiting for
		// an in-flight slot and the writer waiting for answers.
		c.shutdown()
	}
	cl.mu.Unlock()
	cl.wg.Wait()
}

// clientConn is one client connection: a reader that hands requests to the
// node, and a writer that sends the answers in whatever order they come.
type clientConn struct {
	s  *Server
	nc net.Conn // the TCP connection
	// rw is what the reader and writer use: nc, or TLS over it once the
	// TLS handshake is done (before the writer starts).
	rw  net.Conn
	tls *tls.Config
	// role is what the client may do, and who names it in refusals.
	role ClientRole
	who  string
	// started holds when each request in flight arrived, and its kind,
	// for the request latency metric.
	smu      sync.Mutex
	started  map[uint64]arrival
	out      chan clientapi.Response
	inflight chan struct{} // one token per request not yet answered
	done     chan struct{} // closed when the connection is finished

	closeOnce sync.Once
}

// arrival is when a request came in, and what kind it is.
type arrival struct {
	at   time.Time
	kind clientapi.RequestKind
}

// Respond queues an answer. It never blocks (it runs on the node's
// goroutine): a client whose answers pile up is not reading them, and is
// disconnected.
func (c *clientConn) Respond(r clientapi.Response) {
	c.smu.Lock()
	a, ok := c.started[r.ID]
	delete(c.started, r.ID)
	c.smu.Unlock()
	if ok {
		kind, code := "unknown", "unknown"
		if a.kind.Valid() {
			kind = a.kind.String() // NB: a client picks the kind; only known ones make labels
		}
		if r.Code.Valid() {
			code = r.Code.String()
		}
		c.s.metrics.requests.WithLabelValues(kind, code).Observe(time.Since(a.at).Seconds())
	}
	select {
	case <-c.done:
		return
	default:
	}
	select {
	case c.out <- r:
	default:
		c.s.logger.Warn("client not reading its answers, disconnecting", "remote", c.nc.RemoteAddr().String())
		c.shutdown()
	}
}

func (c *clientConn) shutdown() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *clientConn) run() {
	defer c.shutdown()
	log := c.s.logger.With("remote", c.nc.RemoteAddr().String())
	if err := c.secure(); err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("client connection closed before the TLS handshake", "err", err) // a health check
			return
		}
		log.Warn("client connection refused", "err", err)
		c.s.metrics.Rejected("client", "tls")
		return
	}
	if err := c.handshake(); err != nil {
		if errors.Is(err, io.EOF) {
			// A connection closed before it sent a byte: what a TCP
			// health check does. Not worth a warning each time.
			log.Debug("client connection closed before the handshake", "err", err)
			return
		}
		log.Warn("client connection refused", "err", err)
		reason := "handshake"
		if errors.Is(err, wire.ErrTLS) {
			reason = "tls"
		}
		c.s.metrics.Rejected("client", reason)
		return
	}
	go c.writer()
	d := wire.NewDecoder()
	var buf []byte
	// Buffered after the handshake (read unbuffered), so that pipelined
	// requests come in with few system calls.
	br := bufio.NewReaderSize(c.rw, 16<<10)
	for {
		c.rw.SetReadDeadline(time.Now().Add(idleTimeout))
		body, err := wire.ReadFrame(br, maxClientFrame, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Warn("client connection closed", "err", err)
			}
			return
		}
		buf = body[:0]
		if cap(buf) > wire.ReadChunk {
			buf = nil
		}
		if len(body) == 0 {
			continue // keep-alive
		}
		var req clientapi.Request
		if err := d.Decode(body, &req); err != nil {
			log.Warn("client connection closed", "err", err)
			c.s.metrics.Rejected("client", "frame")
			return
		}
		select {
		case c.inflight <- struct{}{}:
		case <-c.done:
			return
		}
		c.smu.Lock()
		c.started[req.ID] = arrival{at: time.Now(), kind: req.Kind}
		c.smu.Unlock()
		if need := needsOn(c.s.cfg.Machine, req.Kind); c.role < need {
			c.s.metrics.denied.Inc()
			c.Respond(denied(req, c.who, c.role, need))
			continue
		}
		if err := c.s.node.Do(context.Background(), func() { c.s.handle(c, req) }); err != nil {
			c.Respond(clientapi.Response{ID: req.ID, Code: clientapi.CodeUnavailable, Message: fmt.Sprintf("node %d is stopping: %v", c.s.cfg.ID, err)})
		}
	}
}

// secure runs the TLS handshake, if the port has TLS, and sets the
// client's role.
func (c *clientConn) secure() error {
	c.role, c.who = RoleAdmin, "every client"
	if c.tls == nil {
		return nil
	}
	tc := tls.Server(c.nc, c.tls)
	c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		if _, plain := errors.AsType[tls.RecordHeaderError](err); plain {
			return fmt.Errorf("%w: a client spoke plaintext to this TLS client port (paxosd clients need --cacert, Go clients a Config.TLS)", wire.ErrHandshake)
		}
		return fmt.Errorf("%w: TLS: %w (a client needs the CA of this member's --client-cert and, with --client-ca, a certificate from that CA that has not expired)", wire.ErrHandshake, err)
	}
	c.nc.SetDeadline(time.Time{})
	c.rw = tc
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		c.who = fmt.Sprintf("client certificate %q", certs[0].Subject.CommonName)
		c.role = RoleAdmin
		if c.s.cfg.ClientRoles != nil {
			c.role = c.s.cfg.ClientRoles.Of(certs[0])
		}
	}
	return nil
}

func (c *clientConn) handshake() error {
	c.rw.SetReadDeadline(time.Now().Add(handshakeTimeout))
	body, err := wire.ReadFrame(c.rw, wire.MaxHelloFrame, nil)
	if errors.Is(err, wire.ErrTLS) {
		return fmt.Errorf("%w: %w: give the member --client-cert and --client-key, or the client no --cacert", wire.ErrHandshake, err)
	}
	if err != nil {
		return fmt.Errorf("read handshake: %w", err)
	}
	var h wire.Hello
	if err := wire.NewDecoder().Decode(body, &h); err != nil {
		return err
	}
	answer := func() error {
		c.rw.SetWriteDeadline(time.Now().Add(writeTimeout))
		a := wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion, Cluster: c.s.cluster, From: c.s.cfg.ID, ClientAddr: c.s.cfg.ClientAddr}
		_, err := c.rw.Write(wire.Append(nil, &a))
		return err
	}
	switch {
	case h.Kind != wire.HelloClient:
		return fmt.Errorf("%w: kind %s on the client port (peers use the peer port)", wire.ErrHandshake, h.Kind)
	case h.Version != wire.ProtocolVersion:
		// Answer before closing, so that the client can tell its user
		// which version this member speaks.
		_ = answer() // NB: the refusal is the error worth reporting
		return fmt.Errorf("%w: client speaks protocol version %d, this node %d; use a paxosd client of the same version", wire.ErrHandshake, h.Version, wire.ProtocolVersion)
	case h.Cluster != 0 && h.Cluster != c.s.cluster:
		return fmt.Errorf("%w: client expects cluster %016x, this is cluster %016x", wire.ErrHandshake, h.Cluster, c.s.cluster)
	}
	return answer()
}

// writer sends answers, coalescing whatever is queued into one write.
func (c *clientConn) writer() {
	defer c.shutdown()
	var buf []byte
	for {
		var r clientapi.Response
		select {
		case r = <-c.out:
		case <-c.done:
			return
		}
		buf = wire.Append(buf[:0], &r)
		n := 1
	more:
		for len(buf) < 1<<20 {
			select {
			case r = <-c.out:
				buf = wire.Append(buf, &r)
				n++
			default:
				break more
			}
		}
		c.rw.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.rw.Write(buf); err != nil {
			return
		}
		for range n {
			<-c.inflight
		}
		if cap(buf) > 4<<20 {
			buf = nil
		}
	}
}
