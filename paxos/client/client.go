package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/statemachine"
)

// ErrNotApplied wraps errors after which the command was certainly not
// applied.
var ErrNotApplied = errors.New("client: not applied")

// ErrUnknownOutcome wraps errors after which the command may or may not have
// been applied: it was sent, and no answer came in time.
var ErrUnknownOutcome = errors.New("client: outcome unknown, it may have been applied")

// ErrSessionExpired wraps ErrNotApplied for a command refused because its
// session was not open, when no earlier attempt of it may have been
// applied. The client opens a new session and retries such a command once
// by itself.
var ErrSessionExpired = fmt.Errorf("%w: session expired", ErrNotApplied)

// ErrPermissionDenied reports a request the client's certificate does not
// allow on the member (its role there is too low); nothing was applied.
var ErrPermissionDenied = fmt.Errorf("%w: permission denied", ErrNotApplied)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("client: key not found")

// Config configures a Client.
type Config struct {
	// Endpoints are members' client addresses (host:port). Any member will
	// do: the client follows redirects to the leader.
	Endpoints []string
	// DialTimeout bounds connecting to one member. Default 2s.
	DialTimeout time.Duration
	// Timeout bounds a call whose context has no deadline. Default 10s.
	Timeout time.Duration
	// SessionTTL is how long the cluster keeps one of this client's
	// sessions while it is idle (0: the cluster's default,
	// statemachine.DefaultSessionTTL; clamped to MinSessionTTL and
	// MaxSessionTTL). The client opens a session per command in flight,
	// and reuses them.
	SessionTTL time.Duration
	// TLS, if set, connects over TLS with it: RootCAs are the CAs that
	// sign the members' client-port certificates, and Certificates the
	// client's own, for members that ask for one (their roles go by its
	// common name). Unless ServerName is set, each member's certificate
	// must name the host of the address dialed, as a browser checks.
	// Nil: plaintext.
	TLS *tls.Config
}

// Client talks to one cluster.
type Client struct {
	cfg    Config
	router *Router

	mu       sync.Mutex
	conns    map[string]*conn
	sessions []*session // idle sessions
	closed   bool
}

type session struct{ id, seq uint64 }

// New returns a client for the members at endpoints. It does not connect
// until the first call.
func New(endpoints ...string) (*Client, error) {
	return NewWithConfig(Config{Endpoints: endpoints})
}

// NewWithConfig returns a client configured by cfg.
func NewWithConfig(cfg Config) (*Client, error) {
	r, err := NewRouter(cfg.Endpoints)
	if err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Client{cfg: cfg, router: r, conns: map[string]*conn{}}, nil
}

// Close closes the client's connections. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = map[string]*conn{}
	c.mu.Unlock()
	for _, cn := range conns {
		cn.close(errors.New("client closed"))
	}
	return nil
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.kv(ctx, "put", statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: value})
	return err
}

// Get returns key's value, read linearizably: the leader answers once it
// confirmed that it still leads, so the value reflects every write that
// completed before Get was called. It returns ErrNotFound if the key does
// not exist.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	r, err := c.kv(ctx, "get", statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)})
	if err != nil {
		return nil, err
	}
	if r.Status == statemachine.KVNotFound {
		return nil, ErrNotFound
	}
	return nonNil(r.Value), nil
}

// KeyValue is a key as a read found it, with its revisions.
type KeyValue struct {
	Key, Value []byte
	// CreateRevision is the store revision of the write that created the
	// key (since its last delete), ModRevision that of its last write, and
	// Version how many writes it had since it was created.
	CreateRevision, ModRevision, Version uint64
	// Revision is the store's revision when the key was read: every write
	// to any key advances it by one.
	Revision uint64
}

