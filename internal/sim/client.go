package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/paxosd/paxosd/paxos"
	pc "github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/paxos/wire"
	"github.com/paxosd/paxosd/statemachine"
)

// Clients use the Go client's retry rules (client.Call: redirects,
// back-off, what a failure says about the outcome) and reach the members'
// own request handling (server.Member.Handle) over simulated connections
// that break when a member crashes or a reset fault hits them. Every
// request and response crosses the wire codec.

var simKeys = []string{"a", "b", "c", "d"}

var (
	errRefused = errors.New("connection refused: the member is down")
	errReset   = errors.New("connection reset")
	errExpired = errors.New("call deadline passed")
)

// client runs one KV operation at a time, each a client.Call.
type client struct {
	s   *sim
	idx int
	// session is the client's open session (0: none yet, or it expired:
	// the next write opens one first), ttl the idle timeout it asks for,
	// and expired set when a member refused a command of the session.
	session uint64
	seq     uint64
	ttl     time.Duration
	expired bool
	// idleUntil is the tick a client that stopped to think resumes at.
	idleUntil int64
	router    *pc.Router
	conns     map[paxos.NodeID]*conn
	op        *pendingOp
	opsLeft   int
	seen      map[string]string // last value seen per key, for compare-and-swap
	keys      []string
	// calm: the faults stopped, and a call waits for its answer however
	// long it takes (invariant 7 bounds that).
	calm bool
	// answered are commands this client had answered, for ghost replays.
	answered []clientapi.Request
	// watch makes the client a watcher (watch.go).
	watch *watcher
	// lease is the lease the client holds (0: none), which some of its
	// puts attach their keys to and which it keeps alive now and then.
	lease uint64
}

type pendingOp struct {
	open     bool  // opening a session, not a KV operation
	watch    bool  // a watch's long poll
	leaseOp  int   // grantLease or keepAlive, not a KV operation
	tick     int64 // the tick the operation began at
	handled  int64 // the tick a member handled the last attempt at
	in       KVInput
	call     *pc.Call
	started  int64 // step of the first attempt, for the history
	deadline int64 // tick the call gives up at
	first    bool  // no attempt sent yet
	attempt  *attempt
	retryAt  int64 // tick of the next attempt, when none is in flight
}

// attempt is a request in flight on a connection.
type attempt struct {
	conn *conn
	id   uint64
	// handled is the tick the member handled the request at.
	handled int64
}

// conn is a client connection to one incarnation of a member. It breaks
// when the member crashes or a reset fault hits it; then every request on
// it fails for the client as a broken TCP connection does: sent, fate
// unknown.
type conn struct {
	c      *client
	node   paxos.NodeID
	inc    int
	broken bool
	nextID uint64
	ghost  bool // a throwaway connection for a replayed request
}

// request is a client request in flight to a member; reply an answer in
// flight back.
type request struct {
	conn *conn
	req  clientapi.Request
	at   int64
}

type reply struct {
	conn *conn
	resp clientapi.Response
	at   int64
}

func newClient(s *sim, i int) *client {
	var eps []string
	for _, id := range s.shape.Membership.Proposers() {
		eps = append(eps, clientAddr(id))
	}
	r, err := pc.NewRouter(eps)
	if err != nil {
		s.fail("client %d: %v", i, err)
	}
	return &client{
		s: s, idx: i, ttl: []time.Duration{0, time.Second, 2 * time.Second}[s.rng.IntN(3)], opsLeft: math.MaxInt, router: r,
		conns: map[paxos.NodeID]*conn{}, seen: map[string]string{},
		keys: simKeys[:1+s.rng.IntN(len(simKeys))],
	}
}

