package client

import (
	"context"
	"iter"

	"github.com/paxosd/paxosd/statemachine"
)

// RangeOptions say which keys a range names and what it returns.
type RangeOptions struct {
	// Prefix names the keys that start with the key given. Otherwise the
	// range is the keys from the key given up to End, End excluded; an
	// empty End means every key from the key given on.
	Prefix bool
	End    string
	// Limit is the most keys returned in all (0: no limit).
	Limit int
	// KeysOnly leaves the values out.
	KeysOnly bool
	// Rev reads the keys as they were at that store revision, while the
	// cluster keeps its history (0: now). A revision no longer kept fails
	// with ErrCompacted.
	Rev uint64
	// PageSize is how many keys one request asks for (0: the most a
	// member answers, statemachine.MaxRangeLimit). Members also cut a page
	// at statemachine.MaxRangeBytes of keys and values.
	PageSize int
}

// request returns the first request of a range from key.
func (o RangeOptions) request(op statemachine.KVOp, key string) statemachine.KVRequest {
	r := statemachine.KVRequest{Op: op, Key: []byte(key), Ranged: true, End: []byte(o.End), KeysOnly: o.KeysOnly, Rev: o.Rev}
	if o.Prefix {
		r.End = prefixEnd([]byte(key))
	}
	return r
}

// prefixEnd returns the first key after every key that starts with p, or
// nil (no end) when there is none.
func prefixEnd(p []byte) []byte {
	end := []byte(string(p))
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Range returns the keys the range names, in key order, with their values
// and revisions, fetching them a page at a time: it never holds more than a
// page. The first page is read linearizably and the later ones at its
// revision, from the cluster's history, so that all of them show one state
// (a range so slow that the history moved past that revision fails with
// ErrCompacted). Iteration stops at the first error, which it yields.
func (c *Client) Range(ctx context.Context, key string, o RangeOptions) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		req := o.request(statemachine.KVRange, key)
		left := o.Limit
		for {
			req.Limit = uint64(min(max(o.PageSize, 0), statemachine.MaxRangeLimit))
			if left > 0 && (req.Limit == 0 || uint64(left) < req.Limit) {
				req.Limit = uint64(min(left, statemachine.MaxRangeLimit))
			}
			r, err := c.kv(ctx, "range", req)
			if err != nil {
				yield(KeyValue{}, err)
				return
			}
			rev := r.Revision
			if req.Rev != 0 {
				rev = req.Rev // NB: the answer's Revision is the store's now
			}
			for _, p := range r.Pairs {
				kv := pairValue(p, rev)
				if o.KeysOnly {
					kv.Value = nil
				}
				if !yield(kv, nil) {
					return
				}
				if left > 0 {
					if left--; left == 0 {
						return
					}
				}
			}
			if !r.More || len(r.Pairs) == 0 {
				return
			}
			// The next page starts just after the last key returned, in
			// the same state.
			req.Key = append([]byte(string(r.Pairs[len(r.Pairs)-1].Key)), 0)
			req.Rev = rev
		}
	}
}

// Count returns how many keys the range names.
func (c *Client) Count(ctx context.Context, key string, o RangeOptions) (uint64, error) {
	req := o.request(statemachine.KVRange, key)
	req.CountOnly, req.KeysOnly = true, false
	r, err := c.kv(ctx, "count", req)
	if err != nil {
		return 0, err
	}
	return r.Count, nil
}

// Compact drops the cluster's history up to revision rev: reads at those
// revisions, and watches from them, fail with ErrCompacted after it. The
// cluster also compacts by itself (statemachine.MaxHistoryBytes,
// HistoryAge).
func (c *Client) Compact(ctx context.Context, rev uint64) error {
	_, err := c.kv(ctx, "compact", statemachine.KVRequest{Op: statemachine.KVCompact, Rev: rev})
	return err
}

// DeleteRange deletes every key the range names, in one revision, and
// returns how many it deleted. Limit, KeysOnly and PageSize do not apply.
func (c *Client) DeleteRange(ctx context.Context, key string, o RangeOptions) (uint64, error) {
	req := o.request(statemachine.KVDeleteRange, key)
	req.KeysOnly = false
	r, err := c.kv(ctx, "delete-range", req)
	if err != nil {
		return 0, err
	}
	return r.Count, nil
}
