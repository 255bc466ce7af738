package server

import (
	"context"
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