// GetKeyValue is Get with the key's revisions and the store's.
func (c *Client) GetKeyValue(ctx context.Context, key string) (KeyValue, error) {
	r, err := c.kv(ctx, "get", statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)})
	if err != nil {
		return KeyValue{}, err
	}
	if r.Status == statemachine.KVNotFound {
		return KeyValue{Revision: r.Revision}, ErrNotFound
	}
	return keyValue([]byte(key), r), nil
}

// keyValue is the key an answer describes (a get's, or an operation's in a
// transaction).
func keyValue(key []byte, r statemachine.KVResponse) KeyValue {
	return KeyValue{Key: key, Value: nonNil(r.Value), CreateRevision: r.CreateRev, ModRevision: r.Rev, Version: r.Version, Revision: r.Revision}
}

// pairValue is one key of a range answer at the store revision rev.
func pairValue(p statemachine.KVPair, rev uint64) KeyValue {
	return KeyValue{Key: p.Key, Value: nonNil(p.Value), CreateRevision: p.CreateRev, ModRevision: p.Rev, Version: p.Version, Revision: rev}
}

// GetSerializable returns key's value from the state of the first member
// that answers, without going through the log or the leader. It is cheaper
// than Get but may be stale. The error wraps ErrNotFound if the key does not
// exist.
func (c *Client) GetSerializable(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	q := statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)}.Encode()
	var tried []string
	var last error
	for _, ep := range c.router.Endpoints() {
		tried = append(tried, ep)
		resp, _, err := c.roundTrip(ctx, ep, clientapi.Request{Kind: clientapi.ReqQuery, Data: q})
		if err == nil && resp.Code != clientapi.CodeOK {
			err = fmt.Errorf("node answered %s: %s", resp.Code, resp.Message)
		}
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r, err := statemachine.DecodeKVResponse(resp.Data)
		if err != nil {
			return nil, fmt.Errorf("client: get %q from %s: %w", key, ep, err)
		}
		if r.Status == statemachine.KVNotFound {
			return nil, ErrNotFound
		}
		return nonNil(r.Value), nil
	}
	return nil, fmt.Errorf("%w: get %q: no member answered (tried %s): %w", ErrNotApplied, key, strings.Join(tried, ", "), last)
}

// Delete removes key. It reports whether the key existed.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	r, err := c.kv(ctx, "delete", statemachine.KVRequest{Op: statemachine.KVDelete, Key: []byte(key)})
	if err != nil {
		return false, err
	}
	return r.Status == statemachine.KVOK, nil
}

// CompareAndSwap sets key to value if its current value is old, and reports
// whether it did. A missing key never matches. It is a transaction; use Txn
// to learn what the key held when it did not swap.
func (c *Client) CompareAndSwap(ctx context.Context, key string, old, value []byte) (bool, error) {
	r, err := c.Txn().If(CompareValue(key, Equal, old)).Then(OpPut(key, value)).Commit(ctx)
	return r.Succeeded, err
}

// PutIfAbsent sets key to value if the key does not exist, and reports
// whether it did.
func (c *Client) PutIfAbsent(ctx context.Context, key string, value []byte) (bool, error) {
	r, err := c.Txn().If(KeyMissing(key)).Then(OpPut(key, value)).Commit(ctx)
	return r.Succeeded, err
}

// Status asks the member at endpoint for its view of itself and the
// cluster.
func (c *Client) Status(ctx context.Context, endpoint string) (clientapi.Status, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	resp, _, err := c.roundTrip(ctx, endpoint, clientapi.Request{Kind: clientapi.ReqStatus})
	if err != nil {
		return clientapi.Status{}, fmt.Errorf("client: status of %s: %w", endpoint, err)
	}
	if resp.Code != clientapi.CodeOK || resp.Status == nil {
		return clientapi.Status{}, fmt.Errorf("client: status of %s: %s: %s", endpoint, resp.Code, resp.Message)
	}
	return *resp.Status, nil
}

