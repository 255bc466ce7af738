package server

import (
	"strings"
	"testing"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/clientapi"
)

// A member alone: every change is checked against its newest configuration
// and refused with a reason, changing nothing; one that is possible is
// answered, with the slot that chose it, once it governs.
func TestMemberChanges(t *testing.T) {
	h := newHarness(t, paxos.Uniform(1), 1)
	h.lead()
	change := func(ch clientapi.Change) clientapi.Response {
		t.Helper()
		var in inbox
		h.m.Handle(&in, clientapi.Request{ID: 1, Kind: clientapi.ReqMembers, Change: &ch})
		for range 10 {
			if len(in.got) > 0 {
				break
			}
			h.tick()
			h.m.Sweep()
		}
		if len(in.got) != 1 {
			t.Fatalf("%+v: %d answers", ch, len(in.got))
		}
		return in.got[0]
	}
	refused := func(ch clientapi.Change, want string) {
		t.Helper()
		before := h.m.Configs().Latest()
		if r := change(ch); r.Code != clientapi.CodeRefused || !strings.Contains(r.Message, want) {
			t.Fatalf("%+v: %s %q, want refused saying %q", ch, r.Code, r.Message, want)
		}
		if after := h.m.Configs().Latest(); !after.Equal(before) || after.Made != before.Made {
			t.Fatalf("a refused change changed the configuration: %+v", after)
		}
	}
	refused(clientapi.Change{Op: clientapi.ChangeAdd, ID: 1, Roles: paxos.RoleAll, PeerAddr: "b:1"}, "is a member already")
	refused(clientapi.Change{Op: clientapi.ChangeAdd, ID: 2, Roles: paxos.RoleAcceptor, PeerAddr: "b:1"}, "must be a learner")
	refused(clientapi.Change{Op: clientapi.ChangeRemove, ID: 1}, "no acceptor")
	refused(clientapi.Change{Op: clientapi.ChangeRemove, ID: 5}, "not a member")
	refused(clientapi.Change{Op: clientapi.ChangeRoles, ID: 1, Roles: paxos.RoleAcceptor}, "keeps that role")
	if r := change(clientapi.Change{Op: clientapi.ChangeAdd, ID: 3, Roles: paxos.RoleAll, PeerAddr: "c:1", ClientAddr: "c:2"}); r.Code != clientapi.CodeOK || r.Slot == 0 {
		t.Fatalf("add 3: %+v", r)
	}
	latest := h.m.Configs().Latest()
	if p, ok := latest.Peer(3); !ok || p.Roles != paxos.RoleLearner || p.Target != paxos.RoleAll {
		t.Fatalf("member 3 joined as %+v, want a learner with target all", p)
	}
	refused(clientapi.Change{Op: clientapi.ChangeAdd, ID: 4, Roles: paxos.RoleAll, PeerAddr: "c:1"}, "peer address c:1 is node 3's already")
	// Giving 3 a vote would make a quorum (2 of 2) this leader does not
	// reach: refused unless forced.
	refused(clientapi.Change{Op: clientapi.ChangeRoles, ID: 3, Roles: paxos.RoleAll}, "could not reach node 3")
	if r := change(clientapi.Change{Op: clientapi.ChangeRoles, ID: 3, Roles: paxos.RoleAll, Force: true}); r.Code != clientapi.CodeOK {
		t.Fatalf("forced promotion: %+v", r)
	}
}
