// Package docker tests the container packaging: the FROM-scratch image and
// compose.yaml's three members on a private network, cut apart with
// 'docker network disconnect'. It needs a Docker engine and Compose, and
// skips, saying why, where there are none.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, two levels up from this package.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// run runs a command with a timeout and returns its combined output.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func must(t *testing.T, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// compose returns the command that runs Compose: the docker CLI's plugin,
// or the standalone docker-compose.
func compose(t *testing.T) []string {
	if _, err := run(t, 20*time.Second, nil, "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("skipped: neither 'docker compose' nor docker-compose is installed; this test needs Compose to start compose.yaml")
	return nil
}

// TestComposeClusterSurvivesAPartition builds the image, starts
// compose.yaml's three members, writes, cuts one member off the network,
// checks that writes go on and that it catches up once reconnected, then
// stops them.
func TestComposeClusterSurvivesAPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: builds an image and starts containers")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipped: no docker command; this test needs a Docker engine")
	}
	if out, err := run(t, 20*time.Second, nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("skipped: no Docker engine answers (%v: %s); this test needs one", err, strings.TrimSpace(out))
	}
	composeCmd := compose(t)
	root := repoRoot(t)
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	image, project := "paxosd-test:"+suffix, "paxosdtest"+strings.ReplaceAll(suffix, "-", "")

	// The image, from a context that holds only what the Dockerfile copies.
	ctxDir := t.TempDir()
	must(t, 5*time.Minute, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-X main.version=docker-test",
		"-o", filepath.Join(ctxDir, "bin", "paxosd"), filepath.Join(root, "cmd", "paxosd"))
	if err := os.MkdirAll(filepath.Join(ctxDir, "packaging", "image-data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"Dockerfile", ".dockerignore", "packaging/image-data/.keep"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, 5*time.Minute, nil, "docker", "build", "-q", "-t", image, ctxDir)
	t.Cleanup(func() { run(t, time.Minute, nil, "docker", "rmi", "-f", image) })

	env := []string{"PAXOSD_IMAGE=" + image}
	dc := func(timeout time.Duration, args ...string) (string, error) {
		full := append(append(composeCmd[1:], "-f", filepath.Join(root, "compose.yaml"), "-p", project), args...)
		return run(t, timeout, env, composeCmd[0], full...)
	}
	if out, err := dc(3*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dc(time.Minute, "logs", "--no-color", "--tail", "60")
			t.Logf("member logs:\n%s", out)
		}
		if out, err := dc(3*time.Minute, "down", "-v", "--timeout", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	cid := map[int]string{}
	for i := 1; i <= 3; i++ {
		out, err := dc(time.Minute, "ps", "-q", fmt.Sprintf("paxosd%d", i))
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("container of paxosd%d: %v %q", i, err, out)
		}
		cid[i] = strings.TrimSpace(out)
	}
	paxosd := func(member int, args ...string) (string, error) {
		return run(t, 30*time.Second, nil, "docker", append([]string{"exec", cid[member], "/paxosd"}, args...)...)
	}
	put := func(member int, key string) error {
		out, err := paxosd(member, "put", "--timeout", "5s", key, "v-"+key)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for put(1, "first") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no put succeeded within a minute: %v", put(1, "first"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 10 {
		if err := put(1, fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	network := project + "_paxosd"
	must(t, time.Minute, nil, "docker", "network", "disconnect", network, cid[3])
	t.Logf("paxosd3 cut off from %s", network)
	for i := range 20 {
		if err := put(1, fmt.Sprintf("during-%d", i)); err != nil {
			t.Fatalf("a put while paxosd3 was cut off: %v", err)
		}
	}
	if out, err := paxosd(3, "put", "--timeout", "2s", "lonely", "x"); err == nil {
		t.Fatalf("paxosd3, cut off, took a write: %s", out)
	}
	must(t, time.Minute, nil, "docker", "network", "connect", "--alias", "paxosd3", network, cid[3])
	t.Logf("paxosd3 reconnected")

	// It catches up: every member applies the same slot with the same hash,
	// and paxosd3 answers a local read of the last write.
	type row struct {
		ID          int    `json:"id"`
		Applied     uint64 `json:"applied"`
		AppliedHash string `json:"applied_hash"`
		Error       string `json:"error"`
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		out, _ := paxosd(1, "status", "-o", "json", "--timeout", "3s")
		var rows []row
		ok := json.Unmarshal([]byte(out), &rows) == nil && len(rows) == 3
		for _, r := range rows {
			ok = ok && r.Error == "" && r.Applied == rows[0].Applied && r.AppliedHash == rows[0].AppliedHash && r.Applied > 0
		}
		if ok {
			t.Logf("converged: %s", strings.TrimSpace(out))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members did not converge within a minute after paxosd3 reconnected:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out, err := paxosd(3, "get", "--consistency", "serializable", "--endpoints", "paxosd3:7001", "during-19"); err != nil || strings.TrimSpace(out) != "v-during-19" {
		t.Fatalf("paxosd3's own read of the last write: %q, %v", out, err)
	}
}
