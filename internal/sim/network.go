package sim

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/wire"
)

// envelope is a message between members in flight.
type envelope struct {
	m  paxos.Message
	at int64 // tick from which it may be delivered
}

// transport is a member's view of the simulated network. It belongs to one
// incarnation: a node that crashed sends nothing more.
type transport struct {
	s   *sim
	n   *simNode
	inc int
}

// wire carries m to its receiver as the TCP transport does: encoded into a
// frame, or into the frame of the message before it when wire.Same says
// the two encode alike (a broadcast shares one frame), and decoded again.
// A message that does not fit in a frame, or does not survive the trip,
// fails the run.
func (s *sim) wire(from paxos.NodeID, m, prev *paxos.Message) paxos.Message {
	if prev == nil || !wire.Same(prev, m) {
		s.frameBuf = wire.Append(s.frameBuf[:0], m)
	}
	frame := s.frameBuf
	if n := len(frame) - wire.HeaderSize; n > wire.DefaultMaxFrame {
		s.fail("node %d sent %v of %d bytes, above the frame limit %d", from, *m, n, wire.DefaultMaxFrame)
	}
	var got paxos.Message
	if err := s.wireDec.Decode(frame[wire.HeaderSize:], &got); err != nil {
		s.fail("node %d sent %v, which does not decode: %v", from, *m, err)
	}
	got.To = m.To // the connection names the receiver, as in the transport
	if !sameMessage(got, *m) {
		s.fail("node %d sent %+v, which arrived as %+v", from, *m, got)
	}
	return got
}

