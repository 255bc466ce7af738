package sim

import (
	"errors"
	"fmt"
	"math"

	"github.com/anishathalye/porcupine"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
)

const (
	// sessionBase is the session of client 0; client i has sessionBase+i.
	sessionBase = 1000
	// clientTimeout is how long a client waits for an answer before it
	// resubmits the same (session, seq) elsewhere.
	clientTimeout = 20
)

var simKeys = []string{"a", "b", "c", "d"}

// client submits one KV command at a time and retries it, with the same
// (session, seq), until it gets an answer.
type client struct {
	s       *sim
	idx     int
	session uint64
	seq     uint64
	op      *pendingOp
	opsLeft int
	hint    paxos.NodeID      // where the client believes the leader is
	seen    map[string]string // last value seen per key, for compare-and-swap
	keys    []string
}

type pendingOp struct {
	seq     uint64
	in      kvInput
	data    []byte
	call    int64        // step of the first submission
	at      paxos.NodeID // node the command is waiting on; 0 if none
	sentAt  int64
	retryAt int64
}

func newClient(s *sim, i int) *client {
	return &client{
		s: s, idx: i, session: uint64(sessionBase + i), opsLeft: math.MaxInt,
		seen: map[string]string{},
		keys: simKeys[:1+s.rng.IntN(len(simKeys))],
	}
}

func (c *client) act() {
	s := c.s
	if c.op == nil {
		if c.opsLeft == 0 || s.rng.IntN(2) == 0 {
			return
		}
		c.opsLeft--
		c.start()
	}
	op := c.op
	if op.at != 0 && s.now-op.sentAt >= clientTimeout {
		s.tracef("client %d seq %d timed out at node %d", c.idx, op.seq, op.at)
		s.stats.Retries++
		op.at, c.hint = 0, 0
	}
	if op.at == 0 && s.now >= op.retryAt {
		c.submit()
	}
}

func (c *client) start() {
	s := c.s
	c.seq++
	key := c.keys[s.rng.IntN(len(c.keys))]
	in := kvInput{key: key, value: fmt.Sprintf("c%d.%d", c.idx, c.seq)}
	switch r := s.rng.IntN(10); {
	case r < 4:
		in.op = statemachine.KVPut
	case r < 6:
		in.op = statemachine.KVGet
	case r < 7:
		in.op = statemachine.KVDelete
	default:
		in.op = statemachine.KVCompareAndSwap
		if old, ok := c.seen[key]; ok && r < 9 {
			in.old = old
		} else {
			in.expectAbsent = true
		}
	}
	req := statemachine.KVRequest{Op: in.op, Key: []byte(in.key), Old: []byte(in.old), ExpectAbsent: in.expectAbsent}
	if in.op == statemachine.KVPut || in.op == statemachine.KVCompareAndSwap {
		req.Value = []byte(in.value)
	} else {
		in.value = ""
	}
	data := req.Encode()
	s.ck.submitted[cmdID{c.session, c.seq}] = string(data)
	c.op = &pendingOp{seq: c.seq, in: in, data: data, call: s.step}
	s.tracef("client %d starts seq %d: %s", c.idx, c.seq, kvModel.DescribeOperation(in, kvOutput{unknown: true}))
}

// submit hands the command to the node the client believes leads, or to a
// random proposer.
func (c *client) submit() {
	s := c.s
	op := c.op
	target := c.hint
	if props := s.shape.Config.Proposers(); target == 0 || s.rng.IntN(5) == 0 {
		target = props[s.rng.IntN(len(props))]
	}
	n := s.nodes[target]
	if !n.up {
		op.retryAt = s.now + 2
		return
	}
	s.step++
	err := n.n.Propose([]paxos.Command{{Session: c.session, Seq: op.seq, Data: op.data}})
	var nl *paxos.NotLeaderError
	switch {
	case err == nil:
		op.at, op.sentAt, c.hint = target, s.now, target
		s.tracef("client %d seq %d proposed at node %d", c.idx, op.seq, target)
	case errors.As(err, &nl):
		c.hint = nl.Leader
		op.retryAt = s.now + 1
	case errors.Is(err, paxos.ErrOverloaded):
		op.retryAt = s.now + 3
	default:
		s.fail("client %d: propose at node %d: %v", c.idx, target, err)
	}
}

// reply receives a result applied by the learner on node from.
func (c *client) reply(from paxos.NodeID, r paxos.Result) {
	s := c.s
	op := c.op
	if op == nil || r.Seq != op.seq || op.at != from {
		return
	}
	if s.rng.Float64() < s.f.replyDrop {
		s.tracef("client %d seq %d: reply from %d lost", c.idx, op.seq, from)
		return
	}
	resp, err := statemachine.DecodeKVResponse(r.Data)
	if err != nil {
		s.fail("client %d seq %d: answer from node %d: %v", c.idx, op.seq, from, err)
	}
	if resp.Status == statemachine.KVBadRequest {
		s.fail("client %d seq %d: node %d says bad request: %s", c.idx, op.seq, from, resp.Err)
	}
	out := kvOutput{status: resp.Status, value: string(resp.Value)}
	switch k := op.in.key; {
	case op.in.op == statemachine.KVPut || (op.in.op == statemachine.KVCompareAndSwap && resp.Status == statemachine.KVOK):
		c.seen[k] = op.in.value
	case resp.Status == statemachine.KVOK && op.in.op == statemachine.KVGet,
		resp.Status == statemachine.KVCompareFailed && resp.Rev != 0:
		c.seen[k] = out.value
	default:
		delete(c.seen, k)
	}
	s.history = append(s.history, porcupine.Operation{ClientId: c.idx, Input: op.in, Call: op.call, Output: out, Return: s.step})
	s.stats.Ops++
	s.tracef("client %d seq %d done at node %d: %s", c.idx, op.seq, from, kvModel.DescribeOperation(op.in, out))
	c.op = nil
}
