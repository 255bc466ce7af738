package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/statemachine"
)

func env(name string) []string { return []string{"PAXOSD_" + name} }

// logFlags are shared by serve and dev.
func logFlags(level string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pprof", Usage: "serve Go's profiling endpoints (/debug/pprof/) alone on this address, e.g. 127.0.0.1:6060 (serve's --listen-admin serves them too)", EnvVars: env("PPROF")},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json", EnvVars: env("LOG_FORMAT")},
		&cli.StringFlag{Name: "log-level", Value: level, Usage: "least important logs shown: debug, info, warn or error", EnvVars: env("LOG_LEVEL")},
	}
}

// tuningFlags are shared by serve and dev.
func tuningFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "machine", Value: "kv", Usage: "state machine to run (" + strings.Join(statemachine.Names(), ", ") + ")", EnvVars: env("MACHINE")},
		&cli.DurationFlag{Name: "tick", Value: 20 * time.Millisecond, Usage: "length of one tick; elections and heartbeats count ticks", EnvVars: env("TICK")},
		&cli.IntFlag{Name: "election-ticks", Value: 10, Usage: "ticks without a leader before a proposer campaigns (randomized up to twice this)", EnvVars: env("ELECTION_TICKS")},
		&cli.IntFlag{Name: "heartbeat-ticks", Value: 2, Usage: "ticks between leader heartbeats", EnvVars: env("HEARTBEAT_TICKS")},
		&cli.DurationFlag{Name: "request-timeout", Value: 5 * time.Second, Usage: "how long a proposed command may take before the client is told its outcome is unknown", EnvVars: env("REQUEST_TIMEOUT")},
		&cli.StringFlag{Name: "disk-reserve", Value: "64MiB", Usage: "free space below which the member counts its disk as full: it hands leadership over, takes no writes and serves reads until a quarter more is free (0: only when a write fails with ENOSPC)", EnvVars: env("DISK_RESERVE")},
		&cli.DurationFlag{Name: "disk-stall", Value: time.Second, Usage: "a leader whose fsync takes longer hands leadership to another member (0: never)", EnvVars: env("DISK_STALL")},
		&cli.StringFlag{Name: "memory-limit", Value: "0", Usage: "soft limit on the process's Go memory, e.g. 256MiB: the collector works harder near it (0: none; see README, Memory)", EnvVars: env("MEMORY_LIMIT")},
	}, snapshotFlags()...)
}

// applyMemoryLimit sets the Go runtime's soft memory limit from
// --memory-limit, if one is given.
func applyMemoryLimit(c *cli.Context) error {
	n, err := parseSize(c.String("memory-limit"))
	if err != nil {
		return usageError{fmt.Errorf("--memory-limit: %w", err)}
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// snapshotFlags are shared by serve, dev and bench --local.
func snapshotFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "snapshot-every", Value: server.DefaultSnapshotEvery, Usage: "snapshot the state every this many applied slots and drop the log before it (0: never on slot count)", EnvVars: env("SNAPSHOT_EVERY")},
		&cli.StringFlag{Name: "snapshot-bytes", Value: "32MiB", Usage: "also snapshot once this much log was applied since the last one, e.g. 64MiB (0: never on size)", EnvVars: env("SNAPSHOT_BYTES")},
		&cli.StringFlag{Name: "snapshot-rate", Value: "64MiB", Usage: "most bytes per second sent to members catching up by snapshot, e.g. 20MiB (0: no limit)", EnvVars: env("SNAPSHOT_RATE")},
	}
}

// snapshotConfig reads snapshotFlags into cfg.
func snapshotConfig(c *cli.Context, cfg *server.Config) error {
	every := c.Int("snapshot-every")
	bytes, err := parseSize(c.String("snapshot-bytes"))
	if err != nil {
		return usageError{fmt.Errorf("--snapshot-bytes: %w", err)}
	}
	rate, err := parseSize(c.String("snapshot-rate"))
	if err != nil {
		return usageError{fmt.Errorf("--snapshot-rate: %w", err)}
	}
	if every < 0 {
		return usageError{errors.New("--snapshot-every must be 0 (off) or more")}
	}
	// In server.Config zero means the default and a negative value off.
	off := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	cfg.SnapshotEvery, cfg.SnapshotBytes, cfg.SnapshotRate = int(off(int64(every))), off(bytes), off(rate)
	return nil
}