func (c *client) act() {
	s := c.s
	if c.op == nil && c.watch != nil {
		c.startWatch()
	}
	if c.op == nil {
		if c.opsLeft == 0 || s.now < c.idleUntil || s.rng.IntN(2) == 0 {
			return
		}
		c.opsLeft--
		c.start()
	}
	op := c.op
	if !c.calm && s.now >= op.deadline {
		if op.attempt != nil {
			// As in Client.do: the attempt in flight ends with the
			// deadline, sent, its fate unknown; then the call gives up.
			op.call.Handle(clientapi.Response{}, true, errExpired)
		}
		c.finish(nil, op.call.Expire(errExpired))
		return
	}
	if op.attempt != nil {
		if op.attempt.conn.broken {
			c.result(clientapi.Response{}, true, errReset)
		}
		return
	}
	if s.now >= op.retryAt {
		c.submit()
	}
}

// Lease operations of a client.
const (
	grantLease = 1 + iota
	keepAlive
)

// startLease begins a lease operation: a grant of a lease of one or two
// seconds through the client's session, or a keep-alive of the one it
// holds. It reports false when the client must open a session first.
func (c *client) startLease() bool {
	s := c.s
	if c.lease != 0 {
		req := clientapi.Request{Kind: clientapi.ReqKeepAlive, Data: binary.AppendUvarint(nil, c.lease)}
		c.op = &pendingOp{leaseOp: keepAlive, call: pc.NewCall(c.router, req), started: s.step, deadline: s.now + s.callTimeout, first: true}
		s.tracef("client %d keeps lease %d alive", c.idx, c.lease)
		return true
	}
	if c.session == 0 {
		return false
	}
	c.seq++
	req := clientapi.Request{Kind: clientapi.ReqCommand, Session: c.session, Seq: c.seq,
		Data: statemachine.KVRequest{Op: statemachine.KVLeaseGrant, TTL: uint64(1 + s.rng.IntN(2))}.Encode()}
	s.ck.submitted[cmdID{req.Session, req.Seq}] = string(req.Data)
	s.ck.grants++
	c.op = &pendingOp{leaseOp: grantLease, call: pc.NewCall(c.router, req), started: s.step, tick: s.now, deadline: s.now + s.callTimeout, first: true}
	s.tracef("client %d asks for a lease", c.idx)
	return true
}

// finishLease takes the answer to a grant or a keep-alive.
func (c *client) finishLease(op *pendingOp, data []byte, err error) {
	s := c.s
	if err != nil {
		s.tracef("client %d: lease operation failed: %v", c.idx, err)
		if op.leaseOp == grantLease && errors.Is(err, pc.ErrNotApplied) && !errors.Is(err, pc.ErrUnknownOutcome) {
			req := op.call.Request()
			s.ck.notApplied = append(s.ck.notApplied, cmdID{req.Session, req.Seq})
		}
		return
	}
	if op.leaseOp == keepAlive {
		if len(data) == 0 {
			s.tracef("client %d: lease %d is gone", c.idx, c.lease)
			c.lease = 0
			return
		}
		ms, _ := binary.Uvarint(data)
		s.ck.leaseLives(c.lease, op.handled, time.Duration(ms)*time.Millisecond)
		s.stats.KeepAlives++
		if s.rng.IntN(3) == 0 {
			// The client walks away: the lease expires a TTL after
			// this keep-alive, which invariant 12 holds the leader to.
			s.tracef("client %d leaves lease %d to expire", c.idx, c.lease)
			c.lease = 0
		}
		return
	}
	r, derr := statemachine.DecodeKVResponse(data)
	if derr != nil || r.Status != statemachine.KVOK || r.Lease == 0 {
		s.fail("client %d: a lease grant answered %+v, %v", c.idx, r, derr)
	}
	c.lease = r.Lease
	// NB: an earlier attempt may be the one applied, and the answer a
	// retry's: the leader counts from no earlier than the first.
	s.ck.leaseLives(c.lease, op.tick, time.Duration(r.TTL)*time.Second)
	s.stats.LeasesGranted++
	s.tracef("client %d holds lease %d", c.idx, c.lease)
}

