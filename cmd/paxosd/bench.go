package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/certs"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/server"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "load a cluster and report throughput and latency",
		ArgsUsage: "put|get|mixed|txn-put|watch|keepalive",
		Description: `Runs --clients concurrent clients, each sending one request at a time,
over --conns connections, until --total requests are done or --duration has
passed. put writes --val-size-byte values; get reads linearizably from the
leader (--consistency serializable reads one member's state); mixed does both,
--read-ratio of them reads; txn-put writes with a transaction of one put
(as etcd's benchmark txn-put does); keepalive has each client grant a lease
of a minute and renew it in a loop (as etcd's benchmark lease-keepalive). Keys are --key-size bytes, drawn at random
from --key-space distinct keys, or numbered in order with --sequential-keys.

watch starts --watchers watches of one key, spread over the connections, and
puts that key --put-rate times a second, --total times; each latency is the
time from the start of a put until one watcher received its change (as etcd's
benchmark watch-latency measures), and the rate is changes delivered a
second.

--spawn N starts an N-member cluster of separate 'paxosd serve' processes on
127.0.0.1..N in temporary directories (the setup users run: use it for speed
claims) and reports the largest member's peak memory too; --local N starts
one in this process (for profiling); otherwise --endpoints names a running
cluster. At the end it prints the setup, throughput, latency
percentiles and a histogram; -o json prints one object instead.`,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "endpoints", Value: devEndpoints(), Usage: "members' client addresses, comma-separated (the default is the paxosd dev cluster)", EnvVars: env("ENDPOINTS")},
			&cli.BoolFlag{Name: "tls", Usage: "with --spawn or --local: run the cluster over TLS (throwaway certificates, client certificates asked for), to measure what TLS costs", EnvVars: env("BENCH_TLS")},
			&cli.IntFlag{Name: "local", Usage: "start a cluster of this many members in this process and load it", EnvVars: env("BENCH_LOCAL")},
			&cli.IntFlag{Name: "spawn", Usage: "start a cluster of this many 'paxosd serve' processes and load it", EnvVars: env("BENCH_SPAWN")},
			&cli.IntFlag{Name: "clients", Value: 64, Usage: "concurrent clients, each with one request in flight", EnvVars: env("BENCH_CLIENTS")},
			&cli.IntFlag{Name: "conns", Value: 8, Usage: "connections the clients share (per member)", EnvVars: env("BENCH_CONNS")},
			&cli.IntFlag{Name: "total", Value: 20000, Usage: "requests to send (ignored with --duration)", EnvVars: env("BENCH_TOTAL")},
			&cli.DurationFlag{Name: "duration", Usage: "send for this long instead of --total requests", EnvVars: env("BENCH_DURATION")},
			&cli.IntFlag{Name: "key-size", Value: 8, Usage: "key length in bytes", EnvVars: env("BENCH_KEY_SIZE")},
			&cli.IntFlag{Name: "val-size", Value: 256, Usage: "value length in bytes", EnvVars: env("BENCH_VAL_SIZE")},
			&cli.IntFlag{Name: "key-space", Value: 100000, Usage: "distinct keys, drawn at random", EnvVars: env("BENCH_KEY_SPACE")},
			&cli.BoolFlag{Name: "sequential-keys", Usage: "number keys 0, 1, 2, … instead of drawing them", EnvVars: env("BENCH_SEQUENTIAL_KEYS")},
			&cli.Float64Flag{Name: "read-ratio", Value: 0.5, Usage: "share of reads in the mixed workload", EnvVars: env("BENCH_READ_RATIO")},
			&cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "reads: linearizable or serializable", EnvVars: env("CONSISTENCY")},
			&cli.IntFlag{Name: "watchers", Value: 1000, Usage: "watch: watches of the key", EnvVars: env("BENCH_WATCHERS")},
			&cli.IntFlag{Name: "put-rate", Value: 100, Usage: "watch: puts a second", EnvVars: env("BENCH_PUT_RATE")},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "per request", EnvVars: env("TIMEOUT")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json", EnvVars: env("OUTPUT")},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the run (with --local, of the members too) to this file", EnvVars: env("BENCH_CPUPROFILE")},
			&cli.StringFlag{Name: "data-dir", Usage: "with --local: keep the members' data here (an empty or new directory) instead of a temporary one", EnvVars: env("BENCH_DATA_DIR")},
			&cli.BoolFlag{Name: "restart", Usage: "with --local: after the run, stop every member, report each data directory's size, restart them and time it", EnvVars: env("BENCH_RESTART")},
		}, append(tlsClientFlags(), snapshotFlags()...)...),
		Action: runBench,
	}
}

