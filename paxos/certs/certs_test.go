package certs

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos"
)

func TestNodeOf(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		uris []*url.URL
		want paxos.NodeID
	}{
		{[]*url.URL{NodeURI(3)}, 3},
		{[]*url.URL{u("spiffe://x/y"), NodeURI(7)}, 7},
		{[]*url.URL{NodeURI(3), NodeURI(3)}, 3},
		{[]*url.URL{NodeURI(3), NodeURI(4)}, 0},
		{[]*url.URL{u("paxosd://node/0")}, 0},
		{[]*url.URL{u("paxosd://node/x")}, 0},
		{[]*url.URL{u("paxosd://client/3")}, 0},
		{nil, 0},
	} {
		if got := NodeOf(&x509.Certificate{URIs: tc.uris}); got != tc.want {
			t.Errorf("NodeOf(%v) = %d, want %d", tc.uris, got, tc.want)
		}
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good, err := ca.IssueFiles(dir, "good", Request{Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueFiles(dir, "other", Request{Node: 2})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueFiles(dir, "expired", Request{Node: 1, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, make([]byte, maxFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    Files
		want string
	}{
		{"key of another certificate", Files{Cert: good.Cert, Key: other.Key}, "private key does not match public key"},
		{"expired", expired, "expired on"},
		{"missing", Files{Cert: filepath.Join(dir, "nope.crt"), Key: good.Key}, "no such file"},
		{"huge", Files{Cert: huge, Key: good.Key}, "is the path right?"},
		{"CA bundle without certificates", Files{Cert: good.Cert, Key: good.Key, CA: empty}, "holds no PEM certificate"},
		{"no key", Files{Cert: good.Cert}, "needs both"},
	} {
		if _, err := Load(tc.f, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestReloadKeepsTheOldOnAFailedChange rewrites a certificate with a key
// that does not match it: the source keeps serving the old pair, and takes
// the new one once the key follows.
func TestReloadKeepsTheOldOnAFailedChange(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.IssueFiles(dir, "n", Request{CommonName: "first", Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(Request{CommonName: "second", Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(f.Cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ReloadEvery + 50*time.Millisecond)
	if got := s.Leaf().Subject.CommonName; got != "first" {
		t.Fatalf("after a certificate without its key: %q, want the old one", got)
	}
	if err := writeFile(f.Key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ReloadEvery + 50*time.Millisecond)
	if got := s.Leaf().Subject.CommonName; got != "second" {
		t.Fatalf("after the key followed: %q, want the new one", got)
	}
}

// TestReloadRefusesAnotherNodeOrExpired: a rotation to the certificate of
// another node, or to an expired one, keeps the one loaded before.
func TestReloadRefusesAnotherNodeOrExpired(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.IssueFiles(dir, "n", Request{CommonName: "first", Node: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Request{
		{CommonName: "node 2's", Node: 2},
		{CommonName: "expired", Node: 1, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
	} {
		if _, err := ca.IssueFiles(dir, "n", r); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ReloadEvery + 50*time.Millisecond)
		if got := s.Leaf().Subject.CommonName; got != "first" {
			t.Fatalf("rotated to %q; want the first kept", got)
		}
	}
}
