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
)

var (
	flagSeeds    = flag.Int("seeds", 0, "number of seeds TestSim runs (default 400, or 100 under -short)")
	flagSeed     = flag.Uint64("seed", 0, "replay this one seed, printing every event with -v")
	flagWAL      = flag.Bool("wal", false, "with -seed: run the seed on the real Pebble WAL")
	flagFirst    = flag.Uint64("first-seed", 1, "first seed of the sweep")
	flagRounds   = flag.Int("rounds", 0, "ticks of faults per seed (default 600)")
	flagWALSeeds = flag.Int("wal-seeds", 50, "number of seeds TestSimWAL runs on the real Pebble WAL")
)

// TestSim runs a sweep of seeds, each a whole cluster under faults, on every
// CPU. With -seed it replays one seed and traces every event.
func TestSim(t *testing.T) {
	if *flagSeed != 0 {
		opts := Options{Seed: *flagSeed, Rounds: *flagRounds, WAL: *flagWAL}
		if testing.Verbose() {
			opts.Trace = os.Stdout
		}
		st, err := Run(opts)
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
	var (
		next     atomic.Uint64
		mu       sync.Mutex
		failures []error
		total    Stats
		shapes   = map[string]int{}
		wg       sync.WaitGroup
	)
	next.Store(*flagFirst)
	last := *flagFirst + uint64(n)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				st, err := Run(Options{Seed: seed, Rounds: *flagRounds})
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				}
				shapes[st.Shape]++
				total.Ops += st.Ops
				total.Crashes += st.Crashes
				total.Partitions += st.Partitions
				total.Elections += st.Elections
				total.MultiBatches += st.MultiBatches
				total.DuplicateApply += st.DuplicateApply
				total.Retries += st.Retries
				total.MaxBatch = max(total.MaxBatch, st.MaxBatch)
				total.MaxPipeline = max(total.MaxPipeline, st.MaxPipeline)
				total.Snapshots += st.Snapshots
				total.Installs += st.Installs
				total.Truncations += st.Truncations
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d seeds from %d; shapes %v; ops %d, retries %d, duplicates applied once %d, crashes %d, partitions %d, elections %d, multi-command slots %d (max %d commands), max pipeline %d slots; snapshots taken %d, installed from a peer %d, acceptor truncations %d",
		n, *flagFirst, shapes, total.Ops, total.Retries, total.DuplicateApply, total.Crashes, total.Partitions, total.Elections, total.MultiBatches, total.MaxBatch, total.MaxPipeline, total.Snapshots, total.Installs, total.Truncations)
	if n >= 100 && (total.Snapshots == 0 || total.Installs == 0 || total.Truncations == 0) {
		t.Errorf("the sweep took %d snapshots, installed %d and truncated %d times: snapshot code went untested", total.Snapshots, total.Installs, total.Truncations)
	}
	var seeds []uint64
	for i, err := range failures {
		var f *Failure
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
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = Run(Options{Seed: *flagFirst + uint64(i), WAL: true, Rounds: *flagRounds})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