// benchSetup is what a run measured, for the report.
type benchSetup struct {
	Workload    string  `json:"workload"`
	Members     int     `json:"members"`
	Local       bool    `json:"local"`
	Spawned     bool    `json:"spawned,omitempty"`
	TLS         bool    `json:"tls"`
	Fsync       bool    `json:"fsync"`
	Clients     int     `json:"clients"`
	Conns       int     `json:"conns"`
	KeySize     int     `json:"key_size"`
	ValSize     int     `json:"val_size"`
	KeySpace    int     `json:"key_space"`
	Sequential  bool    `json:"sequential_keys"`
	ReadRatio   float64 `json:"read_ratio,omitempty"`
	Consistency string  `json:"consistency,omitempty"`
	Watchers    int     `json:"watchers,omitempty"`
	PutRate     int     `json:"put_rate,omitempty"`
	// Snapshot settings of a --local cluster (0: off).
	SnapshotEvery int    `json:"snapshot_every,omitempty"`
	SnapshotBytes int64  `json:"snapshot_bytes,omitempty"`
	Version       string `json:"version"`
	GoVersion     string `json:"go_version"`
	CPUs          int    `json:"cpus"`
}

type benchResult struct {
	benchSetup
	Requests  int                `json:"requests"`
	Errors    int                `json:"errors"`
	ErrorKind map[string]int     `json:"error_kinds,omitempty"`
	Seconds   float64            `json:"seconds"`
	OpsPerSec float64            `json:"ops_per_sec"`
	LatencyMS map[string]float64 `json:"latency_ms"`
	// With --restart: each member's data directory after the run, in MB
	// (10^6 bytes), and how long the restart took until every member had
	// recovered its state, and until the first write was applied.
	DataDirMB map[string]float64 `json:"data_dir_mb,omitempty"`
	// With --spawn: the largest member's peak resident memory, in MB.
	PeakRSSMB         float64 `json:"member_peak_rss_mb,omitempty"`
	RestartSeconds    float64 `json:"restart_seconds,omitempty"`
	FirstWriteSeconds float64 `json:"restart_first_write_seconds,omitempty"`
}

