package sim

import (
	"fmt"

	"github.com/anishathalye/porcupine"

	"github.com/paxosd/paxosd/statemachine"
)

// kvInput is one client operation as the linearizability checker sees it.
type kvInput struct {
	op           statemachine.KVOp
	key          string
	value, old   string
	expectAbsent bool
}

// kvOutput is what the client saw; unknown means no answer ever came (the
// operation may or may not have taken effect).
type kvOutput struct {
	status  statemachine.KVStatus
	value   string
	unknown bool
}

// kvState is the model's state for one key.
type kvState struct {
	present bool
	value   string
}

// kvModel is the sequential specification of the KV machine for put, get,
// delete and compare-and-swap, partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
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
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.op {
		case statemachine.KVPut:
			return out.unknown || out.status == statemachine.KVOK, kvState{true, in.value}
		case statemachine.KVGet:
			switch {
			case out.unknown:
				return true, st
			case out.status == statemachine.KVNotFound:
				return !st.present, st
			case out.status == statemachine.KVOK:
				return st.present && st.value == out.value, st
			}
			return false, st
		case statemachine.KVDelete:
			ok := out.unknown ||
				(st.present && out.status == statemachine.KVOK) ||
				(!st.present && out.status == statemachine.KVNotFound)
			return ok, kvState{}
		case statemachine.KVCompareAndSwap:
			swap := st.present != in.expectAbsent && (in.expectAbsent || st.value == in.old)
			if swap {
				return out.unknown || out.status == statemachine.KVOK, kvState{true, in.value}
			}
			return out.unknown || out.status == statemachine.KVCompareFailed, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := "?"
		if !out.unknown {
			res = out.status.String()
			if out.value != "" {
				res += " " + out.value
			}
		}
		switch in.op {
		case statemachine.KVPut:
			return fmt.Sprintf("put(%s, %s) -> %s", in.key, in.value, res)
		case statemachine.KVCompareAndSwap:
			if in.expectAbsent {
				return fmt.Sprintf("cas(%s, absent, %s) -> %s", in.key, in.value, res)
			}
			return fmt.Sprintf("cas(%s, %s, %s) -> %s", in.key, in.old, in.value, res)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.op, in.key, res)
	},
}
