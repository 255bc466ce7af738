package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A member stopped while the others take 200,000 writes comes back by
// receiving a snapshot: the others snapshotted and truncated past it. The
// peer connections into it run through a proxy, which cuts them all once
// in the middle of the transfer; the transfer resumes where it stood, and
// the member reaches the same applied slot and hash as the others.
func TestRejoinBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test with 200,000 writes")
	}
	c := newCluster(t, 3)
	m3 := c.member(3)
	m3.listenPeer = fmt.Sprintf("127.0.0.3:%d", freePort(t, "127.0.0.3"))
	px := newProxy(t, m3.peer, m3.listenPeer)
	// Snapshots every 2000 slots, so 200,000 writes make several; a slow
	// transfer rate, so the transfer is still running when the proxy cuts.
	flags := []string{"--snapshot-every", "2000", "--snapshot-rate", "4MiB"}
	for id := 1; id <= 3; id++ {
		c.start(id, true, flags...)
	}
	mustCLI(t, 0, "put", "--endpoints", c.endpoints(), "before", "stop")
	c.converged(1, 2, 3)
	m3.cmd.Process.Signal(syscall.SIGTERM)
	<-m3.exited
	stoppedAt := status(t, m3.client)

	// 200,000 writes of 256 bytes over 100,000 keys, to members 1 and 2.
	live := c.member(1).client + "," + c.member(2).client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bench := exec.CommandContext(ctx, bin, "bench", "put", "--endpoints", live, "--total", "200000", "--clients", "64", "--conns", "8", "-o", "json")
	bench.Env = childEnv()
	out, err := bench.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var res struct {
		Requests  int     `json:"requests"`
		Errors    int     `json:"errors"`
		OpsPerSec float64 `json:"ops_per_sec"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Requests != 200000 || res.Errors != 0 {
		t.Fatalf("bench: %s (%v)", out, err)
	}
	rows := c.converged(1, 2)
	var before uint64
	for _, r := range stoppedAt {
		if r.ID == 3 {
			before = r.Applied
		}
	}
	for _, r := range rows[:2] {
		if r.SnapshotSlot <= before+2000 {
			t.Fatalf("member %d's newest snapshot is at slot %d; member 3 stopped at %d, so nothing forces a snapshot transfer", r.ID, r.SnapshotSlot, before)
		}
	}
	t.Logf("200,000 writes at %.0f/s while member 3 was down; members 1 and 2 at slot %d, snapshot at %d, log store %d bytes", res.OpsPerSec, rows[0].Applied, rows[0].SnapshotSlot, rows[0].LogBytes)

	start := time.Now()
	c.start(3, false, flags...)
	waitUntil(t, "member 3 to start receiving a snapshot", 20*time.Second, func() bool {
		return strings.Contains(m3.log.String(), "receiving snapshot")
	})
	base := px.toward.Load()
	waitUntil(t, "8 MiB of the snapshot to pass", 20*time.Second, func() bool { return px.toward.Load()-base > 8<<20 })
	cut := px.cut()
	t.Logf("cut %d connections into member 3 after %d bytes of the transfer", cut, px.toward.Load()-base)
	rows = c.convergedWithin(60*time.Second, 1, 2, 3)
	took := time.Since(start)
	log := m3.log.String()
	if n := strings.Count(log, "receiving snapshot"); n != 1 {
		t.Fatalf("member 3 began %d snapshot transfers, want one that resumed", n)
	}
	resumed := regexp.MustCompile(`snapshot chunk late, asking again.* offset=(\d+)`).FindStringSubmatch(log)
	if resumed == nil {
		t.Fatal("member 3 never asked again for a chunk after the cut")
	}
	if off, _ := strconv.ParseUint(resumed[1], 10, 64); off < 4<<20 {
		t.Fatalf("member 3 resumed from offset %d, not from where the cut left it", off)
	}
	if !strings.Contains(log, "installed snapshot") {
		t.Fatal("member 3 converged without installing a snapshot")
	}
	size := regexp.MustCompile(`snapshot received.* bytes=(\d+)`).FindStringSubmatch(log)
	t.Logf("member 3 rejoined in %v: slot %d, hash %s; snapshot of %s bytes, resumed at offset %s", took.Round(time.Millisecond), rows[2].Applied, rows[2].AppliedHash, size[1], resumed[1])
	// Its own state machine holds the writes.
	if out := mustCLI(t, 0, "get", "--consistency", "serializable", "--endpoints", m3.client, "00000042"); len(out) != 257 {
		t.Fatalf("member 3's own value of key 00000042 has %d bytes, want 256 and a newline", len(out))
	}
	// And the snapshot it holds is in its data directory.
	snaps, err := filepath.Glob(filepath.Join(m3.dir, "snap", "*.pxsnap"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot file in member 3's data directory (%v)", err)
	}
	if _, err := os.Stat(snaps[len(snaps)-1]); err != nil {
		t.Fatal(err)
	}
}
