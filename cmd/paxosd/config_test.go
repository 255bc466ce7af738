package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestConfigPrecedence checks flag > environment > file > default on a
// command with serve's kinds of flags, each key set by exactly one source.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "paxosd.yaml")
	if err := os.WriteFile(file, []byte(`# every key as serve names it
data-dir: /from/file
listen-client: file:1
tick: 50ms
election-ticks: 12
bootstrap: true
cluster:
  - 1=a:1
  - 2=b:2
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	cmd := &cli.Command{
		Name: "probe",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "data-dir", Value: "/default"},
			&cli.StringFlag{Name: "listen-client", Value: "default:1", EnvVars: []string{"PAXOSD_TEST_LISTEN_CLIENT"}},
			&cli.DurationFlag{Name: "tick", Value: 20 * time.Millisecond, EnvVars: []string{"PAXOSD_TEST_TICK"}},
			&cli.IntFlag{Name: "election-ticks", Value: 10},
			&cli.IntFlag{Name: "heartbeat-ticks", Value: 2},
			&cli.BoolFlag{Name: "bootstrap"},
			&cli.StringFlag{Name: "cluster"},
		},
		Action: func(c *cli.Context) error {
			if err := applyConfigFile(c); err != nil {
				return err
			}
			got = map[string]string{
				"data-dir": c.String("data-dir"), "listen-client": c.String("listen-client"), "tick": c.Duration("tick").String(),
				"election-ticks": c.String("election-ticks"), "heartbeat-ticks": c.String("heartbeat-ticks"),
				"bootstrap": c.String("bootstrap"), "cluster": c.String("cluster"),
			}
			return nil
		},
	}
	t.Setenv("PAXOSD_TEST_LISTEN_CLIENT", "env:1")
	t.Setenv("PAXOSD_TEST_TICK", "30ms")
	app := &cli.App{Commands: []*cli.Command{cmd}, Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}}
	if err := app.Run([]string{"paxosd", "probe", "--config", file, "--tick", "40ms"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"data-dir":        "/from/file", // file over default
		"listen-client":   "env:1",      // environment over file
		"tick":            "40ms",       // flag over environment and file
		"election-ticks":  "12",         // file
		"heartbeat-ticks": "2",          // default
		"bootstrap":       "true",
		"cluster":         "1=a:1,2=b:2", // a list joins with commas
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestConfigFileErrors checks that a bad file stops serve with a message
// that names the file, the line and what is wrong.
func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"typo", "data-dir: /x\nbootstrp: true\n", `line 2: unknown key "bootstrp" (did you mean "bootstrap"?)`},
		{"far off", "colour: blue\n", `unknown key "colour" (keys are the long flag names`},
		{"wrong kind", "id: one\n", `line 1: id: "one" is not a valid value; give a whole number`},
		{"bad duration", "tick: soon\n", `tick: "soon" is not a valid value; give a duration`},
		{"bad bool", "bootstrap: yes please\n", `bootstrap: "yes please" is not a valid value; give true or false`},
		{"twice", "id: 1\nid: 2\n", "line 2: id is given twice"},
		{"not yaml", "id: 1\n  x: [\n", "not valid YAML"},
		{"not a mapping", "- id: 1\n", "must be a mapping of flag names to values"},
		{"nested", "peer:\n  cert: x\n", `unknown key "peer"`},
		{"map value", "id:\n  a: 1\n", "give a plain value or a list of them"},
		{"empty value", "data-dir:\n", "data-dir: no value given"},
		{"itself", "config: other.yaml\n", "cannot name another"},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		status := run([]string{"paxosd", "serve", "--config", path}, &stdout, &stderr)
		if status != exitUsage || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), path) {
			t.Errorf("%s: status %d, stderr %q; want status %d naming %s and saying %q", tc.name, status, stderr.String(), exitUsage, path, tc.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if status := run([]string{"paxosd", "serve", "--config", filepath.Join(dir, "missing.yaml")}, &stdout, &stderr); status != exitUsage || !strings.Contains(stderr.String(), "no such file") {
		t.Errorf("missing file: status %d, stderr %q", status, stderr.String())
	}
	// An empty file sets nothing: serve then asks for --id as without one.
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	stdout.Reset()
	stderr.Reset()
	if status := run([]string{"paxosd", "serve", "--config", empty}, &stdout, &stderr); status != exitUsage || !strings.Contains(stderr.String(), "--id is required") {
		t.Errorf("empty file: status %d, stderr %q", status, stderr.String())
	}
}
