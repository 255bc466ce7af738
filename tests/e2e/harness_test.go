// Package e2e runs the paxosd binary as a user would: serve processes on
// 127.0.0.x, the dev cluster, and the command-line client, with SIGKILLs,
// restarts and hostile connections.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the paxosd binary under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "paxosd-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "paxosd")
	build := exec.Command("go", "build", "-o", bin, "github.com/paxosd/paxosd/cmd/paxosd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build paxosd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// childEnv is the environment of every child: no PAXOSD_* settings leak in
// from the developer's shell.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAXOSD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a port that was free on host a moment ago.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		// Linux routes all of 127.0.0.0/8 to loopback; other systems
		// may only have 127.0.0.1.
		t.Skipf("these tests give each member its own loopback address, and %s is not usable here: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// member is one `paxosd serve` process.
type member struct {
	id                int
	host              string
	peer, client, dir string
	// listenPeer, when set, is where the member listens for peers; peer
	// (what the others dial) is then a proxy in front of it.
	listenPeer   string
	cmd          *exec.Cmd
	log          *syncBuffer
	exited       chan struct{}
	exitErr      error
	previousLogs []string
}

// cluster is a set of serve processes, each on its own 127.0.0.x address.
type cluster struct {
	t       *testing.T
	members []*member
	flag    string
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	var parts []string
	root := t.TempDir()
	for i := 1; i <= n; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		m := &member{id: i, host: host, dir: filepath.Join(root, strconv.Itoa(i))}
		m.peer = net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
		m.client = net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
		parts = append(parts, fmt.Sprintf("%d=%s", i, m.peer))
		c.members = append(c.members, m)
	}
	c.flag = strings.Join(parts, ",")
	t.Cleanup(func() {
		for _, m := range c.members {
			m.kill()
			if t.Failed() {
				t.Logf("member %d log:\n%s", m.id, m.allLogs())
			}
		}
	})
	return c
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return strings.Join(eps, ",")
}

func (c *cluster) member(id int) *member { return c.members[id-1] }

// start starts member id.
func (c *cluster) start(id int, bootstrap bool, extra ...string) {
	c.t.Helper()
	m := c.member(id)
	if m.cmd != nil {
		m.previousLogs = append(m.previousLogs, m.log.String())
	}
	args := []string{"serve", "--id", strconv.Itoa(id), "--data-dir", m.dir, "--listen-client", m.client,
		"--request-timeout", "1s", "--log-level", "info"}
	// The first start bootstraps from --cluster; a restart needs only the
	// data directory and the listen addresses.
	if bootstrap {
		args = append(args, "--cluster", c.flag, "--bootstrap")
	}
	switch {
	case m.listenPeer != "":
		args = append(args, "--listen-peer", m.listenPeer)
	case !bootstrap:
		args = append(args, "--listen-peer", m.peer)
	}
	args = append(args, extra...)
	m.log = &syncBuffer{}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Env = childEnv()
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		m.exitErr = cmd.Wait()
		close(done)
	}(m.cmd, m.exited)
	// Ready once the client port answers.
	waitUntil(c.t, fmt.Sprintf("member %d to listen", id), 10*time.Second, func() bool {
		select {
		case <-m.exited:
			c.t.Fatalf("member %d exited at start: %v\n%s", id, m.exitErr, m.log.String())
		default:
		}
		conn, err := net.DialTimeout("tcp", m.client, 100*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// grow adds a member object for the next ID on its own 127.0.0.x address,
// not started: 'paxosd member add' it, then startJoin.
func (c *cluster) grow() *member {
	c.t.Helper()
	id := len(c.members) + 1
	host := fmt.Sprintf("127.0.0.%d", id)
	m := &member{id: id, host: host, dir: filepath.Join(filepath.Dir(c.members[0].dir), strconv.Itoa(id))}
	m.peer = net.JoinHostPort(host, strconv.Itoa(freePort(c.t, host)))
	m.client = net.JoinHostPort(host, strconv.Itoa(freePort(c.t, host)))
	c.members = append(c.members, m)
	return m
}

// startJoin starts member id with an empty data directory, joining the
// cluster through the members at endpoints.
func (c *cluster) startJoin(id int, endpoints string) {
	c.t.Helper()
	c.start(id, false, "--join", endpoints)
}

// stop sends SIGTERM and waits for the process to go.
func (m *member) stop() {
	if !m.running() {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	<-m.exited
}

func (c *cluster) startAll(bootstrap bool) {
	for _, m := range c.members {
		c.start(m.id, bootstrap)
	}
}

func (m *member) running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to go.
func (m *member) kill() {
	if !m.running() {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

func (m *member) allLogs() string {
	if m.log == nil {
		return ""
	}
	return strings.Join(append(m.previousLogs, m.log.String()), "\n--- restart ---\n")
}

// rssKB reads the process's resident set size from /proc.
func (m *member) rssKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		t.Skipf("cannot read RSS here: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// cli runs the paxosd command line and returns its output and exit status.
func cli(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliEnv(t, nil, stdin, args...)
}

// cliDefaultEnv is added to every command line's environment, before the
// test's own: the dev test sets PAXOSD_ENDPOINTS here when it had to move
// the dev cluster off its default ports.
var cliDefaultEnv []string

// cliEnv is cli with extra environment variables.
func cliEnv(t *testing.T, env []string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(append(slices.Clone(cliDefaultEnv), env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run paxosd %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustCLI runs the command line and fails unless it exits with want.
func mustCLI(t *testing.T, want int, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, nil, args...)
	if code != want {
		t.Fatalf("paxosd %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// statusRow is one member in `paxosd status -o json`.
type statusRow struct {
	ID           int    `json:"id"`
	Leader       bool   `json:"leader"`
	Promised     string `json:"promised"`
	Chosen       uint64 `json:"chosen"`
	Applied      uint64 `json:"applied"`
	AppliedHash  string `json:"applied_hash"`
	SnapshotSlot uint64 `json:"snapshot_slot"`
	LogBytes     uint64 `json:"log_bytes"`
	ConfigSlot   uint64 `json:"config_slot"`
	Sessions     uint64 `json:"sessions"`
	Error        string `json:"error"`
}

func status(t *testing.T, endpoints string) []statusRow {
	t.Helper()
	out, errOut, _ := cli(t, nil, "status", "-o", "json", "--endpoints", endpoints, "--timeout", "2s")
	var rows []statusRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("status -o json printed %q (stderr %q): %v", out, errOut, err)
	}
	return rows
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader waits for a member that says it leads and returns its ID.
func (c *cluster) leader() int {
	c.t.Helper()
	id := 0
	waitUntil(c.t, "a leader", 15*time.Second, func() bool {
		for _, r := range status(c.t, c.endpoints()) {
			if r.Leader && r.Error == "" {
				id = r.ID
				return true
			}
		}
		return false
	})
	return id
}

// converged waits until every listed member applied the same slot with the
// same hash, and returns the rows.
func (c *cluster) converged(ids ...int) []statusRow {
	c.t.Helper()
	return c.convergedWithin(20*time.Second, ids...)
}

func (c *cluster) convergedWithin(timeout time.Duration, ids ...int) []statusRow {
	c.t.Helper()
	var rows []statusRow
	waitUntil(c.t, fmt.Sprintf("members %v to apply the same slot", ids), timeout, func() bool {
		rows = status(c.t, c.endpoints())
		byID := map[int]statusRow{}
		for _, r := range rows {
			byID[r.ID] = r
		}
		first, ok := byID[ids[0]]
		if !ok || first.Error != "" || first.Applied == 0 {
			return false
		}
		for _, id := range ids[1:] {
			r, ok := byID[id]
			if !ok || r.Error != "" || r.Applied != first.Applied || r.AppliedHash != first.AppliedHash {
				return false
			}
		}
		return true
	})
	return rows
}
