package server

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// ClientRole is what a client may ask of a member. A member whose client
// port asks for client certificates (Config.ClientCA) gives each client the
// role its certificate's common name has in Config.ClientRoles; a member
// that asks for none gives everyone RoleAdmin.
type ClientRole uint8

// The roles, each allowed what the one before it is, and more.
const (
	// RoleNone may do nothing: its certificate's name has no role.
	RoleNone ClientRole = iota
	// RoleReadOnly reads: get, range, watch, status.
	RoleReadOnly
	// RoleReadWrite also writes: commands, sessions, lease keep-alives.
	RoleReadWrite
	// RoleAdmin also changes members, moves leadership and reads
	// snapshots (which hold every key).
	RoleAdmin
)

var roleNames = [...]string{RoleNone: "none", RoleReadOnly: "readonly", RoleReadWrite: "readwrite", RoleAdmin: "admin"}

func (r ClientRole) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("ClientRole(%d)", r)
}

// needs is the least role a request of kind k needs.
func needs(k clientapi.RequestKind) ClientRole {
	switch k {
	case clientapi.ReqQuery, clientapi.ReqStatus, clientapi.ReqRead, clientapi.ReqWatch:
		return RoleReadOnly
	case clientapi.ReqCommand, clientapi.ReqSession, clientapi.ReqKeepAlive:
		return RoleReadWrite
	}
	return RoleAdmin // snapshots, members, transfers, and kinds not known yet
}

// Allows reports whether r may make a request of kind k.
func (r ClientRole) Allows(k clientapi.RequestKind) bool { return r >= needs(k) }

// needsOn is needs for a member whose machine is m: with a machine that
// answers no queries, a linearizable read goes through the log as a
// command, which the machine applies like any other, so it needs a writer.
func needsOn(m statemachine.Machine, k clientapi.RequestKind) ClientRole {
	if k == clientapi.ReqRead {
		if _, ok := m.(statemachine.Querier); !ok {
			return RoleReadWrite
		}
	}
	return needs(k)
}

// ClientRoles maps the common names of client certificates to roles; the
// name "*" stands for every name not listed. A name with no role gets
// RoleNone.
type ClientRoles map[string]ClientRole

// Of returns the role of a client that presented cert.
func (rs ClientRoles) Of(cert *x509.Certificate) ClientRole {
	if r, ok := rs[cert.Subject.CommonName]; ok {
		return r
	}
	return rs["*"]
}

// ParseClientRoles reads NAME=ROLE,… (paxosd serve --client-roles), where
// ROLE is readonly, readwrite or admin and NAME a certificate's common name
// or "*".
func ParseClientRoles(s string) (ClientRoles, error) {
	rs := ClientRoles{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, role, ok := strings.Cut(part, "=")
		name, role = strings.TrimSpace(name), strings.TrimSpace(role)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not NAME=ROLE (NAME is a client certificate's common name, or * for every other)", part)
		}
		i := slices.Index(roleNames[:], role)
		if i <= int(RoleNone) {
			return nil, fmt.Errorf("%q: unknown role %q (roles are readonly, readwrite and admin)", part, role)
		}
		if _, dup := rs[name]; dup {
			return nil, fmt.Errorf("%q is given a role twice", name)
		}
		rs[name] = ClientRole(i)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("no roles given: write NAME=ROLE,…, e.g. ops=admin,app=readwrite,*=readonly")
	}
	return rs, nil
}

// denied is the answer to a request that needs role need, which the
// client's role r is not.
func denied(req clientapi.Request, who string, r, need ClientRole) clientapi.Response {
	return clientapi.Response{ID: req.ID, Code: clientapi.CodePermissionDenied,
		Message: fmt.Sprintf("%s has the role %s here, and a %s request needs %s (see the member's --client-roles)", who, r, req.Kind, need)}
}
