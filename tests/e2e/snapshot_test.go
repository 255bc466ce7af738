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

// behindCluster starts three members with flags, member 3's peer traffic
// running through a proxy, then stops member 3 and has the other two take
// the bench load args describe. It returns the cluster, the proxy, the
// bench's result and the slot member 3 had applied when it stopped.
func behindCluster(t *testing.T, flags []string, kill bool, load ...string) (*cluster, *proxy, benchResult, uint64) {
	t.Helper()
	c := newCluster(t, 3)
	m3 := c.member(3)
	m3.listenPeer = fmt.Sprintf("127.0.0.3:%d", freePort(t, "127.0.0.3"))
	px := newProxy(t, m3.peer, m3.listenPeer)
	for id := 1; id <= 3; id++ {
		c.start(id, true, flags...)
	}
	mustCLI(t, 0, "put", "--endpoints", c.endpoints(), "before", "stop")
	var stoppedAt uint64
	for _, r := range c.converged(1, 2, 3) {
		if r.ID == 3 {
			stoppedAt = r.Applied
		}
	}
	if kill {
		m3.kill()
	} else {
		m3.cmd.Process.Signal(syscall.SIGTERM)
		<-m3.exited
	}
	live := c.member(1).client + "," + c.member(2).client
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bench := exec.CommandContext(ctx, bin, append([]string{"bench", "put", "--endpoints", live, "-o", "json"}, load...)...)
	bench.Env = childEnv()
	out, err := bench.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var res benchResult
	if err := json.Unmarshal(out, &res); err != nil || res.Errors != 0 {
		t.Fatalf("bench: %s (%v)", out, err)
	}
	return c, px, res, stoppedAt
}

type benchResult struct {
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
}

// A member stopped while the others take 200,000 writes comes back by
// receiving a snapshot: the others snapshotted and truncated past it. The
// peer connections into it run through a proxy, which cuts them all once
// in the middle of the transfer and refuses new ones for 3 s; the transfer
// resumes where it stood, and
// the member reaches the same applied slot and hash as the others.
func TestRejoinBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test with 200,000 writes")
	}
	// Snapshots every 2000 slots, so 200,000 writes make several; a slow
	// transfer rate, so the transfer is still running when the proxy cuts.
	// 200,000 writes of 256 bytes over 100,000 keys, to members 1 and 2.
	flags := []string{"--snapshot-every", "2000", "--snapshot-rate", "4MiB"}
	c, px, res, before := behindCluster(t, flags, false, "--total", "200000", "--clients", "64", "--conns", "8")
	m3 := c.member(3)
	if res.Requests != 200000 {
		t.Fatalf("bench sent %d requests, want 200000", res.Requests)
	}
	rows := c.converged(1, 2)
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
	// Down for longer than a chunk may take (2 s), so that the transfer
	// has to ask again.
	cut := px.cut(3 * time.Second)
	t.Logf("cut %d connections into member 3 after %d bytes of the transfer, and refused new ones for 3 s", cut, px.toward.Load()-base)
	rows = c.convergedWithin(60*time.Second, 1, 2, 3)
	took := time.Since(start)
	log := m3.log.String()
	// NB: the first transfer must resume, not start over. A snapshot
	// carries the history too (tens of MB here), so by the time it is
	// installed the others may have moved past their logs, and a second,
	// newer one may follow.
	first := regexp.MustCompile(`receiving snapshot.* slot=(\d+)`).FindStringSubmatch(log)
	if first == nil {
		t.Fatal("member 3 logged no snapshot transfer")
	}
	if n := strings.Count(log, "slot="+first[1]+" applied="); n != 1 {
		t.Fatalf("member 3 began the transfer of snapshot %s %d times, want once, resumed (%d transfers in all)", first[1], n, strings.Count(log, "receiving snapshot"))
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

// A member SIGKILLed in the middle of receiving a snapshot, and again just
// after it started over, comes back, starts the transfer afresh and
// converges: a half-received snapshot is never taken for a whole one.
func TestKilledDuringSnapshotTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	// 40,000 writes over 40,000 keys: a snapshot of about 21 MB (the
	// state, and the history of the last 32 MiB of changes), which takes
	// over 10 s at 2 MiB/s.
	flags := []string{"--snapshot-every", "500", "--snapshot-rate", "2MiB"}
	c, px, _, _ := behindCluster(t, flags, true, "--total", "40000", "--key-space", "40000", "--sequential-keys")
	m3 := c.member(3)
	c.converged(1, 2)
	for round := 1; round <= 2; round++ {
		c.start(3, false, flags...)
		waitUntil(t, "member 3 to start receiving a snapshot", 20*time.Second, func() bool {
			return strings.Contains(m3.log.String(), "receiving snapshot")
		})
		base := px.toward.Load()
		waitUntil(t, "2 MiB of the snapshot to pass", 20*time.Second, func() bool { return px.toward.Load()-base > 2<<20 })
		m3.kill()
		t.Logf("member 3 SIGKILLed after %d bytes of a transfer", px.toward.Load()-base)
		if parts, _ := filepath.Glob(filepath.Join(m3.dir, "snap", "*.tmp")); len(parts) == 0 {
			t.Log("no partial file left (the kill came between chunks that were buffered)")
		}
	}
	killed, _ := filepath.Glob(filepath.Join(m3.dir, "snap", "*.tmp"))
	c.start(3, false, flags...)
	rows := c.convergedWithin(60*time.Second, 1, 2, 3)
	if !strings.Contains(m3.log.String(), "installed snapshot") {
		t.Fatal("member 3 converged without installing a snapshot")
	}
	// NB: a newer transfer may be under way by now; the partial files of
	// the killed ones must be gone.
	for _, f := range killed {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("partial snapshot file %s of a killed transfer left after the start (%v)", f, err)
		}
	}
	t.Logf("member 3 converged at slot %d, hash %s", rows[2].Applied, rows[2].AppliedHash)
	if out := mustCLI(t, 0, "get", "--consistency", "serializable", "--endpoints", m3.client, "00039999"); len(out) != 257 {
		t.Fatalf("member 3's own value of the last key has %d bytes, want 256 and a newline", len(out))
	}

	// An operator saves a snapshot from the member that just installed one.
	file := filepath.Join(t.TempDir(), "backup.pxsnap")
	var saved struct {
		Slot  uint64 `json:"slot"`
		Bytes uint64 `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, 0, "snapshot", "save", file, "--endpoints", m3.client, "-o", "json")), &saved); err != nil {
		t.Fatal(err)
	}
	var info struct {
		Slot       uint64 `json:"slot"`
		StateBytes int64  `json:"state_bytes"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, 0, "snapshot", "inspect", file, "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if saved.Slot < rows[2].Applied || info.Slot != saved.Slot || info.StateBytes < 40000*256 {
		t.Fatalf("snapshot save reported slot %d (%d bytes); inspect found slot %d with %d bytes of state; member 3 had applied %d",
			saved.Slot, saved.Bytes, info.Slot, info.StateBytes, rows[2].Applied)
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Fatalf("snapshot save left %s.part behind (%v)", file, err)
	}
	// A member that is not running: exit 1, and no file.
	m3.kill()
	if _, _, code := cli(t, nil, "snapshot", "save", file+"2", "--endpoints", m3.client, "--timeout", "2s"); code != 1 {
		t.Fatalf("snapshot save from a stopped member exited %d, want 1", code)
	}
	if _, err := os.Stat(file + "2"); !os.IsNotExist(err) {
		t.Fatalf("a failed snapshot save left a file (%v)", err)
	}
}
