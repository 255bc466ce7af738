package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
)

// faultyDisk is a member's file system with the faults of a full or
// stalling disk, through Pebble's errorfs: writes refused with ENOSPC, free
// space reported as none, syncs that take long.
type faultyDisk struct {
	vfs.FS
	enospc atomic.Bool  // every write fails with ENOSPC
	full   atomic.Bool  // GetDiskUsage reports no space free
	slow   atomic.Int64 // every sync takes this long (ns)
	writes atomic.Int64 // writes refused
}

func newFaultyDisk() *faultyDisk {
	d := &faultyDisk{}
	d.FS = errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if d := time.Duration(d.slow.Load()); d > 0 {
				time.Sleep(d)
			}
		}
		if d.enospc.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && op.Kind != errorfs.OpFileClose && op.Kind != errorfs.OpRemove {
			d.writes.Add(1)
			return syscall.ENOSPC
		}
		return nil
	}))
	return d
}

func (d *faultyDisk) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	u, err := d.FS.GetDiskUsage(path)
	if d.full.Load() {
		u.AvailBytes = 0
	}
	return u, err
}

// timeline logs what happened when, for the test's report.
type timeline struct {
	t     *testing.T
	start time.Time
}

func (tl timeline) log(format string, args ...any) {
	tl.t.Logf("%7.3fs  %s", time.Since(tl.start).Seconds(), fmt.Sprintf(format, args...))
}

