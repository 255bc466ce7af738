package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos"
	"github.com/paxosd/paxosd/paxos/client"
	"github.com/paxosd/paxosd/paxos/clientapi"
	"github.com/paxosd/paxosd/statemachine"
)

// The client commands' exit statuses, a contract scripts rely on (README).
const (
	exitConditionFailed = 3 // get of a missing key, cas that did not swap
	exitUnknown         = 4 // sent, no answer in time: it may have been applied
)

func clientFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "endpoints", Value: devEndpoints(), Usage: "members' client addresses, comma-separated (the default is the paxosd dev cluster)", EnvVars: env("ENDPOINTS")},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "give up after this long", EnvVars: env("TIMEOUT")},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text, json, or raw (get: the value's bytes alone, no newline)", EnvVars: env("OUTPUT")},
	}, tlsClientFlags()...)
}

// clientCommand builds a command that runs action with a connected client.
func clientCommand(name, args, usage, desc string, nargs int, extra []cli.Flag, action func(c *cli.Context, cl *client.Client, out *output) error) *cli.Command {
	return &cli.Command{
		Name:         name,
		Usage:        usage,
		ArgsUsage:    args,
		Description:  desc,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Flags:        append(clientFlags(), extra...),
		Action: func(c *cli.Context) error {
			out, err := newOutput(c)
			if err != nil {
				return err
			}
			if nargs >= 0 && c.NArg() != nargs {
				return out.fail(usageError{fmt.Errorf("%s takes %d argument(s): %s", name, nargs, strings.TrimSpace(name+" "+args))})
			}
			if c.Duration("timeout") <= 0 {
				return out.fail(usageError{fmt.Errorf("--timeout %v: give a positive duration, like 10s", c.Duration("timeout"))})
			}
			// NB: an empty KEY may start a range to read, never one to
			// delete: an unset shell variable must not empty the store.
			ranged := (name == "get" || name == "watch") && (c.Bool("prefix") || c.NArg() == 2)
			if strings.HasPrefix(args, "KEY") && c.NArg() > 0 && c.Args().First() == "" && !ranged {
				return out.fail(usageError{errors.New("KEY is empty: give a non-empty key (is a shell variable unset?)")})
			}
			cl, err := newClient(c, strings.Split(c.String("endpoints"), ","), c.Duration("timeout"))
			if err != nil {
				return out.fail(err)
			}
			defer cl.Close()
			return out.fail(action(c, cl, out))
		},
	}
}

func clientCommands() []*cli.Command {
	return []*cli.Command{
		clientCommand("put", "KEY VALUE", "set a key", `A VALUE of - reads the value from standard input. --lease ID attaches the key
to a lease (see 'paxosd help lease'): it is deleted when the lease expires or
is revoked. A put without --lease detaches the key from its lease.`, 2,
			[]cli.Flag{&cli.Uint64Flag{Name: "lease", Usage: "attach the key to this lease", EnvVars: env("LEASE")}}, runPut),
		clientCommand("get", "KEY [END]", "print a key's value, or the keys of a range", `Prints the value and a newline. Exits 3 if the key does not exist.
By default the read is linearizable (the leader answers once a round of its
acceptors confirmed that it still leads);
--consistency serializable answers from the contacted member's own state,
which is cheaper and may be stale.

With --prefix, or with END, it prints the keys from KEY up to END (END
excluded; "" for no end), or those that start with KEY, in key order: each
key on a line, then its value on the next (--keys-only: keys alone;
--count-only: their number). --limit caps how many. A long range is read a
page at a time, every page at the first one's revision.

--rev N reads the key or range as it was at store revision N, while the
cluster's history keeps it; a compacted revision fails with an error that
names the oldest one kept (exit status 1).`, -1,
			append([]cli.Flag{&cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "linearizable or serializable", EnvVars: env("CONSISTENCY")}}, rangeFlags(true)...), runGet),
		clientCommand("del", "KEY [END]", "delete a key, or the keys of a range", `With --prefix, or with END, deletes every key from KEY up to END (END
excluded; "" for no end), or that starts with KEY, in one revision, and
prints how many.`, -1, rangeFlags(false), runDel),
		clientCommand("cas", "KEY OLD NEW", "set KEY to NEW if its value is OLD", `Swaps atomically; exits 3 if the value was not OLD (nothing changed).
With --expect-absent it takes KEY NEW and sets the key only if it does not exist.`, -1,
			[]cli.Flag{&cli.BoolFlag{Name: "expect-absent", Usage: "swap only if KEY does not exist (then give KEY NEW)", EnvVars: env("EXPECT_ABSENT")}}, runCAS),
		clientCommand("status", "", "show every member's view of the cluster", `Asks the members for their state: roles, addresses, whether it leads, the
promised ballot, the highest chosen and the applied slot, and applied_hash, a
hash chained over every value applied (members at the same applied slot must
show the same hash), the slot of the newest snapshot, and the size of the log
store on disk (snapshot_slot and log_bytes with -o json). Unreachable members
are listed with their error, and the exit status is then 1. CONFIG
(config_slot) is the slot whose value made the member's newest configuration
(0: the one it was bootstrapped with); members that agree show the same.`, 0, nil, runStatus),
		txnCommand(),
		watchCommand(),
		compactCommand(),
		leaseCommand(),
		lockCommand(),
		electCommand(),
		memberCommand(),
		leaderCommand(),
	}
}

