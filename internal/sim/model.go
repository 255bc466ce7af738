package sim

import (
	"fmt"

	"github.com/paxosd/paxosd/statemachine"
)

// KVInput is one client operation as the history records it.
type KVInput struct {
	Op           statemachine.KVOp
	Key          string
	Value, Old   string
	ExpectAbsent bool
	// Txn says a compare-and-swap ran as a transaction (compare, then put,
	// else get): the same operation to the model, through other code.
	// Ranged says a get or delete ran as a range or delete-range of the
	// key as a prefix, which names that key alone (the simulator's keys
	// are single letters).
	Txn, Ranged bool
	// Lease says a put attached its key to a lease, and Revoke that a
	// delete was a lease's revocation, proposed by the leader when the
	// lease expired (or by a client): the model sees a put and a delete.
	Lease, Revoke bool
}

// KVOutput is what the client saw. Unknown means no answer came (the
// operation may or may not have taken effect); Rev is the revision the
// machine reported.
type KVOutput struct {
	Status  statemachine.KVStatus
	Value   string
	Rev     uint64
	Unknown bool
	// CreateRev and Version describe the key Rev describes.
	CreateRev, Version uint64
}

// Op is one client operation of a run's history. Call and Return are the
// simulation steps at which it began and was answered; an operation whose
// outcome is unknown returns at math.MaxInt64 (it may take effect at any
// later time). Reads whose outcome is unknown, and operations that were
// certainly not applied, are not in the history: they constrain nothing.
type Op struct {
	Client       int
	Input        KVInput
	Output       KVOutput
	Call, Return int64
}

// Describe prints the operation and its outcome, for failures and traces.
func (in KVInput) Describe(out KVOutput) string {
	res := "?"
	if !out.Unknown {
		res = out.Status.String()
		if out.Value != "" {
			res += " " + out.Value
		}
		if out.Rev != 0 {
			res += fmt.Sprintf(" @%d", out.Rev)
		}
		if out.Version != 0 {
			res += fmt.Sprintf(" v%d since @%d", out.Version, out.CreateRev)
		}
	}
	if in.Ranged {
		res = "ranged " + res
	}
	if in.Lease {
		res = "with lease " + res
	}
	if in.Revoke {
		res = "by lease revocation " + res
	}
	switch in.Op {
	case statemachine.KVPut:
		return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
	case statemachine.KVCompareAndSwap:
		if in.Txn {
			res = "txn " + res
		}
		if in.ExpectAbsent {
			return fmt.Sprintf("cas(%s, absent, %s) -> %s", in.Key, in.Value, res)
		}
		return fmt.Sprintf("cas(%s, %s, %s) -> %s", in.Key, in.Old, in.Value, res)
	}
	return fmt.Sprintf("%s(%s) -> %s", in.Op, in.Key, res)
}