// start begins the next operation: a write through the client's session,
// or a linearizable read through the log.
func (c *client) start() {
	s := c.s
	if s.rng.IntN(10) == 0 && c.startLease() {
		return
	}
	key := c.keys[s.rng.IntN(len(c.keys))]
	in := KVInput{Key: key}
	switch r := s.rng.IntN(10); {
	case r < 4:
		in.Op = statemachine.KVPut
	case r < 6:
		in.Op = statemachine.KVGet
		in.Ranged = s.rng.IntN(3) == 0
	case r < 7:
		in.Op = statemachine.KVDelete
		in.Ranged = s.rng.IntN(3) == 0
	default:
		in.Op = statemachine.KVCompareAndSwap
		if old, ok := c.seen[key]; ok && r < 9 {
			in.Old = old
		} else {
			in.ExpectAbsent = true
		}
		in.Txn = s.rng.IntN(2) == 0
	}
	req := clientapi.Request{Kind: clientapi.ReqRead}
	if in.Op != statemachine.KVGet && c.session == 0 {
		// A write needs a session: open one first (the operation is
		// not counted; the next one may be the write).
		c.opsLeft++
		req = clientapi.Request{Kind: clientapi.ReqSession}
		if c.ttl > 0 {
			req.Data = statemachine.EncodeSessionTTL(c.ttl)
		}
		s.ck.opens[string(req.Data)] = true
		c.op = &pendingOp{open: true, call: pc.NewCall(c.router, req), started: s.step, deadline: s.now + s.callTimeout, first: true}
		s.tracef("client %d opens a session (timeout %v)", c.idx, c.ttl)
		return
	}
	if in.Op != statemachine.KVGet {
		c.seq++
		in.Value = fmt.Sprintf("c%d.%d", c.idx, c.seq)
		req = clientapi.Request{Kind: clientapi.ReqCommand, Session: c.session, Seq: c.seq}
	}
	kr := statemachine.KVRequest{Op: in.Op, Key: []byte(in.Key), Old: []byte(in.Old), ExpectAbsent: in.ExpectAbsent}
	if in.Op == statemachine.KVPut || in.Op == statemachine.KVCompareAndSwap {
		kr.Value = []byte(in.Value)
	} else {
		in.Value = ""
	}
	if in.Op == statemachine.KVPut && c.lease != 0 && s.rng.IntN(2) == 0 {
		kr.Lease, in.Lease = c.lease, true
	}
	if in.Ranged {
		kr = statemachine.KVRequest{Op: statemachine.KVRange, Key: kr.Key}
		if in.Op == statemachine.KVDelete {
			kr.Op = statemachine.KVDeleteRange
		}
	}
	if in.Txn {
		cond := statemachine.KVCompare{Key: kr.Key, Target: statemachine.CmpValue, Result: statemachine.CmpEqual, Value: kr.Old}
		if in.ExpectAbsent {
			cond = statemachine.KVCompare{Key: kr.Key, Target: statemachine.CmpExists, Result: statemachine.CmpEqual}
		}
		kr = statemachine.KVRequest{Op: statemachine.KVTxn, If: []statemachine.KVCompare{cond},
			Then: []statemachine.KVRequest{{Op: statemachine.KVPut, Key: kr.Key, Value: kr.Value}},
			Else: []statemachine.KVRequest{{Op: statemachine.KVGet, Key: kr.Key}}}
	}
	req.Data = kr.Encode()
	if req.Kind == clientapi.ReqCommand {
		s.ck.submitted[cmdID{req.Session, req.Seq}] = string(req.Data)
	} else {
		s.ck.reads[string(req.Data)] = true
	}
	c.op = &pendingOp{in: in, call: pc.NewCall(c.router, req), started: s.step, deadline: s.now + s.callTimeout, first: true}
	s.tracef("client %d starts %s", c.idx, in.Describe(KVOutput{Unknown: true}))
}