// output prints results as text or JSON.
type output struct {
	w, errw io.Writer
	json    bool
	raw     bool // -o raw: get prints the value's bytes alone
}

func newOutput(c *cli.Context) (*output, error) {
	o := &output{w: c.App.Writer, errw: c.App.ErrWriter}
	switch c.String("output") {
	case "text":
	case "json":
		o.json = true
	case "raw":
		o.raw = true
	default:
		return o, usageError{fmt.Errorf("-o %q: use text, json or raw", c.String("output"))}
	}
	return o, nil
}

func (o *output) printJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("paxosd: encode %T as JSON: %v", v, err)) // our own types always encode
	}
	fmt.Fprintf(o.w, "%s\n", b)
}

// putValue adds a value to a -o json object: value_base64 always (the
// exact bytes), and value too when it is UTF-8 text, which a JSON string
// holds without turning bytes into U+FFFD.
func putValue(obj map[string]any, v []byte) {
	obj["value_base64"] = base64.StdEncoding.EncodeToString(v)
	if utf8.Valid(v) {
		obj["value"] = string(v)
	}
}

// number prints n, a command's answer, unless err: as {name: n} with -o
// json, else with the text format.
func (o *output) number(err error, name string, n uint64, text string) {
	switch {
	case err != nil:
	case o.json:
		o.printJSON(map[string]any{name: n})
	default:
		fmt.Fprintf(o.w, text, n)
	}
}

// exitError carries an exit status; run prints its message.
type exitError struct {
	code int
	err  error
	// quiet: the command already printed its JSON answer, so fail must
	// not print a second object.
	quiet bool
	// fields are printed in the -o json object beside error, outcome and
	// exit.
	fields map[string]any
	// outcomeName names the outcome in JSON when the exit status alone
	// does not (a damaged file is not a command not applied).
	outcomeName string
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }
func (e exitError) outcome() string {
	if e.outcomeName != "" {
		return e.outcomeName
	}
	switch e.code {
	case exitConditionFailed:
		return "condition_failed"
	case exitUnknown:
		return "unknown"
	case exitUsage:
		return "usage"
	}
	return "not_applied"
}

// fail classifies err by the exit-status contract and, for -o json, also
// prints it as an object on stdout.
func (o *output) fail(err error) error {
	if err == nil {
		return nil
	}
	var ee exitError
	var ue usageError
	switch {
	case errors.As(err, &ee):
	case errors.As(err, &ue):
		ee = exitError{code: exitUsage, err: err}
	case errors.Is(err, client.ErrUnknownOutcome):
		ee = exitError{code: exitUnknown, err: fmt.Errorf("%w; check with get before retrying", err)}
	default:
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			err = fmt.Errorf("%w; is the cluster running? check --endpoints (or PAXOSD_ENDPOINTS)", err)
		}
		ee = exitError{code: exitFailed, err: err}
	}
	if o.json && !ee.quiet {
		obj := map[string]any{"error": ee.Error(), "outcome": ee.outcome(), "exit": ee.code}
		for k, v := range ee.fields {
			obj[k] = v
		}
		o.printJSON(obj)
	}
	if ee.code == exitUsage {
		err = usageError{ee.err}
	} else {
		err = ee
	}
	if o.json {
		return printed{err}
	}
	return err
}

