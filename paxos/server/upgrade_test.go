package server

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/statemachine"
	"github.com/paxosd/paxosd/wal"
)

// A data directory written before reconfiguration has the identity key and
// no stored configuration. It is refused, saying what to do, without
// --cluster; refused with a --cluster-token that makes another cluster ID;
// and upgraded by the first start that gives the ones it was bootstrapped
// with, after which the data alone is enough.
func TestUpgradeVersion4Data(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "1")
	members := paxos.Uniform(1)
	store, _, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	// What version 4 wrote at bootstrap: key "i", a CRC-32C-sealed pair of
	// uvarints, cluster ID and node ID; the ID came from the token and the
	// member list.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	payload := binary.AppendUvarint(binary.AppendUvarint(nil, ClusterID("old", members)), 1)
	sealed := binary.BigEndian.AppendUint32(nil, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	if err := db.Set([]byte{'i'}, append(sealed, payload...), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()

	start := func(ms paxos.Membership, token string) (*Server, error) {
		pl, _ := net.Listen("tcp", "127.0.0.1:0")
		cl, _ := net.Listen("tcp", "127.0.0.1:0")
		var addrs map[paxos.NodeID]string
		if len(ms.Members()) > 0 {
			addrs = map[paxos.NodeID]string{1: pl.Addr().String()}
		}
		return Start(Config{ID: 1, Membership: ms, PeerAddrs: addrs, ClusterToken: token, DataDir: dir,
			PeerListener: pl, ClientListener: cl, Machine: statemachine.NewKV(), Logger: testLogger(t)})
	}
	if _, err := start(paxos.Membership{}, ""); !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "start it once more with the --cluster and --cluster-token") {
		t.Fatalf("version 4 data without --cluster: %v", err)
	}
	if _, err := start(members, "other"); !errors.Is(err, ErrWrongIdentity) || !strings.Contains(err.Error(), "give the ones it was bootstrapped with") {
		t.Fatalf("version 4 data with another token: %v", err)
	}
	s, err := start(members, "old")
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s, err = start(paxos.Membership{}, ""); err != nil {
		t.Fatalf("restart after the upgrade, without --cluster: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
