package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/paxosd/paxosd/paxos/client"
)

const txnHelp = `Reads a transaction from standard input, one line each:

  if value(KEY) = VALUE        (also !=, < and >: bytes compared in order)
  if version(KEY) > N          (also create(KEY) and mod(KEY): revisions)
  if exists(KEY)               if missing(KEY)
  then put KEY VALUE           then get KEY           then del KEY
  then get KEY --prefix        then get KEY END       (one page of a range)
  then del KEY --prefix        then del KEY END
  else ...                     (the same operations)

Blank lines and lines starting with # are skipped. KEY and VALUE are words
without spaces, or Go-quoted strings ("a b", "\x00"). If every condition
holds, the then lines run in order, otherwise the else lines, as one atomic
command whose writes share one revision. It prints SUCCEEDED or FAILED and
one result per line run; it exits 3 when the conditions did not hold.`

func txnCommand() *cli.Command {
	return clientCommand("txn", "", "run a transaction read from standard input", txnHelp, 0, nil, runTxn)
}

// txnLine is one parsed line: which list it goes to, and what.
type txnLine struct {
	branch string // if, then, else
	cmp    client.Cmp
	op     client.Op
	desc   string // the operation, for the output
	kind   string // put, get, del, range, del-range
}

func runTxn(c *cli.Context, cl *client.Client, o *output) error {
	lines, err := parseTxn(c.App.Reader)
	if err != nil {
		return usageError{err}
	}
	t := cl.Txn()
	var then, els []txnLine
	for _, l := range lines {
		switch l.branch {
		case "if":
			t.If(l.cmp)
		case "then":
			t.Then(l.op)
			then = append(then, l)
		case "else":
			t.Else(l.op)
			els = append(els, l)
		}
	}
	ctx, cancel := ctxFor(c)
	defer cancel()
	r, err := t.Commit(ctx)
	if err != nil {
		return err
	}
	ran := els
	if r.Succeeded {
		ran = then
	}
	return printTxn(o, r, ran)
}

func printTxn(o *output, r client.TxnResult, ran []txnLine) error {
	if !o.json {
		if r.Succeeded {
			fmt.Fprintln(o.w, "SUCCEEDED")
		} else {
			fmt.Fprintln(o.w, "FAILED")
		}
	}
	var results []map[string]any
	if len(r.Results) != len(ran) {
		return fmt.Errorf("%w: txn: %d results for %d operations", client.ErrUnknownOutcome, len(r.Results), len(ran))
	}
	for i, res := range r.Results {
		l := ran[i]
		obj := map[string]any{"op": l.desc}
		switch l.kind {
		case "get":
			obj["found"] = res.Found
			if res.Found {
				putValue(obj, res.KV.Value)
				obj["mod_revision"], obj["version"] = res.KV.ModRevision, res.KV.Version
			}
		case "range":
			var kvs []map[string]any
			for _, kv := range res.KVs {
				kvs = append(kvs, map[string]any{"key": string(kv.Key), "value_base64": base64.StdEncoding.EncodeToString(kv.Value), "mod_revision": kv.ModRevision})
			}
			obj["kvs"], obj["more"] = nonNilList(kvs), res.More
		case "del", "del-range":
			obj["deleted"] = res.Deleted
		}
		if res.Err != "" {
			obj["error"] = res.Err
		}
		results = append(results, obj)
		if o.json {
			continue
		}
		switch l.kind {
		case "put":
			fmt.Fprintln(o.w, "OK")
		case "get":
			switch {
			case res.Err != "":
				fmt.Fprintf(o.w, "(refused: %s)\n", res.Err)
			case res.Found:
				fmt.Fprintf(o.w, "%s\n", res.KV.Value)
			default:
				fmt.Fprintln(o.w, "(not found)")
			}
		case "range":
			for _, kv := range res.KVs {
				fmt.Fprintf(o.w, "%s\n%s\n", kv.Key, kv.Value)
			}
		case "del", "del-range":
			fmt.Fprintf(o.w, "deleted %d\n", res.Deleted)
		}
	}
	obj := map[string]any{"succeeded": r.Succeeded, "revision": r.Revision, "results": nonNilList(results)}
	if !r.Succeeded {
		return exitError{code: exitConditionFailed, err: errors.New("the conditions did not hold; the else lines ran"), fields: obj}
	}
	if o.json {
		o.printJSON(obj)
	}
	return nil
}

