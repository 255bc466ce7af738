// Package sim runs the simulator of internal/sim as tests: sweeps of
// seeds, the seeds that once found bugs, and scenarios. It adds the one
// check the simulator does not link, linearizability of the client history
// (invariant 6 of docs/design.md), with porcupine.
package sim

import (
	"errors"
	"flag"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paxosd/paxosd/internal/sim"
)

var (
	flagSeeds    = flag.Int("seeds", 0, "number of seeds TestSim runs (default 400, or 100 under -short)")
	flagSeed     = flag.Uint64("seed", 0, "replay this one seed, printing every event with -v")
	flagWAL      = flag.Bool("wal", false, "with -seed: run the seed on the real Pebble WAL")
	flagFirst    = flag.Uint64("first-seed", 1, "first seed of the sweep")
	flagRounds   = flag.Int("rounds", 0, "ticks of faults per seed (default 600)")
	flagWALSeeds = flag.Int("wal-seeds", 50, "number of seeds TestSimWAL runs on the real Pebble WAL")
)

// run runs one seed with the linearizability check.
func run(opts sim.Options) (sim.Stats, error) {
	opts.Check = linearizable
	return sim.Run(opts)
}

// TestSim runs a sweep of seeds, each a whole cluster under faults, on every
// CPU. With -seed it replays one seed and traces every event.
func TestSim(t *testing.T) {
	if *flagSeed != 0 {
		opts := sim.Options{Seed: *flagSeed, Rounds: *flagRounds, WAL: *flagWAL}
		if testing.Verbose() {
			opts.Trace = os.Stdout
		}
		st, err := run(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: %+v", *flagSeed, st)
		return
	}
	n := *flagSeeds
	if n == 0 {
		n = 400
		if testing.Short() {
			n = 100
		}
	}
	total, shapes, failures := sweep(n, *flagFirst, false)
	t.Logf("%d seeds from %d; shapes %v; %+v", n, *flagFirst, shapes, total)
	if n >= 100 {
		for _, c := range []struct {
			what string
			n    int
		}{
			{"snapshots recorded", total.Snapshots}, {"snapshots installed from a peer", total.Installs},
			{"acceptor truncations", total.Truncations}, {"redirects to the leader", total.Redirects},
			{"requests timed out at a member", total.Timeouts}, {"old requests replayed", total.Ghosts},
			{"calls given up with an unknown outcome", total.Unknown}, {"duplicates applied once", total.DuplicateApply},
			{"configuration changes", total.Reconfigs}, {"members joining", total.Joins},
			{"members removed", total.Removals}, {"leadership transfers", total.Transfers},
			{"member pauses", total.Pauses}, {"disks filled up", total.DiskFulls}, {"reads served without the log", total.IndexReads},
			{"sessions opened", total.SessionsOpened}, {"sessions expired", total.SessionsExpired},
			{"commands refused as their session expired", total.ExpiredRefused},
			{"changes reported to watches", total.WatchEvents}, {"watches started", total.Watches},
			{"leases granted", total.LeasesGranted}, {"lease keep-alives", total.KeepAlives}, {"lease revocations that deleted keys", total.LeaseRevokes},
		} {
			if c.n == 0 {
				t.Errorf("the sweep saw no %s: that code went untested", c.what)
			}
		}
		for _, sh := range sim.Shapes {
			if shapes[sh.Name] == 0 {
				t.Errorf("no seed ran shape %s", sh.Name)
			}
		}
	}
	report(t, n, failures)
}

// sweep runs n seeds from first on every CPU.
func sweep(n int, first uint64, wal bool) (sim.Stats, map[string]int, []error) {
	var (
		next     atomic.Uint64
		mu       sync.Mutex
		failures []error
		total    sim.Stats
		shapes   = map[string]int{}
		wg       sync.WaitGroup
	)
	next.Store(first)
	last := first + uint64(n)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				st, err := run(sim.Options{Seed: seed, Rounds: *flagRounds, WAL: wal})
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				}
				shapes[st.Shape]++
				total.Add(st)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total, shapes, failures
}

func report(t *testing.T, n int, failures []error) {
	t.Helper()
	var seeds []uint64
	for i, err := range failures {
		var f *sim.Failure
		if !errors.As(err, &f) {
			t.Error(err)
			continue
		}
		seeds = append(seeds, f.Seed)
		if i < 3 {
			t.Errorf("%v", f)
		}
	}
	if len(failures) > 0 {
		slices.Sort(seeds)
		t.Errorf("%d of %d seeds failed: %v", len(failures), n, seeds)
	}
}

// TestSimWAL runs seeds with every node on the real Pebble WAL. A crash keeps
// a random part of the unsynced file data, and Pebble's recovered state must
// equal the synced writes.
func TestSimWAL(t *testing.T) {
	n := *flagWALSeeds
	if testing.Short() {
		n = min(n, 3)
	}
	total, shapes, failures := sweep(n, *flagFirst, true)
	t.Logf("%d WAL seeds from %d; shapes %v; %+v", n, *flagFirst, shapes, total)
	report(t, n, failures)
}
