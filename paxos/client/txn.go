package client

import (
	"context"
	"fmt"
	"slices"

	"github.com/paxosd/paxosd/statemachine"
)

// Relation is how a comparison relates a key's value or number to the one
// given.
type Relation uint8

// The relations.
const (
	Equal    = Relation(statemachine.CmpEqual)
	NotEqual = Relation(statemachine.CmpNotEqual)
	Less     = Relation(statemachine.CmpLess)
	Greater  = Relation(statemachine.CmpGreater)
)

// Cmp is one condition of a transaction; build it with CompareValue,
// CompareVersion, CompareCreateRevision, CompareModRevision, KeyExists or
// KeyMissing.
type Cmp struct{ c statemachine.KVCompare }

// CompareValue holds when key's value relates to value as r says (bytes
// compared in order). A missing key's value equals nothing and is neither
// less nor greater than anything.
func CompareValue(key string, r Relation, value []byte) Cmp {
	return Cmp{statemachine.KVCompare{Key: []byte(key), Target: statemachine.CmpValue, Result: statemachine.CompareResult(r), Value: nonNil(value)}}
}

// CompareVersion holds when key's version (0 for a missing key) relates to
// n as r says.
func CompareVersion(key string, r Relation, n uint64) Cmp {
	return cmpNum(key, statemachine.CmpVersion, r, n)
}

// CompareCreateRevision holds when the revision that created key (0 for a
// missing key) relates to n as r says.
func CompareCreateRevision(key string, r Relation, n uint64) Cmp {
	return cmpNum(key, statemachine.CmpCreate, r, n)
}

// CompareModRevision holds when the revision of key's last write (0 for a
// missing key) relates to n as r says.
func CompareModRevision(key string, r Relation, n uint64) Cmp {
	return cmpNum(key, statemachine.CmpMod, r, n)
}

// KeyExists holds when key exists; KeyMissing when it does not.
func KeyExists(key string) Cmp  { return cmpNum(key, statemachine.CmpExists, Equal, 1) }
func KeyMissing(key string) Cmp { return cmpNum(key, statemachine.CmpExists, Equal, 0) }

func cmpNum(key string, t statemachine.CompareTarget, r Relation, n uint64) Cmp {
	return Cmp{statemachine.KVCompare{Key: []byte(key), Target: t, Result: statemachine.CompareResult(r), Num: n}}
}

// Op is one operation of a transaction; build it with OpPut, OpGet,
// OpDelete, OpRange or OpDeleteRange.
type Op struct{ r statemachine.KVRequest }

// OpPut sets key to value.
func OpPut(key string, value []byte) Op {
	return Op{statemachine.KVRequest{Op: statemachine.KVPut, Key: []byte(key), Value: value}}
}

// OpGet reads key.
func OpGet(key string) Op {
	return Op{statemachine.KVRequest{Op: statemachine.KVGet, Key: []byte(key)}}
}

// OpDelete deletes key.
func OpDelete(key string) Op {
	return Op{statemachine.KVRequest{Op: statemachine.KVDelete, Key: []byte(key)}}
}

// OpRange reads one page of a range: at most o.Limit keys (or
// statemachine.MaxRangeLimit), within statemachine.MaxRangeBytes.
func OpRange(key string, o RangeOptions) Op {
	r := o.request(statemachine.KVRange, key)
	r.Limit = uint64(min(max(o.Limit, 0), statemachine.MaxRangeLimit))
	return Op{r}
}

// OpDeleteRange deletes every key of a range.
func OpDeleteRange(key string, o RangeOptions) Op {
	r := o.request(statemachine.KVDeleteRange, key)
	r.KeysOnly = false
	return Op{r}
}

// Txn is a transaction being built: Commit runs it. When every condition
// of If holds, the operations of Then run, in order; otherwise those of
// Else. It is one command: atomic, applied at most once, and all its writes
// share one revision.
type Txn struct {
	c         *Client
	ifs       []statemachine.KVCompare
	then, els []statemachine.KVRequest
}

// Txn starts a transaction.
func (c *Client) Txn() *Txn { return &Txn{c: c} }

// If adds conditions.
func (t *Txn) If(cs ...Cmp) *Txn {
	for _, c := range cs {
		t.ifs = append(t.ifs, c.c)
	}
	return t
}

// Then adds operations that run when the conditions hold.
func (t *Txn) Then(ops ...Op) *Txn {
	for _, o := range ops {
		t.then = append(t.then, o.r)
	}
	return t
}

// Else adds operations that run when a condition does not hold.
func (t *Txn) Else(ops ...Op) *Txn {
	for _, o := range ops {
		t.els = append(t.els, o.r)
	}
	return t
}

// TxnResult is what a transaction did: which list ran, the store's revision
// after it, and one result per operation of that list.
type TxnResult struct {
	Succeeded bool
	Revision  uint64
	Results   []OpResult
}

// OpResult answers one operation of a transaction: for a get, Found and the
// key; for a range, its keys and whether more matched; for a delete or
// delete-range, how many keys it deleted.
type OpResult struct {
	Found   bool
	KV      KeyValue
	KVs     []KeyValue
	More    bool
	Deleted uint64
	// Err says why the operation was refused: a read that would have made
	// the transaction's answer larger than statemachine.MaxRangeBytes.
	// The transaction's writes happened all the same.
	Err string
}

// Commit runs the transaction. Keys must not be empty (a range's prefix or
// start may be).
func (t *Txn) Commit(ctx context.Context) (TxnResult, error) {
	for _, c := range t.ifs {
		if len(c.Key) == 0 {
			return TxnResult{}, fmt.Errorf("%w: txn: a condition's key is empty", ErrNotApplied)
		}
	}
	for _, op := range append(slices.Clone(t.then), t.els...) {
		if len(op.Key) == 0 && op.Op != statemachine.KVRange && op.Op != statemachine.KVDeleteRange {
			return TxnResult{}, fmt.Errorf("%w: txn: a %s's key is empty", ErrNotApplied, op.Op)
		}
	}
	r, err := t.c.kv(ctx, "txn", statemachine.KVRequest{Op: statemachine.KVTxn, If: t.ifs, Then: t.then, Else: t.els})
	if err != nil {
		return TxnResult{}, err
	}
	ops := t.els
	if r.Succeeded {
		ops = t.then
	}
	if len(r.Responses) != len(ops) {
		return TxnResult{}, fmt.Errorf("%w: txn: the member answered %d operations of a list of %d", ErrUnknownOutcome, len(r.Responses), len(ops))
	}
	res := TxnResult{Succeeded: r.Succeeded, Revision: r.Revision}
	for i, or := range r.Responses {
		var o OpResult
		if or.Status == statemachine.KVBadRequest {
			o.Err = or.Err
		}
		switch op := ops[i]; op.Op {
		case statemachine.KVGet:
			o.Found = or.Status == statemachine.KVOK
			if o.Found {
				o.KV = keyValue(op.Key, or)
			}
		case statemachine.KVRange:
			o.More, o.Found = or.More, len(or.Pairs) > 0
			for _, p := range or.Pairs {
				o.KVs = append(o.KVs, pairValue(p, or.Revision))
			}
		case statemachine.KVDelete:
			if or.Status == statemachine.KVOK {
				o.Deleted = 1
			}
		case statemachine.KVDeleteRange:
			o.Deleted = or.Count
		}
		res.Results = append(res.Results, o)
	}
	return res, nil
}
