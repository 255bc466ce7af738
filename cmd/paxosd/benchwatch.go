package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// benchWatch runs the watch workload: watchers watch one key, and one
// writer puts it putRate times a second, total times. A latency is the
// time from the start of a put to a watcher's receipt of its change, one
// per put and watcher. It returns them sorted, the errors by kind, and how
// long the puts took.
func benchWatch(ctx context.Context, setup benchSetup, pool []*client.Client, watchers, putRate, total int) ([]time.Duration, map[string]int, time.Duration, error) {
	key := keyName(0, setup.KeySize)
	kv, err := pool[0].GetKeyValue(ctx, key)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read the watched key: %w", err)
	}
	starts := make([]atomic.Int64, total)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := make([][]time.Duration, watchers)
	errs := make([]map[string]int, watchers)
	var wg sync.WaitGroup
	for w := range watchers {
		// NB: from the next revision, so that a watch that starts late
		// still sees every put.
		ch := pool[w%len(pool)].Watch(wctx, key, client.WatchOptions{Rev: kv.Revision + 1})
		errs[w] = map[string]int{}
		wg.Go(func() {
			for range total {
				var e client.Event
				select {
				case e = <-ch:
				case <-wctx.Done():
					errs[w]["watch ended before every change came"]++
					return
				}
				if e.Err != nil {
					errs[w][errorKind(e.Err)]++
					return
				}
				i, err := strconv.Atoi(string(e.Value[:8]))
				if err != nil || i < 0 || i >= total {
					errs[w]["a change not made by this run"]++
					continue
				}
				lat[w] = append(lat[w], time.Duration(time.Now().UnixNano()-starts[i].Load()))
			}
		})
	}
	val := make([]byte, max(setup.ValSize, 8))
	tick := time.NewTicker(time.Second / time.Duration(putRate))
	defer tick.Stop()
	start := time.Now()
	var putErrs int
	for i := range total {
		<-tick.C
		copy(val, fmt.Sprintf("%08d", i))
		starts[i].Store(time.Now().UnixNano())
		if err := pool[i%len(pool)].Put(ctx, key, val); err != nil {
			putErrs++
		}
	}
	elapsed := time.Since(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cancel()
		<-done
	}
	var all []time.Duration
	kinds := map[string]int{}
	if putErrs > 0 {
		kinds["put failed"] = putErrs
	}
	for w := range lat {
		all = append(all, lat[w]...)
		for k, n := range errs[w] {
			kinds[k] += n
		}
	}
	slices.Sort(all)
	return all, kinds, elapsed, nil
}
