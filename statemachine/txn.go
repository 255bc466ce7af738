package statemachine

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// CompareTarget says what of a key a comparison looks at.
type CompareTarget uint8

// The targets. Values are part of the command encoding.
const (
	_ CompareTarget = iota
	// CmpValue compares the key's value (Value) as bytes.
	CmpValue
	// CmpVersion, CmpCreate and CmpMod compare its version, create
	// revision or mod revision (Num); all three are 0 for a missing key.
	CmpVersion
	CmpCreate
	CmpMod
	// CmpExists compares whether the key exists (Num 1) or not (Num 0).
	CmpExists
)

// CompareResult is the relation a comparison asks for.
type CompareResult uint8

// The relations. Values are part of the command encoding.
const (
	_ CompareResult = iota
	CmpEqual
	CmpNotEqual
	CmpLess
	CmpGreater
)

// KVCompare is one condition of a transaction: Target of Key, related by
// Result to Value (CmpValue) or Num (the others).
type KVCompare struct {
	Key    []byte
	Target CompareTarget
	Result CompareResult
	Value  []byte
	Num    uint64
}

// MaxTxnOps bounds the comparisons, and the operations of each branch, of
// one transaction.
const MaxTxnOps = 128

// holds reports whether c holds in the state. A missing key's value equals
// nothing and differs from everything; it is neither less nor greater.
func (kv *KV) holds(c KVCompare) bool {
	e, ok := kv.lookup(c.Key)
	if c.Target == CmpValue {
		if !ok {
			return c.Result == CmpNotEqual
		}
		return relate(bytes.Compare(e.value, c.Value), c.Result)
	}
	var x uint64
	switch {
	case !ok:
	case c.Target == CmpVersion:
		x = e.version
	case c.Target == CmpCreate:
		x = e.create
	case c.Target == CmpMod:
		x = e.rev
	case c.Target == CmpExists:
		x = 1
	}
	switch {
	case x < c.Num:
		return relate(-1, c.Result)
	case x > c.Num:
		return relate(1, c.Result)
	}
	return relate(0, c.Result)
}

func relate(cmp int, r CompareResult) bool {
	switch r {
	case CmpEqual:
		return cmp == 0
	case CmpNotEqual:
		return cmp != 0
	case CmpLess:
		return cmp < 0
	case CmpGreater:
		return cmp > 0
	}
	return false
}

// txn runs a transaction as one change: the comparisons, then one branch,
// whose writes all take the next revision. Reads in the branch see the
// writes before them.
func (kv *KV) txn(r KVRequest) KVResponse {
	ok := true
	for _, c := range r.If {
		if !kv.holds(c) {
			ok = false
			break
		}
	}
	ops := r.Else
	if ok {
		ops = r.Then
	}
	// NB: a put with a lease is the one write that can fail; check them
	// all first, so that a transaction applies whole or not at all.
	for _, op := range ops {
		if op.Op == KVPut && op.Lease != 0 && kv.leases[op.Lease] == nil {
			return KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("lease %d is not granted (it expired, was revoked, or never existed); nothing was applied", op.Lease)}
		}
	}
	rev := kv.rev + 1
	resp := KVResponse{Status: KVOK, Succeeded: ok, Responses: make([]KVResponse, 0, len(ops))}
	wrote := false
	// The reads of one transaction share MaxRangeBytes of keys and
	// values, so that its answer stays bounded whatever it asks.
	budget := MaxRangeBytes
	for _, op := range ops {
		var or KVResponse
		var w bool
		switch op.Op {
		case KVRange:
			var used int
			or, used = kv.rangeWithin(op, budget, false)
			budget -= used
		case KVGet:
			or = kv.get(op.Key)
			if n := len(op.Key) + len(or.Value); n > budget {
				or = KVResponse{Status: KVBadRequest, Err: fmt.Sprintf("the transaction's reads would answer more than %d bytes; read %q outside it", MaxRangeBytes, op.Key)}
			} else {
				budget -= n
			}
		default:
			or, w = kv.do(op, rev)
			or.Value = nil // NB: a delete's old value is not part of a transaction's answer
		}
		wrote = wrote || w
		resp.Responses = append(resp.Responses, or)
	}
	if wrote {
		kv.rev = rev
		resp.Rev = rev
	}
	for i := range resp.Responses {
		resp.Responses[i].Revision = kv.rev
	}
	return resp
}

