package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/paxosd/paxosd/paxos/client"
)

// The Go client's ranges page through a cluster: in key order, a page at a
// time, with limits, keys only, counts, and delete-range.
func TestRangesThroughTheClient(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx := context.Background()
	for i := range 25 {
		if err := c.Put(ctx, fmt.Sprintf("user/%02d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(ctx, "zzz", []byte("other")); err != nil {
		t.Fatal(err)
	}
	collect := func(key string, o client.RangeOptions) []string {
		t.Helper()
		var out []string
		for kv, err := range c.Range(ctx, key, o) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(kv.Key)+"="+string(kv.Value))
		}
		return out
	}
	got := collect("user/", client.RangeOptions{Prefix: true, PageSize: 4})
	if len(got) != 25 || got[0] != "user/00=v0" || got[24] != "user/24=v24" {
		t.Fatalf("prefix range in pages of 4: %d keys %v", len(got), got)
	}
	if got := collect("user/10", client.RangeOptions{End: "user/13"}); strings.Join(got, " ") != "user/10=v10 user/11=v11 user/12=v12" {
		t.Fatalf("range [user/10, user/13): %v", got)
	}
	if got := collect("", client.RangeOptions{Prefix: true, Limit: 3, KeysOnly: true, PageSize: 2}); strings.Join(got, " ") != "user/00= user/01= user/02=" {
		t.Fatalf("the first 3 keys, keys only: %v", got)
	}
	if n, err := c.Count(ctx, "", client.RangeOptions{Prefix: true}); err != nil || n != 26 {
		t.Fatalf("count of every key: %d, %v", n, err)
	}
	if n, err := c.DeleteRange(ctx, "user/", client.RangeOptions{Prefix: true}); err != nil || n != 25 {
		t.Fatalf("delete-range user/: %d, %v", n, err)
	}
	if got := collect("", client.RangeOptions{Prefix: true}); strings.Join(got, " ") != "zzz=other" {
		t.Fatalf("after the delete-range: %v", got)
	}
}

// Transactions through the Go client: the branch that ran, its results, one
// revision for its writes; compare-and-swap is one.
func TestTxnThroughTheClient(t *testing.T) {
	l := startLocal(t, t.TempDir())
	c := newClient(t, l)
	ctx := context.Background()
	if err := c.Put(ctx, "acct/a", []byte("10")); err != nil {
		t.Fatal(err)
	}
	before, err := c.GetKeyValue(ctx, "acct/a")
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Txn().
		If(client.CompareValue("acct/a", client.Equal, []byte("10")), client.KeyMissing("acct/b")).
		Then(client.OpPut("acct/a", []byte("7")), client.OpPut("acct/b", []byte("3")), client.OpRange("acct/", client.RangeOptions{Prefix: true})).
		Else(client.OpGet("acct/a")).
		Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Succeeded || len(r.Results) != 3 || r.Revision != before.Revision+1 || len(r.Results[2].KVs) != 2 {
		t.Fatalf("transfer: %+v; want Then run in one revision after %d, the range seeing both writes", r, before.Revision)
	}
	r, err = c.Txn().If(client.CompareVersion("acct/a", client.Greater, 5)).Then(client.OpDelete("acct/a")).Else(client.OpGet("acct/a")).Commit(ctx)
	if err != nil || r.Succeeded || !r.Results[0].Found || string(r.Results[0].KV.Value) != "7" || r.Results[0].KV.Version != 2 {
		t.Fatalf("a transaction whose comparison fails: %+v, %v; want Else's get of acct/a = 7 at version 2", r, err)
	}
	if ok, err := c.CompareAndSwap(ctx, "acct/a", []byte("7"), []byte("8")); err != nil || !ok {
		t.Fatalf("cas 7 -> 8: %v, %v", ok, err)
	}
	if ok, err := c.CompareAndSwap(ctx, "acct/none", []byte(""), []byte("x")); err != nil || ok {
		t.Fatalf("cas on a missing key: %v, %v; want no swap", ok, err)
	}
	if ok, err := c.PutIfAbsent(ctx, "acct/none", []byte("x")); err != nil || !ok {
		t.Fatalf("put-if-absent: %v, %v", ok, err)
	}
	if _, err := c.Txn().Then(client.OpPut("k", nil), client.OpPut("k", nil)).Commit(ctx); !errors.Is(err, client.ErrNotApplied) || !strings.Contains(err.Error(), "a second time") {
		t.Fatalf("a key written twice: %v; want not applied, saying why", err)
	}
}
