package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/server"
	"github.com/paxosd/paxosd/wal"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "work with snapshot files",
		Subcommands: []*cli.Command{{
			Name:      "save",
			Usage:     "take a snapshot on a live member and save it to a file",
			ArgsUsage: "FILE",
			Description: `Asks the first member in --endpoints to snapshot its state now, streams the
snapshot to FILE, checks it, and syncs it. FILE is written under a temporary
name and renamed only once it checks out, so it is never left half-written;
an existing FILE is replaced. Prints the slot the snapshot covers.`,
			OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
			Flags:        clientFlags(),
			Action:       runSnapshotSave,
		}, {
			Name:      "inspect",
			Usage:     "check a snapshot file and print what it holds",
			ArgsUsage: "FILE",
			Description: `Reads the whole file, checks its checksum, and prints the slot it covers,
the applied hash at that slot, the cluster and its members, the state
machine and the size of the state. Exits 1 if the file fails a check.`,
			OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json", EnvVars: env("OUTPUT")},
			},
			Action: runSnapshotInspect,
		}, {
			Name:      "restore",
			Usage:     "start a new cluster from a saved snapshot",
			ArgsUsage: "FILE",
			Description: `Makes --data-dir (which must be empty) the first member of a new cluster
whose state is the snapshot's: every key, with its revision, as of the
snapshot's slot. The new cluster has its own cluster ID, so members of the
old one cannot reach it by mistake, and one member, --id, with every role.
Then start it (paxosd serve --id N --data-dir D --listen-peer --peer
--listen-client --client), and add the others with 'paxosd member add' and
'paxosd serve --join'.`,
			OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Usage: "the new member's data directory; must be empty (required)", EnvVars: env("DATA_DIR")},
				&cli.Uint64Flag{Name: "id", Value: 1, Usage: "the new member's node ID", EnvVars: env("ID")},
				&cli.StringFlag{Name: "peer", Usage: "the new member's peer address, HOST:PORT (required)", EnvVars: env("LISTEN_PEER")},
				&cli.StringFlag{Name: "client", Usage: "the new member's client address, HOST:PORT (required)", EnvVars: env("LISTEN_CLIENT")},
				&cli.StringFlag{Name: "cluster-token", Value: "paxosd", Usage: "the new cluster's token; part of its ID", EnvVars: env("CLUSTER_TOKEN")},
			},
			Action: runSnapshotRestore,
		}},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown snapshot command %q; try paxosd snapshot save FILE, inspect FILE or restore FILE", c.Args().First())}
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

type snapshotInfo struct {
	File        string   `json:"file"`
	Name        string   `json:"name"` // its name in a member's snapshot directory
	Slot        uint64   `json:"slot"`
	AppliedHash string   `json:"applied_hash"`
	Cluster     string   `json:"cluster"`
	Members     []string `json:"members"`
	Machine     string   `json:"machine"`
	StateBytes  int64    `json:"state_bytes"`
	Checksum    string   `json:"checksum"`
}