func appendTxn(b []byte, r KVRequest) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.If)))
	for _, c := range r.If {
		b = appendBytes(b, c.Key)
		b = append(b, byte(c.Target), byte(c.Result))
		b = appendBytes(b, c.Value)
		b = binary.AppendUvarint(b, c.Num)
	}
	for _, ops := range [][]KVRequest{r.Then, r.Else} {
		b = binary.AppendUvarint(b, uint64(len(ops)))
		for _, op := range ops {
			b = appendBytes(b, op.Encode())
		}
	}
	return b
}

func decodeTxn(d *decoder, r *KVRequest) {
	if len(r.Key) != 0 {
		d.fail("a txn has no key of its own")
	}
	n := d.uvarint("compare count")
	if n > MaxTxnOps {
		d.fail(fmt.Sprintf("%d comparisons, more than %d", n, MaxTxnOps))
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		c := KVCompare{Key: d.bytes(MaxKeySize, "compare key")}
		c.Target, c.Result = CompareTarget(d.byte()), CompareResult(d.byte())
		c.Value = d.bytes(MaxValueSize, "compare value")
		c.Num = d.uvarint("compare number")
		switch {
		case c.Target < CmpValue || c.Target > CmpExists || c.Result < CmpEqual || c.Result > CmpGreater:
			d.fail(fmt.Sprintf("comparison %d: target %d, relation %d", i, c.Target, c.Result))
		case c.Target == CmpValue && c.Num != 0, c.Target != CmpValue && len(c.Value) != 0:
			d.fail(fmt.Sprintf("comparison %d mixes a value and a number", i))
		case c.Target == CmpExists && (c.Num > 1 || c.Result != CmpEqual):
			d.fail(fmt.Sprintf("comparison %d: existence is equal to 0 or 1", i))
		}
		r.If = append(r.If, c)
	}
	for _, branch := range []*[]KVRequest{&r.Then, &r.Else} {
		n := d.uvarint("operation count")
		if n > MaxTxnOps {
			d.fail(fmt.Sprintf("%d operations, more than %d", n, MaxTxnOps))
			return
		}
		written := map[string]bool{}
		var wiped []KVRequest // the branch's delete-ranges
		for i := uint64(0); i < n && d.err == nil; i++ {
			b := d.bytes(MaxValueSize+MaxKeySize+1024, "operation")
			if d.err != nil {
				return
			}
			op, err := decodeKVRequest(b, true)
			switch {
			case err != nil:
				d.fail(fmt.Sprintf("operation %d: %v", i, err))
			case op.Op == KVTxn || op.Op == KVCompareAndSwap || op.Op == KVCompact || op.Op == KVLeaseGrant || op.Op == KVLeaseRevoke || op.Op == KVLeaseList:
				d.fail(fmt.Sprintf("operation %d: a %s inside a txn", i, op.Op))
			case op.Op == KVPut || op.Op == KVDelete:
				if written[string(op.Key)] {
					d.fail(fmt.Sprintf("operation %d writes key %q a second time", i, op.Key))
				}
				written[string(op.Key)] = true
			case op.Op == KVDeleteRange:
				wiped = append(wiped, op)
			}
			*branch = append(*branch, op)
		}
		// NB: a key both written and deleted by a range in one list would
		// answer OK for a write that does not stand.
		for _, dr := range wiped {
			for k := range written {
				if covers(dr, k) {
					d.fail(fmt.Sprintf("key %q is written and deleted by a range in one list", k))
				}
			}
		}
	}
}

// covers reports whether range r names key k.
func covers(r KVRequest, k string) bool {
	if !r.Ranged {
		return len(k) >= len(r.Key) && k[:len(r.Key)] == string(r.Key)
	}
	return k >= string(r.Key) && (len(r.End) == 0 || k < string(r.End))
}

func appendTxnResponse(b []byte, r KVResponse) []byte {
	if r.Succeeded {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Responses)))
	for _, or := range r.Responses {
		b = appendBytes(b, or.Encode())
	}
	return b
}

func decodeTxnResponse(d *decoder, r *KVResponse) {
	switch d.byte() {
	case 0:
	case 1:
		r.Succeeded = true
	default:
		d.fail("bad succeeded flag")
	}
	n := d.uvarint("response count")
	if !r.Succeeded && n == 0 {
		d.fail("an empty transaction part, which is written as none")
		return
	}
	if n > MaxTxnOps || n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("%d responses in %d bytes", n, len(d.b)))
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		b := d.bytes(uint64(len(d.b)), "response")
		if d.err != nil {
			return
		}
		or, err := decodeKVResponse(b, true)
		if err != nil {
			d.fail(fmt.Sprintf("response %d: %v", i, err))
			return
		}
		r.Responses = append(r.Responses, or)
	}
}
