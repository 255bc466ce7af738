package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/paxosd/paxosd/paxos"
)

// Authority is a certificate authority that issues certificates: paxosd
// dev --tls makes a throwaway one per run, and tests make theirs. Its key
// lives only in memory.
type Authority struct {
	Cert *x509.Certificate
	PEM  []byte // Cert, PEM-encoded
	key  crypto.Signer
}

// NewAuthority makes a self-signed CA named name, valid from a minute ago
// for validFor.
func NewAuthority(name string, validFor time.Duration) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"paxosd"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Request says what a certificate names and how long it is valid.
type Request struct {
	// CommonName is the subject's name; on the client port it picks the
	// client's role.
	CommonName string
	// Node, if not zero, adds the SAN URI paxosd://node/Node that a peer
	// certificate needs.
	Node paxos.NodeID
	// Hosts are the DNS names and IP addresses a client dials the member
	// at.
	Hosts []string
	// NotBefore and NotAfter bound the validity; zero means from a minute
	// ago, and for a year.
	NotBefore, NotAfter time.Time
}

// Issue signs a certificate for r with a new key, usable both to serve and
// to connect, and returns both PEM-encoded.
func (a *Authority) Issue(r Request) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	if r.NotBefore.IsZero() {
		r.NotBefore = now.Add(-time.Minute)
	}
	if r.NotAfter.IsZero() {
		r.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.CommonName, Organization: []string{"paxosd"}},
		NotBefore:    r.NotBefore,
		NotAfter:     r.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if r.Node != 0 {
		tmpl.URIs = []*url.URL{NodeURI(r.Node)}
	}
	for _, h := range r.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// IssueFiles issues a certificate for r and writes it to dir as name.crt
// and name.key (readable by the owner only), beside the CA as ca.crt. It
// returns the three files.
func (a *Authority) IssueFiles(dir, name string, r Request) (Files, error) {
	if name == "" || filepath.Base(name) != name {
		return Files{}, fmt.Errorf("certificate file name %q must be a plain name", name)
	}
	certPEM, keyPEM, err := a.Issue(r)
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, "ca.crt")}
	if err := errors.Join(
		writeFile(f.CA, a.PEM, 0o644),
		writeFile(f.Key, keyPEM, 0o600),
		writeFile(f.Cert, certPEM, 0o644),
	); err != nil {
		return Files{}, err
	}
	return f, nil
}

// writeFile replaces name with b in one rename, so that a Source reading it
// never sees half a file.
func writeFile(name string, b []byte, mode os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// The client certificates IssueDev makes, by common name, and the roles
// DevRoles gives them.
const (
	DevAdmin  = "admin"
	DevWriter = "writer"
	DevReader = "reader"
)

// DevRoles is the --client-roles of a cluster whose certificates IssueDev
// made.
const DevRoles = DevAdmin + "=admin," + DevWriter + "=readwrite," + DevReader + "=readonly"

// Dev is the set of throwaway certificates of a local cluster (paxosd dev
// --tls): one per member, used on both its ports, and one per client role,
// all from one CA made for the occasion.
type Dev struct {
	// Authority is the CA, which can issue more while the process runs
	// (its key is never written).
	Authority *Authority
	CA        string
	Nodes     map[paxos.NodeID]Files
	Clients   map[string]Files // by common name: DevAdmin, DevWriter, DevReader
}

// IssueDev makes a CA valid for validFor and the certificates of Dev in
// dir. Member certificates name their node and hosts.
func IssueDev(dir string, nodes []paxos.NodeID, hosts []string, validFor time.Duration) (Dev, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Dev{}, err
	}
	ca, err := NewAuthority("paxosd dev CA (throwaway)", validFor)
	if err != nil {
		return Dev{}, err
	}
	d := Dev{Authority: ca, CA: filepath.Join(dir, "ca.crt"), Nodes: map[paxos.NodeID]Files{}, Clients: map[string]Files{}}
	notAfter := time.Now().Add(validFor)
	for _, id := range nodes {
		f, err := ca.IssueFiles(dir, "node"+id.String(), Request{CommonName: "node " + id.String(), Node: id, Hosts: hosts, NotAfter: notAfter})
		if err != nil {
			return Dev{}, err
		}
		d.Nodes[id] = f
	}
	for _, name := range []string{DevAdmin, DevWriter, DevReader} {
		f, err := ca.IssueFiles(dir, name, Request{CommonName: name, NotAfter: notAfter})
		if err != nil {
			return Dev{}, err
		}
		d.Clients[name] = f
	}
	return d, nil
}
