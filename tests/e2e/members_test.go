package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paxosd/paxosd/paxos/client"
)

// load writes unique keys through the Go client until stopped, and keeps
// the keys whose writes were acknowledged and the errors of those that
// were not.
type load struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked []string
	errs  []string
}

func startLoad(t *testing.T, endpoints string) *load {
	t.Helper()
	cl, err := client.NewWithConfig(client.Config{Endpoints: strings.Split(endpoints, ","), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer cl.Close()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			key := fmt.Sprintf("load-%06d", i)
			err := cl.Put(context.Background(), key, []byte(key))
			l.mu.Lock()
			if err == nil {
				l.acked = append(l.acked, key)
			} else {
				l.errs = append(l.errs, err.Error())
			}
			l.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return l
}

// finish stops the load and returns what it recorded.
func (l *load) finish() (acked, errs []string) {
	close(l.stop)
	<-l.done
	return l.acked, l.errs
}

// checkAcked reads every acknowledged key back, linearizably, through
// endpoints.
func checkAcked(t *testing.T, endpoints string, acked []string) {
	t.Helper()
	cl, err := client.NewWithConfig(client.Config{Endpoints: strings.Split(endpoints, ","), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, k := range acked {
		v, err := cl.Get(context.Background(), k)
		if err != nil || string(v) != k {
			t.Fatalf("acknowledged write %s reads back as %q, %v", k, v, err)
		}
	}
}

type memberList struct {
	ConfigSlot uint64 `json:"config_slot"`
	Members    []struct {
		ID     int    `json:"id"`
		Roles  string `json:"roles"`
		Target string `json:"target"`
	} `json:"members"`
}

func members(t *testing.T, endpoints string) memberList {
	t.Helper()
	out := mustCLI(t, 0, "member", "list", "-o", "json", "--endpoints", endpoints)
	var l memberList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("member list -o json printed %q: %v", out, err)
	}
	return l
}

// waitRoles waits until the newest configuration gives member id roles.
func waitRoles(t *testing.T, endpoints string, id int, roles string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("member %d to have roles %s", id, roles), 20*time.Second, func() bool {
		for _, m := range members(t, endpoints).Members {
			if m.ID == id {
				return m.Roles == roles
			}
		}
		return false
	})
}

const allRoles = "proposer,acceptor,learner"

// Grow 3 → 5 and shrink back to 3 (removing the leader among others) under
// a steady write load: no acknowledged write is lost, the joining members
// are promoted by the leader once they caught up, and all members end at
// the same applied slot and hash.
func TestGrowAndShrinkUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	c.leader()
	l := startLoad(t, c.endpoints())
	for range 2 {
		m := c.grow()
		began := time.Now()
		// NB: the previous member's promotion may not govern yet, and
		// one change runs at a time: the add is refused until it does.
		changeMembers(t, "member", "add", fmt.Sprintf("%d=%s", m.id, m.peer), "--client", m.client, "--endpoints", c.endpoints())
		c.startJoin(m.id, c.members[0].client)
		waitRoles(t, c.endpoints(), m.id, allRoles)
		t.Logf("member %d added, joined and promoted in %v", m.id, time.Since(began).Round(time.Millisecond))
	}
	rows := c.converged(1, 2, 3, 4, 5)
	for _, r := range rows {
		if r.ConfigSlot != rows[0].ConfigSlot {
			t.Fatalf("members disagree on the configuration: %+v", rows)
		}
	}
	// Shrink: the leader first, then member 4 (once the first removal
	// governs: one change at a time).
	for _, id := range []int{c.leader(), 4} {
		changeMembers(t, "member", "remove", strconv.Itoa(id), "--endpoints", c.endpoints())
		c.member(id).stop()
	}
	acked, errs := l.finish()
	left := liveEndpoints(c)
	if len(acked) < 20 {
		t.Fatalf("only %d writes acknowledged under load (errors: %v)", len(acked), errs)
	}
	checkAcked(t, left, acked)
	ids := liveIDs(c)
	if len(ids) != 3 {
		t.Fatalf("%d members left, want 3", len(ids))
	}
	c.converged(ids...)
	t.Logf("%d writes acknowledged, %d failed during the changes: %v", len(acked), len(errs), errs)
}

// A member that lost its disk is replaced: remove its ID, add a member
// under a new ID, which joins. The old ID is refused for good, by the
// member commands and by the handshake.
func TestReplaceWipedMember(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	lead := c.leader()
	for i := range 20 {
		mustCLI(t, 0, "put", "--endpoints", c.endpoints(), fmt.Sprintf("k%d", i), "v")
	}
	lost := lead%3 + 1 // a follower
	c.member(lost).kill()
	if err := os.RemoveAll(c.member(lost).dir); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, 0, "member", "remove", strconv.Itoa(lost), "--endpoints", c.endpoints())
	m := c.grow()
	mustCLI(t, 0, "member", "add", fmt.Sprintf("%d=%s", m.id, m.peer), "--client", m.client, "--endpoints", c.endpoints())
	c.startJoin(m.id, c.endpoints())
	waitRoles(t, c.endpoints(), m.id, allRoles)
	c.converged(liveIDs(c)...)
	for _, k := range []string{"k0", "k19"} {
		if out := mustCLI(t, 0, "get", "--endpoints", liveEndpoints(c), k); out != "v\n" {
			t.Fatalf("get %s after the replacement: %q", k, out)
		}
	}

	// The old ID cannot come back: not as a member, not by joining.
	_, errOut, code := cli(t, nil, "member", "add", fmt.Sprintf("%d=%s", lost, c.member(lost).peer), "--client", c.member(lost).client, "--endpoints", liveEndpoints(c))
	if code != 1 || !strings.Contains(errOut, "removed and can never return") {
		t.Fatalf("adding a removed ID: exit %d, %s", code, errOut)
	}
	_, errOut, code = cli(t, nil, "serve", "--id", strconv.Itoa(lost), "--data-dir", c.member(lost).dir, "--listen-peer", c.member(lost).peer,
		"--listen-client", c.member(lost).client, "--join", liveEndpoints(c))
	if code == 0 || !strings.Contains(errOut, "was removed") {
		t.Fatalf("joining under a removed ID: exit %d, %s", code, errOut)
	}
	// A member of another cluster cannot join this one with its data.
	other := newCluster(t, 1)
	other.startAll(true)
	other.leader()
	om := other.member(1)
	om.stop()
	_, errOut, code = cli(t, nil, "serve", "--id", "1", "--data-dir", om.dir, "--listen-peer", om.peer,
		"--listen-client", om.client, "--join", liveEndpoints(c))
	if code != 1 || !strings.Contains(errOut, "but the --join members are of cluster") {
		t.Fatalf("joining with another cluster's data: exit %d, %q", code, errOut)
	}
	// Nor can a member join that was never added.
	_, errOut, code = cli(t, nil, "serve", "--id", "9", "--data-dir", t.TempDir()+"/9", "--listen-peer", "127.0.0.9:0",
		"--listen-client", "127.0.0.9:0", "--join", liveEndpoints(c))
	if code == 0 || !strings.Contains(errOut, "has no member 9; run 'paxosd member add") {
		t.Fatalf("joining without member add: exit %d, %s", code, errOut)
	}
}

