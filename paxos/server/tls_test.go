package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

func TestRolesAllow(t *testing.T) {
	for _, tc := range []struct {
		role ClientRole
		kind clientapi.RequestKind
		ok   bool
	}{
		{RoleReadOnly, clientapi.ReqRead, true},
		{RoleReadOnly, clientapi.ReqWatch, true},
		{RoleReadOnly, clientapi.ReqQuery, true},
		{RoleReadOnly, clientapi.ReqStatus, true},
		{RoleReadOnly, clientapi.ReqCommand, false},
		{RoleReadOnly, clientapi.ReqSession, false},
		{RoleReadOnly, clientapi.ReqKeepAlive, false},
		{RoleReadWrite, clientapi.ReqCommand, true},
		{RoleReadWrite, clientapi.ReqKeepAlive, true},
		{RoleReadWrite, clientapi.ReqSnapshot, false},
		{RoleReadWrite, clientapi.ReqMembers, false},
		{RoleReadWrite, clientapi.ReqTransfer, false},
		{RoleAdmin, clientapi.ReqMembers, true},
		{RoleAdmin, clientapi.ReqSnapshot, true},
		{RoleNone, clientapi.ReqStatus, false},
		{RoleAdmin, clientapi.RequestKind(200), true},
		{RoleReadWrite, clientapi.RequestKind(200), false},
	} {
		if got := tc.role.Allows(tc.kind); got != tc.ok {
			t.Errorf("%s allows %s: %v, want %v", tc.role, tc.kind, got, tc.ok)
		}
	}
}

func TestParseClientRoles(t *testing.T) {
	rs, err := ParseClientRoles(" ops=admin, app=readwrite ,*=readonly")
	if err != nil || len(rs) != 3 || rs["ops"] != RoleAdmin || rs["app"] != RoleReadWrite || rs["*"] != RoleReadOnly {
		t.Fatalf("got %v, %v", rs, err)
	}
	for in, want := range map[string]string{
		"ops":                "not NAME=ROLE",
		"ops=root":           `unknown role "root"`,
		"ops=none":           `unknown role "none"`,
		"=admin":             "not NAME=ROLE",
		"a=admin,a=readonly": `"a" is given a role twice`,
		" , ":                "no roles given",
	} {
		if _, err := ParseClientRoles(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseClientRoles(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

// TestTLSClusterAndRoles runs a local cluster over TLS with the throwaway
// certificates of paxosd dev --tls, and checks what each client may do,
// and that clients the port must refuse are refused with a reason while
// the others go on.
func TestTLSClusterAndRoles(t *testing.T) {
	logs := &syncLog{}
	l, err := StartLocal(LocalConfig{Dir: t.TempDir(), TLSDir: t.TempDir(),
		Template: Config{TickInterval: 10 * time.Millisecond, RequestTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	dev := l.Certificates()
	as := func(name string) *client.Client {
		t.Helper()
		f := dev.Clients[name]
		cfg, err := certs.ClientConfig(dev.CA, f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints(), Timeout: 10 * time.Second, TLS: cfg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	admin, writer, reader := as(certs.DevAdmin), as(certs.DevWriter), as(certs.DevReader)
	if err := writer.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("writer put: %v", err)
	}
	if v, err := reader.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("reader get = %q, %v", v, err)
	}
	err = reader.Put(ctx, "k", []byte("w"))
	if !errors.Is(err, client.ErrPermissionDenied) || !strings.Contains(err.Error(), `client certificate "reader" has the role readonly`) {
		t.Fatalf("reader put: %v; want permission denied naming the certificate and its role", err)
	}
	t.Logf("a reader's put: %v", err)
	if err := writer.TransferLeader(ctx, 2); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("writer transfer: %v; want permission denied", err)
	}
	if _, _, err := writer.SaveSnapshot(ctx, l.Endpoints()[0], io.Discard); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("writer snapshot: %v; want permission denied", err)
	}
	var buf bytes.Buffer
	if _, _, err := admin.SaveSnapshot(ctx, l.Endpoints()[0], &buf); err != nil || buf.Len() == 0 {
		t.Fatalf("admin snapshot: %d bytes, %v", buf.Len(), err)
	}

	// Clients to refuse: each gets an error that says what is wrong.
	other, err := certs.NewAuthority("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadPool(dev.CA)
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(issuer *certs.Authority, r certs.Request) *tls.Config {
		c, k, err := issuer.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: ca, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }}
	}
	for _, tc := range []struct {
		name      string
		tls       *tls.Config
		clientErr string
		memberLog string
	}{
		{"plaintext", nil, "serves TLS and this client does not: give --cacert", "a client spoke plaintext to this TLS client port"},
		{"no certificate", &tls.Config{RootCAs: ca}, "refused this client's certificate", "client didn't provide a certificate"},
		{"wrong CA", withCert(other, certs.Request{CommonName: certs.DevAdmin}), "refused this client's certificate", "certificate signed by unknown authority"},
		{"expired", withCert(dev.Authority, certs.Request{CommonName: certs.DevAdmin, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), "refused this client's certificate", "certificate has expired"},
		{"member's CA unknown", &tls.Config{}, "is not signed by a CA this client trusts: give --cacert", "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints()[:1], Timeout: 500 * time.Millisecond, TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Status(ctx, l.Endpoints()[0])
			if !errors.Is(err, client.ErrSetup) || !strings.Contains(err.Error(), tc.clientErr) {
				t.Fatalf("status: %v; want an error with %q", err, tc.clientErr)
			}
			t.Logf("client sees: %v", err)
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), tc.memberLog) {
				if time.Now().After(deadline) {
					t.Fatalf("the member did not log %q; it logged:\n%s", tc.memberLog, logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	// A call that cannot work as set up gives up once every member failed
	// so, not at its deadline.
	plain, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	start := time.Now()
	err = plain.Put(ctx, "k", []byte("x"))
	if !errors.Is(err, client.ErrSetup) || !errors.Is(err, client.ErrNotApplied) || time.Since(start) > 3*time.Second {
		t.Fatalf("a plaintext put: %v after %v; want ErrSetup and not applied, at once", err, time.Since(start))
	}
	// Everyone else is still served.
	if v, err := reader.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("reader get after the refusals = %q, %v", v, err)
	}
}

// opaque is a machine that answers no queries.
type opaque struct{ statemachine.Machine }

func TestReadsOfAMachineWithoutQueriesNeedAWriter(t *testing.T) {
	if needsOn(statemachine.NewKV(), clientapi.ReqRead) != RoleReadOnly {
		t.Error("a read of the KV machine needs more than readonly")
	}
	if needsOn(opaque{statemachine.NewKV()}, clientapi.ReqRead) != RoleReadWrite {
		t.Error("a read of a machine without queries, which goes through the log as a command, needs only readonly")
	}
}
