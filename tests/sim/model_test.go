package sim

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/paxosd/paxosd/internal/sim"
	"github.com/paxosd/paxosd/statemachine"
)

// kvState is the model's state for one key. rev is the revision of the
// key's last write (a put, a swap or a delete); when that write's outcome
// was unknown, revKnown is false and rev is only a lower bound. version
// counts the writes since the key was created, and create is the revision
// of the write that created it, a lower bound when createKnown is false.
type kvState struct {
	present     bool
	value       string
	rev         uint64
	revKnown    bool
	version     uint64
	create      uint64
	createKnown bool
}

// describes reports whether an answer's create revision and version can
// describe the key as st has it, and returns st with what it learned.
func (st kvState) describes(out sim.KVOutput) (bool, kvState) {
	if out.Version != st.version {
		return false, st
	}
	if st.createKnown {
		return out.CreateRev == st.create, st
	}
	if out.CreateRev <= st.create || out.CreateRev > out.Rev {
		return false, st
	}
	st.create, st.createKnown = out.CreateRev, true
	return true, st
}

// newer reports whether r can be the revision of a write after st's.
func (st kvState) newer(r uint64) bool { return r > st.rev }

// current reports whether r can be the revision st's value was written at.
func (st kvState) current(r uint64) bool {
	if st.revKnown {
		return r == st.rev
	}
	return r > st.rev
}

// kvModel is the sequential specification of the KV machine for put, get,
// delete and compare-and-swap, revisions included, partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(sim.KVInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{revKnown: true, createKnown: true} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(kvState), input.(sim.KVInput), output.(sim.KVOutput)
		write := func(present bool, value string) (bool, any) {
			next := kvState{present: present, value: value, rev: st.rev, createKnown: true}
			switch {
			case !present: // a delete: the key starts again
			case st.present:
				next.version, next.create, next.createKnown = st.version+1, st.create, st.createKnown
			default:
				next.version, next.create, next.createKnown = 1, st.rev, false
			}
			if out.Unknown {
				return true, next
			}
			next.rev, next.revKnown = out.Rev, true
			if !present {
				return out.Status == statemachine.KVOK && st.newer(out.Rev), next
			}
			if !next.createKnown && st.present == false {
				next.create, next.createKnown = out.Rev, true // created by this write
			}
			ok, next := next.describes(out)
			return ok && out.Status == statemachine.KVOK && st.newer(out.Rev), next
		}
		switch in.Op {
		case statemachine.KVPut:
			return write(true, in.Value)
		case statemachine.KVGet:
			switch {
			case out.Unknown:
				return true, st
			case out.Status == statemachine.KVNotFound:
				return !st.present, st
			case out.Status == statemachine.KVOK && st.present && st.value == out.Value && st.current(out.Rev):
				st.rev, st.revKnown = out.Rev, true
				return st.describes(out)
			}
			return false, st
		case statemachine.KVDelete:
			switch {
			case !st.present:
				return out.Unknown || out.Status == statemachine.KVNotFound, st
			default:
				return write(false, "")
			}
		case statemachine.KVCompareAndSwap:
			if st.present != in.ExpectAbsent && (in.ExpectAbsent || st.value == in.Old) {
				return write(true, in.Value)
			}
			switch {
			case out.Unknown:
				return true, st
			case out.Status != statemachine.KVCompareFailed:
				return false, st
			case !st.present:
				return out.Rev == 0 && out.Value == "", st
			case out.Value == st.value && st.current(out.Rev):
				st.rev, st.revKnown = out.Rev, true
				return st.describes(out)
			}
			return false, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		return input.(sim.KVInput).Describe(output.(sim.KVOutput))
	},
}

// linearizable is the simulator's Check: the client history must be
// linearizable against kvModel (invariant 6).
func linearizable(history []sim.Op) error {
	ops := make([]porcupine.Operation, len(history))
	for i, op := range history {
		ops[i] = porcupine.Operation{ClientId: op.Client, Input: op.Input, Output: op.Output, Call: op.Call, Return: op.Return}
	}
	if res := porcupine.CheckOperationsTimeout(kvModel, ops, 0); res != porcupine.Ok {
		var msg strings.Builder
		fmt.Fprintf(&msg, "client history of %d operations is not linearizable (%s)", len(ops), res)
		for _, op := range ops {
			fmt.Fprintf(&msg, "\n    c%d [%d,%d] %s", op.ClientId, op.Call, op.Return, kvModel.DescribeOperation(op.Input, op.Output))
		}
		return fmt.Errorf("%s", msg.String())
	}
	return nil
}
