package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// maxConfigFile bounds a --config file: settings fit in far less.
const maxConfigFile = 1 << 20

// configFlag is --config, for serve and dev.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "read settings from this YAML file, whose keys are the long flag names (data-dir: /var/lib/paxosd); a flag or environment variable given too wins over the file", EnvVars: env("CONFIG")}
}

// applyConfigFile reads the --config file, if any, and sets each flag it
// names that neither the command line nor the environment set: flag >
// environment > file > default. A key that is no flag of the command, a
// value of the wrong kind, or a file that is not YAML is an error naming
// the file, the key and its line.
func applyConfigFile(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return usageError{fmt.Errorf("--config: %w", err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return usageError{fmt.Errorf("--config %s: %w", path, err)}
	}
	if len(b) > maxConfigFile {
		return usageError{fmt.Errorf("--config %s is larger than %d bytes; is it the right file?", path, maxConfigFile)}
	}
	settings, err := parseConfig(b, configKeys(c.Command))
	if err != nil {
		return usageError{fmt.Errorf("--config %s: %w", path, err)}
	}
	for _, s := range settings {
		if c.IsSet(s.key) {
			continue // NB: the command line and the environment win
		}
		if err := c.Set(s.key, s.value); err != nil {
			return usageError{fmt.Errorf("--config %s: line %d: %s: %q is not a valid value; %s", path, s.line, s.key, s.value, expected(c.Command, s.key))}
		}
	}
	return nil
}

// expected says what kind of value flag name takes.
func expected(cmd *cli.Command, name string) string {
	for _, f := range cmd.Flags {
		if f.Names()[0] != name {
			continue
		}
		switch f.(type) {
		case *cli.BoolFlag:
			return "give true or false"
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
			return "give a whole number"
		case *cli.DurationFlag:
			return "give a duration, like 500ms, 20s or 1m"
		case *cli.Float64Flag:
			return "give a number"
		}
	}
	return "see 'paxosd help' for what it takes"
}

// configKeys are the keys a command's config file may hold: the long names
// of its flags, but for config itself.
func configKeys(cmd *cli.Command) []string {
	var keys []string
	for _, f := range cmd.Flags {
		if name := f.Names()[0]; name != "config" && name != "help" {
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	return keys
}

type setting struct {
	key, value string
	line       int
}

// parseConfig reads a YAML mapping of flag names to values. Scalars are
// taken as written; a list of scalars is joined with commas (cluster,
// join, client-roles).
func parseConfig(b []byte, keys []string) ([]setting, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the file must be a mapping of flag names to values, like 'data-dir: /var/lib/paxosd'", m.Line)
	}
	var out []setting
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			return nil, fmt.Errorf("line %d: a key must be a flag name", k.Line)
		case key == "config":
			return nil, fmt.Errorf("line %d: a config file cannot name another (config)", k.Line)
		case !slices.Contains(keys, key):
			return nil, fmt.Errorf("line %d: unknown key %q%s", k.Line, key, suggest(key, keys))
		case seen[key]:
			return nil, fmt.Errorf("line %d: %s is given twice", k.Line, key)
		}
		seen[key] = true
		val, err := scalarValue(v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", v.Line, key, err)
		}
		out = append(out, setting{key: key, value: val, line: k.Line})
	}
	return out, nil
}

func scalarValue(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", errors.New("no value given")
		}
		return v.Value, nil
	case yaml.SequenceNode:
		var parts []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return "", errors.New("a list may hold only plain values")
			}
			parts = append(parts, e.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("give a plain value or a list of them")
}

// suggest names the known key nearest to a mistyped one, if one is near.
func suggest(key string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (keys are the long flag names; see --help)"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
