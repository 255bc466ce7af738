package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/server"
)

// tlsClientFlags are the client commands' TLS flags, named as etcdctl's.
func tlsClientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cacert", Usage: "connect over TLS, trusting the CA certificates in this PEM file (the members' client-port certificates must chain to one)", EnvVars: env("CACERT")},
		&cli.StringFlag{Name: "cert", Usage: "client certificate (PEM) for members that ask for one (serve --client-ca); its common name picks the client's role", EnvVars: env("CERT")},
		&cli.StringFlag{Name: "key", Usage: "private key (PEM) of --cert", EnvVars: env("KEY")},
	}
}

// clientTLS builds the TLS configuration the client flags ask for; nil
// without --cacert, --cert and --key: plaintext.
func clientTLS(c *cli.Context) (*tls.Config, error) {
	return tlsFrom(c.String("cacert"), c.String("cert"), c.String("key"), "--cacert", "--cert", "--key")
}

func tlsFrom(ca, cert, key, caFlag, certFlag, keyFlag string) (*tls.Config, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	if (cert == "") != (key == "") {
		return nil, usageError{fmt.Errorf("%s and %s go together: a client certificate and its key", certFlag, keyFlag)}
	}
	cfg, err := certs.ClientConfig(ca, cert, key)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s/%s/%s: %w", caFlag, certFlag, keyFlag, err)}
	}
	return cfg, nil
}

// newClient connects to endpoints with the client flags' TLS settings.
func newClient(c *cli.Context, endpoints []string, timeout time.Duration) (*client.Client, error) {
	t, err := clientTLS(c)
	if err != nil {
		return nil, err
	}
	cl, err := client.NewWithConfig(client.Config{Endpoints: endpoints, Timeout: timeout, TLS: t})
	if err != nil {
		return nil, usageError{fmt.Errorf("--endpoints: %w", err)}
	}
	return cl, nil
}

// serveTLSFlags are serve's TLS flags.
func serveTLSFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "peer-cert", Usage: "this member's peer certificate (PEM), with the URI SAN paxosd://node/ID; turns on mutual TLS between members (every member needs it)", EnvVars: env("PEER_CERT")},
		&cli.StringFlag{Name: "peer-key", Usage: "private key (PEM) of --peer-cert", EnvVars: env("PEER_KEY")},
		&cli.StringFlag{Name: "peer-ca", Usage: "CA certificates (PEM) that peers' certificates must chain to", EnvVars: env("PEER_CA")},
		&cli.StringFlag{Name: "client-cert", Usage: "certificate (PEM) to serve clients with over TLS; it must name the host clients dial", EnvVars: env("CLIENT_CERT")},
		&cli.StringFlag{Name: "client-key", Usage: "private key (PEM) of --client-cert", EnvVars: env("CLIENT_KEY")},
		&cli.StringFlag{Name: "client-ca", Usage: "CA certificates (PEM): clients must present a certificate from one of them (needs --client-cert)", EnvVars: env("CLIENT_CA")},
		&cli.StringFlag{Name: "client-roles", Usage: "roles of client certificates by common name, NAME=ROLE,… with ROLE readonly, readwrite or admin and NAME * for every other (default: every certificate --client-ca accepts is admin)", EnvVars: env("CLIENT_ROLES")},
		&cli.StringFlag{Name: "join-cacert", Usage: "with --join to a cluster whose client ports serve TLS: the CA of their certificates", EnvVars: env("JOIN_CACERT")},
		&cli.StringFlag{Name: "join-cert", Usage: "with --join: a client certificate with the admin role there (joining reads a snapshot)", EnvVars: env("JOIN_CERT")},
		&cli.StringFlag{Name: "join-key", Usage: "private key of --join-cert", EnvVars: env("JOIN_KEY")},
	}
}

