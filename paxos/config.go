package paxos

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is a set of Paxos roles a member runs.
type Role uint8

// The roles. A member may run any non-empty combination.
const (
	RoleProposer Role = 1 << iota
	RoleAcceptor
	RoleLearner

	RoleAll = RoleProposer | RoleAcceptor | RoleLearner
)

// String lists the roles in r, for example "proposer,acceptor".
func (r Role) String() string {
	var parts []string
	for _, x := range []struct {
		r    Role
		name string
	}{{RoleProposer, "proposer"}, {RoleAcceptor, "acceptor"}, {RoleLearner, "learner"}} {
		if r&x.r != 0 {
			parts = append(parts, x.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Member is one node of the cluster and the roles it runs.
type Member struct {
	ID    NodeID
	Roles Role
}

// Config is the cluster membership. The zero Config is empty and invalid;
// build one with NewConfig. A Config is immutable and safe for concurrent use.
type Config struct {
	members   []Member // sorted by ID
	acceptors []NodeID // sorted
	proposers []NodeID // sorted
	learners  []NodeID // sorted
}

// ErrBadConfig reports a membership that cannot run.
var ErrBadConfig = errors.New("paxos: invalid cluster configuration")

// NewConfig checks members and returns the Config they form. Every member
// needs a non-zero unique ID and at least one role; the cluster needs at least
// one acceptor, proposer and learner; and every proposer must also be a
// learner, because a proposer answers its clients with what its own learner
// applied.
func NewConfig(members ...Member) (Config, error) {
	var c Config
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	for i, m := range ms {
		switch {
		case m.ID == 0:
			return Config{}, fmt.Errorf("%w: member ID 0 is reserved", ErrBadConfig)
		case i > 0 && ms[i-1].ID == m.ID:
			return Config{}, fmt.Errorf("%w: member %d listed twice", ErrBadConfig, m.ID)
		case m.Roles&RoleAll == 0 || m.Roles&^RoleAll != 0:
			return Config{}, fmt.Errorf("%w: member %d has roles %#x", ErrBadConfig, m.ID, uint8(m.Roles))
		case m.Roles&RoleProposer != 0 && m.Roles&RoleLearner == 0:
			return Config{}, fmt.Errorf("%w: member %d is a proposer but not a learner", ErrBadConfig, m.ID)
		}
		if m.Roles&RoleAcceptor != 0 {
			c.acceptors = append(c.acceptors, m.ID)
		}
		if m.Roles&RoleProposer != 0 {
			c.proposers = append(c.proposers, m.ID)
		}
		if m.Roles&RoleLearner != 0 {
			c.learners = append(c.learners, m.ID)
		}
	}
	c.members = ms
	switch {
	case len(c.acceptors) == 0:
		return Config{}, fmt.Errorf("%w: no acceptor", ErrBadConfig)
	case len(c.proposers) == 0:
		return Config{}, fmt.Errorf("%w: no proposer", ErrBadConfig)
	case len(c.learners) == 0:
		return Config{}, fmt.Errorf("%w: no learner", ErrBadConfig)
	}
	return c, nil
}

// MustConfig is NewConfig for tests and literals; it panics on an invalid
// membership.
func MustConfig(members ...Member) Config {
	c, err := NewConfig(members...)
	if err != nil {
		panic(err)
	}
	return c
}

// Uniform returns the Config of n members with IDs 1..n, each running every
// role.
func Uniform(n int) Config {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: NodeID(i + 1), Roles: RoleAll}
	}
	return MustConfig(ms...)
}

// Members returns the members in ID order. The caller must not modify it.
func (c Config) Members() []Member { return c.members }

// Acceptors returns the acceptors' IDs in order. The caller must not modify it.
func (c Config) Acceptors() []NodeID { return c.acceptors }

// Proposers returns the proposers' IDs in order. The caller must not modify it.
func (c Config) Proposers() []NodeID { return c.proposers }

// Learners returns the learners' IDs in order. The caller must not modify it.
func (c Config) Learners() []NodeID { return c.learners }

// Has reports whether member id runs every role in r.
func (c Config) Has(id NodeID, r Role) bool {
	i, ok := slices.BinarySearchFunc(c.members, id, func(m Member, id NodeID) int { return cmp.Compare(m.ID, id) })
	return ok && c.members[i].Roles&r == r
}

// IsQuorum reports whether voters, a list of distinct node IDs, holds a
// quorum of acceptors. It is the only place the quorum rule lives: phase 1
// and phase 2 both ask it, so the two kinds of quorum always intersect.
// IDs that are not acceptors do not count.
func (c Config) IsQuorum(voters []NodeID) bool {
	n := 0
	for _, id := range voters {
		if _, ok := slices.BinarySearch(c.acceptors, id); ok {
			n++
		}
	}
	return 2*n > len(c.acceptors)
}
