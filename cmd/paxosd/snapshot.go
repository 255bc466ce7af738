package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/wal"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "work with snapshot files",
		Subcommands: []*cli.Command{{
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
		}},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown snapshot command %q; try paxosd snapshot inspect FILE", c.Args().First())}
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

type snapshotInfo struct {
	File        string   `json:"file"`
	Slot        uint64   `json:"slot"`
	AppliedHash string   `json:"applied_hash"`
	Cluster     string   `json:"cluster"`
	Members     []string `json:"members"`
	Machine     string   `json:"machine"`
	StateBytes  int64    `json:"state_bytes"`
	Checksum    string   `json:"checksum"`
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
	meta, err := wal.ReadSnapshot(nil, path, func(_ wal.SnapshotMeta, r io.Reader) error {
		var err error
		size, err = io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		return o.fail(fmt.Errorf("%w; the file cannot be used: take another snapshot", err))
	}
	info := snapshotInfo{File: path, Slot: uint64(meta.Slot), AppliedHash: fmt.Sprintf("%016x", meta.Hash),
		Cluster: fmt.Sprintf("%016x", meta.Cluster), Machine: meta.Machine, StateBytes: size, Checksum: "ok"}
	for _, m := range meta.Members {
		info.Members = append(info.Members, fmt.Sprintf("%d/%s", m.ID, m.Roles))
	}
	if o.json {
		o.printJSON(info)
		return nil
	}
	fmt.Fprintf(o.w, "file          %s\nslot          %d\napplied_hash  %s\ncluster       %s\nmembers       %v\nmachine       %s\nstate         %d bytes\nchecksum      ok\n",
		info.File, info.Slot, info.AppliedHash, info.Cluster, info.Members, info.Machine, info.StateBytes)
	return nil
}