// submit sends the call's next attempt to the member its Call names.
func (c *client) submit() {
	s := c.s
	op := c.op
	ep := op.call.Endpoint()
	id := nodeAt(ep)
	n := s.nodes[id]
	if n == nil {
		s.fail("client %d: the call picked %q, which is no member's address", c.idx, ep)
	}
	if !op.first {
		s.stats.Retries++
	}
	op.first = false
	if !n.up {
		c.result(clientapi.Response{}, false, errRefused) // the dial fails: not sent
		return
	}
	cn := c.conns[id]
	if cn == nil || cn.broken || cn.inc != n.inc {
		cn = &conn{c: c, node: id, inc: n.inc}
		c.conns[id] = cn
	}
	cn.nextID++
	req := op.call.Request()
	req.ID = cn.nextID
	op.attempt = &attempt{conn: cn, id: req.ID}
	s.tracef("client %d sends %s seq %d to node %d", c.idx, req.Kind, req.Seq, id)
	s.sendRequest(cn, req)
}

// result hands the outcome of the attempt in flight to the Call.
func (c *client) result(resp clientapi.Response, sent bool, err error) {
	s := c.s
	op := c.op
	if op.attempt != nil {
		op.handled = op.attempt.handled
	}
	op.attempt = nil
	if err != nil {
		s.tracef("client %d: attempt failed (sent %v): %v", c.idx, sent, err)
	} else if resp.Code != clientapi.CodeOK {
		s.tracef("client %d: attempt answered %s: %s", c.idx, resp.Code, resp.Message)
	}
	if err == nil {
		switch resp.Code {
		case clientapi.CodeNotLeader:
			s.stats.Redirects++
		case clientapi.CodeTimeout:
			s.stats.Timeouts++
		case clientapi.CodeBadRequest, clientapi.CodeStale:
			s.fail("client %d: a member answered %s for its current %s: %s", c.idx, resp.Code, op.in.Op, resp.Message)
		case clientapi.CodeSessionExpired:
			s.stats.ExpiredRefused++
			c.expired = true
			req := op.call.Request()
			s.ck.expiredOnce[cmdID{req.Session, req.Seq}] = true
		}
	}
	data, done, wait, final := op.call.Handle(resp, sent, err)
	if done {
		c.finish(data, final)
		return
	}
	op.retryAt = s.now + ticks(wait)
}

// ticks rounds d up to whole ticks.
func ticks(d time.Duration) int64 { return int64((d + tickLength - 1) / tickLength) }

// singleOfRange turns the answer to a range or delete-range of one key into
// the answer a get or delete of it gives.
func singleOfRange(r statemachine.KVResponse, op statemachine.KVOp) statemachine.KVResponse {
	if op == statemachine.KVDelete {
		switch r.Count {
		case 0:
			return statemachine.KVResponse{Status: statemachine.KVNotFound}
		case 1:
			return statemachine.KVResponse{Status: statemachine.KVOK, Rev: r.Rev}
		}
	} else {
		switch len(r.Pairs) {
		case 0:
			if r.Count == 0 && !r.More {
				return statemachine.KVResponse{Status: statemachine.KVNotFound}
			}
		case 1:
			p := r.Pairs[0]
			if r.Count == 1 && !r.More {
				return statemachine.KVResponse{Status: statemachine.KVOK, Value: p.Value, Rev: p.Rev, CreateRev: p.CreateRev, Version: p.Version}
			}
		}
	}
	return statemachine.KVResponse{Status: statemachine.KVBadRequest, Err: fmt.Sprintf("a range of one key answered %d pairs, count %d, more %v", len(r.Pairs), r.Count, r.More)}
}

// casOfTxn turns the answer to a transaction that did a compare-and-swap
// into the answer a compare-and-swap gives.
func casOfTxn(r statemachine.KVResponse) statemachine.KVResponse {
	if len(r.Responses) != 1 {
		return statemachine.KVResponse{Status: statemachine.KVBadRequest, Err: fmt.Sprintf("a transaction answered %d operations, want 1", len(r.Responses))}
	}
	or := r.Responses[0]
	if r.Succeeded {
		return or
	}
	if or.Status == statemachine.KVNotFound {
		return statemachine.KVResponse{Status: statemachine.KVCompareFailed}
	}
	or.Status = statemachine.KVCompareFailed
	return or
}