// startWithDisk starts a local cluster whose member id has disk d.
func startWithDisk(t *testing.T, id paxos.NodeID, d *faultyDisk, adjust func(*Config)) *Local {
	t.Helper()
	l, err := StartLocal(LocalConfig{Dir: t.TempDir(), Template: Config{TickInterval: 10 * time.Millisecond, RequestTimeout: 2 * time.Second, Logger: testLogger(t)},
		Adjust: func(i paxos.NodeID, c *Config) {
			if i == id {
				c.FS = d
				if adjust != nil {
					adjust(c)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

// TestDiskFullMember fills the disk of the leader: it must hand leadership
// over and take no writes, saying why, while it serves reads of what it has
// and the others go on; once space is freed it must catch up, having lost
// nothing. Its disk refuses every write while full, so a member that wrote
// anyway would block on it, and its reads would time out.
func TestDiskFullMember(t *testing.T) {
	tl := timeline{t, time.Now()}
	ctx := context.Background()
	// The member with the faulty disk is the first leader: member 1 gets
	// the shortest election timeout only by chance, so find out first.
	d := newFaultyDisk()
	l := startWithDisk(t, 1, d, nil)
	c := newClient(t, l)
	for i := range 20 {
		if err := c.Put(ctx, fmt.Sprintf("before-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if leaderOf(t, c, l) != 1 {
		if err := c.TransferLeader(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "member 1 to lead", func() bool { return leaderOf(t, c, l) == 1 })
	full := l.servers[1]
	tl.log("member 1 leads; 20 keys written")

	d.full.Store(true)
	tl.log("member 1's disk reports no space free")
	waitFor(t, "member 1 to count its disk as full", full.DiskFull)
	d.enospc.Store(true)
	tl.log("member 1 counts its disk as full; its disk now refuses every write")
	waitFor(t, "another member to lead", func() bool { return leaderOf(t, c, l) != 1 })
	tl.log("member %d leads", leaderOf(t, c, l))

	for i := range 20 {
		if err := c.Put(ctx, fmt.Sprintf("during-%d", i), []byte("v")); err != nil {
			t.Fatalf("a put while member 1's disk was full: %v", err)
		}
	}
	tl.log("20 more keys written through the others")
	only1, err := client.NewWithConfig(client.Config{Endpoints: l.Endpoints()[:1], Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer only1.Close()
	err = only1.Put(ctx, "refused", []byte("v"))
	if err == nil || !strings.Contains(err.Error(), "node 1's disk is full") {
		t.Fatalf("a put to member 1 alone: %v; want a refusal that says its disk is full", err)
	}
	tl.log("a put to member 1 alone is refused: %v", err)
	if v, err := only1.GetSerializable(ctx, "before-19"); err != nil || string(v) != "v" {
		t.Fatalf("a serializable read from member 1: %q, %v", v, err)
	}
	tl.log("member 1 still serves a serializable read of what it has")
	if _, err := full.Ready(ctx, 1000); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "disk is full") {
		t.Errorf("member 1's readiness with a full disk: %v", err)
	}
	if got := metricValue(t, full, "paxosd_is_leader"); got != 0 {
		t.Errorf("member 1, paused, still says it leads")
	}
	if got := metricValue(t, full, "paxosd_disk_full"); got != 1 {
		t.Errorf("disk_full = %v while full", got)
	}
	if n := d.writes.Load(); n != 0 {
		t.Errorf("member 1 tried %d writes while it counted its disk as full", n)
	}

	d.enospc.Store(false)
	d.full.Store(false)
	tl.log("space freed")
	waitFor(t, "member 1 to resume", func() bool { return !full.DiskFull() })
	tl.log("member 1 resumes")
	applied := waitConverged(t, c, l)
	tl.log("every member applied slot %d, with the same hash", applied)
	for i := range 20 {
		if v, err := only1.GetSerializable(ctx, fmt.Sprintf("during-%d", i)); err != nil || string(v) != "v" {
			t.Fatalf("member 1's read of during-%d after catching up: %q, %v", i, v, err)
		}
	}
	if metricValue(t, full, "paxosd_disk_full_total") < 1 || metricValue(t, full, "paxosd_disk_full") != 0 {
		t.Errorf("disk metrics after recovery: full_total %v, full %v", metricValue(t, full, "paxosd_disk_full_total"), metricValue(t, full, "paxosd_disk_full"))
	}
	if err := only1.Put(ctx, "after", []byte("v")); err != nil {
		t.Fatalf("a put through member 1 after recovery: %v", err)
	}
}

// TestENOSPCWithoutWarning fills a follower's disk at once, with no free
// space warning first: its write is refused with ENOSPC. The member must
// wait for room rather than fail, the cluster must go on meanwhile, and the
// member must catch up once space is freed.
func TestENOSPCWithoutWarning(t *testing.T) {
	tl := timeline{t, time.Now()}
	ctx := context.Background()
	d := newFaultyDisk()
	l := startWithDisk(t, 3, d, nil)
	c := newClient(t, l)
	if err := c.Put(ctx, "first", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if leaderOf(t, c, l) == 3 {
		if err := c.TransferLeader(ctx, 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "member 1 to lead", func() bool { return leaderOf(t, c, l) == 1 })
	}
	d.enospc.Store(true)
	tl.log("member 3's disk refuses every write; it still reports room")
	for i := range 30 {
		if err := c.Put(ctx, fmt.Sprintf("k%d", i), []byte("v")); err != nil {
			t.Fatalf("put %d while member 3's disk was full: %v", i, err)
		}
	}
	waitFor(t, "member 3 to hit ENOSPC", func() bool { return d.writes.Load() > 0 })
	tl.log("30 keys written through the others; member 3 had %d writes refused", d.writes.Load())
	m3 := l.servers[3]
	waitFor(t, "member 3 to count its disk as full", m3.DiskFull)
	// NB: member 3's node waits inside a write; nothing here may wait for
	// it, and what an operator looks at must say what is going on.
	if got := testutil.ToFloat64(m3.metrics.diskFull); got != 1 {
		t.Errorf("disk_full = %v while a write waits for space", got)
	}
	if err := m3.Health(ctx); err != nil {
		t.Errorf("/healthz while waiting for space: %v; a restart would not help, so it must say alive", err)
	}
	if _, err := m3.Ready(ctx, 10); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "ENOSPC") {
		t.Errorf("/readyz while waiting for space: %v", err)
	}
	tl.log("member 3 is alive, not ready, and counts its disk as full")
	d.enospc.Store(false)
	tl.log("space freed")
	applied := waitConverged(t, c, l)
	tl.log("every member applied slot %d, with the same hash", applied)
	select {
	case <-l.servers[3].runErr:
		t.Fatal("member 3 stopped")
	default:
	}
	if got := metricValue(t, l.servers[3], "paxosd_disk_full_total"); got < 1 {
		t.Errorf("disk_full_total = %v", got)
	}
	// After the wait, the free space watch still works: the disk filling
	// up now pauses the member (it once stayed unpaused, the flag stuck).
	d.full.Store(true)
	waitFor(t, "member 3 to count its disk as full again, and say so", func() bool {
		_, err := m3.Ready(ctx, 10)
		return err != nil && strings.Contains(err.Error(), "disk is full (0 B free")
	})
	d.full.Store(false)
	waitFor(t, "member 3 to resume", func() bool { _, err := m3.Ready(ctx, 10); return err == nil })
	tl.log("the disk filled up again, and had room again; member 3 paused and resumed")
}

// TestStalledLeaderHandsOver slows the leader's syncs past DiskStall: it
// must hand leadership to another member.
func TestStalledLeaderHandsOver(t *testing.T) {
	tl := timeline{t, time.Now()}
	ctx := context.Background()
	d := newFaultyDisk()
	l := startWithDisk(t, 1, d, func(c *Config) { c.DiskStall = 30 * time.Millisecond })
	c := newClient(t, l)
	if err := c.Put(ctx, "first", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if leaderOf(t, c, l) != 1 {
		if err := c.TransferLeader(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "member 1 to lead", func() bool { return leaderOf(t, c, l) == 1 })
	d.slow.Store(int64(60 * time.Millisecond))
	tl.log("member 1 leads; its syncs now take 60ms, the limit is 30ms (elections wait 100ms or more)")
	if err := c.Put(ctx, "slow", []byte("v")); err != nil && !errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatal(err)
	}
	waitFor(t, "another member to lead", func() bool { return leaderOf(t, c, l) != 1 })
	tl.log("member %d leads", leaderOf(t, c, l))
	d.slow.Store(0)
	if got := metricValue(t, l.servers[1], "paxosd_disk_stall_handovers_total"); got < 1 {
		t.Errorf("disk_stall_handovers_total = %v", got)
	}
	for i := range 10 {
		if err := c.Put(ctx, fmt.Sprintf("after-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c, l)
}