// parseSize reads a byte count such as 4096, 512KiB, 64MiB or 1GiB (K, M and
// G alone, and KB, MB and GB, mean the same binary units).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size; write bytes, or a number with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run one member of a cluster",
		UsageText: "paxosd serve --id 1 --data-dir ./data/1 --listen-peer 127.0.0.1:7101 --listen-client 127.0.0.1:7001 [--cluster 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 --bootstrap | --join 127.0.0.1:7001]",
		Description: `Runs one paxosd daemon. Every flag can also be set with the environment
variable shown.

First start of a new cluster: give every member --bootstrap and --cluster,
which lists every member as ID=HOST:PORT (its peer address), optionally
followed by /ROLES to give it only some roles, for example
4=10.0.0.4:7101/acceptor or 5=10.0.0.5:7101/proposer+learner.

Joining a running cluster: run 'paxosd member add' against it, then start the
new member with an empty --data-dir and --join, the client addresses of one or
more members. It starts from a snapshot of theirs, catches up, and gets its
roles once it has.

Restart: --id, --data-dir and the listen addresses are enough; the member
takes the cluster's configuration from its data. The first start's flags may
be given again: --bootstrap is then ignored, and without it a --cluster that
disagrees with the data is refused. A member that lost its data must not be
bootstrapped alone (an acceptor that forgot its promises can break
agreement), and its peers refuse it if it is: remove its ID and join under a
new one.

--config FILE reads settings from a YAML file whose keys are the long flag
names (data-dir: /var/lib/paxosd, bootstrap: true; a list is joined with
commas). A flag on the command line wins over its environment variable,
which wins over the file, which wins over the default. An unknown key is an
error.

SIGINT or SIGTERM stops the member cleanly; a second signal stops it at once.`,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags: append(append([]cli.Flag{
			&cli.Uint64Flag{Name: "id", Usage: "this member's node ID (required, unless --id-from-hostname)", EnvVars: env("ID")},
			&cli.BoolFlag{Name: "id-from-hostname", Usage: "take the node ID from the number that ends the host name, plus one (paxosd-0 is member 1), as in a Kubernetes StatefulSet", EnvVars: env("ID_FROM_HOSTNAME")},
			&cli.StringFlag{Name: "data-dir", Usage: "directory of this member's durable state (required)", EnvVars: env("DATA_DIR")},
			&cli.StringFlag{Name: "listen-peer", Usage: "address to accept peers on (default: this member's --cluster address; required without --cluster)", EnvVars: env("LISTEN_PEER")},
			&cli.StringFlag{Name: "listen-client", Value: "127.0.0.1:7001", Usage: "address to accept clients on", EnvVars: env("LISTEN_CLIENT")},
			&cli.StringFlag{Name: "advertise-client", Usage: "client address other members give clients they redirect here (default: --listen-client)", EnvVars: env("ADVERTISE_CLIENT")},
			&cli.StringFlag{Name: "cluster", Usage: "every member, as ID=HOST:PORT[/ROLES],… (with --bootstrap; later only checked against the data)", EnvVars: env("CLUSTER")},
			&cli.StringFlag{Name: "join", Usage: "client addresses of members of a running cluster to join, comma-separated (first start only)", EnvVars: env("JOIN")},
			&cli.StringFlag{Name: "cluster-token", Value: "paxosd", Usage: "name that tells this cluster from others with the same members; part of the cluster ID", EnvVars: env("CLUSTER_TOKEN")},
			&cli.BoolFlag{Name: "bootstrap", Usage: "initialise an empty data directory (first start of a new cluster only)", EnvVars: env("BOOTSTRAP")},
			&cli.StringFlag{Name: "roles", Usage: "this member's roles, e.g. proposer,acceptor,learner; must agree with --cluster", EnvVars: env("ROLES")},
		}, append(append(append(serveTLSFlags(), adminFlags()...), configFlag()), tuningFlags()...)...), logFlags("info")...),
		Action: runServe,
	}
}