func ctxFor(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, c.Duration("timeout"))
}

func runPut(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	key, val := c.Args().Get(0), []byte(c.Args().Get(1))
	if string(val) == "-" {
		// Read one byte past the limit, so that a value too large is
		// refused rather than cut short.
		b, err := io.ReadAll(io.LimitReader(c.App.Reader, statemachine.MaxValueSize+1))
		if err != nil {
			return fmt.Errorf("%w: read the value from standard input: %w", client.ErrNotApplied, err)
		}
		if len(b) > statemachine.MaxValueSize {
			return fmt.Errorf("%w: the value on standard input is larger than the %d-byte limit (%s)", client.ErrNotApplied, statemachine.MaxValueSize, humanBytes(statemachine.MaxValueSize))
		}
		val = b
	}
	put := func() error { return cl.Put(ctx, key, val) }
	if id := c.Uint64("lease"); id != 0 {
		put = func() error { return cl.PutWithLease(ctx, key, val, client.LeaseID(id)) }
	}
	if err := put(); err != nil {
		return err
	}
	if o.json {
		o.printJSON(map[string]any{"key": key, "ok": true})
	} else {
		fmt.Fprintln(o.w, "OK")
	}
	return nil
}

// rangeFlags are get's and del's range flags; reads adds the ones only a
// read takes.
func rangeFlags(reads bool) []cli.Flag {
	fs := []cli.Flag{&cli.BoolFlag{Name: "prefix", Usage: "every key that starts with KEY", EnvVars: env("PREFIX")}}
	if reads {
		fs = append(fs,
			&cli.IntFlag{Name: "limit", Usage: "print at most this many keys (0: all)", EnvVars: env("LIMIT")},
			&cli.BoolFlag{Name: "keys-only", Usage: "print the keys without their values", EnvVars: env("KEYS_ONLY")},
			&cli.BoolFlag{Name: "count-only", Usage: "print how many keys the range has", EnvVars: env("COUNT_ONLY")},
			&cli.Uint64Flag{Name: "rev", Usage: "read the state as of this past revision, from the history (0: now)", EnvVars: env("REV")})
	}
	return fs
}

// rangeArgs reads a range command line: KEY with --prefix, or KEY END. It
// reports false for a single key.
func rangeArgs(c *cli.Context, name string) (key string, o client.RangeOptions, ranged bool, err error) {
	args := c.Args().Slice()
	switch {
	case len(args) == 1 && c.Bool("prefix"):
		return args[0], client.RangeOptions{Prefix: true}, true, nil
	case len(args) == 2 && !c.Bool("prefix"):
		return args[0], client.RangeOptions{End: args[1]}, true, nil
	case len(args) == 1:
		if c.Int("limit") != 0 || c.Bool("keys-only") || c.Bool("count-only") {
			return "", o, false, usageError{fmt.Errorf("--limit, --keys-only and --count-only need a range: %s KEY --prefix, or %s KEY END", name, name)}
		}
		return args[0], o, false, nil
	}
	return "", o, false, usageError{fmt.Errorf("%s takes KEY, KEY --prefix, or KEY END", name)}
}

func runGet(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	key, ro, ranged, err := rangeArgs(c, "get")
	if err != nil {
		return err
	}
	ro.Rev = c.Uint64("rev")
	if ranged {
		return runRange(c, ctx, cl, o, key, ro)
	}
	var val []byte
	if ro.Rev != 0 {
		return runGetAt(c, ctx, cl, o, key, ro.Rev)
	}
	var kv client.KeyValue
	switch c.String("consistency") {
	case "linearizable":
		kv, err = cl.GetKeyValue(ctx, key)
		val = kv.Value
	case "serializable":
		val, err = cl.GetSerializable(ctx, key)
	default:
		return usageError{fmt.Errorf("--consistency %q: use linearizable or serializable", c.String("consistency"))}
	}
	if errors.Is(err, client.ErrNotFound) {
		return exitError{code: exitConditionFailed, err: fmt.Errorf("key %q not found", key), fields: map[string]any{"key": key, "found": false}}
	}
	if err != nil {
		return err
	}
	switch {
	case o.json:
		// NB: JSON strings hold text; bytes that are not UTF-8 would turn
		// into U+FFFD. value_base64 always holds the exact bytes.
		obj := map[string]any{"key": key, "found": true}
		putValue(obj, val)
		if kv.Revision != 0 {
			obj["create_revision"], obj["mod_revision"], obj["version"], obj["revision"] = kv.CreateRevision, kv.ModRevision, kv.Version, kv.Revision
		}
		o.printJSON(obj)
	case o.raw:
		o.w.Write(val)
	default:
		fmt.Fprintf(o.w, "%s\n", val)
	}
	return nil
}

