package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/client"
)

func leaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "lease",
		Usage: "grant, keep alive, revoke or list leases",
		Description: `A key put with --lease ID is deleted when the lease expires or is revoked.
A lease expires when the leader heard no keep-alive for its TTL; the leader
then revokes it through the log, so every member deletes its keys at the same
revision. A new leader gives every lease its TTL again, plus an election
timeout, since it cannot know the keep-alives its predecessor took.`,
		Subcommands: []*cli.Command{
			clientCommand("grant", "TTL", "grant a lease", `Grants a lease of TTL (seconds, or a duration like 30s or 5m; rounded up to
whole seconds, 1s to 1000000s) and prints its ID.`, 1, nil, runLeaseGrant),
			clientCommand("keep-alive", "ID", "keep a lease alive until interrupted", `Renews lease ID at a third of its TTL, printing each renewal, until
interrupted; --once renews it once. Exits 3 when the lease is gone (expired or
revoked: its keys were deleted). --timeout bounds each renewal.`, 1,
				[]cli.Flag{&cli.BoolFlag{Name: "once", Usage: "renew once and exit", EnvVars: env("LEASE_ONCE")}}, runLeaseKeepAlive),
			clientCommand("revoke", "ID", "revoke a lease and delete its keys", `Revokes lease ID and deletes its keys, in one revision. Exits 3 if the lease
is not granted.`, 1, nil, runLeaseRevoke),
			clientCommand("list", "", "list the leases", `Prints each lease's ID, its TTL and how many keys are attached to it.`, 0, nil, runLeaseList),
		},
	}
}

// parseTTL reads seconds ("10") or a duration ("10s").
func parseTTL(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageError{fmt.Errorf("TTL %q: give seconds or a duration, like 10 or 30s", s)}
	}
	return d, nil
}

func parseLeaseID(s string) (client.LeaseID, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usageError{fmt.Errorf("lease ID %q: give the number 'lease grant' printed", s)}
	}
	return client.LeaseID(n), nil
}

func runLeaseGrant(c *cli.Context, cl *client.Client, o *output) error {
	ttl, err := parseTTL(c.Args().First())
	if err != nil {
		return err
	}
	ctx, cancel := ctxFor(c)
	defer cancel()
	id, err := cl.Grant(ctx, ttl)
	if err != nil {
		return err
	}
	secs := (ttl + time.Second - 1) / time.Second
	if o.json {
		o.printJSON(map[string]any{"id": uint64(id), "ttl": int64(secs)})
	} else {
		fmt.Fprintf(o.w, "lease %d granted with TTL %ds\n", id, secs)
	}
	return nil
}

func leaseGone(id client.LeaseID, err error) error {
	if errors.Is(err, client.ErrLeaseNotFound) {
		return exitError{code: exitConditionFailed, err: err, fields: map[string]any{"id": uint64(id), "found": false}}
	}
	return err
}

func runLeaseKeepAlive(c *cli.Context, cl *client.Client, o *output) error {
	id, err := parseLeaseID(c.Args().First())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
		ttl, err := cl.KeepAliveOnce(rctx, id)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, client.ErrLeaseNotFound) || c.Bool("once") {
				return leaseGone(id, err)
			}
			fmt.Fprintf(c.App.ErrWriter, "paxosd: %v; retrying\n", err)
			ttl = 600 * time.Millisecond // retry at a third of that
		} else if o.json {
			o.printJSON(map[string]any{"id": uint64(id), "ttl": ttl.Seconds()})
		} else {
			fmt.Fprintf(o.w, "lease %d kept alive with TTL %v\n", id, ttl)
		}
		if c.Bool("once") {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(ttl/3, 100*time.Millisecond)):
		}
	}
}

func runLeaseRevoke(c *cli.Context, cl *client.Client, o *output) error {
	id, err := parseLeaseID(c.Args().First())
	if err != nil {
		return err
	}
	ctx, cancel := ctxFor(c)
	defer cancel()
	if err := cl.Revoke(ctx, id); err != nil {
		return leaseGone(id, err)
	}
	if o.json {
		o.printJSON(map[string]any{"id": uint64(id), "revoked": true})
	} else {
		fmt.Fprintf(o.w, "lease %d revoked\n", id)
	}
	return nil
}

func runLeaseList(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	ls, err := cl.Leases(ctx)
	if err != nil {
		return err
	}
	if o.json {
		list := []map[string]any{}
		for _, l := range ls {
			list = append(list, map[string]any{"id": uint64(l.ID), "ttl": l.TTL.Seconds(), "keys": l.Keys})
		}
		o.printJSON(map[string]any{"leases": list})
		return nil
	}
	fmt.Fprintf(o.w, "%-8s %-10s %s\n", "ID", "TTL", "KEYS")
	for _, l := range ls {
		fmt.Fprintf(o.w, "%-8d %-10v %d\n", l.ID, l.TTL, l.Keys)
	}
	return nil
}