// SaveSnapshot asks the member at endpoint to snapshot its learner's state
// now and streams the snapshot file to w, a chunk at a time. It returns the
// slot the snapshot covers and its size. The caller checks what w received
// (wal.ReadSnapshot) before trusting it. ctx bounds the whole transfer; the
// client's Timeout bounds each chunk.
func (c *Client) SaveSnapshot(ctx context.Context, endpoint string, w io.Writer) (paxos.Slot, uint64, error) {
	var slot paxos.Slot
	var off, size uint64
	for {
		cctx, cancel := c.withTimeout(ctx)
		if off == 0 {
			// Taking the snapshot may take a while on a large state.
			cancel()
			cctx, cancel = context.WithTimeout(ctx, max(c.cfg.Timeout, 2*time.Minute))
		}
		resp, _, err := c.roundTrip(cctx, endpoint, clientapi.Request{Kind: clientapi.ReqSnapshot, Slot: slot, Offset: off})
		cancel()
		if err != nil {
			return slot, off, fmt.Errorf("client: snapshot from %s at byte %d: %w", endpoint, off, err)
		}
		if resp.Code != clientapi.CodeOK {
			return slot, off, fmt.Errorf("client: snapshot from %s: %s: %s", endpoint, resp.Code, resp.Message)
		}
		if slot == 0 {
			slot, size = resp.Slot, resp.Size
		}
		if resp.Slot != slot || resp.Size != size || len(resp.Data) == 0 || off+uint64(len(resp.Data)) > size {
			return slot, off, fmt.Errorf("client: snapshot from %s: answer for slot %d (%d of %d bytes at %d) does not continue slot %d of %d bytes", endpoint, resp.Slot, len(resp.Data), resp.Size, off, slot, size)
		}
		if _, err := w.Write(resp.Data); err != nil {
			return slot, off, err
		}
		if off += uint64(len(resp.Data)); off == size {
			return slot, size, nil
		}
	}
}