// runGetAt prints a key as it was at revision rev: a range of that key
// alone, read from the history.
func runGetAt(c *cli.Context, ctx context.Context, cl *client.Client, o *output, key string, rev uint64) error {
	if c.String("consistency") != "linearizable" {
		return usageError{errors.New("reads at a past revision are linearizable; leave out --consistency")}
	}
	for kv, err := range cl.Range(ctx, key, client.RangeOptions{End: key + "\x00", Rev: rev}) {
		if err != nil {
			return err
		}
		switch {
		case o.json:
			obj := map[string]any{"key": key, "found": true, "create_revision": kv.CreateRevision, "mod_revision": kv.ModRevision, "version": kv.Version, "revision": rev}
			putValue(obj, kv.Value)
			o.printJSON(obj)
		case o.raw:
			o.w.Write(kv.Value)
		default:
			fmt.Fprintf(o.w, "%s\n", kv.Value)
		}
		return nil
	}
	return exitError{code: exitConditionFailed, err: fmt.Errorf("key %q not found at revision %d", key, rev), fields: map[string]any{"key": key, "found": false, "revision": rev}}
}

// runRange prints the keys of a range (get --prefix, get KEY END).
func runRange(c *cli.Context, ctx context.Context, cl *client.Client, o *output, key string, ro client.RangeOptions) error {
	if c.String("consistency") != "linearizable" {
		return usageError{errors.New("ranges are read linearizably; --consistency serializable reads single keys")}
	}
	if c.Int("limit") < 0 {
		return usageError{fmt.Errorf("--limit %d: give 0 (all) or more", c.Int("limit"))}
	}
	if c.Bool("count-only") {
		n, err := cl.Count(ctx, key, ro)
		o.number(err, "count", n, "%d\n")
		return err
	}
	ro.Limit, ro.KeysOnly = c.Int("limit"), c.Bool("keys-only")
	var kvs []map[string]any
	for kv, err := range cl.Range(ctx, key, ro) {
		if err != nil {
			return err
		}
		switch {
		case o.json:
			obj := map[string]any{"key": string(kv.Key), "create_revision": kv.CreateRevision, "mod_revision": kv.ModRevision, "version": kv.Version}
			if !ro.KeysOnly {
				putValue(obj, kv.Value)
			}
			kvs = append(kvs, obj)
		case ro.KeysOnly:
			fmt.Fprintf(o.w, "%s\n", kv.Key)
		default:
			fmt.Fprintf(o.w, "%s\n%s\n", kv.Key, kv.Value)
		}
	}
	if o.json {
		// NB: -o json holds the range in memory to print one object;
		// text prints a page at a time.
		o.printJSON(map[string]any{"kvs": nonNilList(kvs), "count": len(kvs)})
	}
	return nil
}

func nonNilList(l []map[string]any) []map[string]any {
	if l == nil {
		return []map[string]any{}
	}
	return l
}

func runDel(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	key, ro, ranged, err := rangeArgs(c, "del")
	if err != nil {
		return err
	}
	if ranged {
		n, err := cl.DeleteRange(ctx, key, ro)
		o.number(err, "deleted", n, "deleted %d\n")
		return err
	}
	existed, err := cl.Delete(ctx, key)
	if err != nil {
		return err
	}
	switch {
	case o.json:
		o.printJSON(map[string]any{"key": key, "deleted": existed})
	case existed:
		fmt.Fprintln(o.w, "deleted")
	default:
		fmt.Fprintln(o.w, "not found, nothing deleted")
	}
	return nil
}

