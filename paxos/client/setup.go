package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/paxosd/paxosd/paxos/wire"
)

// ErrSetup reports a connection that cannot work as the client is set up,
// whatever is retried: TLS on one side only, a member certificate the
// client does not trust, or a client certificate the member refuses. A
// call gives up with it once every member known failed so, without
// waiting for its deadline.
var ErrSetup = errors.New("client: connection set up wrongly")

// diagnose turns a failed connection to ep into an ErrSetup that says what
// to change, when it can tell; otherwise it returns err as it is. tlsCfg is
// the client's TLS configuration (nil: plaintext).
func diagnose(ep string, err error, tlsCfg *tls.Config, timeout time.Duration) error {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w: %s's certificate is not signed by a CA this client trusts: give --cacert (Config.TLS.RootCAs) the CA of the members' client-port certificates: %w", ErrSetup, ep, err)
	case errors.As(err, &host):
		return fmt.Errorf("%w: %s's certificate does not name the host dialed; dial a name it has, or give it a certificate for this one: %w", ErrSetup, ep, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: %s's certificate is not valid (expired?): %w", ErrSetup, ep, err)
	case isRemoteAlert(err):
		return fmt.Errorf("%w: %s refused this client's certificate (give --cert and --key one its --client-ca signed, not expired): %w", ErrSetup, ep, err)
	case !closedEarly(err):
		return err
	case tlsCfg == nil && speaksTLS(ep, timeout):
		return fmt.Errorf("%w: %s serves TLS and this client does not: give --cacert (and --cert, --key if it asks for a client certificate), or Config.TLS", ErrSetup, ep)
	case tlsCfg != nil && speaksPlaintext(ep, timeout):
		return fmt.Errorf("%w: %s does not serve TLS: drop --cacert, --cert and --key (or Config.TLS), or give the member --client-cert and --client-key", ErrSetup, ep)
	}
	return err
}

// isRemoteAlert reports a TLS alert the other side sent.
func isRemoteAlert(err error) bool {
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "remote error"
}

// closedEarly reports a connection the member closed or reset during the
// handshake, as one that speaks the other protocol does.
func closedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// speaksTLS reports whether ep answers a TLS handshake (whatever it thinks
// of this client).
func speaksTLS(ep string, timeout time.Duration) bool {
	return probe(ep, timeout, func(nc net.Conn) bool {
		// NB: only to see whether the other side speaks TLS; nothing is
		// sent over this connection.
		err := tls.Client(nc, &tls.Config{InsecureSkipVerify: true}).Handshake()
		return err == nil || isRemoteAlert(err)
	})
}

// speaksPlaintext reports whether ep answers a plaintext Hello.
func speaksPlaintext(ep string, timeout time.Duration) bool {
	return probe(ep, timeout, func(nc net.Conn) bool {
		hello := wire.Hello{Kind: wire.HelloClient, Version: wire.ProtocolVersion}
		if _, err := nc.Write(wire.Append(nil, &hello)); err != nil {
			return false
		}
		_, err := wire.ReadFrame(nc, wire.MaxHelloFrame, nil)
		return err == nil
	})
}

// probe dials ep and asks try about the connection, all within timeout.
func probe(ep string, timeout time.Duration, try func(net.Conn) bool) bool {
	nc, err := net.DialTimeout("tcp", ep, timeout)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	return try(nc)
}
