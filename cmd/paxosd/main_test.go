package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/wal"
)

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		out    string // expected in stdout
		errOut string // expected in stderr
	}{
		{[]string{"sim", "--seeds", "2", "--rounds", "100"}, exitOK, "all 2 seeds passed", ""},
		{[]string{"sim", "--seed", "3", "--rounds", "50", "--wal"}, exitOK, "seed 3 ", ""},
		{[]string{"sim", "--seed", "2", "--rounds", "20", "--trace"}, exitOK, "deliver Prepare", ""},
		{[]string{"sim", "--trace"}, exitUsage, "", "give --seed too"},
		{[]string{"sim", "--seeds", "0"}, exitUsage, "", "--seeds and --rounds must be at least 1"},
		{[]string{"sim", "extra"}, exitUsage, "", "sim takes no arguments"},
		{[]string{"sim", "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{[]string{"bogus"}, exitUsage, "", `unknown command "bogus"`},
		{[]string{"--version"}, exitOK, "paxosd version", ""},
		// Rough edges a new user found (issue 13).
		{[]string{"version"}, exitOK, "protocol 8", ""},
		{[]string{"help"}, exitOK, "COMMANDS", ""},
		{[]string{"help", "put"}, exitOK, "paxosd put", ""},
		{[]string{"bogus", "-o", "json"}, exitUsage, `"outcome":"usage"`, "run 'paxosd help' for usage"},
		{[]string{"get", "--bogus", "-o", "json", "k"}, exitUsage, `"exit":2`, "run 'paxosd help get' for usage"},
		{[]string{"put", "k", "v", "-o"}, exitUsage, "", "flag -o needs a value"},
		{[]string{"get", "--timeout", "0", "k"}, exitUsage, "", "--timeout 0s: give a positive duration"},
		{[]string{"get", "--timeout", "-1s", "k"}, exitUsage, "", "give a positive duration"},
		{[]string{"put", "", "v"}, exitUsage, "", "KEY is empty"},
		{[]string{"del", "", "--prefix"}, exitUsage, "", "KEY is empty"},
		{[]string{"del", "", "z"}, exitUsage, "", "KEY is empty"},
		{[]string{"status", "x"}, exitUsage, "", "status takes 0 argument(s): status\n"},
	} {
		var stdout, stderr bytes.Buffer
		status := run(append([]string{"paxosd"}, tc.args...), &stdout, &stderr)
		if status != tc.status || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.errOut) {
			t.Errorf("paxosd %v: status %d, stdout %q, stderr %q; want status %d, stdout with %q, stderr with %q",
				tc.args, status, trim(stdout.String()), trim(stderr.String()), tc.status, tc.out, tc.errOut)
		}
	}
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// Every flag of every command can also be set from a PAXOSD_* variable.
func TestEveryFlagReadsTheEnvironment(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	var cmds []*cli.Command
	var walk func([]*cli.Command)
	walk = func(cs []*cli.Command) {
		for _, c := range cs {
			cmds = append(cmds, c)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	for _, cmd := range cmds {
		for _, f := range cmd.Flags {
			ef, ok := f.(interface{ GetEnvVars() []string })
			if !ok {
				t.Errorf("paxosd %s --%s: cannot tell its environment variable", cmd.Name, f.Names()[0])
				continue
			}
			envs := ef.GetEnvVars()
			if len(envs) == 0 || !strings.HasPrefix(envs[0], "PAXOSD_") {
				t.Errorf("paxosd %s --%s reads no PAXOSD_* variable (has %v)", cmd.Name, f.Names()[0], envs)
			}
		}
	}
}

func TestFlagsMayFollowArguments(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, tc := range []struct{ in, want []string }{
		{[]string{"paxosd", "get", "a", "-o", "json"}, []string{"paxosd", "get", "-o", "json", "a"}},
		{[]string{"paxosd", "cas", "k", "--expect-absent", "v"}, []string{"paxosd", "cas", "--expect-absent", "k", "v"}},
		{[]string{"paxosd", "get", "--timeout=1s", "a"}, []string{"paxosd", "get", "--timeout=1s", "a"}},
		{[]string{"paxosd", "get", "--", "-a"}, []string{"paxosd", "get", "--", "-a"}},
		{[]string{"paxosd", "put", "k", "-"}, []string{"paxosd", "put", "k", "-"}},
	} {
		if got, err := flagsFirst(app, tc.in); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("flagsFirst(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// A value flag at the end would take the argument before it.
	if got, err := flagsFirst(app, []string{"paxosd", "put", "k", "v", "-o"}); err == nil || !strings.Contains(err.Error(), "flag -o needs a value") {
		t.Errorf("put k v -o: %q, %v; want a usage error", got, err)
	}
}

func TestParseCluster(t *testing.T) {
	cfg, addrs, err := parseCluster("1=a:1,2=b:2/acceptor,3=c:3/proposer+learner")
	if err != nil {
		t.Fatal(err)
	}
	if addrs[2] != "b:2" || !cfg.Has(1, paxos.RoleAll) || !cfg.Has(2, paxos.RoleAcceptor) || cfg.Has(2, paxos.RoleLearner) ||
		!cfg.Has(3, paxos.RoleProposer|paxos.RoleLearner) || cfg.Has(3, paxos.RoleAcceptor) {
		t.Fatalf("parsed %+v, %v", cfg.Members(), addrs)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "--cluster is required"},
		{"1:a:1", "is not ID=HOST:PORT"},
		{"0=a:1", "positive integer"},
		{"1=a", "is not HOST:PORT"},
		{"1=a:1,1=b:2", "twice"},
		{"1=a:1/boss", `unknown role "boss"`},
		{"1=a:1/acceptor", "paxos: invalid cluster configuration"},
	} {
		if _, _, err := parseCluster(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseCluster(%q): %v; want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestBenchLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	for _, workload := range []string{"put", "mixed", "txn-put", "watch", "keepalive"} {
		var stdout, stderr bytes.Buffer
		total := "300"
		if workload == "watch" {
			// 10 watchers of 30 puts: 300 changes delivered.
			total = "30"
		}
		code := run([]string{"paxosd", "bench", workload, "--local", "3", "--clients", "8", "--total", total, "--key-space", "50",
			"--watchers", "10", "--put-rate", "200", "-o", "json"}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("bench %s: exit %d, stderr %s", workload, code, stderr.String())
		}
		var res struct {
			Requests  int                `json:"requests"`
			Errors    int                `json:"errors"`
			OpsPerSec float64            `json:"ops_per_sec"`
			Members   int                `json:"members"`
			Fsync     bool               `json:"fsync"`
			LatencyMS map[string]float64 `json:"latency_ms"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("bench -o json printed %q: %v", stdout.String(), err)
		}
		if res.Requests != 300 || res.Errors != 0 || res.OpsPerSec <= 0 || res.Members != 3 || !res.Fsync {
			t.Fatalf("bench %s result %+v", workload, res)
		}
		l := res.LatencyMS
		if !(0 < l["min"] && l["min"] <= l["p50"] && l["p50"] <= l["p90"] && l["p90"] <= l["p99"] && l["p99"] <= l["p999"] && l["p999"] <= l["max"]) {
			t.Fatalf("bench %s latencies out of order: %v", workload, l)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"paxosd", "bench", "scan"}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("bench scan: exit %d, want %d", code, exitUsage)
	}
}

func TestSnapshotInspect(t *testing.T) {
	dir := t.TempDir()
	s, err := wal.OpenSnapshots(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	meta := wal.SnapshotHeader{SnapshotMeta: paxos.SnapshotMeta{Slot: 42, Hash: 0xabc, Configs: paxos.History{paxos.InitialConfig(paxos.Uniform(3))}}, Cluster: 0x99, Machine: "kv"}
	path, err := s.Write(meta, func(w io.Writer) error { _, err := w.Write([]byte("some state")); return err })
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"paxosd", "snapshot", "inspect", path, "-o", "json"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("inspect: exit %d, stderr %s", code, stderr.String())
	}
	for _, want := range []string{`"slot":42`, `"applied_hash":"0000000000000abc"`, `"state_bytes":10`, `"checksum":"ok"`, `"1/proposer,acceptor,learner"`} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("inspect printed %s; want %s in it", stdout.String(), want)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-12-5] ^= 1 // in the state, before the trailer
	bad := filepath.Join(dir, "bad.pxsnap")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"paxosd", "snapshot", "inspect", bad}, &stdout, &stderr); code != exitFailed || !strings.Contains(stderr.String(), "checksum") ||
		!strings.Contains(stderr.String(), "is damaged") || strings.Contains(stderr.String(), "store is corrupt") {
		t.Fatalf("inspect of a damaged file: exit %d, stderr %s; want it called a damaged snapshot file", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"paxosd", "snapshot", "inspect", bad, "-o", "json"}, &stdout, &stderr); code != exitFailed || !strings.Contains(stdout.String(), `"outcome":"damaged"`) {
		t.Fatalf("inspect -o json of a damaged file: exit %d, stdout %s", code, stdout.String())
	}
	if code := run([]string{"paxosd", "snapshot", "inspect"}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("inspect without a file: exit %d", code)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "512KiB": 512 << 10, "64MiB": 64 << 20, "64M": 64 << 20, "2 GiB": 2 << 30, "1GB": 1 << 30, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "12XB", "9999999999GiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseTxn(t *testing.T) {
	good := `# move 3 from a to b
if value(acct/a) = "10"
if version("acct/b") < 5
if missing(lock)
then put acct/a 7
then put "acct/b" "x y"
then get acct/ --prefix
else get acct/a
else del a c
`
	lines, err := parseTxn(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, l := range lines {
		kinds = append(kinds, l.branch+":"+l.kind)
	}
	if got := strings.Join(kinds, " "); got != "if: if: if: then:put then:put then:range else:get else:del-range" {
		t.Fatalf("parsed %s", got)
	}
	for _, bad := range []struct{ in, want string }{
		{"", "no transaction"},
		{"when value(a) = 1", "lines start with if, then or else"},
		{"if value(a) ~ 1", "relation"},
		{"if version(a) > x", "compares with a number"},
		{"if size(a) > 1", "compare value, version"},
		{"if value a = 1", "a condition is"},
		{"then put a", "use put KEY VALUE"},
		{`then put "" v`, "the key is empty"},
		{`then put "a v`, "unfinished quoted string"},
	} {
		if _, err := parseTxn(strings.NewReader(bad.in)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseTxn(%q): %v; want an error saying %q", bad.in, err, bad.want)
		}
	}
}