func runCAS(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	args := c.Args().Slice()
	var cond client.Cmp
	var key, value string
	if c.Bool("expect-absent") {
		if len(args) != 2 {
			return usageError{errors.New("cas --expect-absent takes 2 arguments: cas --expect-absent KEY NEW")}
		}
		key, value, cond = args[0], args[1], client.KeyMissing(args[0])
	} else {
		if len(args) != 3 {
			return usageError{errors.New("cas takes 3 arguments: cas KEY OLD NEW (or cas --expect-absent KEY NEW)")}
		}
		key, value, cond = args[0], args[2], client.CompareValue(args[0], client.Equal, []byte(args[1]))
	}
	// NB: the else branch reads the key, to say why nothing changed.
	r, err := cl.Txn().If(cond).Then(client.OpPut(key, []byte(value))).Else(client.OpGet(key)).Commit(ctx)
	if err != nil {
		return err
	}
	if !r.Succeeded {
		fields := map[string]any{"key": key, "swapped": false}
		switch found := len(r.Results) == 1 && r.Results[0].Found; {
		case c.Bool("expect-absent"):
			return exitError{code: exitConditionFailed, err: fmt.Errorf("key %q exists; nothing changed", key), fields: fields}
		case !found:
			return exitError{code: exitConditionFailed, err: fmt.Errorf("key %q does not exist; nothing changed", key), fields: fields}
		default:
			return exitError{code: exitConditionFailed, err: fmt.Errorf("value of %q is %q, not %q; nothing changed", key, r.Results[0].KV.Value, args[1]), fields: fields}
		}
	}
	if o.json {
		o.printJSON(map[string]any{"key": key, "swapped": true})
	} else {
		fmt.Fprintln(o.w, "OK")
	}
	return nil
}

// memberStatus is one row of `paxosd status`.
type memberStatus struct {
	ID          paxos.NodeID `json:"id"`
	ClientAddr  string       `json:"client_addr"`
	PeerAddr    string       `json:"peer_addr"`
	Roles       string       `json:"roles"`
	Leader      bool         `json:"leader"`
	LeaderID    paxos.NodeID `json:"leader_id"`
	Promised    string       `json:"promised"`
	Chosen      paxos.Slot   `json:"chosen"`
	Applied     paxos.Slot   `json:"applied"`
	AppliedHash string       `json:"applied_hash"`
	// SnapshotSlot is the slot of the newest durable snapshot; LogBytes
	// the size of the member's log store on disk.
	SnapshotSlot paxos.Slot `json:"snapshot_slot"`
	LogBytes     uint64     `json:"log_bytes"`
	// ConfigSlot is the slot whose value made the member's newest
	// configuration (0: the bootstrap one): members that agree show the
	// same.
	ConfigSlot paxos.Slot `json:"config_slot"`
	// Sessions is how many client sessions the member's table holds.
	Sessions uint64 `json:"sessions"`
	Error    string `json:"error"`
}

