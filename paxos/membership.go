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

// Valid reports whether r holds only known roles.
func (r Role) Valid() bool { return r&^RoleAll == 0 }

// Member is one node of the cluster and the roles it runs.
type Member struct {
	ID    NodeID
	Roles Role
}

// Membership is the cluster's members and their roles, with the quorum rule.
// The zero Membership is empty and invalid; build one with NewMembership. A
// Membership is immutable and safe for concurrent use.
type Membership struct {
	members   []Member // sorted by ID
	acceptors []NodeID // sorted
	proposers []NodeID // sorted
	learners  []NodeID // sorted
}

// ErrBadMembership reports a membership that cannot run.
var ErrBadMembership = errors.New("paxos: invalid cluster configuration")

// NewMembership checks members and returns the Membership they form. Every
// member needs a non-zero unique ID and at least one role; the cluster needs
// at least one acceptor, proposer and learner; and every proposer must also
// be a learner, because a proposer answers its clients with what its own
// learner applied.
func NewMembership(members ...Member) (Membership, error) {
	var c Membership
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	for i, m := range ms {
		switch {
		case m.ID == 0:
			return Membership{}, fmt.Errorf("%w: member ID 0 is reserved", ErrBadMembership)
		case i > 0 && ms[i-1].ID == m.ID:
			return Membership{}, fmt.Errorf("%w: member %d listed twice", ErrBadMembership, m.ID)
		case m.Roles == 0 || !m.Roles.Valid():
			return Membership{}, fmt.Errorf("%w: member %d has roles %#x", ErrBadMembership, m.ID, uint8(m.Roles))
		case m.Roles&RoleProposer != 0 && m.Roles&RoleLearner == 0:
			return Membership{}, fmt.Errorf("%w: member %d is a proposer but not a learner", ErrBadMembership, m.ID)
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
		return Membership{}, fmt.Errorf("%w: no acceptor", ErrBadMembership)
	case len(c.proposers) == 0:
		return Membership{}, fmt.Errorf("%w: no proposer", ErrBadMembership)
	case len(c.learners) == 0:
		return Membership{}, fmt.Errorf("%w: no learner", ErrBadMembership)
	}
	return c, nil
}

// MustMembership is NewMembership for tests and literals; it panics on an invalid
// membership.
func MustMembership(members ...Member) Membership {
	c, err := NewMembership(members...)
	if err != nil {
		panic(err)
	}
	return c
}

// Uniform returns the Membership of n members with IDs 1..n, each running every
// role.
func Uniform(n int) Membership {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: NodeID(i + 1), Roles: RoleAll}
	}
	return MustMembership(ms...)
}

// Members returns the members in ID order. The caller must not modify it.
func (c Membership) Members() []Member { return c.members }

// Acceptors returns the acceptors' IDs in order. The caller must not modify it.
func (c Membership) Acceptors() []NodeID { return c.acceptors }

// Proposers returns the proposers' IDs in order. The caller must not modify it.
func (c Membership) Proposers() []NodeID { return c.proposers }

// Learners returns the learners' IDs in order. The caller must not modify it.
func (c Membership) Learners() []NodeID { return c.learners }

// Roles returns the roles of member id, 0 if it is not a member.
func (c Membership) Roles(id NodeID) Role {
	i, ok := slices.BinarySearchFunc(c.members, id, func(m Member, id NodeID) int { return cmp.Compare(m.ID, id) })
	if !ok {
		return 0
	}
	return c.members[i].Roles
}

// Has reports whether id is a member that runs every role in r.
func (c Membership) Has(id NodeID, r Role) bool {
	have := c.Roles(id)
	return have != 0 && have&r == r
}

// IsQuorum reports whether voters, a list of distinct node IDs, holds a
// quorum of acceptors. It is the only place the quorum rule lives: phase 1
// and phase 2 both ask it, so the two kinds of quorum always intersect.
// IDs that are not acceptors do not count.
func (c Membership) IsQuorum(voters []NodeID) bool {
	n := 0
	for _, id := range voters {
		if _, ok := slices.BinarySearch(c.acceptors, id); ok {
			n++
		}
	}
	return 2*n > len(c.acceptors)
}
