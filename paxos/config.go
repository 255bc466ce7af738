package paxos

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// ConfigDelay is α: a configuration chosen in slot s governs the slots from
// s+ConfigDelay on. A proposer therefore knows which configuration governs
// slot t once every slot up to t-ConfigDelay is applied, and it proposes in
// no slot it does not know the configuration of: the pipeline reaches at
// most ConfigDelay slots past the leader's applied prefix. The argument is
// in docs/design.md, "Reconfiguration". Changing it changes the protocol.
const ConfigDelay Slot = 64

// Peer is one member as a configuration lists it: its roles, the roles it
// is to be promoted to once it caught up (Target, 0 when none), and where
// to reach it.
type Peer struct {
	ID         NodeID
	Roles      Role
	Target     Role
	PeerAddr   string
	ClientAddr string
}

// Config is one configuration of the cluster: the members and their roles
// from slot Start on, made by the value chosen in slot Made (0 for the
// configuration the cluster was bootstrapped with). Removed lists every node
// ID that was ever removed; none of them may return. Base is the Made of the
// configuration a change amends: a learner applies a change only if Base is
// its newest configuration's Made, so a change computed from a stale
// configuration is chosen as a no-op instead of undoing the one before it.
type Config struct {
	Start   Slot
	Made    Slot
	Base    Slot
	Peers   []Peer // sorted by ID
	Removed []NodeID
	m       Membership
}