func runStatus(c *cli.Context, cl *client.Client, o *output) error {
	ctx, cancel := ctxFor(c)
	defer cancel()
	if d := c.Duration("timeout"); d > 3*time.Second {
		// Status should come back quickly even when members are down.
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	endpoints := strings.Split(c.String("endpoints"), ",")
	for i := range endpoints {
		endpoints[i] = strings.TrimSpace(endpoints[i])
	}
	list := statusRows(askStatus(ctx, cl, endpoints))
	failed := 0
	for _, r := range list {
		if r.Error != "" {
			failed++
		}
	}
	if o.json {
		if list == nil {
			list = []memberStatus{}
		}
		o.printJSON(list)
	} else {
		printStatus(o.w, list)
	}
	if failed > 0 {
		if failed == len(list) {
			return exitError{code: exitFailed, err: fmt.Errorf("no member answered (tried %s); is the cluster running? check --endpoints, and the TLS flags; the first error: %s", strings.Join(endpoints, ", "), list[0].Error), quiet: o.json}
		}
		return exitError{code: exitFailed, err: fmt.Errorf("%d of %d members did not answer", failed, len(list)), quiet: o.json}
	}
	return nil
}

// statusAnswers are the answers to status requests, by endpoint, and the
// members the answers name, with the client addresses they know.
type statusAnswers struct {
	got   map[string]memberStatusOrErr
	known map[paxos.NodeID]clientapi.MemberInfo
}

// askStatus asks every endpoint for its status at once, then the members
// the answers name that were not asked.
func askStatus(ctx context.Context, cl *client.Client, endpoints []string) statusAnswers {
	ask := func(eps []string) map[string]memberStatusOrErr {
		res := map[string]memberStatusOrErr{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, ep := range eps {
			wg.Go(func() {
				st, err := cl.Status(ctx, ep)
				mu.Lock()
				res[ep] = memberStatusOrErr{st, err}
				mu.Unlock()
			})
		}
		wg.Wait()
		return res
	}
	a := statusAnswers{got: ask(endpoints), known: map[paxos.NodeID]clientapi.MemberInfo{}}
	for _, r := range a.got {
		for _, m := range r.st.Members {
			if k, ok := a.known[m.ID]; !ok || k.ClientAddr == "" {
				a.known[m.ID] = m
			}
		}
	}
	asked := map[string]bool{}
	for _, ep := range endpoints {
		asked[ep] = true
	}
	var more []string
	for _, m := range a.known {
		if m.ClientAddr != "" && !asked[m.ClientAddr] {
			more = append(more, m.ClientAddr)
			asked[m.ClientAddr] = true
		}
	}
	maps.Copy(a.got, ask(more))
	return a
}

// statusRows makes one row per member, in ID order, then one per endpoint
// that failed and names no member.
func statusRows(a statusAnswers) []memberStatus {
	rows := map[paxos.NodeID]memberStatus{}
	var unknown []memberStatus
	byAddr := map[string]paxos.NodeID{}
	for id, m := range a.known {
		if m.ClientAddr != "" {
			byAddr[m.ClientAddr] = id
		}
	}
	for ep, r := range a.got {
		if r.err == nil {
			s := r.st
			rows[s.ID] = memberStatus{ID: s.ID, ClientAddr: s.ClientAddr, PeerAddr: s.PeerAddr, Roles: s.Roles.String(), Leader: s.IsLeader,
				LeaderID: s.Leader, Promised: s.Promised.String(), Chosen: s.Chosen, Applied: s.Applied, AppliedHash: fmt.Sprintf("%016x", s.AppliedHash),
				SnapshotSlot: s.SnapshotSlot, LogBytes: s.LogBytes, ConfigSlot: s.ConfigSlot, Sessions: s.Sessions}
			continue
		}
		if id, ok := byAddr[ep]; ok {
			m := a.known[id]
			rows[id] = memberStatus{ID: id, ClientAddr: ep, PeerAddr: m.PeerAddr, Roles: m.Roles.String(), Error: r.err.Error()}
		} else {
			unknown = append(unknown, memberStatus{ClientAddr: ep, Error: r.err.Error()})
		}
	}
	for id, m := range a.known {
		if _, ok := rows[id]; !ok {
			rows[id] = memberStatus{ID: id, PeerAddr: m.PeerAddr, Roles: m.Roles.String(), Error: "client address unknown: no reachable member has heard from it"}
		}
	}
	list := slices.SortedFunc(maps.Values(rows), func(a, b memberStatus) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(unknown, func(a, b memberStatus) int { return strings.Compare(a.ClientAddr, b.ClientAddr) })
	return append(list, unknown...)
}

func printStatus(w io.Writer, list []memberStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLEADER\tROLES\tCLIENT\tPEER\tPROMISED\tCHOSEN\tAPPLIED\tAPPLIED_HASH\tSNAPSHOT\tLOG\tCONFIG\tSESSIONS\tERROR")
	for _, r := range list {
		id, lead := "?", ""
		if r.ID != 0 {
			id = r.ID.String()
		}
		if r.Leader {
			lead = "*"
		}
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t\t%s\t%s\t%s\t\t\t\t\t\t\t\t\t%s\n", id, r.Roles, r.ClientAddr, r.PeerAddr, r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\t%d\t%d\t\n", id, lead, r.Roles, r.ClientAddr, r.PeerAddr, r.Promised, r.Chosen, r.Applied, r.AppliedHash, r.SnapshotSlot, humanBytes(r.LogBytes), r.ConfigSlot, r.Sessions)
	}
	tw.Flush()
}

// humanBytes prints n in the largest binary unit that keeps it at least 1.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

type memberStatusOrErr struct {
	st  clientapi.Status
	err error
}
