package server

import (
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/wal"
)

// Seed starts a member's empty state from a snapshot, as a member that
// joins a running cluster does (and the first member of a cluster restored
// from a saved snapshot): it writes the snapshot hdr describes, with the
// state data writes, into the snapshot directory dir on fs, then records in
// storage that the learner's state up to the snapshot's slot is in it. The
// configurations in hdr are the ones the member starts from, so they must
// be those of the snapshot's slot, taken from the cluster itself. It
// returns the recovered state NewMember is to start from.
func Seed(fs vfs.FS, dir string, storage paxos.Storage, hdr wal.SnapshotHeader, data func(io.Writer) error) (paxos.State, error) {
	if hdr.Slot == 0 || len(hdr.Configs) == 0 {
		return paxos.State{}, fmt.Errorf("server: a seed needs a snapshot of a non-zero slot with its configurations")
	}
	files, err := wal.OpenSnapshots(fs, dir)
	if err != nil {
		return paxos.State{}, err
	}
	if _, err := files.Write(hdr, data); err != nil {
		return paxos.State{}, err
	}
	recs := []paxos.Record{{Type: paxos.RecSnapshot, Slot: hdr.Slot}, {Type: paxos.RecApplied, Slot: hdr.Slot}}
	if err := storage.Save(recs); err != nil {
		return paxos.State{}, fmt.Errorf("server: record the seed snapshot: %w", err)
	}
	return paxos.State{Learner: paxos.LearnerState{Base: hdr.Slot, Applied: hdr.Slot}}, nil
}