func runBench(c *cli.Context) error {
	o, err := newOutput(c)
	if err != nil {
		return err
	}
	setup, err := benchSetupFrom(c)
	if err != nil {
		return o.fail(err)
	}
	endpoints := strings.Split(c.String("endpoints"), ",")
	tlsCfg, err := clientTLS(c)
	if err != nil {
		return o.fail(err)
	}
	setup.TLS = tlsCfg != nil || c.Bool("tls")
	if c.Bool("tls") && c.Int("local") <= 0 && c.Int("spawn") <= 0 {
		return o.fail(usageError{errors.New("--tls starts a cluster over TLS, so it needs --spawn or --local; for a running cluster give --cacert (and --cert, --key)")})
	}
	var local *server.Local
	var localCfg server.LocalConfig
	if n := c.Int("local"); n > 0 {
		dir := c.String("data-dir")
		if dir == "" {
			if dir, err = os.MkdirTemp("", "paxosd-bench"); err != nil {
				return o.fail(err)
			}
			defer os.RemoveAll(dir)
		}
		localCfg = server.LocalConfig{Dir: dir, Size: n}
		if c.Bool("tls") {
			localCfg.TLSDir = filepath.Join(dir, "tls")
		}
		if err := snapshotConfig(c, &localCfg.Template); err != nil {
			return o.fail(err)
		}
		setup.SnapshotEvery, setup.SnapshotBytes = max(localCfg.Template.SnapshotEvery, 0), max(localCfg.Template.SnapshotBytes, 0)
		if local, err = server.StartLocal(localCfg); err != nil {
			return o.fail(err)
		}
		defer func() { local.Stop() }()
		endpoints = local.Endpoints()
		setup.Local = true
		if c.Bool("tls") {
			admin := local.Certificates().Clients[certs.DevAdmin]
			if tlsCfg, err = certs.ClientConfig(local.Certificates().CA, admin.Cert, admin.Key); err != nil {
				return o.fail(err)
			}
		}
	} else if c.Bool("restart") || c.String("data-dir") != "" {
		return o.fail(usageError{errors.New("--restart and --data-dir need --local")})
	}
	var spawn *spawned
	if n := c.Int("spawn"); n > 0 {
		if c.Int("local") > 0 {
			return o.fail(usageError{errors.New("give --spawn or --local, not both")})
		}
		dir, err := os.MkdirTemp("", "paxosd-bench-spawn")
		if err != nil {
			return o.fail(err)
		}
		defer os.RemoveAll(dir)
		var extra []string
		for _, f := range []string{"snapshot-every", "snapshot-bytes", "snapshot-rate"} {
			extra = append(extra, "--"+f, c.String(f))
		}
		if spawn, err = spawnCluster(c.Context, n, dir, extra, c.Bool("tls")); err != nil {
			return o.fail(err)
		}
		defer spawn.stop()
		endpoints, setup.Spawned, tlsCfg = spawn.eps, true, spawn.tls
	} else if c.Int("spawn") < 0 {
		return o.fail(usageError{errors.New("--spawn must be a positive number of members")})
	}
	setup.Members = len(endpoints)

	pool, err := benchClients(c.Context, setup, endpoints, c.Duration("timeout"), tlsCfg)
	if err != nil {
		return o.fail(err)
	}
	defer func() {
		for _, cl := range pool {
			cl.Close()
		}
	}()
	if path := c.String("cpuprofile"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return o.fail(err)
		}
		defer stop()
	}
	stopBar := func() {}
	load := benchLoad{setup: setup, pool: pool, total: c.Int("total"), duration: c.Duration("duration")}
	var lat []time.Duration
	var kinds map[string]int
	var elapsed time.Duration
	if setup.Workload == "watch" {
		if lat, kinds, elapsed, err = benchWatch(c.Context, setup, pool, setup.Watchers, setup.PutRate, load.total); err != nil {
			return o.fail(err)
		}
	} else {
		lat, kinds, elapsed = load.run(c.Context, func(done *atomic.Int64, start time.Time) {
			stopBar = startProgress(c.App.ErrWriter, o.json, done, load.total, load.duration, start)
		})
	}
	stopBar()
	res := summarize(setup, lat, kinds, elapsed)
	if spawn != nil {
		res.PeakRSSMB = spawn.peakRSSMB()
	}
	if local != nil && c.Bool("restart") {
		if local, err = benchRestart(c.Context, local, localCfg, &res); err != nil {
			return o.fail(err)
		}
	}
	if o.json {
		o.printJSON(res)
	} else {
		printBench(o.w, res, lat)
	}
	if res.Errors == res.Requests {
		return o.fail(fmt.Errorf("every request failed: %v", kinds))
	}
	return nil
}

