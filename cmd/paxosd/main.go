// Command paxosd is the paxosd daemon and its command-line client: serve
// runs one member, dev a whole local cluster, put/get/del/cas/status talk to
// a cluster, and sim runs the deterministic simulator.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/wire"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit statuses. Client commands add exitConditionFailed and exitUnknown.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError marks a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	setMaxProcs()
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// setMaxProcs gives the Go scheduler more Ps than CPUs, unless GOMAXPROCS
// is set. A member spends much of its time in fdatasync, and a goroutine in
// a long system call keeps its P until the runtime's monitor takes it back;
// with one P per CPU, the goroutines that should run meanwhile (network
// readers, writers, clients) wait in the run queue. An execution trace of
// paxosd bench at 64 clients on 2 CPUs showed ~0.5 ms of run-queue wait per
// answer; with 8 Ps, throughput rose from ~16,100 to ~19,200 ops/s.
func setMaxProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(max(8, runtime.NumCPU()+4))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	ordered, err := flagsFirst(app, args)
	if err == nil {
		err = app.Run(ordered)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "paxosd:", err)
	var ue usageError
	if errors.As(err, &ue) {
		if wantsJSON(args) && !errors.As(err, new(printed)) {
			// NB: a mistake found before the command ran (a flag the cli
			// package refused, an unknown command) still answers -o json
			// with the object the exit-status contract promises.
			(&output{w: stdout, json: true}).printJSON(map[string]any{"error": err.Error(), "outcome": "usage", "exit": exitUsage})
		}
		fmt.Fprintf(stderr, "run 'paxosd help%s' for usage\n", helpTopic(app, args))
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitFailed
}

// printed marks an error whose -o json object was printed already.
type printed struct{ error }

func (p printed) Unwrap() error { return p.error }

// wantsJSON reports whether the command line (or PAXOSD_OUTPUT) asks for
// -o json.
func wantsJSON(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return os.Getenv("PAXOSD_OUTPUT") == "json"
		case a == "-o" || a == "--output" || a == "-output":
			if i+1 < len(args) {
				return args[i+1] == "json" // NB: the command line wins over PAXOSD_OUTPUT
			}
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--output=") || strings.HasPrefix(a, "-output="):
			return strings.HasSuffix(a, "=json")
		}
	}
	return os.Getenv("PAXOSD_OUTPUT") == "json"
}

// helpTopic returns " COMMAND" when args name a command, for the hint.
func helpTopic(app *cli.App, args []string) string {
	if len(args) > 1 && app.Command(args[1]) != nil {
		return " " + args[1]
	}
	return ""
}

// versionString says which build this is: the version stamped at build
// time, or the module's version and the commit it was built from.
func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(v, rev) {
		v += " (commit " + rev + modified + ")"
	}
	return fmt.Sprintf("%s, %s, protocol %d", v, info.GoVersion, wire.ProtocolVersion)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "paxosd",
		Usage:     "a Multi-Paxos replicated state machine",
		Version:   versionString(),
		Writer:    stdout,
		ErrWriter: stderr,
		Suggest:   true,
		// Errors are printed and turned into exit statuses by run, not by
		// the cli package.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: append([]*cli.Command{serveCommand(), devCommand()}, append(clientCommands(), benchCommand(), snapshotCommand(), simCommand(), versionCommand())...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown command %q", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the commit it was built from, and the protocol version",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("version takes no arguments, got %q", c.Args().Slice())}
			}
			fmt.Fprintln(c.App.Writer, "paxosd", versionString())
			return nil
		},
	}
}

// flagsFirst moves a command's flags ahead of its arguments, so that
// "paxosd get a -o json" works like "paxosd get -o json a" (the cli package
// stops reading flags at the first argument). Everything after "--" stays an
// argument. A flag that takes a value and ends the line is a usage error: the
// cli package would take the argument before it as its value.
func flagsFirst(app *cli.App, args []string) ([]string, error) {
	if len(args) < 3 {
		return args, nil
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args, nil
	}
	head := 2 // the words that name the command
	if sub := cmd.Command(args[2]); sub != nil {
		cmd, head = sub, 3
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	dashes := false
	for i := head; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			dashes = true
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] {
				if i+1 == len(args) {
					return nil, usageError{fmt.Errorf("flag %s needs a value", a)}
				}
				i++
				flags = append(flags, args[i])
			}
		default:
			rest = append(rest, a)
		}
	}
	out := append(append([]string{}, args[:head]...), flags...)
	if dashes || slices.ContainsFunc(rest, func(a string) bool { return len(a) > 1 && a[0] == '-' }) {
		out = append(out, "--")
	}
	return append(out, rest...), nil
}
