package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/client"
)

func ttlFlag() cli.Flag {
	return &cli.DurationFlag{Name: "ttl", Value: 10 * time.Second, Usage: "the lease held while waiting and holding: lost after this long without reaching the cluster", EnvVars: env("RECIPE_TTL")}
}

func lockCommand() *cli.Command {
	return clientCommand("lock", "NAME [-- CMD ARGS...]", "hold a lock while a command runs", `Waits until it holds lock NAME, then runs CMD with PAXOSD_LOCK_TOKEN set to
the lock's fencing token (a revision that grows from one holder to the next:
a resource that remembers the highest token it saw can refuse a holder that
lost the lock), releases the lock when CMD exits, and exits with CMD's status.
Without CMD it prints the token and holds the lock until interrupted.

The lock is held with a lease of --ttl, kept alive in the background. If
the lease is lost (the cluster was out of reach for that long), the lock is
gone: CMD gets SIGTERM and lock exits 1. Holders of a lock queue in the
order they asked.`, -1, []cli.Flag{ttlFlag()}, runLock)
}

// newHolder grants the lease a lock or a candidacy is held with.
func newHolder(c *cli.Context, ctx context.Context, cl *client.Client) (*client.Holder, error) {
	if c.Duration("ttl") < time.Second {
		return nil, usageError{fmt.Errorf("--ttl %v: give at least 1s", c.Duration("ttl"))}
	}
	rctx, cancel := ctxFor(c)
	defer cancel()
	return cl.NewHolder(rctx, c.Duration("ttl"))
}

func runLock(c *cli.Context, cl *client.Client, o *output) error {
	args := c.Args().Slice()
	if len(args) == 0 || args[0] == "" {
		return usageError{errors.New("lock takes NAME, then optionally -- CMD and its arguments")}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := newHolder(c, ctx, cl)
	if err != nil {
		return err
	}
	defer h.Close(context.WithoutCancel(ctx))
	m := client.NewMutex(h, args[0])
	token, err := m.Lock(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: interrupted while waiting for lock %q", client.ErrNotApplied, args[0])
		}
		return err
	}
	defer m.Unlock(context.WithoutCancel(ctx))
	if len(args) == 1 {
		if o.json {
			o.printJSON(map[string]any{"lock": args[0], "token": token})
		} else {
			fmt.Fprintf(o.w, "holding lock %s with token %d\n", args[0], token)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.Done():
			return fmt.Errorf("lock %q lost: %w", args[0], h.Err())
		}
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.App.Reader, c.App.Writer, c.App.ErrWriter
	cmd.Env = append(os.Environ(), "PAXOSD_LOCK_TOKEN="+strconv.FormatUint(token, 10), "PAXOSD_LOCK_NAME="+args[0])
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: run %s: %w", client.ErrNotApplied, args[1], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return exitError{code: ee.ExitCode(), err: fmt.Errorf("%s exited with status %d", args[1], ee.ExitCode()), quiet: true}
		}
		return err
	case <-h.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return fmt.Errorf("lock %q lost while %s ran (it was sent SIGTERM): %w", args[0], args[1], h.Err())
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return fmt.Errorf("interrupted while %s ran under lock %q", args[1], args[0])
	}
}

func electCommand() *cli.Command {
	return clientCommand("elect", "NAME [VALUE]", "campaign in a leader election, or watch one", `With VALUE, campaigns in election NAME: waits until it leads, prints the
value and the term (a revision that grows from one leader to the next), and
leads until interrupted, then resigns. The candidacy is held with a lease of
--ttl; if it is lost, elect exits 1. Candidates queue in the order they
asked.

Without VALUE (or with --listen), prints the leader's value each time the
leader changes, until interrupted.`, -1, []cli.Flag{ttlFlag(),
		&cli.BoolFlag{Name: "listen", Aliases: []string{"l"}, Usage: "watch the election instead of campaigning", EnvVars: env("ELECT_LISTEN")}}, runElect)
}

func runElect(c *cli.Context, cl *client.Client, o *output) error {
	args := c.Args().Slice()
	if len(args) == 0 || len(args) > 2 || args[0] == "" {
		return usageError{errors.New("elect takes NAME, then VALUE to campaign")}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := cl.NewElection(args[0])
	if len(args) == 1 || c.Bool("listen") {
		for ev := range e.Observe(ctx) {
			switch {
			case ev.Err != nil:
				return ev.Err
			case o.json:
				obj := map[string]any{"election": args[0], "term": ev.Term}
				if ev.Term != 0 {
					putValue(obj, ev.Value)
				}
				o.printJSON(obj)
			case ev.Term == 0:
				fmt.Fprintln(o.w, "(no leader)")
			default:
				fmt.Fprintf(o.w, "%s\n", ev.Value)
			}
		}
		return nil
	}
	h, err := newHolder(c, ctx, cl)
	if err != nil {
		return err
	}
	defer h.Close(context.WithoutCancel(ctx))
	term, err := e.Campaign(ctx, h, []byte(args[1]))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: interrupted while campaigning in %q", client.ErrNotApplied, args[0])
		}
		return err
	}
	defer e.Resign(context.WithoutCancel(ctx))
	if o.json {
		o.printJSON(map[string]any{"election": args[0], "value": args[1], "term": term})
	} else {
		fmt.Fprintf(o.w, "leading %s as %s (term %d)\n", args[0], args[1], term)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-h.Done():
		return fmt.Errorf("leadership of %q lost: %w", args[0], h.Err())
	}
}
