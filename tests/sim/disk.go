package sim

import (
	"fmt"
	"math/rand/v2"
	"reflect"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/wal"
)

// disk runs a node's real wal.Store on a crashable in-memory file system. The
// node's memStore stays beside it as the model of what must survive: after
// every crash the state Pebble recovers must equal the model's.
type disk struct {
	fs    *vfs.MemFS
	store *wal.Store
	model *memStore
}

func newDisk() *disk { return &disk{fs: vfs.NewCrashableMem()} }

// open opens the store and checks the recovered state against the model.
func (d *disk) open(s *sim, id paxos.NodeID) paxos.State {
	st, recovered, err := wal.Open("wal", wal.Options{FS: d.fs, Logger: s.logger})
	if err != nil {
		s.fail("node %d: the WAL does not open after a crash: %v", id, err)
	}
	d.store = st
	want := d.model.load()
	if !reflect.DeepEqual(normalizeState(recovered), normalizeState(want)) {
		s.fail("node %d: the WAL recovered %s; the synced writes were %s", id, describeState(recovered), describeState(want))
	}
	return recovered
}

// crash closes the store as a power cut would: the file system keeps what
// was synced and a random part of the rest.
func (d *disk) crash(rng *rand.Rand) {
	clone := d.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 0))})
	_ = d.store.Close() // NB: the crashed copy is already taken; this only frees the old one
	d.store, d.fs = nil, clone
}

// Save writes to the real store, then to the model. A crash the simulator
// injects in the middle of the batch keeps it whole or drops it whole, as a
// Pebble batch does.
func (d *disk) Save(recs []paxos.Record) error {
	if d.model.crashNext && !d.model.keepOnCrash {
		return d.model.Save(recs)
	}
	if err := d.store.Save(recs); err != nil {
		return err
	}
	return d.model.Save(recs)
}

func normalizeState(st paxos.State) paxos.State {
	norm := func(es []paxos.Entry) []paxos.Entry {
		out := make([]paxos.Entry, len(es))
		for i, e := range es {
			if len(e.Value) == 0 {
				e.Value = nil
			}
			out[i] = e
		}
		return out
	}
	st.Acceptor.Accepted = norm(st.Acceptor.Accepted)
	st.Learner.Chosen = norm(st.Learner.Chosen)
	return st
}

func describeState(st paxos.State) string {
	return fmt.Sprintf("{promised %v, %d accepted, %d chosen, applied %d}", st.Acceptor.Promised, len(st.Acceptor.Accepted), len(st.Learner.Chosen), st.Learner.Applied)
}
