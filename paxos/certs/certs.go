// Package certs is paxosd's TLS: it loads a member's certificate, key and
// CA bundle from files and reads them again when the files change (so a
// certificate is rotated without a restart), builds the TLS configurations
// of the peer and client ports, ties a peer certificate to the node ID it
// names, and issues throwaway certificates for paxosd dev --tls and tests.
//
// A member's peer certificate names its node with a URI SAN,
// paxosd://node/ID (NodeURI). A member accepts a peer only with a
// certificate from its peer CA, and only if the certificate names the node
// the peer's handshake claims to be; a dialer accepts the member it dialed
// only if that member's certificate names the node it meant to reach. Host
// names are not checked between members: the node ID takes their place.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paxosd/paxosd/paxos"
)

// ReloadEvery is how often, at most, a Source looks at its files again; it
// does so only when a handshake needs a certificate.
const ReloadEvery = time.Second

// maxFile bounds a certificate, key or CA file: a PEM bundle of hundreds of
// certificates fits; a wrong path to a huge file is refused, not read.
const maxFile = 4 << 20

// Files names the PEM files of one TLS identity: a certificate chain, its
// private key, and the CA bundle that peers' certificates must chain to. CA
// may be empty where no peer certificate is asked for.
type Files struct {
	Cert, Key, CA string
}

// Source holds a certificate, its key and a CA pool loaded from Files, and
// loads them again when the files change. A change that does not load (a
// key that does not match the new certificate yet, a half-written file)
// keeps what was loaded before and is logged once. It is safe for
// concurrent use.
type Source struct {
	files  Files
	logger *slog.Logger

	mu    sync.Mutex
	next  time.Time // when the files are looked at again
	stamp string    // sizes and times of the files as last read
	cert  *tls.Certificate
	pool  *x509.CertPool // nil without Files.CA
}

// Load reads f. The certificate and key are required, and must not have
// expired; the CA is read if named.
func Load(f Files, logger *slog.Logger) (*Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: f, logger: logger}
	s.stamp = s.stat()
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	if now := time.Now(); now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s expired on %s; issue a new one", f.Cert, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	s.cert, s.pool, s.next = cert, pool, time.Now().Add(ReloadEvery)
	return s, nil
}

// VerifyOwn checks that s's own certificate chains to its own CA, as its
// peers will check it.
func (s *Source) VerifyOwn() error {
	cert, pool := s.current()
	if pool == nil {
		return errors.New("no CA loaded")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("not signed by the CA in %s: %w", s.files.CA, err)
	}
	return nil
}

// Files returns the files s reads.
func (s *Source) Files() Files { return s.files }

// stat hashes the files' contents: a change in it means a file was
// replaced or rewritten. Contents, not sizes and times: a renewed ECDSA
// certificate has the old one's size, and a copy may keep its time.
func (s *Source) stat() string {
	h := sha256.New()
	for _, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if name == "" {
			continue
		}
		if b, err := readFile(name); err == nil {
			fmt.Fprintf(h, "%d:", len(b))
			h.Write(b)
		} else {
			h.Write([]byte("missing;"))
		}
	}
	return string(h.Sum(nil))
}

// current returns the certificate and pool, first reloading the files if
// ReloadEvery passed since they were last looked at and they changed.
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Before(s.next) {
		return s.cert, s.pool
	}
	s.next = now.Add(ReloadEvery)
	stamp := s.stat()
	if stamp == s.stamp {
		return s.cert, s.pool
	}
	s.stamp = stamp // NB: a change that fails to load is reported once
	cert, pool, err := s.files.load()
	switch {
	case err != nil:
	case time.Now().After(cert.Leaf.NotAfter):
		err = fmt.Errorf("certificate %s expired on %s", s.files.Cert, cert.Leaf.NotAfter.Format(time.RFC3339))
	case NodeOf(cert.Leaf) != NodeOf(s.cert.Leaf):
		err = fmt.Errorf("certificate %s is for %s, the one loaded before for %s", s.files.Cert, DescribeNode(NodeOf(cert.Leaf)), DescribeNode(NodeOf(s.cert.Leaf)))
	}
	if err != nil {
		s.logger.Warn("certificate files changed but do not load; still using the ones loaded before", "err", err)
		return s.cert, s.pool
	}
	s.cert, s.pool = cert, pool
	s.logger.Info("certificate files reloaded", "cert", s.files.Cert, "subject", cert.Leaf.Subject.String(), "expires", cert.Leaf.NotAfter.Format(time.RFC3339))
	return s.cert, s.pool
}

