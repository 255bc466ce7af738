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
	// onRecord lets the checker see every durable write just before it
	// lands, with the store still holding the state before it.
	onRecord func(r paxos.Record)
}

func newMemStore() *memStore {
	return &memStore{accepted: map[paxos.Slot]paxos.Entry{}, chosen: map[paxos.Slot]paxos.Value{}}
}

func (m *memStore) apply(recs []paxos.Record) {
	for _, r := range recs {
		if m.onRecord != nil {
			m.onRecord(r)
		}
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