// finishOpen takes the answer to a session's opening: the session's ID. A
// failed opening is tried again by the next write; one whose outcome is
// unknown may have opened a session nobody uses, which expires.
func (c *client) finishOpen(data []byte, err error) {
	s := c.s
	if err != nil {
		s.tracef("client %d: opening a session failed: %v", c.idx, err)
		return
	}
	id, n := binary.Uvarint(data)
	if n <= 0 || n != len(data) || id == 0 {
		s.fail("client %d: a session's opening answered %x, not a session ID", c.idx, data)
	}
	c.session, c.seq = id, 0
	s.tracef("client %d opened session %d", c.idx, id)
}

// finish ends the operation with its answer, or with the error the Call
// gave up with.
func (c *client) finish(data []byte, err error) {
	s := c.s
	op := c.op
	c.op = nil
	if op.watch {
		c.finishWatch(data, err)
		return
	}
	if op.leaseOp != 0 {
		c.finishLease(op, data, err)
		return
	}
	req := op.call.Request()
	if s.rng.IntN(20) == 0 {
		// The client stops to think, long enough at times for a short
		// session timeout to pass.
		c.idleUntil = s.now + int64(50+s.rng.IntN(250))
	}
	if c.expired {
		c.session, c.seq, c.expired = 0, 0, false
	}
	if op.open {
		c.finishOpen(data, err)
		return
	}
	if err != nil {
		unknown := errors.Is(err, pc.ErrUnknownOutcome)
		switch {
		case unknown:
			s.stats.Unknown++
		case errors.Is(err, pc.ErrNotApplied):
			s.stats.NotApplied++
			if req.Kind == clientapi.ReqCommand {
				s.ck.notApplied = append(s.ck.notApplied, cmdID{req.Session, req.Seq})
			}
		default:
			s.fail("client %d: a call ended with %v, which is neither not applied nor unknown", c.idx, err)
		}
		s.tracef("client %d gives up %s: %v", c.idx, op.in.Describe(KVOutput{Unknown: true}), err)
		delete(c.seen, op.in.Key)
		if unknown && req.Kind == clientapi.ReqCommand {
			// It may take effect at any time from now on.
			s.history = append(s.history, Op{Client: c.idx, Input: op.in, Output: KVOutput{Unknown: true}, Call: op.started, Return: math.MaxInt64})
		}
		return
	}
	resp, derr := statemachine.DecodeKVResponse(data)
	if derr != nil {
		s.fail("client %d: answer to %s: %v", c.idx, op.in.Op, derr)
	}
	switch {
	case op.in.Txn:
		resp = casOfTxn(resp)
	case op.in.Ranged:
		resp = singleOfRange(resp, op.in.Op)
	}
	if resp.Status == statemachine.KVBadRequest && op.in.Lease {
		// The lease expired first: the put was refused, and changed
		// nothing.
		s.tracef("client %d: %s refused: %s", c.idx, op.in.Describe(KVOutput{}), resp.Err)
		c.lease = 0
		return
	}
	if resp.Status == statemachine.KVBadRequest {
		s.fail("client %d: the KV machine says bad request: %s", c.idx, resp.Err)
	}
	out := KVOutput{Status: resp.Status, Value: string(resp.Value), Rev: resp.Rev, CreateRev: resp.CreateRev, Version: resp.Version}
	switch k := op.in.Key; {
	case op.in.Op == statemachine.KVPut || (op.in.Op == statemachine.KVCompareAndSwap && resp.Status == statemachine.KVOK):
		c.seen[k] = op.in.Value
	case resp.Status == statemachine.KVOK && op.in.Op == statemachine.KVGet,
		resp.Status == statemachine.KVCompareFailed && resp.Rev != 0:
		c.seen[k] = out.Value
	default:
		delete(c.seen, k)
	}
	if req.Kind == clientapi.ReqCommand {
		c.answered = append(c.answered, req)
	}
	s.history = append(s.history, Op{Client: c.idx, Input: op.in, Output: out, Call: op.started, Return: s.step})
	s.stats.Ops++
	s.tracef("client %d done: %s", c.idx, op.in.Describe(out))
}

