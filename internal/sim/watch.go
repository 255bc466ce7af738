package sim

import (
	"bytes"
	"math"
	"time"

	"github.com/paxosd/paxosd/paxos"

	pc "github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/statemachine"
)

// Watchers follow the KV's changes with the Go client's watch cursor
// (client.WatchCursor), one long poll at a time, at whatever member its
// Call picks, across crashes, resets, pauses and new leaders. The check:
// from the place a watch starts, it reports exactly the changes the chosen
// log makes, in revision order, none twice, none missing (invariant 11);
// and once the faults stop it catches up with the log (invariant 7).

// watcher is a client that watches instead of reading and writing.
type watcher struct {
	cur    *pc.WatchCursor
	prefix string // "" with single false: every key
	single bool   // the key prefix alone, not its prefix
	// from is the revision from which every change must be reported (0
	// until the first answer of a watch from now); got counts the changes
	// reported and checked since.
	from uint64
	got  int
}

func (s *sim) newWatcher(c *client) {
	w := &watcher{}
	if s.rng.IntN(2) == 0 {
		w.prefix, w.single = simKeys[s.rng.IntN(len(simKeys))], true
	}
	o := pc.WatchOptions{Wait: time.Duration(max(1, s.callTimeout/4)) * tickLength}
	if !w.single {
		o.Prefix = true
	}
	s.ck.extendRef()
	if s.rng.IntN(2) == 0 {
		// From a past revision (or a little into the future).
		o.Rev = 1 + uint64(s.rng.IntN(int(s.ck.refKV.Rev())+3))
		w.from = o.Rev
	}
	w.cur = pc.NewWatchCursor(w.prefix, o)
	c.watch = w
	s.tracef("client %d watches %q (single %v) from revision %d", c.idx, w.prefix, w.single, o.Rev)
}

// startWatch sends the watch's next long poll.
func (c *client) startWatch() {
	s := c.s
	c.op = &pendingOp{watch: true, call: pc.NewCall(c.router, c.watch.cur.Request()), started: s.step, deadline: s.now + s.callTimeout, first: true}
}

// finishWatch takes the answer to a long poll, or its failure: then the
// next one asks again from the same place.
func (c *client) finishWatch(data []byte, err error) {
	s := c.s
	w := c.watch
	if err != nil {
		s.tracef("client %d: watch call failed: %v", c.idx, err)
		return
	}
	evs, err := w.cur.Take(data)
	if err != nil {
		s.fail("invariant 11: client %d's watch: %v", c.idx, err)
	}
	if w.from == 0 {
		w.from, _ = w.cur.Next()
	}
	s.ck.extendRef()
	want := s.ck.refEvents
	for _, e := range evs {
		i := s.ck.nextEvent(w, w.got)
		if i < 0 {
			s.fail("invariant 11: client %d's watch of %q reported %s %q at revision %d, beyond the changes the chosen log makes", c.idx, w.prefix, kind(e.Delete), e.Key, e.ModRevision)
		}
		r := want[i]
		if r.Delete != e.Delete || !bytes.Equal(r.Key, e.Key) || !bytes.Equal(r.Value, e.Value) || r.Rev != e.ModRevision || r.CreateRev != e.CreateRevision || r.Version != e.Version {
			s.fail("invariant 11: client %d's watch of %q from revision %d: change %d is %s %q=%q at %d (created %d, version %d); the log made %s %q=%q at %d (created %d, version %d)",
				c.idx, w.prefix, w.from, w.got, kind(e.Delete), e.Key, e.Value, e.ModRevision, e.CreateRevision, e.Version, kind(r.Delete), r.Key, r.Value, r.Rev, r.CreateRev, r.Version)
		}
		w.got++
		s.stats.WatchEvents++
	}
	s.tracef("client %d's watch took %d changes, next at revision %d", c.idx, len(evs), w.from)
	if !c.calm && s.rng.IntN(30) == 0 {
		s.newWatcher(c) // start over, somewhere else
		s.stats.Watches++
	}
}

func kind(del bool) string {
	if del {
		return "delete"
	}
	return "put"
}