func runSnapshotSave(c *cli.Context) error {
	o, err := newOutput(c)
	if err != nil {
		return err
	}
	if c.NArg() != 1 {
		return o.fail(usageError{errors.New("snapshot save takes one argument: the file to write")})
	}
	path := c.Args().First()
	endpoint := strings.TrimSpace(strings.Split(c.String("endpoints"), ",")[0])
	cl, err := newClient(c, []string{endpoint}, c.Duration("timeout"))
	if err != nil {
		return o.fail(err)
	}
	defer cl.Close()
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return o.fail(fmt.Errorf("snapshot save: %w", err))
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	slot, size, err := cl.SaveSnapshot(ctx, endpoint, f)
	if err != nil {
		return o.fail(fmt.Errorf("snapshot save: %w; nothing was written to %s", err, path))
	}
	if err := f.Sync(); err != nil {
		return o.fail(fmt.Errorf("snapshot save: sync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		return o.fail(fmt.Errorf("snapshot save: close %s: %w", tmp, err))
	}
	meta, err := wal.VerifySnapshot(nil, tmp)
	if err != nil {
		return o.fail(fmt.Errorf("snapshot save: the received snapshot fails its check: %w; nothing was written to %s", err, path))
	}
	if err := os.Rename(tmp, path); err != nil {
		return o.fail(fmt.Errorf("snapshot save: %w", err))
	}
	ok = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // NB: best effort: the file itself is synced
		d.Close()
	}
	if o.json {
		o.printJSON(map[string]any{"file": path, "slot": uint64(slot), "bytes": size, "applied_hash": fmt.Sprintf("%016x", meta.Hash), "endpoint": endpoint})
		return nil
	}
	fmt.Fprintf(o.w, "saved snapshot of slot %d (%s, applied_hash %016x) from %s to %s\n", slot, humanBytes(size), meta.Hash, endpoint, path)
	return nil
}

func runSnapshotInspect(c *cli.Context) error {
	o, err := newOutput(c)
	if err != nil {
		return err
	}
	if c.NArg() != 1 {
		return o.fail(usageError{errors.New("snapshot inspect takes one argument: the snapshot file")})
	}
	path := c.Args().First()
	if _, err := os.Stat(path); err != nil {
		return o.fail(fmt.Errorf("snapshot inspect: %w", err))
	}
	var size int64
	meta, err := wal.ReadSnapshot(nil, path, func(_ wal.SnapshotHeader, r io.Reader) error {
		var err error
		size, err = io.Copy(io.Discard, r)
		return err
	})
	if errors.Is(err, wal.ErrCorrupt) {
		detail := strings.TrimPrefix(strings.TrimPrefix(err.Error(), wal.ErrCorrupt.Error()), ": ")
		return o.fail(exitError{code: exitFailed, outcomeName: "damaged",
			err: fmt.Errorf("snapshot file %s is damaged (%s); it cannot be used: take another snapshot", path, detail)})
	}
	if err != nil {
		return o.fail(fmt.Errorf("snapshot inspect %s: %w", path, err))
	}
	info := snapshotInfo{File: path, Name: wal.SnapshotFileName(meta.Slot), Slot: uint64(meta.Slot), AppliedHash: fmt.Sprintf("%016x", meta.Hash),
		Cluster: fmt.Sprintf("%016x", meta.Cluster), Machine: meta.Machine, StateBytes: size, Checksum: "ok"}
	for _, m := range meta.Members {
		info.Members = append(info.Members, fmt.Sprintf("%d/%s", m.ID, m.Roles))
	}
	if o.json {
		o.printJSON(info)
		return nil
	}
	fmt.Fprintf(o.w, "file          %s\nname          %s (in a member's DATA_DIR/snap)\nslot          %d\napplied_hash  %s\ncluster       %s\nmembers       %v\nmachine       %s\nstate         %d bytes\nchecksum      ok\n",
		info.File, info.Name, info.Slot, info.AppliedHash, info.Cluster, info.Members, info.Machine, info.StateBytes)
	return nil
}

func runSnapshotRestore(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{errors.New("restore takes one argument: the snapshot file")}
	}
	switch {
	case c.String("data-dir") == "":
		return usageError{errors.New("--data-dir is required: the new member's (empty) data directory")}
	case c.Uint64("id") == 0:
		return usageError{errors.New("--id must be a positive integer")}
	}
	for _, f := range []string{"peer", "client"} {
		if err := checkHostPort(c.String(f)); err != nil {
			return usageError{fmt.Errorf("--%s is required: %w", f, err)}
		}
	}
	cluster, slot, err := server.Restore(server.RestoreConfig{
		Snapshot: c.Args().First(), DataDir: c.String("data-dir"), ID: paxos.NodeID(c.Uint64("id")),
		PeerAddr: c.String("peer"), ClientAddr: c.String("client"), Token: c.String("cluster-token"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "restored slot %d into %s: new cluster %016x with member %d; start it with\n  paxosd serve --id %d --data-dir %s --listen-peer %s --listen-client %s\n",
		slot, c.String("data-dir"), cluster, c.Uint64("id"), c.Uint64("id"), c.String("data-dir"), c.String("peer"), c.String("client"))
	return nil
}