// NewConfig checks peers and removed and returns the Config they form,
// governing from slot start on. Beyond the rules of NewMembership, a
// removed ID may not be a member.
func NewConfig(start, made Slot, peers []Peer, removed []NodeID) (Config, error) {
	ps := slices.Clone(peers)
	slices.SortFunc(ps, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	rm := slices.Clone(removed)
	slices.Sort(rm)
	rm = slices.Compact(rm)
	ms := make([]Member, len(ps))
	for i, p := range ps {
		ms[i] = Member{ID: p.ID, Roles: p.Roles}
		if _, gone := slices.BinarySearch(rm, p.ID); gone {
			return Config{}, fmt.Errorf("%w: member %d was removed and may not return", ErrBadMembership, p.ID)
		}
		if !p.Target.Valid() || (p.Target != 0 && p.Target&p.Roles != p.Roles) {
			return Config{}, fmt.Errorf("%w: member %d has roles %v and target %#x", ErrBadMembership, p.ID, p.Roles, uint8(p.Target))
		}
	}
	m, err := NewMembership(ms...)
	if err != nil {
		return Config{}, err
	}
	return Config{Start: start, Made: made, Peers: ps, Removed: rm, m: m}, nil
}

// Membership returns the members and roles of c, with the quorum rule.
func (c Config) Membership() Membership { return c.m }

// Peer returns the entry of member id.
func (c Config) Peer(id NodeID) (Peer, bool) {
	i, ok := slices.BinarySearchFunc(c.Peers, id, func(p Peer, id NodeID) int { return cmp.Compare(p.ID, id) })
	if !ok {
		return Peer{}, false
	}
	return c.Peers[i], true
}

// IsRemoved reports whether id was removed from the cluster.
func (c Config) IsRemoved(id NodeID) bool {
	_, ok := slices.BinarySearch(c.Removed, id)
	return ok
}

// Equal reports whether c and o list the same members, roles, addresses and
// removed IDs (Start and Made aside).
func (c Config) Equal(o Config) bool {
	return bytes.Equal(EncodeConfig(c), EncodeConfig(o))
}

// configTag is the first byte of a Value that changes the configuration.
const configTag = 0x02

// IsConfig reports whether v is a configuration change.
func (v Value) IsConfig() bool { return len(v) > 0 && v[0] == configTag }

// EncodeConfig encodes the members and removed IDs of c as the Value that,
// chosen in slot s, makes them the configuration from s+ConfigDelay on.
func EncodeConfig(c Config) Value {
	b := []byte{configTag}
	b = binary.AppendUvarint(b, uint64(c.Base))
	b = binary.AppendUvarint(b, uint64(len(c.Peers)))
	for _, p := range c.Peers {
		b = binary.AppendUvarint(b, uint64(p.ID))
		b = append(b, byte(p.Roles), byte(p.Target))
		b = appendString(b, p.PeerAddr)
		b = appendString(b, p.ClientAddr)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Removed)))
	for _, id := range c.Removed {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// maxConfigMembers bounds the members and removed IDs one change may list.
const maxConfigMembers = 1 << 12

// DecodeConfig decodes a configuration change chosen in slot made: the
// Config it makes, governing from made+ConfigDelay on.
func DecodeConfig(v Value, made Slot) (Config, error) {
	if !v.IsConfig() {
		return Config{}, fmt.Errorf("%w: not a configuration change", ErrBadValue)
	}
	rest := []byte(v[1:])
	var err error
	num := func(what string) uint64 {
		var x uint64
		if err == nil {
			x, rest, err = uvarint(rest, what)
		}
		return x
	}
	str := func(what string) string {
		n := num(what + " length")
		if err == nil && n > uint64(len(rest)) {
			err = fmt.Errorf("%w: %s of %d bytes, %d left", ErrBadValue, what, n, len(rest))
		}
		if err != nil {
			return ""
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s
	}
	base := Slot(num("base"))
	count := num("member count")
	if err == nil && count > min(maxConfigMembers, uint64(len(rest))) {
		err = fmt.Errorf("%w: %d members in %d bytes", ErrBadValue, count, len(rest))
	}
	var peers []Peer
	for i := uint64(0); err == nil && i < count; i++ {
		p := Peer{ID: NodeID(num("member ID"))}
		if err == nil && len(rest) < 2 {
			err = fmt.Errorf("%w: member %d has no roles", ErrBadValue, p.ID)
		}
		if err != nil {
			break
		}
		p.Roles, p.Target, rest = Role(rest[0]), Role(rest[1]), rest[2:]
		p.PeerAddr = str("peer address")
		p.ClientAddr = str("client address")
		peers = append(peers, p)
	}
	nrm := num("removed count")
	if err == nil && nrm > min(maxConfigMembers, uint64(len(rest))) {
		err = fmt.Errorf("%w: %d removed IDs in %d bytes", ErrBadValue, nrm, len(rest))
	}
	var removed []NodeID
	for i := uint64(0); err == nil && i < nrm; i++ {
		removed = append(removed, NodeID(num("removed ID")))
	}
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d trailing bytes after a configuration", ErrBadValue, len(rest))
	}
	if err != nil {
		return Config{}, err
	}
	c, err := NewConfig(made+ConfigDelay, made, peers, removed)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	c.Base = base
	if !bytes.Equal(EncodeConfig(c), v) {
		return Config{}, fmt.Errorf("%w: configuration not in canonical form", ErrBadValue)
	}
	return c, nil
}

// History is the configurations that govern the slots from some point on,
// in Start order: History[i] governs the slots from its Start up to the
// next one's. The first entry governs every slot before it too, as far as
// the holder cares.
type History []Config

// At returns the configuration that governs slot s.
func (h History) At(s Slot) Config {
	i := len(h) - 1
	for i > 0 && h[i].Start > s {
		i--
	}
	return h[i]
}

// Latest returns the newest configuration known.
func (h History) Latest() Config { return h[len(h)-1] }

// From returns the configurations that govern some slot at or above s.
func (h History) From(s Slot) History {
	i := len(h) - 1
	for i > 0 && h[i].Start > s {
		i--
	}
	return h[i:]
}

// Members returns, in ID order, every node that some configuration of h
// gives one of the roles in r.
func (h History) Members(r Role) []NodeID {
	var out []NodeID
	for _, c := range h {
		for _, m := range c.m.Members() {
			if m.Roles&r != 0 && !slices.Contains(out, m.ID) {
				out = append(out, m.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Pending reports whether a configuration chosen at or before applied does
// not govern yet: whether a change is still on its way to taking effect.
func (h History) Pending(applied Slot) bool { return h.Latest().Start > applied+1 }

// Encode appends h to b: the count, then per configuration its Start and
// Made and its EncodeConfig bytes.
func (h History) Encode(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	for _, c := range h {
		b = binary.AppendUvarint(b, uint64(c.Start))
		b = binary.AppendUvarint(b, uint64(c.Made))
		v := EncodeConfig(c)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// DecodeHistory decodes what History.Encode wrote, and returns the bytes
// after it.
func DecodeHistory(b []byte) (History, []byte, error) {
	n, b, err := uvarint(b, "configuration count")
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, b, nil
	}
	if n > uint64(len(b)/4) {
		return nil, nil, fmt.Errorf("%w: %d configurations in %d bytes", ErrBadValue, n, len(b))
	}
	h := make(History, 0, n)
	for range n {
		var start, made, size uint64
		if start, b, err = uvarint(b, "configuration start"); err != nil {
			return nil, nil, err
		}
		if made, b, err = uvarint(b, "configuration slot"); err != nil {
			return nil, nil, err
		}
		if size, b, err = uvarint(b, "configuration size"); err != nil {
			return nil, nil, err
		}
		if size > uint64(len(b)) {
			return nil, nil, fmt.Errorf("%w: configuration of %d bytes, %d left", ErrBadValue, size, len(b))
		}
		c, err := DecodeConfig(b[:size], Slot(made))
		if err != nil {
			return nil, nil, err
		}
		b = b[size:]
		c.Start = Slot(start)
		if len(h) > 0 && c.Start <= h[len(h)-1].Start {
			return nil, nil, fmt.Errorf("%w: configuration starting at %d after one starting at %d", ErrBadValue, c.Start, h[len(h)-1].Start)
		}
		h = append(h, c)
	}
	return h, b, nil
}

// InitialConfig is the configuration of a cluster bootstrapped with the
// members of m, governing from slot 1, without addresses.
func InitialConfig(m Membership) Config {
	peers := make([]Peer, len(m.Members()))
	for i, mem := range m.Members() {
		peers[i] = Peer{ID: mem.ID, Roles: mem.Roles}
	}
	c, err := NewConfig(1, 0, peers, nil)
	if err != nil {
		panic(fmt.Sprintf("paxos: a valid membership makes an invalid configuration: %v", err))
	}
	return c
}
