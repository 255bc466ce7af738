package server

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

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

// RestoreConfig says how to seed the first member of a new cluster from a
// saved snapshot.
type RestoreConfig struct {
	// Snapshot is the saved snapshot file (paxosd snapshot save).
	Snapshot string
	// DataDir is the new member's data directory; it must be empty.
	DataDir string
	// ID, PeerAddr and ClientAddr are the new member's, which runs every
	// role; the others join it.
	ID                   paxos.NodeID
	PeerAddr, ClientAddr string
	// Token is the new cluster's token.
	Token string
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
}

// Restore makes DataDir the first member of a new cluster that starts from
// the state of a saved snapshot: its applied slot, hash and state are the
// snapshot's, its configuration is the one member alone, and its cluster ID
// is new (derived from the token, the member and the snapshot's slot and
// hash), so that no member of the old cluster can talk to it by mistake. It
// returns the new cluster ID and the snapshot's slot.
func Restore(rc RestoreConfig) (uint64, paxos.Slot, error) {
	if rc.ID == 0 || rc.PeerAddr == "" || rc.ClientAddr == "" {
		return 0, 0, errors.New("server: a restore needs the new member's ID and its peer and client addresses")
	}
	if empty, err := dirIsEmpty(rc.DataDir); err != nil {
		return 0, 0, err
	} else if !empty {
		return 0, 0, fmt.Errorf("%w: %s is not empty; restore into a new, empty directory", ErrAlreadyBootstrapped, rc.DataDir)
	}
	r, err := wal.OpenSnapshot(nil, rc.Snapshot)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	cfg, err := paxos.NewConfig(1, 0, []paxos.Peer{{ID: rc.ID, Roles: paxos.RoleAll, PeerAddr: rc.PeerAddr, ClientAddr: rc.ClientAddr}}, nil)
	if err != nil {
		return 0, 0, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "paxosd restored cluster\x00%s\x00%d\x00%d\x00%016x", rc.Token, rc.ID, r.Header.Slot, r.Header.Hash)
	cluster := binary.BigEndian.Uint64(h.Sum(nil)) | 1 // never 0
	store, _, err := wal.Open(rc.DataDir, wal.Options{Logger: rc.Logger})
	if err != nil {
		return 0, 0, err
	}
	hdr := r.Header
	hdr.Cluster, hdr.Configs = cluster, paxos.History{cfg}
	_, err = Seed(vfs.Default, filepath.Join(rc.DataDir, snapDir), store, hdr, func(w io.Writer) error {
		if _, err := io.Copy(w, r); err != nil {
			return err
		}
		return r.Finish()
	})
	if err == nil {
		err = store.SetIdentity(wal.Identity{Cluster: cluster, Node: rc.ID}, cfg)
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("server: restore %s into %s: %w; remove the directory before trying again", rc.Snapshot, rc.DataDir, err)
	}
	return cluster, hdr.Slot, nil
}
