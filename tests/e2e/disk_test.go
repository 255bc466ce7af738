package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountSmallFS mounts a tmpfs of size bytes at a new directory, or skips
// the test where that cannot be done (not root, no mount).
func mountSmallFS(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a size-limited tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a size-limited tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes name until the file system refuses another byte, and returns
// how many bytes it wrote.
func fill(t *testing.T, name string) int64 {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return n
}

// TestMemberOnAFullFileSystem runs member 3 on a 48 MiB tmpfs, fills it to
// the brim, and checks what an operator would: the member refuses writes
// saying its disk is full, serves reads of what it has, the others go on,
// and once space is freed it catches up without losing anything.
func TestMemberOnAFullFileSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	mnt := mountSmallFS(t, 48<<20)
	start := time.Now()
	at := func(format string, args ...any) {
		t.Logf("%7.3fs  %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	c := newCluster(t, 3)
	m3 := c.member(3)
	m3.dir = filepath.Join(mnt, "data")
	c.start(1, true)
	c.start(2, true)
	c.start(3, true, "--disk-reserve", "8MiB")
	cl := newClient(t, c)
	ctx := context.Background()
	for i := range 20 {
		if err := cl.Put(ctx, fmt.Sprintf("before-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.converged(1, 2, 3)
	at("3 members up, member 3's data on a 48 MiB tmpfs; 20 keys written")

	ballast := filepath.Join(mnt, "ballast")
	n := fill(t, ballast)
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	at("filled the tmpfs to the brim: %d MiB of ballast, %d bytes free", n>>20, st.Bavail*uint64(st.Bsize))
	waitUntil(t, "member 3 to say its disk is full", 10*time.Second, func() bool {
		return strings.Contains(m3.log.String(), "disk full")
	})
	at("member 3 logs: disk full")

	_, errOut, code := cli(t, nil, "put", "--endpoints", m3.client, "--timeout", "2s", "refused", "v")
	if code == 0 || !strings.Contains(errOut, "node 3's disk is full") {
		t.Fatalf("a put to member 3: exit %d, %q; want a refusal that says its disk is full", code, errOut)
	}
	at("a put to member 3 alone: exit %d, %s", code, strings.TrimSpace(errOut))
	out, errOut, code := cli(t, nil, "get", "--endpoints", m3.client, "--consistency", "serializable", "--timeout", "5s", "before-19")
	if code != 0 || out != "v\n" {
		t.Fatalf("a serializable read from member 3: exit %d, %q, %q", code, out, errOut)
	}
	at("member 3 serves a serializable read of what it has")
	for i := range 20 {
		if err := cl.Put(ctx, fmt.Sprintf("during-%d", i), []byte("v")); err != nil {
			t.Fatalf("a put while member 3's disk was full: %v", err)
		}
	}
	at("20 more keys written through members 1 and 2")

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	at("ballast removed")
	waitUntil(t, "member 3 to resume", 10*time.Second, func() bool {
		return strings.Contains(m3.log.String(), "disk has room again")
	})
	at("member 3 logs: disk has room again")
	rows := c.converged(1, 2, 3)
	at("all three applied slot %d with the same hash", rows[0].Applied)
	for i := range 20 {
		out, _, code := cli(t, nil, "get", "--endpoints", m3.client, "--consistency", "serializable", fmt.Sprintf("during-%d", i))
		if code != 0 || out != "v\n" {
			t.Fatalf("member 3's read of during-%d after recovery: exit %d, %q", i, code, out)
		}
	}
	if !m3.running() {
		t.Fatal("member 3 exited")
	}
}