// parseCluster parses ID=HOST:PORT[/ROLES],… into the membership and the
// peer addresses.
func parseCluster(s string) (paxos.Membership, map[paxos.NodeID]string, error) {
	addrs := map[paxos.NodeID]string{}
	var members []paxos.Member
	if strings.TrimSpace(s) == "" {
		return paxos.Membership{}, nil, errors.New("--cluster is required: list every member as ID=HOST:PORT, for example 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103")
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		idStr, rest, ok := strings.Cut(part, "=")
		if !ok {
			return paxos.Membership{}, nil, fmt.Errorf("--cluster entry %q is not ID=HOST:PORT", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return paxos.Membership{}, nil, fmt.Errorf("--cluster entry %q: the ID must be a positive integer", part)
		}
		addr, roleStr, hasRoles := strings.Cut(rest, "/")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return paxos.Membership{}, nil, fmt.Errorf("--cluster entry %q: %q is not HOST:PORT", part, addr)
		}
		roles := paxos.RoleAll
		if hasRoles {
			if roles, err = parseRoles(strings.ReplaceAll(roleStr, "+", ",")); err != nil {
				return paxos.Membership{}, nil, fmt.Errorf("--cluster entry %q: %w", part, err)
			}
		}
		if _, dup := addrs[paxos.NodeID(id)]; dup {
			return paxos.Membership{}, nil, fmt.Errorf("--cluster lists member %d twice", id)
		}
		addrs[paxos.NodeID(id)] = addr
		members = append(members, paxos.Member{ID: paxos.NodeID(id), Roles: roles})
	}
	cfg, err := paxos.NewMembership(members...)
	if err != nil {
		return paxos.Membership{}, nil, fmt.Errorf("--cluster: %w", err)
	}
	return cfg, addrs, nil
}

func parseRoles(s string) (paxos.Role, error) {
	var r paxos.Role
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "proposer":
			r |= paxos.RoleProposer
		case "acceptor":
			r |= paxos.RoleAcceptor
		case "learner":
			r |= paxos.RoleLearner
		case "all":
			r |= paxos.RoleAll
		default:
			return 0, fmt.Errorf("unknown role %q (roles are proposer, acceptor and learner)", name)
		}
	}
	return r, nil
}

// startPprof serves Go's profiles on --pprof, if given, for as long as the
// process lives.
func startPprof(c *cli.Context, logger *slog.Logger) error {
	addr := c.String("pprof")
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	addPprof(mux)
	serveHTTP(ln, mux, "pprof", logger)
	return nil
}

func newLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", c.String("log-format"))}
}

// memberConfig builds a server.Config from the flags shared by serve and
// dev; listeners are added by the caller.
func memberConfig(c *cli.Context, logger *slog.Logger) (server.Config, error) {
	m, err := statemachine.New(c.String("machine"))
	if err != nil {
		return server.Config{}, usageError{fmt.Errorf("--machine %q: %w (known: %s)", c.String("machine"), err, strings.Join(statemachine.Names(), ", "))}
	}
	if c.Int("election-ticks") < 2 || c.Int("heartbeat-ticks") < 1 || c.Int("heartbeat-ticks") >= c.Int("election-ticks") || c.Duration("tick") <= 0 {
		return server.Config{}, usageError{errors.New("--tick must be positive and --heartbeat-ticks at least 1 and below --election-ticks")}
	}
	reserve, err := parseSize(c.String("disk-reserve"))
	if err != nil {
		return server.Config{}, usageError{fmt.Errorf("--disk-reserve: %w", err)}
	}
	if c.Duration("disk-stall") < 0 {
		return server.Config{}, usageError{errors.New("--disk-stall must be 0 (never) or more")}
	}
	// In server.Config zero means the default and a negative value off.
	if reserve == 0 {
		reserve = -1
	}
	stall := c.Duration("disk-stall")
	if stall == 0 {
		stall = -1
	}
	cfg := server.Config{
		DiskReserve:    reserve,
		DiskStall:      stall,
		Machine:        m,
		MachineName:    c.String("machine"),
		TickInterval:   c.Duration("tick"),
		ElectionTicks:  c.Int("election-ticks"),
		HeartbeatTicks: c.Int("heartbeat-ticks"),
		RequestTimeout: c.Duration("request-timeout"),
		Logger:         logger,
	}
	return cfg, snapshotConfig(c, &cfg)
}

