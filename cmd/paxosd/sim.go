package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/internal/sim"
)

func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "run simulated clusters under faults and check that nothing breaks",
		Description: `Runs the deterministic simulator (internal/sim): for each seed, a cluster of
two to five full members or of split roles, each member built as paxosd serve
builds one, under message loss, duplication, delay, partitions, crash-restarts,
broken client connections and replayed old requests, with clients that follow
the Go client's retry rules. It checks the invariants of docs/design.md after
every step and, once the faults stop, that everything pending finishes. The
linearizability of the client histories (invariant 6) is checked by
go test ./tests/sim, which links the checker; this command does not. A failing
seed prints what broke and the command that replays it.`,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "seed", Usage: "replay only this seed", EnvVars: []string{"PAXOSD_SIM_SEED"}},
			&cli.IntFlag{Name: "seeds", Value: 20, Usage: "how many seeds to run", EnvVars: []string{"PAXOSD_SIM_SEEDS"}},
			&cli.Uint64Flag{Name: "first-seed", Value: 1, Usage: "first seed to run", EnvVars: []string{"PAXOSD_SIM_FIRST_SEED"}},
			&cli.IntFlag{Name: "rounds", Value: 600, Usage: "ticks of faults per seed", EnvVars: []string{"PAXOSD_SIM_ROUNDS"}},
			&cli.BoolFlag{Name: "wal", Usage: "store on the real Pebble WAL (in memory) instead of the model alone", EnvVars: []string{"PAXOSD_SIM_WAL"}},
			&cli.BoolFlag{Name: "trace", Usage: "print every event (use with --seed)", EnvVars: []string{"PAXOSD_SIM_TRACE"}},
		},
		Action: runSim,
	}
}

func runSim(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("sim takes no arguments, got %q", c.Args().Slice())}
	}
	if c.Int("seeds") < 1 || c.Int("rounds") < 1 {
		return usageError{errors.New("--seeds and --rounds must be at least 1")}
	}
	first, n := c.Uint64("first-seed"), c.Int("seeds")
	if c.IsSet("seed") {
		first, n = c.Uint64("seed"), 1
	} else if c.Bool("trace") {
		return usageError{errors.New("--trace prints every event of one run: give --seed too")}
	}
	out := c.App.Writer
	failed := 0
	for seed := first; seed < first+uint64(n); seed++ {
		opts := sim.Options{Seed: seed, Rounds: c.Int("rounds"), WAL: c.Bool("wal")}
		if c.Bool("trace") {
			opts.Trace = out
		}
		st, err := sim.Run(opts)
		if err != nil {
			failed++
			fmt.Fprintf(out, "seed %d: FAILED\n%v\n", seed, err)
			continue
		}
		fmt.Fprintf(out, "seed %-5d %-6s ok: %4d slots chosen, %4d client ops answered (%d retries, %d redirects, %d unknown outcomes; learners skipped %d duplicates), %2d crashes, %2d partitions, %2d elections, %3d snapshots (%d installed from a peer), %3d truncations\n",
			seed, st.Shape, st.Chosen, st.Ops, st.Retries, st.Redirects, st.Unknown, st.DuplicateApply, st.Crashes, st.Partitions, st.Elections, st.Snapshots, st.Installs, st.Truncations)
	}
	if failed > 0 {
		return cli.Exit(fmt.Sprintf("%d of %d seeds failed; replay one with: paxosd sim --seed N --trace", failed, n), exitFailed)
	}
	fmt.Fprintf(out, "all %d seeds passed invariants 1-5 and 7-9 of docs/design.md: agreement, validity, promises, durable before visible, same history, liveness after faults, safe truncation, honest answers (linearizability, 6, is checked by go test ./tests/sim)\n", n)
	return nil
}
