package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

func newClient(t *testing.T, c *cluster) *client.Client {
	t.Helper()
	cl, err := client.NewWithConfig(client.Config{Endpoints: strings.Split(c.endpoints(), ","), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Three serve processes: CLI and Go client, the leader SIGKILLed and
// replaced, the killed member restarted and caught up, and finally a leader
// without a quorum, whose writes have an unknown outcome (exit status 4).
func TestServeClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	eps := c.endpoints()
	mustCLI(t, 0, "put", "--endpoints", eps, "city", "Lisbon")
	if out := mustCLI(t, 0, "get", "--endpoints", eps, "city"); out != "Lisbon\n" {
		t.Fatalf("get city printed %q, want Lisbon and one newline", out)
	}
	cl := newClient(t, c)
	ctx := context.Background()
	if err := cl.Put(ctx, "lang", []byte("Go")); err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, 0, "get", "--endpoints", eps, "lang"); out != "Go\n" {
		t.Fatalf("get lang printed %q after a Go client put", out)
	}
	if v, err := cl.Get(ctx, "city"); err != nil || string(v) != "Lisbon" {
		t.Fatalf("Go client Get(city) = %q, %v", v, err)
	}

	old := c.leader()
	c.member(old).kill()
	start := time.Now()
	if err := cl.Put(ctx, "after-kill", []byte("1")); err != nil {
		t.Fatalf("put after SIGKILL of leader %d: %v", old, err)
	}
	took := time.Since(start)
	// Election timeouts are 200-400ms (10 ticks of 20ms, randomized).
	t.Logf("leader %d SIGKILLed; a new leader applied a write %v later", old, took)
	if took > 5*time.Second {
		t.Fatalf("failover took %v, more than a few election timeouts", took)
	}
	for i := range 50 {
		if err := cl.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.start(old, false)
	rows := c.converged(1, 2, 3)
	t.Logf("after restart every member applied slot %d, hash %s", rows[0].Applied, rows[0].AppliedHash)
	if out := mustCLI(t, 0, "get", "--consistency", "serializable", "--endpoints", c.member(old).client, "k49"); out != "v\n" {
		t.Fatalf("restarted member's own state has k49 = %q", out)
	}

	// A leader that lost its quorum steps down within two election
	// timeouts (check-quorum), and then a write is refused at once as not
	// applied, instead of waiting to end "outcome unknown". NB: when the
	// kills split what it last heard from whom it holds promises of, it
	// campaigns once more first, and a write that comes meanwhile waits
	// for that campaign: so the put is tried until the campaign is over.
	lead := c.leader()
	for _, m := range c.members {
		if m.id != lead {
			m.kill()
		}
	}
	waitUntil(t, "the leader cut off from its acceptors to step down", 5*time.Second, func() bool {
		for _, r := range status(t, c.member(lead).client) {
			if r.ID == lead {
				return r.Error == "" && !r.Leader
			}
		}
		return false
	})
	var out, errOut string
	var code int
	for range 5 {
		if out, errOut, code = cli(t, nil, "put", "--endpoints", c.member(lead).client, "--timeout", "1s", "orphan", "x"); code != 4 { // 4: outcome unknown
			break
		}
	}
	if code != 1 || !strings.Contains(errOut, "no leader") || !strings.Contains(errOut, "not applied") {
		t.Fatalf("put to a leader without quorum: exit %d, stdout %q, stderr %q; want exit 1 saying no leader, not applied", code, out, errOut)
	}
	out, _, code = cli(t, nil, "put", "-o", "json", "--endpoints", c.member(lead).client, "--timeout", "1s", "orphan", "y")
	if code != 1 || !strings.Contains(out, `"outcome":"not_applied"`) {
		t.Fatalf("put -o json to a leader without quorum: exit %d, stdout %q", code, out)
	}
}

// SIGKILL every member while clients write, restart them all: every write
// that was acknowledged is still there.
func TestKillAllMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	cl := newClient(t, c)
	c.leader()

	var mu sync.Mutex
	acked := map[string]string{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("value-%d-%d", w, i)
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				err := cl.Put(cctx, k, []byte(v))
				ccancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		}()
	}
	waitUntil(t, "some acknowledged writes", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300
	})
	var kill sync.WaitGroup
	for _, m := range c.members {
		kill.Add(1)
		go func() { defer kill.Done(); m.kill() }()
	}
	kill.Wait()
	cancel()
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	t.Logf("%d writes acknowledged before every member was SIGKILLed", n)

	c.startAll(false)
	cl2 := newClient(t, c)
	missing := 0
	for k, v := range acked {
		got, err := cl2.Get(context.Background(), k)
		if err != nil || string(got) != v {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged write %s=%s: after restart got %q, %v", k, v, got, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", missing, n)
	}
}

// A member started on another member's data directory, or with another
// cluster's configuration, refuses to start and says why.
func TestDataDirChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	m := c.member(1)
	// An empty directory without --bootstrap.
	_, errOut, code := cli(t, nil, "serve", "--id", "1", "--data-dir", m.dir, "--listen-client", m.client, "--cluster", c.flag)
	if code != 1 || !strings.Contains(errOut, "--bootstrap") {
		t.Fatalf("empty data dir without --bootstrap: exit %d, stderr %q", code, errOut)
	}
	c.start(1, true)
	m.kill()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bootstrap of another cluster", []string{"--id", "1", "--bootstrap", "--cluster-token", "other"}, "--bootstrap with this --cluster and --cluster-token"},
		{"another node's dir", []string{"--id", "2", "--listen-peer", "127.0.0.1:0"}, "belongs to node 1, not node 2"},
		{"another cluster", []string{"--id", "1", "--cluster-token", "other"}, "belongs to cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", m.dir, "--listen-client", "127.0.0.1:0", "--cluster", c.flag}, tc.args...)
			_, errOut, code := cli(t, nil, args...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("paxosd %v: exit %d, stderr %q; want exit 1 mentioning %q", args, code, errOut, tc.want)
			}
		})
	}
	// A bad flag is a usage error.
	if _, errOut, code := cli(t, nil, "serve", "--id", "1", "--data-dir", m.dir, "--cluster", "1=nohostport"); code != 2 || !strings.Contains(errOut, "not HOST:PORT") {
		t.Fatalf("bad --cluster: exit %d, stderr %q", code, errOut)
	}
	// A clean stop on SIGTERM exits 0; --log-format json logs JSON lines.
	c.start(1, false, "--log-format", "json")
	m.cmd.Process.Signal(syscall.SIGTERM)
	<-m.exited
	if m.exitErr != nil {
		t.Fatalf("SIGTERM: %v\n%s", m.exitErr, m.log.String())
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(m.log.String()), "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Node int    `json:"node"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		msgs = append(msgs, rec.Msg)
	}
	if !slices.Contains(msgs, "started") || msgs[len(msgs)-1] != "stopped" {
		t.Fatalf("logs after SIGTERM: %q; want started ... stopped", msgs)
	}
}