func runServe(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("serve takes no arguments, got %q", c.Args().Slice())}
	}
	if err := applyConfigFile(c); err != nil {
		return err
	}
	logger, err := newLogger(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	id := paxos.NodeID(c.Uint64("id"))
	if c.Bool("id-from-hostname") {
		if c.IsSet("id") {
			return usageError{errors.New("give --id or --id-from-hostname, not both")}
		}
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--id-from-hostname: %w", err)
		}
		if id, err = idFromHostname(host); err != nil {
			return usageError{fmt.Errorf("--id-from-hostname: %w", err)}
		}
	}
	if id == 0 {
		return usageError{errors.New("--id is required: this member's ID in --cluster")}
	}
	if err := applyMemoryLimit(c); err != nil {
		return err
	}
	if c.String("data-dir") == "" {
		return usageError{errors.New("--data-dir is required: where this member keeps its state")}
	}
	var members paxos.Membership
	var addrs map[paxos.NodeID]string
	switch {
	case c.String("cluster") != "":
		if members, addrs, err = parseCluster(c.String("cluster")); err != nil {
			return usageError{err}
		}
		if _, ok := addrs[id]; !ok {
			return usageError{fmt.Errorf("--id %d is not in --cluster (members: %s)", id, memberIDs(members))}
		}
	case c.Bool("bootstrap"):
		return usageError{errors.New("--bootstrap needs --cluster: list every member as ID=HOST:PORT, for example 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103")}
	case c.String("listen-peer") == "":
		return usageError{errors.New("--listen-peer is required without --cluster: the address this member accepts peers on")}
	}
	if c.String("join") != "" && c.Bool("bootstrap") {
		return usageError{errors.New("--join joins a running cluster and --bootstrap starts a new one; give one of them")}
	}
	if c.IsSet("roles") && c.String("cluster") != "" {
		r, err := parseRoles(c.String("roles"))
		if err != nil {
			return usageError{fmt.Errorf("--roles: %w", err)}
		}
		if have := members.Members()[slices.IndexFunc(members.Members(), func(m paxos.Member) bool { return m.ID == id })].Roles; r != have {
			return usageError{fmt.Errorf("--roles %s disagrees with --cluster, which gives member %d the roles %s; write them in --cluster as %d=HOST:PORT/%s so every member agrees",
				r, id, have, id, strings.ReplaceAll(r.String(), ",", "+"))}
		}
	}
	cfg, err := memberConfig(c, logger)
	if err != nil {
		return err
	}
	cfg.ID, cfg.Membership, cfg.PeerAddrs = id, members, addrs
	if err := loadServeTLS(c, &cfg, logger); err != nil {
		return err
	}
	if eps := c.String("join"); eps != "" {
		if cfg.Join, cfg.JoinCluster, err = prepareJoin(c, c.String("data-dir"), eps, logger); err != nil {
			return err
		}
	}
	cfg.ClusterToken, cfg.DataDir, cfg.Bootstrap = c.String("cluster-token"), c.String("data-dir"), c.Bool("bootstrap")
	cfg.ClientAddr = c.String("advertise-client")
	peerAddr := c.String("listen-peer")
	if peerAddr == "" {
		peerAddr = addrs[id]
	}
	if cfg.PeerListener, err = net.Listen("tcp", peerAddr); err != nil {
		return fmt.Errorf("listen for peers on %s: %w (is another member running there? see --listen-peer)", peerAddr, err)
	}
	if cfg.ClientListener, err = net.Listen("tcp", c.String("listen-client")); err != nil {
		cfg.PeerListener.Close()
		return fmt.Errorf("listen for clients on %s: %w (see --listen-client)", c.String("listen-client"), err)
	}
	if err := startPprof(c, logger); err != nil {
		cfg.PeerListener.Close()
		cfg.ClientListener.Close()
		return err
	}
	admin, err := listenAdmin(c)
	if err != nil {
		cfg.PeerListener.Close()
		cfg.ClientListener.Close()
		return err
	}
	cfg.Version = version
	srv, err := server.Start(cfg)
	if err != nil {
		if cfg.Join != "" {
			os.Remove(cfg.Join)
		}
		if admin != nil {
			admin.Close()
		}
		return err
	}
	if admin != nil {
		serveHTTP(admin, adminHandler(srv, c.Uint64("ready-max-lag")), "metrics, health and profiles", logger)
	}
	return waitForSignal(logger, srv.Wait, srv.Stop)
}