// Restart every member in turn with SIGTERM, the leader last, under a
// write load: no write fails, a leader hands over before it stops, and
// leadership changes at most once per restarted leader.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	lead := c.leader()
	l := startLoad(t, c.endpoints())
	order := []int{}
	for _, m := range c.members {
		if m.id != lead {
			order = append(order, m.id)
		}
	}
	order = append(order, lead)
	changes := 0
	for _, id := range order {
		before := c.leader()
		c.member(id).stop()
		c.start(id, false)
		c.converged(1, 2, 3)
		if after := c.leader(); after != before {
			changes++
		}
	}
	acked, errs := l.finish()
	if len(errs) > 0 {
		t.Fatalf("%d writes failed during the rolling restart: %v", len(errs), errs)
	}
	if changes > 1 {
		t.Fatalf("leadership changed %d times, want at most once (the leader's restart)", changes)
	}
	checkAcked(t, c.endpoints(), acked)
	if !strings.Contains(c.member(lead).allLogs(), "handing leadership over before stopping") {
		t.Fatalf("the leader did not hand over before it stopped:\n%s", c.member(lead).allLogs())
	}
	t.Logf("%d writes, none failed; %d leader change(s)", len(acked), changes)
}

func liveIDs(c *cluster) []int {
	var ids []int
	for _, m := range c.members {
		if m.running() {
			ids = append(ids, m.id)
		}
	}
	return ids
}

