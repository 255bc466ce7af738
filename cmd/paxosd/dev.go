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

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/server"
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
		}, tuningFlags()...), logFlags("warn")...),
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("dev takes no arguments, got %q", c.Args().Slice())}
	}
	logger, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	cp, pp := c.Int("client-port"), c.Int("peer-port")
	if cp < 1 || cp+devMembers > 65536 || pp < 1 || pp+devMembers > 65536 || (pp < cp+devMembers && cp < pp+devMembers) {
		return usageError{errors.New("--client-port and --peer-port need three free ports each, not overlapping")}
	}
	root := c.String("data-dir")
	members := paxos.Uniform(devMembers)
	addrs := map[paxos.NodeID]string{}
	for i := range devMembers {
		addrs[paxos.NodeID(i+1)] = net.JoinHostPort(devHost, strconv.Itoa(pp+i))
	}
	// Bootstrap when every member's directory is empty; refuse a mix,
	// which would mean some member lost its data.
	empty := 0
	for i := range devMembers {
		e, err := isEmptyDir(filepath.Join(root, strconv.Itoa(i+1)))
		if err != nil {
			return err
		}
		if e {
			empty++
		}
	}
	if empty != 0 && empty != devMembers {
		return fmt.Errorf("%s holds data for some members but not all; remove the whole directory to start afresh, or pick another --data-dir", root)
	}
	bootstrap := empty == devMembers

	var servers []*server.Server
	stopAll := func() error {
		var first error
		for _, s := range servers {
			if err := s.Stop(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for i := range devMembers {
		id := paxos.NodeID(i + 1)
		cfg, err := memberConfig(c, logger)
		if err != nil {
			stopAll()
			return err
		}
		cfg.ID, cfg.Members, cfg.PeerAddrs, cfg.ClusterToken = id, members, addrs, "paxosd-dev"
		cfg.DataDir, cfg.Bootstrap = filepath.Join(root, id.String()), bootstrap
		clientAddr := net.JoinHostPort(devHost, strconv.Itoa(cp+i))
		if cfg.PeerListener, err = net.Listen("tcp", addrs[id]); err == nil {
			if cfg.ClientListener, err = net.Listen("tcp", clientAddr); err != nil {
				cfg.PeerListener.Close()
			}
		}
		if err != nil {
			stopAll()
			return fmt.Errorf("member %d: %w (is another paxosd dev running? stop it, or pick other ports with --client-port and --peer-port)", id, err)
		}
		s, err := server.Start(cfg)
		if err != nil {
			stopAll()
			return fmt.Errorf("member %d: %w", id, err)
		}
		servers = append(servers, s)
	}
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
	fmt.Fprintf(w, `
Try, in another terminal:
  paxosd put%[1]s greeting hello
  paxosd get%[1]s greeting
  paxosd status%[1]s

Press Ctrl-C to stop. Running paxosd dev again keeps the data.
`, endpoints)
	wait := func() error {
		errs := make(chan error, len(servers))
		for _, s := range servers {
			go func() { errs <- s.Wait() }()
		}
		return <-errs
	}
	err = waitForSignal(logger, wait, stopAll)
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

func isEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
	return len(entries) == 0, nil
}