// prepareJoin fetches the snapshot a joining member starts from, into a
// temporary file whose name it returns. When the data directory holds data
// already (a restart with the first start's flags), it fetches nothing and
// returns the cluster ID of the --join members instead, which the data must
// belong to (0 if none answers: the restart goes on).
func prepareJoin(c *cli.Context, dataDir, endpoints string, logger *slog.Logger) (string, uint64, error) {
	t, err := joinTLS(c)
	if err != nil {
		return "", 0, err
	}
	var eps []string
	for _, ep := range strings.Split(endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if entries, err := os.ReadDir(dataDir); err == nil && len(entries) > 0 {
		logger.Info("the data directory holds this member's data already; --join only checks the cluster", "dir", dataDir)
		return "", joinCluster(c.Context, eps, t), nil
	}
	f, err := os.CreateTemp("", "paxosd-join-*.pxsnap")
	if err != nil {
		return "", 0, fmt.Errorf("--join: a temporary file for the snapshot: %w", err)
	}
	defer f.Close()
	logger.Info("fetching a snapshot to join from", "endpoints", eps)
	if err := fetchJoinSnapshot(c.Context, eps, t, f); err != nil {
		os.Remove(f.Name())
		return "", 0, err
	}
	return f.Name(), 0, nil
}

// waitForSignal blocks until the members stop on their own (wait returns) or
// a signal asks them to; a second signal exits at once.
func waitForSignal(logger *slog.Logger, wait func() error, stop func() error) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopped := make(chan error, 1)
	go func() { stopped <- wait() }()
	select {
	case err := <-stopped:
		if serr := stop(); err == nil {
			err = serr
		}
		return err
	case sig := <-sigs:
		logger.Info("stopping", "signal", sig.String())
	}
	go func() {
		sig := <-sigs
		logger.Warn("second signal, exiting at once", "signal", sig.String())
		os.Exit(exitFailed)
	}()
	return stop()
}

// idFromHostname reads the ordinal that ends a StatefulSet pod's host name
// (paxosd-2) and returns it plus one: node IDs start at 1.
func idFromHostname(host string) (paxos.NodeID, error) {
	i := strings.LastIndexByte(host, '-')
	n, err := strconv.ParseUint(host[i+1:], 10, 63)
	if i < 0 || err != nil {
		return 0, fmt.Errorf("host name %q does not end in -N (a StatefulSet pod's ordinal)", host)
	}
	return paxos.NodeID(n + 1), nil
}

func memberIDs(c paxos.Membership) string {
	var ids []string
	for _, m := range c.Members() {
		ids = append(ids, m.ID.String())
	}
	return strings.Join(ids, ", ")
}
