package sim

import (
	"maps"
	"slices"

	"github.com/paxosd/paxosd/paxos"
)

// memStore is the model of a node's durable records: what must survive a
// crash. Without Options.WAL it is the node's storage itself; with it, the
// real WAL must recover exactly this.
type memStore struct {
	promised paxos.Ballot
	accepted map[paxos.Slot]paxos.Entry
	chosen   map[paxos.Slot]paxos.Value
	applied  paxos.Slot
	base     paxos.Slot // learner's snapshot base
	floor    paxos.Slot // acceptor's floor
	// pending are the batches written without a sync (Storage.Write), in
	// order: the next synced batch makes them durable, and a crash keeps
	// some of the first of them.
	pending [][]paxos.Record
	// onRecord lets the checker see every write just before it lands,
	// with the store still holding the state before it.
	onRecord func(r paxos.Record)
}

func newMemStore() *memStore {
	return &memStore{accepted: map[paxos.Slot]paxos.Entry{}, chosen: map[paxos.Slot]paxos.Value{}}
}

// save makes recs durable with every batch written before them.
func (m *memStore) save(recs []paxos.Record) {
	m.check(recs)
	m.keep(len(m.pending))
	m.apply(recs)
}

// write adds recs to the unsynced batches.
func (m *memStore) write(recs []paxos.Record) {
	m.check(recs)
	m.pending = append(m.pending, slices.Clone(recs))
}

// keep makes the first k unsynced batches durable and loses the rest, as a
// crash does that kept the log up to a point.
func (m *memStore) keep(k int) {
	for _, b := range m.pending[:k] {
		m.apply(b)
	}
	m.pending = nil
}

func (m *memStore) check(recs []paxos.Record) {
	if m.onRecord != nil {
		for _, r := range recs {
			m.onRecord(r)
		}
	}
}

// written returns the value written for slot sl and the applied slot, the
// unsynced batches included.
func (m *memStore) written(sl paxos.Slot) (v paxos.Value, ok bool, applied paxos.Slot) {
	v, ok = m.chosen[sl]
	applied = m.applied
	for _, b := range m.pending {
		for _, r := range b {
			switch {
			case r.Type == paxos.RecChosen && r.Slot == sl:
				v, ok = r.Value, true
			case r.Type == paxos.RecApplied:
				applied = r.Slot
			}
		}
	}
	return v, ok, applied
}

// withPending returns the state a crash that kept the first k unsynced
// batches recovers.
func (m *memStore) withPending(k int) paxos.State {
	c := &memStore{promised: m.promised, accepted: maps.Clone(m.accepted), chosen: maps.Clone(m.chosen),
		applied: m.applied, base: m.base, floor: m.floor}
	for _, b := range m.pending[:k] {
		c.apply(b)
	}
	return c.load()
}

func (m *memStore) apply(recs []paxos.Record) {
	for _, r := range recs {
		switch r.Type {
		case paxos.RecPromise:
			m.promised = r.Ballot
		case paxos.RecAccept:
			m.accepted[r.Slot] = paxos.Entry{Slot: r.Slot, Ballot: r.Ballot, Value: r.Value}
		case paxos.RecChosen:
			m.chosen[r.Slot] = r.Value
		case paxos.RecApplied:
			m.applied = r.Slot
		case paxos.RecSnapshot:
			m.base = r.Slot
			for s := range m.chosen {
				if s <= r.Slot {
					delete(m.chosen, s)
				}
			}
		case paxos.RecTruncate:
			m.floor = r.Slot
			for s := range m.accepted {
				if s <= r.Slot {
					delete(m.accepted, s)
				}
			}
		}
	}
}

func (m *memStore) load() paxos.State {
	var st paxos.State
	st.Acceptor.Promised = m.promised
	st.Acceptor.Floor = m.floor
	st.Learner.Base = m.base
	for _, s := range slices.Sorted(maps.Keys(m.accepted)) {
		st.Acceptor.Accepted = append(st.Acceptor.Accepted, m.accepted[s])
	}
	for _, s := range slices.Sorted(maps.Keys(m.chosen)) {
		st.Learner.Chosen = append(st.Learner.Chosen, paxos.Entry{Slot: s, Value: m.chosen[s]})
	}
	st.Learner.Applied = m.applied
	return st
}