// Leaf returns the certificate s presents now.
func (s *Source) Leaf() *x509.Certificate {
	c, _ := s.current()
	return c.Leaf
}

func (f Files) load() (*tls.Certificate, *x509.CertPool, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, nil, errors.New("a certificate needs both its file and its key's file")
	}
	certPEM, err := readFile(f.Cert)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := readFile(f.Key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
	}
	if f.CA == "" {
		return &cert, nil, nil
	}
	pool, err := LoadPool(f.CA)
	if err != nil {
		return nil, nil, err
	}
	return &cert, pool, nil
}

// LoadPool reads a PEM bundle of CA certificates.
func LoadPool(name string) (*x509.CertPool, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for len(b) > 0 {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle %s: %w", name, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", name)
	}
	return pool, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is more than %d bytes, more than any certificate file; is the path right?", name, maxFile)
	}
	return b, nil
}

// NodeURI is the URI SAN that names node id in a peer certificate.
func NodeURI(id paxos.NodeID) *url.URL {
	return &url.URL{Scheme: "paxosd", Host: "node", Path: "/" + strconv.FormatUint(uint64(id), 10)}
}

// NodeOf returns the node a certificate names with a NodeURI, or 0 if it
// names none, or more than one.
func NodeOf(c *x509.Certificate) paxos.NodeID {
	var id paxos.NodeID
	for _, u := range c.URIs {
		if u.Scheme != "paxosd" || u.Host != "node" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(u.Path, "/"), 10, 64)
		if err != nil || n == 0 || (id != 0 && paxos.NodeID(n) != id) {
			return 0
		}
		id = paxos.NodeID(n)
	}
	return id
}

// PeerServer is the TLS configuration of a member's peer listener: it
// presents the member's certificate and requires one from the CA. Which
// node that certificate names is for the caller to check (NodeOf) against
// the node the peer's handshake claims.
func (s *Source) PeerServer() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			if pool == nil {
				return nil, errors.New("no peer CA loaded")
			}
			return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
		},
	}
}

// PeerClient is the TLS configuration to dial member want: it presents the
// member's certificate and accepts only a certificate from the CA that
// names node want.
func (s *Source) PeerClient(want paxos.NodeID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := s.current()
			return cert, nil
		},
		// NB: not insecure: VerifyConnection checks the chain against the
		// current CA, and the node ID in place of a host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := s.current()
			leaf, err := verify(cs, pool, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if got := NodeOf(leaf); got != want {
				return fmt.Errorf("the member dialed as node %d presented a certificate for %s; is the address of node %d right?", want, DescribeNode(got), want)
			}
			return nil
		},
	}
}

// DescribeNode names the node a certificate names (NodeOf), for errors.
func DescribeNode(id paxos.NodeID) string {
	if id == 0 {
		return "no node (it has no single paxosd://node/ID URI)"
	}
	return "node " + id.String()
}

// verify checks the peer's chain against pool for usage.
func verify(cs tls.ConnectionState, pool *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("the peer presented no certificate")
	}
	if pool == nil {
		return nil, errors.New("no CA loaded to check the peer's certificate with")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return nil, fmt.Errorf("certificate %q: %w", leaf.Subject.String(), err)
	}
	return leaf, nil
}

// ClientServer is the TLS configuration of a member's client listener: it
// presents the member's certificate and, if s has a CA, requires a client
// certificate from it.
func (s *Source) ClientServer() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
			if pool != nil {
				c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
			}
			return c, nil
		},
	}
}

// ClientConfig is the TLS configuration of a client (or a member that
// joins through the client port): it trusts the CA bundle in caFile (empty:
// the system's roots) and presents the certificate in certFile with the key
// in keyFile, if given.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, _, err := Files{Cert: certFile, Key: keyFile}.load()
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both --cert and --key")
	}
	return cfg, nil
}