// what names a KV command in errors: the operation, and its key if it has
// one.
func what(op string, req statemachine.KVRequest) string {
	switch {
	case req.Op == statemachine.KVTxn:
		return op
	case req.Op == statemachine.KVCompact:
		return fmt.Sprintf("%s %d", op, req.Rev)
	case req.Rev != 0:
		return fmt.Sprintf("%s %q at revision %d", op, req.Key, req.Rev)
	}
	return fmt.Sprintf("%s %q", op, req.Key)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// kv runs one KV command through the log and decodes the machine's answer.
func (c *Client) kv(ctx context.Context, op string, req statemachine.KVRequest) (statemachine.KVResponse, error) {
	kind := clientapi.ReqCommand
	switch req.Op {
	case statemachine.KVGet, statemachine.KVRange, statemachine.KVLeaseList:
		kind = clientapi.ReqRead
	}
	keyless := req.Op != statemachine.KVGet && req.Op != statemachine.KVPut && req.Op != statemachine.KVDelete && req.Op != statemachine.KVCompareAndSwap
	switch {
	case len(req.Key) == 0 && !keyless:
		return statemachine.KVResponse{}, fmt.Errorf("%w: %s: the key is empty; keys need at least one byte", ErrNotApplied, op)
	case len(req.Key) > statemachine.MaxKeySize || len(req.End) > statemachine.MaxKeySize:
		return statemachine.KVResponse{}, fmt.Errorf("%w: %s: the key is %d bytes, above the %d-byte limit", ErrNotApplied, op, len(req.Key), statemachine.MaxKeySize)
	case len(req.Value) > statemachine.MaxValueSize:
		return statemachine.KVResponse{}, fmt.Errorf("%w: %s %q: the value is %d bytes, above the %d-byte limit", ErrNotApplied, op, req.Key, len(req.Value), statemachine.MaxValueSize)
	case len(req.Old) > statemachine.MaxValueSize:
		return statemachine.KVResponse{}, fmt.Errorf("%w: %s %q: the old value is %d bytes, above the %d-byte limit", ErrNotApplied, op, req.Key, len(req.Old), statemachine.MaxValueSize)
	}
	data, err := c.do(ctx, kind, req.Encode())
	if err != nil {
		return statemachine.KVResponse{}, fmt.Errorf("%s: %w", what(op, req), err)
	}
	r, err := statemachine.DecodeKVResponse(data)
	if err != nil {
		return r, fmt.Errorf("%w: %s: undecodable answer: %w", ErrUnknownOutcome, what(op, req), err)
	}
	if r.Status == statemachine.KVCompacted {
		return r, fmt.Errorf("%w: %s: %s", ErrCompacted, what(op, req), r.Err)
	}
	if r.Status == statemachine.KVBadRequest {
		return r, fmt.Errorf("%w: %s: refused by the state machine: %s", ErrNotApplied, what(op, req), r.Err)
	}
	return r, nil
}

// Do proposes cmd, a command for the cluster's state machine, and returns
// the machine's answer once it is applied. It finds the leader, follows
// redirects and retries with the same session and sequence number until ctx
// ends (or the client's Timeout, if ctx has no deadline).
func (c *Client) Do(ctx context.Context, cmd []byte) ([]byte, error) {
	return c.do(ctx, clientapi.ReqCommand, cmd)
}

// Read is Do for a command that changes nothing, answered linearizably: by
// the leader from its state after it confirmed that it still leads, or,
// with a machine that answers no queries, through the log. The cluster keeps
// no record of it in the session table.
func (c *Client) Read(ctx context.Context, query []byte) ([]byte, error) {
	return c.do(ctx, clientapi.ReqRead, query)
}

func (c *Client) do(ctx context.Context, kind clientapi.RequestKind, cmd []byte) ([]byte, error) {
	req := clientapi.Request{Kind: kind, Data: cmd}
	if kind != clientapi.ReqCommand {
		resp, err := c.call(ctx, req)
		return resp.Data, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for try := 0; ; try++ {
		s, err := c.takeSession(ctx)
		if err != nil {
			return nil, err
		}
		s.seq++
		req.Session, req.Seq = s.id, s.seq
		resp, err := c.call(ctx, req)
		if errors.Is(err, ErrSessionExpired) && try == 0 {
			// Certainly not applied: once more, in a new session. The
			// idle sessions waited at least as long as this one, so they
			// are dropped too.
			c.mu.Lock()
			c.sessions = nil
			c.mu.Unlock()
			continue
		}
		if !errors.Is(err, ErrSessionExpired) {
			c.putSession(s)
		}
		return resp.Data, err
	}
}

// call sends req to the leader, following redirects and retrying as
// package client's rules say, and returns the answer that ended it.
func (c *Client) call(ctx context.Context, req clientapi.Request) (clientapi.Response, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	call := NewCall(c.router, req)
	for {
		resp, sent, err := c.roundTrip(ctx, call.Endpoint(), req)
		_, done, wait, err := call.Handle(resp, sent, err)
		if done {
			return call.Answer(), err
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return clientapi.Response{}, call.Expire(ctx.Err())
		case <-t.C:
		}
	}
}

// ChangeMembers asks the leader for a configuration change and waits until
// it governs. It returns the slot whose value made it. A change is not
// idempotent: retried after an unknown outcome, an add or a remove that
// took the first time is refused the second ("is a member already", "is
// not a member"); check with Status.
func (c *Client) ChangeMembers(ctx context.Context, ch clientapi.Change) (paxos.Slot, error) {
	resp, err := c.call(ctx, clientapi.Request{Kind: clientapi.ReqMembers, Change: &ch})
	if err != nil {
		return 0, fmt.Errorf("member %s %d: %w", ch.Op, ch.ID, err)
	}
	return resp.Slot, nil
}

// TransferLeader asks the leader to hand leadership to member id.
func (c *Client) TransferLeader(ctx context.Context, id paxos.NodeID) error {
	if _, err := c.call(ctx, clientapi.Request{Kind: clientapi.ReqTransfer, Change: &clientapi.Change{ID: id}}); err != nil {
		return fmt.Errorf("leader transfer to %d: %w", id, err)
	}
	return nil
}

// takeSession returns an idle session, or opens one.
func (c *Client) takeSession(ctx context.Context) (*session, error) {
	c.mu.Lock()
	if n := len(c.sessions); n > 0 {
		s := c.sessions[n-1]
		c.sessions = c.sessions[:n-1]
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	var ttl []byte
	if c.cfg.SessionTTL > 0 {
		ttl = statemachine.EncodeSessionTTL(c.cfg.SessionTTL)
	}
	resp, err := c.call(ctx, clientapi.Request{Kind: clientapi.ReqSession, Data: ttl})
	if err != nil {
		// NB: nothing of the command was sent yet.
		if errors.Is(err, ErrNotApplied) {
			return nil, fmt.Errorf("open a session: %w", err)
		}
		return nil, fmt.Errorf("%w: open a session: %w", ErrNotApplied, err)
	}
	id, n := binary.Uvarint(resp.Data)
	if n <= 0 || n != len(resp.Data) || id == 0 {
		return nil, fmt.Errorf("%w: open a session: the member answered %x, not a session ID", ErrNotApplied, resp.Data)
	}
	return &session{id: id}, nil
}

func (c *Client) putSession(s *session) {
	c.mu.Lock()
	c.sessions = append(c.sessions, s)
	c.mu.Unlock()
}

// roundTrip sends req to ep and waits for the answer. sent reports whether
// the request may have reached the member (it was written, or the write's
// fate is unknown).
func (c *Client) roundTrip(ctx context.Context, ep string, req clientapi.Request) (clientapi.Response, bool, error) {
	cn, err := c.conn(ctx, ep)
	if err != nil {
		return clientapi.Response{}, false, err
	}
	resp, sent, err := cn.roundTrip(ctx, req)
	if err != nil && ctx.Err() == nil {
		c.drop(ep, cn)
	}
	return resp, sent, err
}

func (c *Client) conn(ctx context.Context, ep string) (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("client is closed")
	}
	if cn := c.conns[ep]; cn != nil {
		c.mu.Unlock()
		return cn, nil
	}
	c.mu.Unlock()
	cn, err := dial(ctx, ep, c.cfg.DialTimeout, c.cfg.TLS)
	if err != nil {
		return nil, diagnose(ep, err, c.cfg.TLS, c.cfg.DialTimeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.conns[ep]; old != nil {
		cn.close(errors.New("duplicate connection"))
		return old, nil
	}
	if c.closed {
		cn.close(errors.New("client closed"))
		return nil, errors.New("client is closed")
	}
	c.conns[ep] = cn
	return cn, nil
}

func (c *Client) drop(ep string, cn *conn) {
	c.mu.Lock()
	if c.conns[ep] == cn {
		delete(c.conns, ep)
	}
	c.mu.Unlock()
	cn.close(errors.New("dropped after an error"))
}

// conn is one connection to a member, shared by concurrent calls: requests
// carry IDs and a reader goroutine hands each answer to its caller.
type conn struct {
	nc net.Conn

	wmu sync.Mutex // serializes writes
	buf []byte

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan clientapi.Response
	err     error // set once the connection failed
}

// maxResponseFrame bounds an answer from a member.
const maxResponseFrame = wire.DefaultMaxFrame

func dial(ctx context.Context, ep string, timeout time.Duration, tlsCfg *tls.Config) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc.SetDeadline(deadline)
	if tlsCfg != nil {
		if nc, err = secure(nc, ep, tlsCfg); err != nil {
			return nil, err
		}
	}
	if err := handshake(nc, ep); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	cn := &conn{nc: nc, pending: map[uint64]chan clientapi.Response{}}
	go cn.reader()
	return cn, nil
}

// secure runs the TLS handshake on nc, checking the member's certificate
// against the host of ep unless cfg names a server.
func secure(nc net.Conn, ep string, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(ep)
		if err != nil {
			host = ep
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(nc, cfg)
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", ep, err)
	}
	return tc, nil
}

// handshake sends the client's Hello and checks the member's answer.
func handshake(nc net.Conn, ep string) error {
	hello := wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion}
	if _, err := nc.Write(wire.Append(nil, &hello)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	body, err := wire.ReadFrame(nc, wire.MaxHelloFrame, nil)
	if isRemoteAlert(err) {
		return fmt.Errorf("handshake with %s: %w", ep, err) // diagnose says what to do
	}
	if errors.Is(err, wire.ErrTLS) {
		return fmt.Errorf("handshake: %s serves TLS; give the client the CA that signed its certificate (--cacert, or Config.TLS)", ep)
	}
	if err != nil {
		return fmt.Errorf("handshake (is %s a paxosd client port, of a member of this version? members of other versions close the connection too; a member that serves TLS does too: see --cacert): %w", ep, err)
	}
	var h wire.Hello
	if err := wire.NewDecoder().Decode(body, &h); err != nil {
		return fmt.Errorf("handshake with %s: %w", ep, err)
	}
	if h.Kind != wire.HelloClient || h.Version != wire.ProtocolVersion {
		return fmt.Errorf("%w: %s is a paxosd member of protocol version %d, this client speaks %d; use a paxosd client of the member's version", wire.ErrHandshake, ep, h.Version, wire.ProtocolVersion)
	}
	return nil
}

func (cn *conn) reader() {
	d := wire.NewDecoder()
	var buf []byte
	br := bufio.NewReaderSize(cn.nc, 32<<10)
	for {
		body, err := wire.ReadFrame(br, maxResponseFrame, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("member closed the connection")
			}
			cn.close(err)
			return
		}
		var resp clientapi.Response
		if err := d.Decode(body, &resp); err != nil {
			cn.close(err)
			return
		}
		if cap(body) <= wire.ReadChunk {
			buf = body[:0] // the response does not share it
		}
		cn.mu.Lock()
		ch := cn.pending[resp.ID]
		delete(cn.pending, resp.ID)
		cn.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

func (cn *conn) close(err error) {
	cn.mu.Lock()
	if cn.err == nil {
		cn.err = err
	}
	pending := cn.pending
	cn.pending = map[uint64]chan clientapi.Response{}
	cn.mu.Unlock()
	cn.nc.Close()
	for _, ch := range pending {
		close(ch)
	}
}

func (cn *conn) roundTrip(ctx context.Context, req clientapi.Request) (clientapi.Response, bool, error) {
	ch := make(chan clientapi.Response, 1)
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return clientapi.Response{}, false, err
	}
	cn.nextID++
	req.ID = cn.nextID
	cn.pending[req.ID] = ch
	cn.mu.Unlock()

	forget := func() {
		cn.mu.Lock()
		delete(cn.pending, req.ID)
		cn.mu.Unlock()
	}
	cn.wmu.Lock()
	if err := ctx.Err(); err != nil {
		cn.wmu.Unlock()
		forget()
		return clientapi.Response{}, false, err
	}
	cn.buf = wire.Append(cn.buf[:0], &req)
	if d, ok := ctx.Deadline(); ok {
		cn.nc.SetWriteDeadline(d)
	}
	n, err := cn.nc.Write(cn.buf)
	whole := n == len(cn.buf)
	cn.wmu.Unlock()
	if err != nil {
		// A failed write left at most part of the frame with the
		// kernel (n < len), and a member acts only on whole frames:
		// the request was not sent. The stream is broken; drop it.
		cn.close(err)
		return clientapi.Response{}, whole, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			cn.mu.Lock()
			err := cn.err
			cn.mu.Unlock()
			return clientapi.Response{}, true, err
		}
		return resp, true, nil
	case <-ctx.Done():
		forget()
		return clientapi.Response{}, true, ctx.Err()
	}
}