// benchSetupFrom reads and checks the workload flags.
func benchSetupFrom(c *cli.Context) (benchSetup, error) {
	if c.NArg() != 1 {
		return benchSetup{}, usageError{errors.New("bench takes one workload: put, get, mixed, txn-put, watch or keepalive")}
	}
	workload := c.Args().First()
	if !slices.Contains([]string{"put", "get", "mixed", "txn-put", "watch", "keepalive"}, workload) {
		return benchSetup{}, usageError{fmt.Errorf("unknown workload %q: use put, get, mixed, txn-put, watch or keepalive", workload)}
	}
	clients, conns := c.Int("clients"), c.Int("conns")
	keySize, valSize, keySpace := c.Int("key-size"), c.Int("val-size"), c.Int("key-space")
	switch {
	case clients < 1 || conns < 1:
		return benchSetup{}, usageError{errors.New("--clients and --conns must be at least 1")}
	case keySize < 1 || keySize > 4096 || valSize < 0 || valSize > 1<<20:
		return benchSetup{}, usageError{errors.New("--key-size must be 1 to 4096 and --val-size 0 to 1048576")}
	case keySpace < 1:
		return benchSetup{}, usageError{errors.New("--key-space must be at least 1")}
	case c.Int("total") < 1 && c.Duration("duration") <= 0:
		return benchSetup{}, usageError{errors.New("give --total above 0 or a --duration")}
	case c.Float64("read-ratio") < 0 || c.Float64("read-ratio") > 1:
		return benchSetup{}, usageError{errors.New("--read-ratio must be between 0 and 1")}
	case c.String("consistency") != "linearizable" && c.String("consistency") != "serializable":
		return benchSetup{}, usageError{errors.New("--consistency: use linearizable or serializable")}
	case workload == "watch" && (c.Int("watchers") < 1 || c.Int("put-rate") < 1 || c.Duration("duration") > 0):
		return benchSetup{}, usageError{errors.New("watch needs --watchers and --put-rate of at least 1, and --total, not --duration")}
	}
	setup := benchSetup{Workload: workload, Clients: clients, Conns: min(conns, clients), KeySize: keySize, ValSize: valSize,
		KeySpace: keySpace, Sequential: c.Bool("sequential-keys"), Fsync: true, Version: version,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	switch workload {
	case "get", "mixed":
		setup.Consistency = c.String("consistency")
	case "watch":
		setup.Watchers, setup.PutRate, setup.Clients = c.Int("watchers"), c.Int("put-rate"), 1
	}
	if workload == "mixed" {
		setup.ReadRatio = c.Float64("read-ratio")
	}
	return setup, nil
}

// benchClients opens the connection pool and warms it up: it finds the
// leader and writes one value, so that reads have something to read.
func benchClients(ctx context.Context, setup benchSetup, endpoints []string, timeout time.Duration, t *tls.Config) ([]*client.Client, error) {
	pool := make([]*client.Client, setup.Conns)
	for i := range pool {
		cl, err := client.NewWithConfig(client.Config{Endpoints: endpoints, Timeout: timeout, TLS: t})
		if err != nil {
			for _, c := range pool[:i] {
				c.Close()
			}
			return nil, usageError{fmt.Errorf("--endpoints: %w", err)}
		}
		pool[i] = cl
	}
	if err := pool[0].Put(ctx, keyName(0, setup.KeySize), make([]byte, setup.ValSize)); err != nil {
		for _, c := range pool {
			c.Close()
		}
		return nil, fmt.Errorf("first write: %w", err)
	}
	return pool, nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// benchLoad is one run of the load: setup.Clients goroutines, each with one
// request in flight, over the pool, for total requests or for duration.
type benchLoad struct {
	setup    benchSetup
	pool     []*client.Client
	total    int
	duration time.Duration

	issued, done, seq atomic.Int64
}

// run runs the load and returns every request's latency, sorted, the
// errors by kind, and how long it took. started is called once the clock
// starts, with the count of finished requests.
func (l *benchLoad) run(ctx context.Context, started func(done *atomic.Int64, start time.Time)) ([]time.Duration, map[string]int, time.Duration) {
	lat := make([][]time.Duration, l.setup.Clients)
	errs := make([]map[string]int, l.setup.Clients)
	start := time.Now()
	started(&l.done, start)
	var wg sync.WaitGroup
	for i := range l.setup.Clients {
		wg.Go(func() { lat[i], errs[i] = l.client(ctx, i, start) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	kinds := map[string]int{}
	for i := range lat {
		all = append(all, lat[i]...)
		for k, n := range errs[i] {
			kinds[k] += n
		}
	}
	slices.Sort(all)
	return all, kinds, elapsed
}

// client is one client of the load: it returns its latencies and errors.
func (l *benchLoad) client(ctx context.Context, i int, start time.Time) ([]time.Duration, map[string]int) {
	setup := &l.setup
	cl := l.pool[i%len(l.pool)]
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	val := make([]byte, setup.ValSize)
	var lat []time.Duration
	errs := map[string]int{}
	var lease client.LeaseID
	if setup.Workload == "keepalive" {
		var err error
		if lease, err = cl.Grant(ctx, time.Minute); err != nil {
			errs[errorKind(err)]++
			return lat, errs
		}
	}
	for {
		if l.duration > 0 {
			if time.Since(start) > l.duration {
				return lat, errs
			}
		} else if l.issued.Add(1) > int64(l.total) {
			return lat, errs
		}
		k := rng.IntN(setup.KeySpace)
		if setup.Sequential {
			k = int(l.seq.Add(1)-1) % setup.KeySpace
		}
		key := keyName(k, setup.KeySize)
		read := setup.Workload == "get" || (setup.Workload == "mixed" && rng.Float64() < setup.ReadRatio)
		t0 := time.Now()
		var err error
		switch {
		case setup.Workload == "keepalive":
			_, err = cl.KeepAliveOnce(ctx, lease)
		case setup.Workload == "txn-put":
			_, err = cl.Txn().Then(client.OpPut(key, val)).Commit(ctx)
		case !read:
			err = cl.Put(ctx, key, val)
		case setup.Consistency == "serializable":
			_, err = cl.GetSerializable(ctx, key)
		default:
			_, err = cl.Get(ctx, key)
		}
		if errors.Is(err, client.ErrNotFound) {
			err = nil // a read of a key not written yet is an answer
		}
		lat = append(lat, time.Since(t0))
		if err != nil {
			errs[errorKind(err)]++
		}
		l.done.Add(1)
	}
}

// summarize turns the latencies (sorted) and errors of a run into its
// report.
func summarize(setup benchSetup, sorted []time.Duration, kinds map[string]int, elapsed time.Duration) benchResult {
	nerr := 0
	for _, n := range kinds {
		nerr += n
	}
	res := benchResult{benchSetup: setup, Requests: len(sorted), Errors: nerr, Seconds: elapsed.Seconds(),
		OpsPerSec: float64(len(sorted)-nerr) / elapsed.Seconds(), LatencyMS: map[string]float64{}}
	if len(kinds) > 0 {
		res.ErrorKind = kinds
	}
	for _, p := range []struct {
		name string
		q    float64
	}{{"min", 0}, {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}, {"max", 1}} {
		res.LatencyMS[p.name] = ms(percentile(sorted, p.q))
	}
	res.LatencyMS["mean"] = ms(mean(sorted))
	return res
}

// benchRestart stops the local cluster, measures its data directories,
// restarts it and times the recovery. It returns the restarted cluster.
func benchRestart(ctx context.Context, l *server.Local, cfg server.LocalConfig, res *benchResult) (*server.Local, error) {
	if err := l.Stop(); err != nil {
		return l, fmt.Errorf("stop for the restart: %w", err)
	}
	res.DataDirMB = map[string]float64{}
	for i := 1; i <= cfg.Size; i++ {
		var size int64
		err := filepath.WalkDir(filepath.Join(cfg.Dir, strconv.Itoa(i)), func(_ string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := d.Info()
			if err == nil {
				size += info.Size()
			}
			return err
		})
		if err != nil {
			return l, fmt.Errorf("size of the data directories: %w", err)
		}
		res.DataDirMB[strconv.Itoa(i)] = math.Round(float64(size)/1e4) / 100
	}
	began := time.Now()
	l, err := server.StartLocal(cfg)
	if err != nil {
		return l, fmt.Errorf("restart: %w", err)
	}
	res.RestartSeconds = time.Since(began).Seconds()
	cl, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints(), Timeout: 30 * time.Second})
	if err != nil {
		return l, err
	}
	defer cl.Close()
	if err := cl.Put(ctx, "bench-restart", []byte("ok")); err != nil {
		return l, fmt.Errorf("first write after the restart: %w", err)
	}
	res.FirstWriteSeconds = time.Since(began).Seconds()
	return l, nil
}

// keyName returns key number k, zero-padded or cut to size bytes.
func keyName(k, size int) string {
	s := fmt.Sprintf("%0*d", size, k)
	return s[len(s)-size:]
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, client.ErrUnknownOutcome):
		return "unknown_outcome"
	case errors.Is(err, client.ErrNotApplied):
		return "not_applied"
	}
	return "other"
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func printBench(w io.Writer, r benchResult, sorted []time.Duration) {
	where := "--endpoints"
	switch {
	case r.Local:
		where = "--local, in this process"
	case r.Spawned:
		where = "--spawn, each a paxosd serve process"
	}
	tlsOn := "off"
	if r.TLS {
		tlsOn = "on"
	}
	fmt.Fprintf(w, "setup: %s, %d members (%s), fsync on, TLS %s, %d clients over %d connections, %d-byte keys from %d, %d-byte values",
		r.Workload, r.Members, where, tlsOn, r.Clients, r.Conns, r.KeySize, r.KeySpace, r.ValSize)
	if r.Consistency != "" {
		fmt.Fprintf(w, ", %s reads", r.Consistency)
	}
	if r.Watchers > 0 {
		fmt.Fprintf(w, ", %d watchers of one key, %d puts a second (a request is one change delivered)", r.Watchers, r.PutRate)
	}
	fmt.Fprintf(w, "; paxosd %s, %s, %d CPUs\n\n", r.Version, r.GoVersion, r.CPUs)
	fmt.Fprintf(w, "requests    %d in %.2fs (%d errors)\n", r.Requests, r.Seconds, r.Errors)
	fmt.Fprintf(w, "throughput  %.0f ops/s\n", r.OpsPerSec)
	fmt.Fprintf(w, "latency ms  min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n\n",
		r.LatencyMS["min"], r.LatencyMS["p50"], r.LatencyMS["p90"], r.LatencyMS["p99"], r.LatencyMS["p999"], r.LatencyMS["max"], r.LatencyMS["mean"])
	if r.PeakRSSMB > 0 {
		fmt.Fprintf(w, "memory      largest member's peak RSS %.0f MB\n\n", r.PeakRSSMB)
	}
	if r.DataDirMB != nil {
		ids := slices.Sorted(maps.Keys(r.DataDirMB))
		fmt.Fprint(w, "data dirs  ")
		for _, id := range ids {
			fmt.Fprintf(w, " member %s %.1f MB", id, r.DataDirMB[id])
		}
		fmt.Fprintf(w, "\nrestart     recovered in %.2fs, first write applied after %.2fs\n\n", r.RestartSeconds, r.FirstWriteSeconds)
	}
	if len(sorted) == 0 {
		return
	}
	// A histogram of ten buckets on a log scale between min and max.
	lo, hi := math.Log(float64(max(sorted[0], time.Microsecond))), math.Log(float64(max(sorted[len(sorted)-1], time.Microsecond)))
	const buckets = 10
	counts := make([]int, buckets)
	for _, d := range sorted {
		b := 0
		if hi > lo {
			b = int((math.Log(float64(max(d, time.Microsecond))) - lo) / (hi - lo) * buckets)
		}
		counts[min(b, buckets-1)]++
	}
	top := slices.Max(counts)
	fmt.Fprintln(w, "histogram (ms, up to)")
	for i, n := range counts {
		edge := time.Duration(math.Exp(lo + (hi-lo)*float64(i+1)/buckets))
		bar := strings.Repeat("∎", int(math.Round(40*float64(n)/float64(max(top, 1)))))
		fmt.Fprintf(w, "  %9.3f [%7d] %s\n", ms(edge), n, bar)
	}
	for k, n := range r.ErrorKind {
		fmt.Fprintf(w, "errors: %s %d\n", k, n)
	}
}

// startProgress draws a progress bar on w while it is a terminal; it
// returns a function that clears it.
func startProgress(w io.Writer, quiet bool, done *atomic.Int64, total int, duration time.Duration, start time.Time) func() {
	f, ok := w.(*os.File)
	if quiet || !ok {
		return func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
			}
			frac := float64(done.Load()) / float64(max(total, 1))
			if duration > 0 {
				frac = float64(time.Since(start)) / float64(duration)
			}
			frac = min(frac, 1)
			n := int(frac * 40)
			fmt.Fprintf(f, "\r[%s%s] %3.0f%%  %d requests", strings.Repeat("=", n), strings.Repeat(" ", 40-n), 100*frac, done.Load())
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
	}
}
