package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/statemachine"
)

// The dev cluster's addresses; client commands default to them.
const (
	devHost       = "127.0.0.1"
	devClientPort = 7001
	devPeerPort   = 7101
	devMembers    = 3
)

func devEndpoints() string {
	var eps []string
	for i := range devMembers {
		eps = append(eps, net.JoinHostPort(devHost, strconv.Itoa(devClientPort+i)))
	}
	return strings.Join(eps, ",")
}

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a whole 3-member cluster in this process, to try paxosd",
		Description: `Starts three members in one process, talking over real TCP on loopback and
keeping their state in Pebble under --data-dir, one subdirectory per member.
Client commands (put, get, status, …) reach it without flags. Ctrl-C stops it;
starting it again with the same --data-dir keeps the data.`,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: filepath.Join(os.TempDir(), "paxosd-dev"), Usage: "where the members keep their state", EnvVars: env("DEV_DATA_DIR")},
			&cli.IntFlag{Name: "client-port", Value: devClientPort, Usage: "client port of member 1; members 2 and 3 use the next two", EnvVars: env("DEV_CLIENT_PORT")},
			&cli.IntFlag{Name: "peer-port", Value: devPeerPort, Usage: "peer port of member 1; members 2 and 3 use the next two", EnvVars: env("DEV_PEER_PORT")},
			configFlag(),
			&cli.BoolFlag{Name: "tls", Usage: "run over TLS with throwaway certificates made in DATA-DIR/tls at each start: mutual TLS between members, client certificates with roles on the client ports", EnvVars: env("DEV_TLS")},
		}, tuningFlags()...), logFlags("warn")...),
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("dev takes no arguments, got %q", c.Args().Slice())}
	}
	if err := applyConfigFile(c); err != nil {
		return err
	}
	logger, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if err := applyMemoryLimit(c); err != nil {
		return err
	}
	cp, pp := c.Int("client-port"), c.Int("peer-port")
	if cp < 1 || cp+devMembers > 65536 || pp < 1 || pp+devMembers > 65536 || (pp < cp+devMembers && cp < pp+devMembers) {
		return usageError{errors.New("--client-port and --peer-port need three free ports each, not overlapping")}
	}
	if err := startPprof(c, logger); err != nil {
		return err
	}
	root := c.String("data-dir")
	tmpl, err := memberConfig(c, logger)
	if err != nil {
		return err
	}
	machine := c.String("machine")
	tlsDir := ""
	if c.Bool("tls") {
		tlsDir = filepath.Join(root, "tls")
	}
	l, err := server.StartLocal(server.LocalConfig{
		TLSDir: tlsDir,
		Dir:    root, Size: devMembers, Host: devHost, ClientPort: cp, PeerPort: pp, Template: tmpl,
		Machine: func() statemachine.Machine {
			m, _ := statemachine.New(machine) // memberConfig checked the name
			return m
		},
	})
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "listen" {
			return fmt.Errorf("%w (is another paxosd dev running? stop it, or pick other ports with --client-port and --peer-port)", err)
		}
		return err
	}
	servers := l.Servers()
	bootstrap := l.Bootstrapped()
	stopAll := l.Stop
	w := c.App.Writer
	state := "new cluster"
	if !bootstrap {
		state = "data kept from the last run"
	}
	fmt.Fprintf(w, "paxosd dev: 3 members running, data in %s (%s)\n", root, state)
	for _, s := range servers {
		fmt.Fprintf(w, "  member %d: client %s, peer %s\n", s.ID(), s.ClientAddr(), s.PeerAddr())
	}
	endpoints := ""
	if cp != devClientPort {
		endpoints = " --endpoints " + strings.Join(clientAddrs(servers), ",")
	}
	if tlsDir != "" {
		fmt.Fprintf(w, "\n%s", devTLSHelp(l.Certificates()))
	}
	fmt.Fprintf(w, `
Try, in another terminal:
  paxosd put%[1]s greeting hello
  paxosd get%[1]s greeting
  paxosd status%[1]s

Press Ctrl-C to stop. Running paxosd dev again keeps the data.
`, endpoints)
	err = waitForSignal(logger, l.Wait, stopAll)
	if err == nil {
		fmt.Fprintln(w, "paxosd dev: stopped")
	}
	return err
}

func clientAddrs(ss []*server.Server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ClientAddr())
	}
	return out
}
