package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/paxosd/paxosd/paxos"
)

// ErrCorrupt reports a store whose contents fail a check. It is always
// wrapped with what is wrong: the key, for a value that fails its own
// check, or the slots, for state that does not hold together.
var ErrCorrupt = errors.New("wal: store is corrupt")

// formatVersion is the version of the key layout and value encodings.
// Version 2 added the snapshot base ('b') and the acceptor's floor ('o'); a
// version 1 store reads the same and is upgraded when opened, so that an
// older build refuses it as newer rather than as corrupt.
const formatVersion = 2

// Key prefixes.
const (
	prefixFormat   = 'f'
	prefixPromised = 'p'
	prefixAccepted = 'a'
	prefixChosen   = 'c'
	prefixApplied  = 'l'
	prefixIdentity = 'i'
	prefixBase     = 'b' // the learner's snapshot base (RecSnapshot)
	prefixFloor    = 'o' // the acceptor's floor (RecTruncate)
	prefixConfig   = 'm' // the configuration the member started from
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func slotKey(prefix byte, s paxos.Slot) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], uint64(s))
	return k
}

// keyName prints a key for error messages, for example "accepted/17".
func keyName(k []byte) string {
	if len(k) == 9 {
		s := binary.BigEndian.Uint64(k[1:])
		switch k[0] {
		case prefixAccepted:
			return fmt.Sprintf("accepted/%d", s)
		case prefixChosen:
			return fmt.Sprintf("chosen/%d", s)
		}
	}
	if len(k) == 1 {
		switch k[0] {
		case prefixFormat:
			return "format"
		case prefixPromised:
			return "promised"
		case prefixApplied:
			return "applied"
		case prefixIdentity:
			return "identity"
		case prefixBase:
			return "base"
		case prefixFloor:
			return "floor"
		case prefixConfig:
			return "configuration"
		}
	}
	return fmt.Sprintf("%q", k)
}

// seal prepends the CRC-32C of payload.
func seal(payload []byte) []byte {
	v := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(v, crc32.Checksum(payload, crcTable))
	copy(v[4:], payload)
	return v
}

// unseal checks and strips the CRC. The result aliases v.
func unseal(v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("value of %d bytes is too short for its checksum", len(v))
	}
	want := binary.BigEndian.Uint32(v)
	if got := crc32.Checksum(v[4:], crcTable); got != want {
		return nil, fmt.Errorf("checksum %#08x, stored %#08x", got, want)
	}
	return v[4:], nil
}

func appendBallot(b []byte, x paxos.Ballot) []byte {
	b = binary.AppendUvarint(b, x.Round)
	return binary.AppendUvarint(b, uint64(x.Node))
}

func readBallot(b []byte) (paxos.Ballot, []byte, error) {
	r, n := binary.Uvarint(b)
	if n <= 0 {
		return paxos.Ballot{}, nil, errors.New("bad ballot round")
	}
	b = b[n:]
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return paxos.Ballot{}, nil, errors.New("bad ballot node")
	}
	return paxos.Ballot{Round: r, Node: paxos.NodeID(id)}, b[n:], nil
}

// encodeRecord returns the key and sealed value of rec.
func encodeRecord(rec paxos.Record) (key, value []byte, err error) {
	switch rec.Type {
	case paxos.RecPromise:
		return []byte{prefixPromised}, seal(appendBallot(nil, rec.Ballot)), nil
	case paxos.RecAccept:
		if rec.Slot == 0 {
			return nil, nil, errors.New("wal: accept record for slot 0")
		}
		p := appendBallot(make([]byte, 0, 20+len(rec.Value)), rec.Ballot)
		return slotKey(prefixAccepted, rec.Slot), seal(append(p, rec.Value...)), nil
	case paxos.RecChosen:
		if rec.Slot == 0 {
			return nil, nil, errors.New("wal: chosen record for slot 0")
		}
		return slotKey(prefixChosen, rec.Slot), seal(rec.Value), nil
	case paxos.RecApplied:
		return []byte{prefixApplied}, seal(binary.AppendUvarint(nil, uint64(rec.Slot))), nil
	case paxos.RecSnapshot:
		return []byte{prefixBase}, seal(binary.AppendUvarint(nil, uint64(rec.Slot))), nil
	case paxos.RecTruncate:
		return []byte{prefixFloor}, seal(binary.AppendUvarint(nil, uint64(rec.Slot))), nil
	}
	return nil, nil, fmt.Errorf("wal: unknown record type %v", rec.Type)
}

// decoded is one key's contribution to the recovered state.
type decoded struct {
	kind    byte
	slot    paxos.Slot
	ballot  paxos.Ballot
	value   paxos.Value
	applied paxos.Slot
	version uint64
	ident   Identity
	config  paxos.Config
}

// decodeKV checks and decodes one stored key and value. The returned value
// aliases v. Errors do not name the key; the caller adds it.
func decodeKV(k, v []byte) (decoded, error) {
	var d decoded
	if len(k) == 0 {
		return d, errors.New("empty key")
	}
	d.kind = k[0]
	switch d.kind {
	case prefixAccepted, prefixChosen:
		if len(k) != 9 {
			return d, fmt.Errorf("unexpected key of %d bytes", len(k))
		}
		d.slot = paxos.Slot(binary.BigEndian.Uint64(k[1:]))
		if d.slot == 0 {
			return d, errors.New("slot 0 is never used")
		}
	case prefixFormat, prefixPromised, prefixApplied, prefixIdentity, prefixBase, prefixFloor, prefixConfig:
		if len(k) != 1 {
			return d, fmt.Errorf("unexpected key of %d bytes", len(k))
		}
	default:
		return d, errors.New("unknown key")
	}
	p, err := unseal(v)
	if err != nil {
		return d, err
	}
	var rest []byte
	switch d.kind {
	case prefixFormat:
		var n int
		if d.version, n = binary.Uvarint(p); n <= 0 {
			return d, errors.New("bad format version")
		}
		rest = p[n:]
	case prefixPromised:
		d.ballot, rest, err = readBallot(p)
	case prefixAccepted:
		d.ballot, d.value, err = readBallot(p)
		if err == nil && len(d.value) == 0 {
			d.value = nil // the no-op
		}
	case prefixChosen:
		if len(p) > 0 {
			d.value = p
		}
	case prefixApplied, prefixBase, prefixFloor:
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return d, errors.New("bad slot")
		}
		d.applied, rest = paxos.Slot(x), p[n:]
	case prefixIdentity:
		c, n := binary.Uvarint(p)
		if n <= 0 || c == 0 {
			return d, errors.New("bad cluster ID")
		}
		id, m := binary.Uvarint(p[n:])
		if m <= 0 || id == 0 {
			return d, errors.New("bad node ID")
		}
		d.ident, rest = Identity{Cluster: c, Node: paxos.NodeID(id)}, p[n+m:]
	case prefixConfig:
		var h paxos.History
		if h, rest, err = paxos.DecodeHistory(p); err == nil && len(h) != 1 {
			err = fmt.Errorf("%d configurations where one belongs", len(h))
		}
		if err == nil {
			d.config = h[0]
		}
	}
	if err != nil {
		return d, err
	}
	if len(rest) != 0 {
		return d, fmt.Errorf("%d trailing bytes", len(rest))
	}
	return d, nil
}
