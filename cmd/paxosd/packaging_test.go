package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleConfigIsServes checks that every key of the example settings
// file is one serve takes, with a value of the right kind.
func TestExampleConfigIsServes(t *testing.T) {
	b, err := os.ReadFile("../../packaging/paxosd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	settings, err := parseConfig(b, configKeys(serveCommand()))
	if err != nil {
		t.Fatalf("packaging/paxosd.example.yaml: %v", err)
	}
	if len(settings) < 10 {
		t.Fatalf("only %d settings read", len(settings))
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointed at a binary that exists here, and fails on any
// complaint: verify exits 0 even for unknown keys and bad values.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipped: systemd-analyze is not installed (Debian: apt-get install systemd)")
	}
	unit, err := os.ReadFile("../../packaging/systemd/paxosd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=paxosd", "ProtectSystem=strict", "Restart=on-failure", "NoNewPrivileges=yes"} {
		if !strings.Contains(string(unit), "\n"+want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	verify := func(body string) string {
		path := filepath.Join(t.TempDir(), "paxosd.service")
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "/usr/local/bin/paxosd", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify(string(unit)); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify complains:\n%s", out)
	}
	// The check itself works: a typo is reported.
	if out := verify(strings.Replace(string(unit), "ProtectSystem=strict", "ProtectSytem=strict", 1)); !strings.Contains(out, "ProtectSytem") {
		t.Errorf("a misspelt key went unreported: %q", out)
	}
}

func TestIDFromHostname(t *testing.T) {
	for host, want := range map[string]uint64{"paxosd-0": 1, "paxosd-2": 3, "kv-store-10": 11} {
		if id, err := idFromHostname(host); err != nil || uint64(id) != want {
			t.Errorf("idFromHostname(%q) = %d, %v; want %d", host, id, err, want)
		}
	}
	for _, host := range []string{"paxosd", "paxosd-", "paxosd-x", "7", ""} {
		if _, err := idFromHostname(host); err == nil || !strings.Contains(err.Error(), "does not end in -N") {
			t.Errorf("idFromHostname(%q) = %v, want an error", host, err)
		}
	}
}