func liveEndpoints(c *cluster) string {
	var eps []string
	for _, m := range c.members {
		if m.running() {
			eps = append(eps, m.client)
		}
	}
	return strings.Join(eps, ",")
}

// A saved snapshot seeds the first member of a new cluster (with a new
// cluster ID); two members join it; every key reads back.
func TestRestoreIntoNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	old := newCluster(t, 3)
	old.startAll(true)
	old.leader()
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("saved-%02d", i)
		mustCLI(t, 0, "put", "--endpoints", old.endpoints(), k, k)
		keys = append(keys, k)
	}
	file := t.TempDir() + "/saved.pxsnap"
	mustCLI(t, 0, "snapshot", "save", "--endpoints", old.endpoints(), file)
	oldID := status(t, old.endpoints())[0]
	for _, m := range old.members {
		m.kill()
	}

	c := newCluster(t, 1)
	m := c.member(1)
	out := mustCLI(t, 0, "snapshot", "restore", file, "--data-dir", m.dir, "--id", "1", "--peer", m.peer, "--client", m.client)
	if !strings.Contains(out, "new cluster") {
		t.Fatalf("restore printed %q", out)
	}
	if _, errOut, code := cli(t, nil, "snapshot", "restore", file, "--data-dir", m.dir, "--id", "1", "--peer", m.peer, "--client", m.client); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore into a used directory: exit %d, %s", code, errOut)
	}
	c.start(1, false)
	c.leader()
	for range 2 {
		n := c.grow()
		mustCLI(t, 0, "member", "add", fmt.Sprintf("%d=%s", n.id, n.peer), "--client", n.client, "--endpoints", c.endpoints())
		c.startJoin(n.id, m.client)
		waitRoles(t, c.endpoints(), n.id, allRoles)
	}
	rows := c.converged(1, 2, 3)
	if rows[0].Applied <= oldID.Applied {
		t.Fatalf("the new cluster applied %d, not beyond the snapshot's %d", rows[0].Applied, oldID.Applied)
	}
	checkAcked(t, c.endpoints(), keys)
	mustCLI(t, 0, "put", "--endpoints", c.endpoints(), "after", "restore")
}

// bench --spawn starts separate serve processes, loads them, reports the
// largest member's peak memory, and stops them.
func TestBenchSpawn(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	out := mustCLI(t, 0, "bench", "put", "--spawn", "3", "--clients", "8", "--total", "300", "-o", "json")
	var r struct {
		Spawned   bool    `json:"spawned"`
		Members   int     `json:"members"`
		Requests  int     `json:"requests"`
		Errors    int     `json:"errors"`
		OpsPerSec float64 `json:"ops_per_sec"`
		PeakRSSMB float64 `json:"member_peak_rss_mb"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench printed %q: %v", out, err)
	}
	if !r.Spawned || r.Members != 3 || r.Requests != 300 || r.Errors != 0 || r.OpsPerSec <= 0 || r.PeakRSSMB <= 0 {
		t.Fatalf("bench --spawn: %+v", r)
	}
}

// changeMembers runs a member command until it is not refused for a change
// in progress: the one before may not govern yet, and one change runs at a
// time.
func changeMembers(t *testing.T, args ...string) {
	t.Helper()
	waitUntil(t, strings.Join(args[:3], " "), 10*time.Second, func() bool {
		_, stderr, code := cli(t, nil, args...)
		if code != 0 && !strings.Contains(stderr, "another configuration change is in progress") {
			t.Fatalf("paxosd %s: exit %d, %s", strings.Join(args, " "), code, stderr)
		}
		return code == 0
	})
}