// Respond is server.Responder: a member's answer goes back over the
// connection, unless it broke.
func (cn *conn) Respond(resp clientapi.Response) {
	s := cn.c.s
	if cn.broken || cn.ghost {
		return
	}
	resp = wireTrip(s, resp)
	s.replies = append(s.replies, reply{conn: cn, resp: resp, at: s.now + 1 + int64(s.rng.IntN(2))})
}

func (s *sim) sendRequest(cn *conn, req clientapi.Request) {
	req = wireTrip(s, req)
	s.requests = append(s.requests, request{conn: cn, req: req, at: s.now + 1})
}

// deliverClientTraffic hands due requests to the members' request
// handling and due answers to the clients. A reset fault breaks a
// connection instead of delivering an answer.
func (s *sim) deliverClientTraffic() {
	for _, r := range takeDue(&s.requests, func(r request) bool { return r.at <= s.now }) {
		n := s.nodes[r.conn.node]
		if r.conn.broken || !n.up || n.inc != r.conn.inc {
			continue // the client hears of the break on its own
		}
		if !n.running(s.now) {
			r.at = n.pausedUntil
			s.requests = append(s.requests, r)
			continue
		}
		s.step++
		if op := r.conn.c.op; op != nil && op.attempt != nil && op.attempt.conn == r.conn && op.attempt.id == r.req.ID {
			op.attempt.handled = s.now
		}
		n.member.Handle(r.conn, r.req)
	}
	for _, r := range takeDue(&s.replies, func(r reply) bool { return r.at <= s.now }) {
		if r.conn.broken {
			continue
		}
		if s.rng.Float64() < s.f.reset {
			r.conn.broken = true
			s.tracef("client %d: connection to node %d reset", r.conn.c.idx, r.conn.node)
			continue
		}
		c := r.conn.c
		if op := c.op; op != nil && op.attempt != nil && op.attempt.conn == r.conn && op.attempt.id == r.resp.ID {
			c.result(r.resp, true, nil)
		}
	}
}

// takeDue removes the items that are due from *q and returns them, in
// order. Items added to *q while the caller handles them stay queued.
func takeDue[T any](q *[]T, due func(T) bool) []T {
	var now, later []T
	for _, x := range *q {
		if due(x) {
			now = append(now, x)
		} else {
			later = append(later, x)
		}
	}
	*q = later
	return now
}

// dropConns breaks every client connection to node id.
func (s *sim) dropConns(id paxos.NodeID) {
	for _, c := range s.clients {
		if cn := c.conns[id]; cn != nil {
			cn.broken = true
		}
	}
}

// replayGhost sends an old command again, after a newer one of the same
// session was answered: a retry that took a long way round. The session
// table must not apply it twice (invariant 5); its answer goes nowhere.
func (s *sim) replayGhost() {
	c := s.clients[s.rng.IntN(len(s.clients))]
	if len(c.answered) < 2 {
		return
	}
	req := c.answered[s.rng.IntN(len(c.answered)-1)] // never the newest
	up := s.upNodes()
	if len(up) == 0 {
		return
	}
	n := up[s.rng.IntN(len(up))]
	cn := &conn{c: c, node: n.id, inc: n.inc, ghost: true}
	s.stats.Ghosts++
	s.tracef("client %d: an old request, seq %d, reaches node %d again", c.idx, req.Seq, n.id)
	s.sendRequest(cn, req)
}

// wireTrip carries a client frame through the codec, as a connection does.
func wireTrip[T any](s *sim, v T) T {
	var got T
	if err := s.wireDec.Decode(wire.Append(nil, &v)[wire.HeaderSize:], &got); err != nil {
		s.fail("client frame %+v does not decode: %v", v, err)
	}
	return got
}
