package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/client"
)

func watchCommand() *cli.Command {
	return clientCommand("watch", "KEY [END]", "print every change of a key or a range as it happens", `Prints each change of KEY (with --prefix: of the keys that start with KEY;
with END: of the keys from KEY up to END, END excluded, "" for no end), in
revision order, each once, until interrupted (or --max-events). A put prints
three lines, PUT, the key and the value; a delete two, DELETE and the key.
With -o json each change is one JSON object on its own line.

--rev N starts at revision N, from the cluster's history, so that a watch
that stopped at revision R resumes with --rev R+1 and misses nothing; by
default the watch starts after the current revision. The watch resumes by
itself after a broken connection or a new leader. A revision the history no
longer keeps (see compact) ends it with an error and exit status 1: read the
state, then watch from its revision.

--timeout bounds each request, not the watch.`, -1, []cli.Flag{
		&cli.BoolFlag{Name: "prefix", Usage: "every key that starts with KEY", EnvVars: env("PREFIX")},
		&cli.Uint64Flag{Name: "rev", Usage: "the first revision to print (0: changes from now on)", EnvVars: env("REV")},
		&cli.IntFlag{Name: "max-events", Usage: "exit after this many changes (0: never)", EnvVars: env("MAX_EVENTS")},
	}, runWatch)
}

func runWatch(c *cli.Context, cl *client.Client, o *output) error {
	args := c.Args().Slice()
	wo := client.WatchOptions{Rev: c.Uint64("rev")}
	switch {
	case len(args) == 1 && c.Bool("prefix"):
		wo.Prefix = true
	case len(args) == 2 && !c.Bool("prefix"):
		wo.End, wo.Ranged = args[1], true
	case len(args) == 1:
		if args[0] == "" {
			return usageError{fmt.Errorf("KEY is empty: give a key, or watch every key with: watch \"\" --prefix")}
		}
	default:
		return usageError{fmt.Errorf("watch takes KEY, KEY --prefix, or KEY END")}
	}
	if c.Int("max-events") < 0 {
		return usageError{fmt.Errorf("--max-events %d: give 0 (never stop) or more", c.Int("max-events"))}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for e := range cl.Watch(ctx, args[0], wo) {
		if e.Err != nil {
			return e.Err
		}
		printEvent(o, e)
		if n++; n == c.Int("max-events") {
			return nil
		}
	}
	return nil
}

func printEvent(o *output, e client.Event) {
	kind := "PUT"
	if e.Delete {
		kind = "DELETE"
	}
	switch {
	case o.json:
		obj := map[string]any{"type": kind, "key": string(e.Key), "mod_revision": e.ModRevision}
		if !e.Delete {
			obj["create_revision"], obj["version"] = e.CreateRevision, e.Version
			putValue(obj, e.Value)
		}
		o.printJSON(obj)
	case e.Delete:
		fmt.Fprintf(o.w, "DELETE\n%s\n", e.Key)
	default:
		fmt.Fprintf(o.w, "PUT\n%s\n%s\n", e.Key, e.Value)
	}
	if f, ok := o.w.(interface{ Sync() error }); ok {
		_ = f.Sync() // NB: a pipe reader sees each change as it comes
	}
}

func compactCommand() *cli.Command {
	return clientCommand("compact", "REV", "drop the history up to a revision", `Drops the changes up to revision REV from the cluster's history: reads at
those revisions (get --rev) and watches from them fail after it. The state at
REV itself stays readable. The cluster also drops history by itself: it keeps
at most 32 MiB of changes, none older than an hour. Compacting a revision
already compacted fails, naming the newest one compacted.`, 1, nil, runCompact)
}

func runCompact(c *cli.Context, cl *client.Client, o *output) error {
	rev, err := strconv.ParseUint(c.Args().First(), 10, 64)
	if err != nil || rev == 0 {
		return usageError{fmt.Errorf("REV %q: give a revision, a positive number (get -o json shows them)", c.Args().First())}
	}
	ctx, cancel := ctxFor(c)
	defer cancel()
	err = cl.Compact(ctx, rev)
	o.number(err, "compacted", rev, "compacted up to revision %d\n")
	return err
}