// sameMessage compares what was sent with what arrived, nil and empty byte
// strings alike (the wire does not tell them apart).
func sameMessage(a, b paxos.Message) bool {
	norm := func(m paxos.Message) paxos.Message {
		if len(m.Value) == 0 {
			m.Value = nil
		}
		m.Entries = slices.Clone(m.Entries)
		for i := range m.Entries {
			if len(m.Entries[i].Value) == 0 {
				m.Entries[i].Value = nil
			}
		}
		m.Cmds = slices.Clone(m.Cmds)
		for i := range m.Cmds {
			if len(m.Cmds[i].Data) == 0 {
				m.Cmds[i].Data = nil
			}
		}
		if len(m.Entries) == 0 {
			m.Entries = nil
		}
		if len(m.Cmds) == 0 {
			m.Cmds = nil
		}
		return m
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func (t transport) Send(msgs []paxos.Message) {
	s := t.s
	if !t.n.up || t.n.inc != t.inc {
		return // sent by an incarnation that crashed
	}
	for i := range msgs {
		m := msgs[i]
		if m.From != t.n.id {
			s.fail("node %d sent %v with the wrong sender", t.n.id, m)
		}
		s.ck.onSend(t.n, m)
		// Every message crosses the wire codec, as it does between
		// daemons, so a field the codec loses breaks the run.
		var prev *paxos.Message
		if i > 0 {
			prev = &msgs[i-1]
		}
		m = s.wire(t.n.id, &msgs[i], prev)
		if s.cut[[2]paxos.NodeID{m.From, m.To}] || (s.opts.Drop != nil && s.opts.Drop(m)) || (s.opts.DropAt != nil && s.opts.DropAt(s.now, m)) {
			s.tracef("cut %v", m)
			continue
		}
		if s.opts.Trace != nil {
			fmt.Fprintf(s.opts.Trace, "%6d t%-4d send %v\n", s.step, s.now, m)
		}
		s.net = append(s.net, envelope{m: m, at: s.now + 1})
	}
}

// deliverDue delivers, in random order, every message due by now; each may
// be dropped, delayed or duplicated instead.
func (s *sim) deliverDue() {
	var due []envelope
	kept := s.net[:0]
	for _, e := range s.net {
		if e.at <= s.now {
			due = append(due, e)
		} else {
			kept = append(kept, e)
		}
	}
	s.net = kept
	s.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, e := range due {
		if s.rng.Float64() < s.f.crash {
			if up := s.upNodes(); len(up) > 0 {
				s.crash(up[s.rng.IntN(len(up))], "fault")
			}
		}
		s.step++
		switch r := s.rng.Float64(); {
		case r < s.f.drop:
			s.tracef("drop %v", e.m)
			continue
		case r < s.f.drop+s.f.delay:
			e.at = s.now + 1 + int64(s.rng.IntN(8))
			s.net = append(s.net, e)
			continue
		}
		if s.rng.Float64() < s.f.dup {
			s.net = append(s.net, envelope{m: e.m, at: s.now + 1 + int64(s.rng.IntN(4))})
		}
		dst := s.nodes[e.m.To]
		if !dst.up || s.cut[[2]paxos.NodeID{e.m.From, e.m.To}] {
			s.tracef("lost %v", e.m)
			continue
		}
		if !dst.running(s.now) {
			e.at = dst.pausedUntil // waits in the paused process's socket
			s.net = append(s.net, e)
			continue
		}
		dst.heard[e.m.From] = true
		s.deliver(dst, e.m)
		if s.rng.Float64() < s.f.flush {
			s.flush(dst)
		}
		s.check()
	}
}

func (s *sim) deliver(n *simNode, m paxos.Message) {
	s.tracef("deliver %v", m)
	var before paxos.Ballot
	var nw int
	a := n.member.Acceptor()
	if a != nil {
		before, nw = a.Promised(), len(a.Ready().Writes)
	}
	if err := n.member.Node().Deliver(m); err != nil {
		// The simulator only sends what the cores produced, so a refusal
		// means a core produced bad output or saw broken state.
		s.fail("node %d refused %v: %v", n.id, m, err)
	}
	if a != nil {
		for _, w := range a.Ready().Writes[nw:] {
			if w.Type == paxos.RecAccept && w.Ballot.Less(before) {
				s.fail("invariant 3: acceptor %d accepted slot %d at %v, below its promise %v", n.id, w.Slot, w.Ballot, before)
			}
		}
	}
}

func (s *sim) maybePartition() {
	if len(s.cut) > 0 {
		if s.rng.Float64() < s.f.heal {
			s.cut = nil
			s.tracef("partition healed")
		}
		return
	}
	if s.rng.Float64() >= s.f.partition {
		return
	}
	s.stats.Partitions++
	s.cut = map[[2]paxos.NodeID]bool{}
	leader := s.leader()
	switch kind := s.rng.IntN(4); {
	case kind == 0 || (kind >= 2 && leader == 0):
		// Symmetric: split the nodes in two groups.
		side := map[paxos.NodeID]bool{}
		for _, id := range s.ids {
			side[id] = s.rng.IntN(2) == 0
		}
		for _, a := range s.ids {
			for _, b := range s.ids {
				if side[a] != side[b] {
					s.cut[[2]paxos.NodeID{a, b}] = true
				}
			}
		}
	case kind == 1:
		// One-way: some directed links drop everything.
		for range 1 + s.rng.IntN(len(s.ids)) {
			a, b := s.ids[s.rng.IntN(len(s.ids))], s.ids[s.rng.IntN(len(s.ids))]
			if a != b {
				s.cut[[2]paxos.NodeID{a, b}] = true
			}
		}
	case kind == 2:
		// Isolate the leader from everyone.
		for _, id := range s.ids {
			if id != leader {
				s.cut[[2]paxos.NodeID{leader, id}] = true
				s.cut[[2]paxos.NodeID{id, leader}] = true
			}
		}
	default:
		// The leader still reaches the acceptors, but its heartbeats and
		// decisions no longer reach the other proposers, which campaign
		// against it: duelling ballots.
		for _, id := range s.shape.Membership.Proposers() {
			if id != leader {
				s.cut[[2]paxos.NodeID{leader, id}] = true
			}
		}
	}
	s.tracef("partition %v", sortedLinks(s.cut))
}

func sortedLinks(cut map[[2]paxos.NodeID]bool) []string {
	var out []string
	for l := range cut {
		out = append(out, fmt.Sprintf("%d->%d", l[0], l[1]))
	}
	slices.Sort(out)
	return out
}