// loadServeTLS reads serve's TLS flags into cfg. Without --peer-cert it
// warns that peers are not authenticated.
func loadServeTLS(c *cli.Context, cfg *server.Config, logger *slog.Logger) error {
	peer := certs.Files{Cert: c.String("peer-cert"), Key: c.String("peer-key"), CA: c.String("peer-ca")}
	switch {
	case peer == certs.Files{}:
		logger.Warn("peer connections are plaintext and unauthenticated: anyone who reaches --listen-peer and knows the cluster ID can act as a member. Fine for trying paxosd; in production give every member --peer-cert, --peer-key and --peer-ca")
	case peer.Cert == "" || peer.Key == "" || peer.CA == "":
		return usageError{errors.New("--peer-cert, --peer-key and --peer-ca go together: mutual TLS needs this member's certificate, its key, and the CA that signs every member's")}
	default:
		src, err := certs.Load(peer, logger)
		if err != nil {
			return usageError{fmt.Errorf("--peer-cert: %w", err)}
		}
		if err := src.VerifyOwn(); err != nil {
			return usageError{fmt.Errorf("--peer-cert %s: %w; the other members would refuse it", peer.Cert, err)}
		}
		if id := certs.NodeOf(src.Leaf()); id != cfg.ID {
			return usageError{fmt.Errorf("--peer-cert %s is for %s, but this is member %d; give it a certificate with the URI SAN %s", peer.Cert, certs.DescribeNode(id), cfg.ID, certs.NodeURI(cfg.ID))}
		}
		cfg.PeerTLS = src
	}
	cl := certs.Files{Cert: c.String("client-cert"), Key: c.String("client-key"), CA: c.String("client-ca")}
	switch {
	case cl == certs.Files{}:
		if c.IsSet("client-roles") {
			return usageError{errors.New("--client-roles needs --client-cert, --client-key and --client-ca: roles go by client certificates")}
		}
		logger.Warn("the client port is plaintext and unauthenticated: every client that reaches --listen-client may read, write and change the members. Give --client-cert, --client-key and --client-ca")
		return nil
	case cl.Cert == "" || cl.Key == "":
		return usageError{errors.New("--client-cert and --client-key go together (and --client-ca, for client certificates, needs them)")}
	}
	src, err := certs.Load(cl, logger)
	if err != nil {
		return usageError{fmt.Errorf("--client-cert: %w", err)}
	}
	cfg.ClientTLS = src
	if s := c.String("client-roles"); s != "" {
		if cl.CA == "" {
			return usageError{errors.New("--client-roles needs --client-ca: roles go by client certificates, which only members with --client-ca ask for")}
		}
		if cfg.ClientRoles, err = server.ParseClientRoles(s); err != nil {
			return usageError{fmt.Errorf("--client-roles: %w", err)}
		}
	}
	if cl.CA == "" {
		logger.Warn("clients are not authenticated: every client that reaches --listen-client may read and write. Give --client-ca to ask for client certificates")
	}
	return nil
}

// joinTLS is the TLS configuration serve --join reaches the cluster with.
func joinTLS(c *cli.Context) (*tls.Config, error) {
	return tlsFrom(c.String("join-cacert"), c.String("join-cert"), c.String("join-key"), "--join-cacert", "--join-cert", "--join-key")
}

// devTLSHelp tells how to reach a dev cluster started with --tls.
func devTLSHelp(d certs.Dev) string {
	admin := d.Clients[certs.DevAdmin]
	var b strings.Builder
	fmt.Fprintf(&b, "TLS is on, with throwaway certificates in %s. Client commands need them:\n", strings.TrimSuffix(d.CA, "/ca.crt"))
	fmt.Fprintf(&b, "  export PAXOSD_CACERT=%s PAXOSD_CERT=%s PAXOSD_KEY=%s\n", d.CA, admin.Cert, admin.Key)
	fmt.Fprintf(&b, "That is the admin certificate; %s (read-write) and %s (read-only) sit beside it.\n", d.Clients[certs.DevWriter].Cert, d.Clients[certs.DevReader].Cert)
	return b.String()
}