// nextEvent returns the index in refEvents of the n-th change w must
// report, or -1 if the chosen log made no such change yet.
func (c *checker) nextEvent(w *watcher, n int) int {
	i := c.eventFrom(w.from)
	for ; i < len(c.refEvents); i++ {
		if w.covers(c.refEvents[i].Key) {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

// eventFrom returns the index of the first reference change at revision
// rev or later.
func (c *checker) eventFrom(rev uint64) int {
	lo, hi := 0, len(c.refEvents)
	for lo < hi {
		m := (lo + hi) / 2
		if c.refEvents[m].Rev < rev {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (w *watcher) covers(k []byte) bool {
	if w.single {
		return string(k) == w.prefix
	}
	return bytes.HasPrefix(k, []byte(w.prefix))
}

// caughtUp reports whether the watch reported every change the chosen log
// made so far.
func (w *watcher) caughtUp(c *checker) bool {
	c.extendRef()
	return w.from != 0 && c.nextEvent(w, w.got) < 0
}

// refApply applies a command of the reference sequence to the reference
// KV and adds the changes it made to refEvents, read from its history
// right after (the history's own rules are statemachine's tests').
func (c *checker) refApply(slot uint64, cmd []byte) {
	before := c.refKV.Rev()
	c.refKV.Apply(slot, cmd)
	if r, err := statemachine.DecodeKVRequest(cmd); err == nil && r.Op == statemachine.KVLeaseRevoke {
		rv := c.revokes[paxos.Slot(slot)]
		if rv == nil {
			rv = &revocation{}
			c.revokes[paxos.Slot(slot)] = rv
		}
		rv.leases = append(rv.leases, r.Lease)
		defer func(from int) {
			rv.deletes = append(rv.deletes, c.refEvents[from:]...)
			if len(c.refEvents) > from {
				c.s.stats.LeaseRevokes++
			}
		}(len(c.refEvents))
	}
	if c.refKV.Rev() == before {
		return
	}
	q := statemachine.KVWatch{Rev: c.refKV.Rev()}
	for {
		ans, _, _ := c.refKV.Watch(q.Encode())
		r, err := statemachine.DecodeKVWatchResponse(ans)
		if err != nil || r.Status != statemachine.KVOK {
			c.s.fail("the reference KV's history: %+v, %v", r, err)
		}
		for _, e := range r.Events {
			e.Key, e.Value = bytes.Clone(e.Key), bytes.Clone(e.Value)
			if len(e.Value) == 0 {
				e.Value = nil
			}
			c.refEvents = append(c.refEvents, e)
		}
		if len(r.Events) == 0 {
			return
		}
		q.Rev, q.Skip = r.NextRev, r.NextSkip
	}
}

// recordRevokes adds to the history, as deletes, the keys a lease's
// revocation in slot sl deleted, the first time a member applies it: the
// revocation is the leader's, not a client's, but clients see its effect
// (invariant 6). It took effect between its choice and this application;
// the model may place it at this step, since every operation answered
// before it was applied at a lower slot and every one begun after it at a
// higher one.
func (s *sim) recordRevokes(sl paxos.Slot) {
	s.ck.extendRef()
	rv, ok := s.ck.revokes[sl]
	if !ok {
		return
	}
	delete(s.ck.revokes, sl)
	for _, id := range rv.leases {
		if until := s.ck.leaseAlive[id]; s.now < until {
			s.fail("invariant 12: lease %d was revoked at tick %d, but a client was told it lives until at least tick %d (its TTL after a grant or keep-alive, at the fastest clock)", id, s.now, until)
		}
	}
	for _, e := range rv.deletes {
		s.history = append(s.history, Op{Client: math.MaxInt32, Call: s.step, Return: s.step,
			Input:  KVInput{Op: statemachine.KVDelete, Key: string(e.Key), Revoke: true},
			Output: KVOutput{Status: statemachine.KVOK, Rev: e.Rev}})
		s.tracef("lease revocation of slot %d deleted %s at %d", sl, e.Key, e.Rev)
	}
}

// revocation is what the lease revocations of one slot did: the leases
// they named and the keys they deleted.
type revocation struct {
	leases  []uint64
	deletes []statemachine.KVEvent
}

// leaseLives records that a client heard that lease id lives for ttl from
// tick start: no revocation may apply before start + ttl (invariant 12).
// For a keep-alive, start is when the leader handled the attempt that
// answered, which is when it counts the TTL from; for a grant, when the
// call began, since the leader counts from when it applied the grant,
// which is later.
// NB: the members' clocks for deadlines (MemberIO.Now) are the simulator's
// own; their drift speeds or slows their ticks, hence elections.
func (c *checker) leaseLives(id uint64, start int64, ttl time.Duration) {
	until := start + int64(ttl/tickLength)
	c.leaseAlive[id] = max(c.leaseAlive[id], until)
}