// parseTxn reads the lines of a transaction.
func parseTxn(r io.Reader) ([]txnLine, error) {
	var out []txnLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		l, err := parseTxnLine(line)
		if err != nil {
			return nil, fmt.Errorf("transaction line %d %q: %w", n, line, err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the transaction from standard input: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("no transaction on standard input; see 'paxosd help txn'")
	}
	return out, nil
}

func parseTxnLine(line string) (txnLine, error) {
	words, err := txnWords(line)
	if err != nil {
		return txnLine{}, err
	}
	l := txnLine{branch: words[0]}
	switch l.branch {
	case "if":
		l.cmp, err = parseCmp(words[1:])
	case "then", "else":
		err = parseOp(&l, words[1:])
	default:
		err = fmt.Errorf("starts with %q; lines start with if, then or else", words[0])
	}
	return l, err
}

// txnWords splits a line into words: bare words, Go-quoted strings, and the
// parentheses of a comparison.
func txnWords(line string) ([]string, error) {
	var words []string
	for rest := line; rest != ""; rest = strings.TrimLeft(rest, " \t") {
		switch {
		case rest[0] == '(' || rest[0] == ')':
			words, rest = append(words, rest[:1]), rest[1:]
			continue
		case rest[0] == '"':
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("an unfinished quoted string: %s", rest)
			}
			s, _ := strconv.Unquote(q)
			words, rest = append(words, "\x00q"+s), rest[len(q):]
			continue
		}
		end := strings.IndexAny(rest, " \t()")
		if end < 0 {
			end = len(rest)
		}
		words, rest = append(words, rest[:end]), rest[end:]
	}
	return words, nil
}

// literal returns a word as a key or value: a quoted string's contents, or
// the bare word.
func literal(w string) string { return strings.TrimPrefix(w, "\x00q") }

func parseCmp(w []string) (client.Cmp, error) {
	if len(w) < 4 || w[1] != "(" || w[3] != ")" {
		return client.Cmp{}, errors.New("a condition is value(KEY) = VALUE, version(KEY) > N, exists(KEY) or missing(KEY)")
	}
	target, key, rest := w[0], literal(w[2]), w[4:]
	switch target {
	case "exists", "missing":
		if len(rest) != 0 {
			return client.Cmp{}, fmt.Errorf("%s(KEY) takes nothing after it", target)
		}
		if target == "exists" {
			return client.KeyExists(key), nil
		}
		return client.KeyMissing(key), nil
	}
	if len(rest) != 2 {
		return client.Cmp{}, fmt.Errorf("%s(KEY) needs a relation (=, !=, < or >) and a value", target)
	}
	rel, ok := map[string]client.Relation{"=": client.Equal, "==": client.Equal, "!=": client.NotEqual, "<": client.Less, ">": client.Greater}[rest[0]]
	if !ok {
		return client.Cmp{}, fmt.Errorf("relation %q: use =, !=, < or >", rest[0])
	}
	if target == "value" {
		return client.CompareValue(key, rel, []byte(literal(rest[1]))), nil
	}
	num, err := strconv.ParseUint(literal(rest[1]), 10, 64)
	if err != nil {
		return client.Cmp{}, fmt.Errorf("%s compares with a number, not %q", target, literal(rest[1]))
	}
	switch target {
	case "version":
		return client.CompareVersion(key, rel, num), nil
	case "create":
		return client.CompareCreateRevision(key, rel, num), nil
	case "mod":
		return client.CompareModRevision(key, rel, num), nil
	}
	return client.Cmp{}, fmt.Errorf("%q: compare value, version, create, mod, exists or missing", target)
}

func parseOp(l *txnLine, w []string) error {
	if len(w) < 2 {
		return errors.New("an operation is put KEY VALUE, get KEY, del KEY, or get/del KEY --prefix or KEY END")
	}
	verb, key := w[0], literal(w[1])
	if readsRange := verb == "get" && len(w) == 3; key == "" && !readsRange {
		return errors.New("the key is empty (only a range to read may start at the empty key)")
	}
	l.desc = verb + " " + strconv.Quote(key)
	switch {
	case verb == "put" && len(w) == 3:
		l.op, l.kind = client.OpPut(key, []byte(literal(w[2]))), "put"
	case (verb == "get" || verb == "del") && len(w) == 2:
		if verb == "get" {
			l.op, l.kind = client.OpGet(key), "get"
		} else {
			l.op, l.kind = client.OpDelete(key), "del"
		}
	case (verb == "get" || verb == "del") && len(w) == 3:
		o := client.RangeOptions{End: literal(w[2])}
		if w[2] == "--prefix" {
			o = client.RangeOptions{Prefix: true}
			l.desc += " --prefix"
		} else {
			l.desc += " " + strconv.Quote(o.End)
		}
		if verb == "get" {
			l.op, l.kind = client.OpRange(key, o), "range"
		} else {
			l.op, l.kind = client.OpDeleteRange(key, o), "del-range"
		}
	default:
		return fmt.Errorf("%q with %d words: use put KEY VALUE, get KEY, del KEY, or get/del KEY --prefix or KEY END", verb, len(w)-1)
	}
	return nil
}
