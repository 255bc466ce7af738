package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startDev runs `paxosd dev` (on its default ports, as the README says,
// unless extra moves them) and waits until it prints what to type next.
func startDev(t *testing.T, dir string, extra ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--data-dir", dir}, extra...)...)
	cmd.Env = childEnv()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("paxosd dev output:\n%s", out.String())
		}
	})
	waitUntil(t, "paxosd dev to start", 15*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("paxosd dev exited: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Try, in another terminal")
	})
	return cmd, out, done
}

// The quick start, as a user types it, and each exit status of the client
// contract (4, outcome unknown, is produced in TestServeClusterFailover).
func TestDevQuickStartAndExitStatuses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	// The quick start uses the default ports. Where they are taken (a
	// paxosd dev already running), the test moves the cluster and points
	// the command lines at it, rather than skipping.
	var ports []string
	if !portsFree(7001, 7101) {
		base := freePortRun(t)
		ports = []string{"--client-port", strconv.Itoa(base), "--peer-port", strconv.Itoa(base + 3)}
		cliDefaultEnv = []string{fmt.Sprintf("PAXOSD_ENDPOINTS=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2)}
		t.Cleanup(func() { cliDefaultEnv = nil })
		t.Logf("the dev cluster's default ports are taken on this machine; using %d-%d instead", base, base+5)
	}
	dir := t.TempDir()
	cmd, out, done := startDev(t, dir, ports...)
	if !strings.Contains(out.String(), "new cluster") {
		t.Fatalf("first start did not say it made a new cluster:\n%s", out.String())
	}

	// The quick start: no flags at all.
	mustCLI(t, 0, "put", "a", "1")
	if got := mustCLI(t, 0, "get", "a"); got != "1\n" {
		t.Fatalf("paxosd get a printed %q, want \"1\\n\"", got)
	}
	if got := mustCLI(t, 0, "get", "a", "-o", "json"); !strings.Contains(got, `"value":"1"`) ||
		!strings.Contains(got, `"create_revision":1,`) || !strings.Contains(got, `"mod_revision":1,`) || !strings.Contains(got, `"version":1`) || !strings.Contains(got, `"revision":1,`) {
		t.Fatalf("paxosd get a -o json printed %q; want the value and its revisions (all 1 after the first write)", got)
	}
	if got := mustCLI(t, 0, "status", "-o", "json"); !strings.Contains(got, `"leader":true`) || !strings.Contains(got, `"applied_hash"`) {
		t.Fatalf("status -o json printed %q", got)
	}

	for _, tc := range []struct {
		name   string
		stdin  []byte
		args   []string
		code   int
		stderr string
	}{
		{"cas swaps", nil, []string{"cas", "a", "1", "2"}, 0, ""},
		{"get of a missing key", nil, []string{"get", "nobody"}, 3, `key "nobody" not found`},
		{"cas that does not swap", nil, []string{"cas", "a", "1", "3"}, 3, "nothing changed"},
		{"cas --expect-absent on an existing key", nil, []string{"cas", "--expect-absent", "a", "9"}, 3, "exists"},
		{"del", nil, []string{"del", "a"}, 0, ""},
		{"no member reachable", nil, []string{"put", "--endpoints", "127.0.0.1:1", "--timeout", "1s", "k", "v"}, 1, "tried 127.0.0.1:1"},
		{"value too large", bytes.Repeat([]byte("x"), 2<<20), []string{"put", "big", "-"}, 1, "the value on standard input is larger than the 1048576-byte limit"},
		{"missing argument", nil, []string{"put", "k"}, 2, "put takes 2 argument(s)"},
		{"bad output format", nil, []string{"get", "-o", "yaml", "a"}, 2, "use text, json or raw"},
		{"empty key", nil, []string{"put", "", "v"}, 2, "KEY is empty"},
		{"trailing flag without a value", nil, []string{"put", "k", "v", "-o"}, 2, "flag -o needs a value"},
		{"zero timeout", nil, []string{"get", "--timeout", "0", "a"}, 2, "give a positive duration"},
		{"bad consistency", nil, []string{"get", "--consistency", "eventual", "a"}, 2, "linearizable or serializable"},
		{"serve without --id", nil, []string{"serve", "--data-dir", dir}, 2, "--id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := cli(t, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("paxosd %s: exit %d, stdout %q, stderr %q; want exit %d, stderr with %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stderr)
			}
		})
	}
	// -o json keeps its promise for every exit status, and binary values
	// survive it (base64) and -o raw (the bytes alone).
	if out, _, code := cli(t, nil, "get", "nobody", "-o", "json"); code != 3 || !strings.Contains(out, `"outcome":"condition_failed"`) || !strings.Contains(out, `"exit":3`) {
		t.Fatalf("get of a missing key -o json: exit %d, stdout %q", code, out)
	}
	if out, _, code := cli(t, nil, "bogus", "-o", "json"); code != 2 || !strings.Contains(out, `"outcome":"usage"`) {
		t.Fatalf("an unknown command -o json: exit %d, stdout %q", code, out)
	}
	bin := []byte{0xff, 0x00, 'a', 0xfe}
	if _, stderr, code := cli(t, bin, "put", "bin", "-"); code != 0 {
		t.Fatalf("put of a binary value: exit %d, %s", code, stderr)
	}
	if out := mustCLI(t, 0, "get", "bin", "-o", "raw"); out != string(bin) {
		t.Fatalf("get -o raw printed %x, want %x", out, bin)
	}
	if out := mustCLI(t, 0, "get", "bin", "-o", "json"); !strings.Contains(out, `"value_base64":"/wBh/g=="`) || strings.Contains(out, `"value":`) {
		t.Fatalf("get -o json of a binary value printed %s; want value_base64 and no text value", out)
	}
	// Transactions from standard input, and cas saying why it did not swap.
	txn := []byte("if missing(t/lock)\nthen put t/lock me\nthen get t/lock\nelse get t/lock\n")
	if out, stderr, code := cli(t, txn, "txn"); code != 0 || out != "SUCCEEDED\nOK\nme\n" {
		t.Fatalf("a transaction that holds: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if out, _, code := cli(t, txn, "txn", "-o", "json"); code != 3 || !strings.Contains(out, `"succeeded":false`) || !strings.Contains(out, `"value":"me"`) || !strings.Contains(out, `"outcome":"condition_failed"`) {
		t.Fatalf("a transaction that does not hold, -o json: exit %d, stdout %q", code, out)
	}
	if _, stderr, code := cli(t, []byte("if nonsense\n"), "txn"); code != 2 || !strings.Contains(stderr, "transaction line 1") {
		t.Fatalf("a malformed transaction: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "cas", "t/none", "a", "b"); code != 3 || !strings.Contains(stderr, `key "t/none" does not exist`) {
		t.Fatalf("cas on a missing key: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "cas", "t/lock", "you", "x"); code != 3 || !strings.Contains(stderr, `value of "t/lock" is "me", not "you"`) {
		t.Fatalf("cas with the wrong old value: exit %d, stderr %q", code, stderr)
	}

	// Ranges and delete-range.
	for _, k := range []string{"r/1", "r/2", "r/3", "s"} {
		mustCLI(t, 0, "put", k, "v"+k)
	}
	if out := mustCLI(t, 0, "get", "r/", "--prefix"); out != "r/1\nvr/1\nr/2\nvr/2\nr/3\nvr/3\n" {
		t.Fatalf("get r/ --prefix printed %q", out)
	}
	if out := mustCLI(t, 0, "get", "r/2", "s", "--keys-only"); out != "r/2\nr/3\n" {
		t.Fatalf("get r/2 s --keys-only printed %q", out)
	}
	if out := mustCLI(t, 0, "get", "r/", "--prefix", "--count-only"); out != "3\n" {
		t.Fatalf("get r/ --prefix --count-only printed %q", out)
	}
	if out := mustCLI(t, 0, "get", "r/", "--prefix", "--limit", "1", "-o", "json"); !strings.Contains(out, `"count":1`) || !strings.Contains(out, `"key":"r/1"`) || !strings.Contains(out, `"mod_revision":`) {
		t.Fatalf("get r/ --prefix --limit 1 -o json printed %q", out)
	}
	if _, stderr, code := cli(t, nil, "get", "r/", "--limit", "1"); code != 2 || !strings.Contains(stderr, "need a range") {
		t.Fatalf("--limit on a single key: exit %d, %s", code, stderr)
	}
	if out := mustCLI(t, 0, "del", "r/", "--prefix"); out != "deleted 3\n" {
		t.Fatalf("del r/ --prefix printed %q", out)
	}
	if out := mustCLI(t, 0, "get", "", "--prefix", "--count-only"); out == "0\n" {
		t.Fatalf("every key counted 0 after deleting r/: s and others remain")
	}
	// History: a watch from a past revision, reads at it, compaction.
	mustCLI(t, 0, "put", "w/a", "1")
	js := mustCLI(t, 0, "get", "w/a", "-o", "json")
	var first struct{ Revision uint64 }
	if err := json.Unmarshal([]byte(js), &first); err != nil || first.Revision == 0 {
		t.Fatalf("get -o json printed %q: %v", js, err)
	}
	mustCLI(t, 0, "put", "w/b", "2")
	mustCLI(t, 0, "del", "w/a")
	rev := strconv.FormatUint(first.Revision, 10)
	if out := mustCLI(t, 0, "watch", "w/", "--prefix", "--rev", rev, "--max-events", "3"); out != "PUT\nw/a\n1\nPUT\nw/b\n2\nDELETE\nw/a\n" {
		t.Fatalf("watch w/ --prefix --rev %s printed %q", rev, out)
	}
	if out := mustCLI(t, 0, "get", "w/a", "--rev", rev); out != "1\n" {
		t.Fatalf("get w/a --rev %s printed %q", rev, out)
	}
	mustCLI(t, 0, "compact", strconv.FormatUint(first.Revision+1, 10))
	if _, stderr, code := cli(t, nil, "get", "w/a", "--rev", rev); code != 1 || !strings.Contains(stderr, "is compacted: the oldest revision still readable is "+strconv.FormatUint(first.Revision+1, 10)) {
		t.Fatalf("get at a compacted revision: exit %d, %s", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "watch", "w/", "--prefix", "--rev", rev); code != 1 || !strings.Contains(stderr, "changes are kept from revision "+strconv.FormatUint(first.Revision+2, 10)) {
		t.Fatalf("watch from a compacted revision: exit %d, %s", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "compact", "x"); code != 2 || !strings.Contains(stderr, "give a revision") {
		t.Fatalf("compact x: exit %d, %s", code, stderr)
	}
	// Leases: keys put with one go when it is revoked.
	if out := mustCLI(t, 0, "lease", "grant", "30s", "-o", "json"); !strings.Contains(out, `"ttl":30`) {
		t.Fatalf("lease grant 30s -o json printed %q", out)
	}
	if out := mustCLI(t, 0, "lease", "grant", "20"); !strings.HasPrefix(out, "lease ") || !strings.Contains(out, "granted with TTL 20s") {
		t.Fatalf("lease grant 20 printed %q", out)
	}
	ls := mustCLI(t, 0, "lease", "list", "-o", "json")
	var leases struct{ Leases []struct{ ID uint64 } }
	if err := json.Unmarshal([]byte(ls), &leases); err != nil || len(leases.Leases) != 2 {
		t.Fatalf("lease list -o json printed %q: %v", ls, err)
	}
	id := strconv.FormatUint(leases.Leases[1].ID, 10)
	mustCLI(t, 0, "put", "svc/a", "up", "--lease", id)
	if out := mustCLI(t, 0, "lease", "keep-alive", id, "--once"); !strings.Contains(out, "kept alive with TTL 20s") {
		t.Fatalf("lease keep-alive --once printed %q", out)
	}
	mustCLI(t, 0, "lease", "revoke", id)
	if _, _, code := cli(t, nil, "get", "svc/a"); code != 3 {
		t.Fatalf("get of a key whose lease was revoked: exit %d", code)
	}
	if _, stderr, code := cli(t, nil, "lease", "keep-alive", id); code != 3 || !strings.Contains(stderr, "lease not found") {
		t.Fatalf("keep-alive of a revoked lease: exit %d, %s", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "put", "x", "y", "--lease", "999999"); code != 1 || !strings.Contains(stderr, "lease 999999 is not granted") {
		t.Fatalf("put with an unknown lease: exit %d, %s", code, stderr)
	}
	if _, stderr, code := cli(t, nil, "lease", "grant", "soon"); code != 2 || !strings.Contains(stderr, "give seconds or a duration") {
		t.Fatalf("lease grant soon: exit %d, %s", code, stderr)
	}
	// Recipes: a command run under a lock sees its fencing token, and its
	// exit status is lock's.
	if out := mustCLI(t, 0, "lock", "job", "--", "sh", "-c", "echo token=$PAXOSD_LOCK_TOKEN"); !strings.HasPrefix(out, "token=") || out == "token=\n" {
		t.Fatalf("lock job -- sh printed %q", out)
	}
	if _, _, code := cli(t, nil, "lock", "job", "--", "sh", "-c", "exit 5"); code != 5 {
		t.Fatalf("lock job -- sh -c 'exit 5': exit %d", code)
	}
	if _, stderr, code := cli(t, nil, "lock", "job", "--ttl", "10ms"); code != 2 || !strings.Contains(stderr, "at least 1s") {
		t.Fatalf("lock --ttl 10ms: exit %d, %s", code, stderr)
	}
	mustCLI(t, 0, "put", "kept", "yes")
	// Flags also come from PAXOSD_* variables.
	if _, stderr, code := cliEnv(t, []string{"PAXOSD_ENDPOINTS=127.0.0.1:1", "PAXOSD_TIMEOUT=300ms"}, nil, "get", "kept"); code != 1 || !strings.Contains(stderr, "tried 127.0.0.1:1") {
		t.Fatalf("get with PAXOSD_ENDPOINTS pointing nowhere: exit %d, stderr %q", code, stderr)
	}

	// Ctrl-C stops it cleanly; starting it again keeps the data.
	cmd.Process.Signal(syscall.SIGINT)
	if err := <-done; err != nil {
		t.Fatalf("paxosd dev after SIGINT: %v\n%s", err, out.String())
	}
	done <- nil // for the cleanup
	if !strings.Contains(out.String(), "paxosd dev: stopped") {
		t.Fatalf("no stop message:\n%s", out.String())
	}
	_, out2, _ := startDev(t, dir, ports...)
	if !strings.Contains(out2.String(), "data kept") {
		t.Fatalf("restart did not say it kept the data:\n%s", out2.String())
	}
	if got := mustCLI(t, 0, "get", "kept"); got != "yes\n" {
		t.Fatalf("after restart get kept printed %q", got)
	}
}

// portsFree reports whether the dev cluster's three client ports from
// client and three peer ports from peer are free on 127.0.0.1.
func portsFree(client, peer int) bool {
	for _, p := range []int{client, client + 1, client + 2, peer, peer + 1, peer + 2} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// freePortRun finds six consecutive free ports on 127.0.0.1.
func freePortRun(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := freePort(t, "127.0.0.1")
		if base+5 < 65536 && portsFree(base, base+3) {
			return base
		}
	}
	t.Fatal("found no six consecutive free ports on 127.0.0.1")
	return 0
}
