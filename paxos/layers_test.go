package paxos_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layers of docs/design.md ("The map of the code"), as imports. Each
// package may import only the packages of this module listed for it; the
// role cores and package paxos must not reach the network or a codec, even
// indirectly; and the binary must not link test code.

const module = "github.com/paxosd/paxosd"

// allowed lists, for every package of the module, the packages of the
// module it may import directly.
var allowed = map[string][]string{
	"paxos":           {"statemachine"},
	"paxos/wire":      {"paxos"},
	"paxos/certs":     {"paxos"},
	"paxos/transport": {"paxos", "paxos/wire", "paxos/certs"},
	"paxos/clientapi": {"paxos"},
	"paxos/server":    {"paxos", "paxos/wire", "paxos/certs", "paxos/transport", "paxos/clientapi", "acceptor", "proposer", "learner", "statemachine", "wal"},
	"paxos/client":    {"paxos", "paxos/wire", "paxos/clientapi", "statemachine"},
	"acceptor":        {"paxos"},
	"proposer":        {"paxos"},
	"learner":         {"paxos", "statemachine"},
	"statemachine":    {},
	"wal":             {"paxos"},
	"internal/sim":    {"paxos", "paxos/wire", "paxos/clientapi", "paxos/server", "paxos/client", "acceptor", "proposer", "learner", "statemachine", "wal"},
	"cmd/paxosd":      {"paxos", "paxos/wire", "paxos/certs", "paxos/clientapi", "paxos/server", "paxos/client", "statemachine", "wal", "internal/sim"},
	"tests/e2e":       {"paxos", "paxos/wire", "paxos/certs", "paxos/clientapi", "paxos/server", "paxos/client", "statemachine", "wal"},
	"tests/docker":    {},
	"tests/sim":       {"internal/sim", "paxos", "proposer", "learner", "statemachine"},
}

// forbidden are packages the vocabulary and the cores must never depend on.
var forbidden = []string{"net", "crypto/tls", "github.com/vmihailenco/msgpack/v5"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Skipf("the go command is not available to inspect imports: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestLayers(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \",\"}}", module+"/...") {
		path, imports, _ := strings.Cut(line, " ")
		pkg := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
		ok, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the layer table; add it, below what it imports and above what imports it", pkg)
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if dep := strings.TrimPrefix(imp, module+"/"); !slices.Contains(ok, dep) {
				t.Errorf("%s imports %s, which is not beneath it", pkg, dep)
			}
		}
	}
}

func TestCoresStayOffTheNetwork(t *testing.T) {
	for _, pkg := range []string{"paxos", "acceptor", "proposer", "learner", "statemachine"} {
		for _, dep := range goList(t, "-deps", module+"/"+pkg) {
			if slices.Contains(forbidden, dep) {
				t.Errorf("%s depends on %s: the vocabulary and the cores must not reach the network or a codec", pkg, dep)
			}
		}
	}
}

func TestBinaryLinksNoTestCode(t *testing.T) {
	for _, dep := range goList(t, "-deps", module+"/cmd/paxosd") {
		if strings.Contains(dep, "porcupine") || strings.HasPrefix(dep, module+"/tests") || dep == "testing" {
			t.Errorf("cmd/paxosd links %s", dep)
		}
	}
}
