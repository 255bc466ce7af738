package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestLostDiskIsRefused starts member 3 again with the first start's flags,
// --bootstrap included, after its data directory was wiped: as a service
// manager would. Its peers must refuse it, saying why, so that an acceptor
// that forgot its promises never votes; the cluster goes on without it, and
// the operator's way out (remove it, add it under a new ID) works.
func TestLostDiskIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := newCluster(t, 3)
	c.startAll(true)
	mustCLI(t, 0, "put", "--endpoints", c.endpoints(), "k", "1")
	c.converged(1, 2, 3)
	m3 := c.member(3)
	m3.kill()
	if err := os.RemoveAll(m3.dir); err != nil {
		t.Fatal(err)
	}
	c.start(3, true) // --cluster and --bootstrap again, on an empty directory
	for _, id := range []int{1, 2} {
		waitUntil(t, "member "+string(rune('0'+id))+" to refuse member 3", 10*time.Second, func() bool {
			return strings.Contains(c.member(id).log.String(), "node 3 came back with other data than it had")
		})
	}
	t.Logf("member 1 logs: %s", lastLine(c.member(1).log.String(), "came back"))
	// The others go on; member 3 takes no part.
	mustCLI(t, 0, "put", "--endpoints", c.member(1).client+","+c.member(2).client, "k", "2")
	time.Sleep(500 * time.Millisecond)
	for _, r := range status(t, m3.client) {
		if r.ID == 3 && r.Applied != 0 {
			t.Fatalf("the wiped member 3 applied slot %d: it was let in", r.Applied)
		}
	}
	// The way out: remove it; a new ID joins.
	mustCLI(t, 0, "member", "remove", "3", "--endpoints", c.member(1).client+","+c.member(2).client)
}

// lastLine returns the last line of log that contains s.
func lastLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
