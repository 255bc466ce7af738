package statemachine

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Machine is a deterministic state machine that paxosd replicates.
type Machine interface {
	// Apply executes cmd, the command chosen in slot, and returns the answer
	// for the client. It must not keep cmd; bad commands get an answer that
	// says so, never a panic.
	Apply(slot uint64, cmd []byte) []byte
	// Snapshot writes the state as of the last applied command.
	Snapshot(w io.Writer) error
	// Restore replaces the state with one written by Snapshot. It must
	// reject bad input with an error and leave the machine usable.
	Restore(r io.Reader) error
}

// Freezer is implemented by machines that can write a snapshot while they go
// on applying commands, so that a large state does not stall the node. Freeze
// captures the state as of the last applied command and returns a function
// that writes it as Snapshot would. The function is called at most once, from
// another goroutine, while Apply goes on; Freeze and Apply are never called
// concurrently with each other.
type Freezer interface {
	Freeze() func(w io.Writer) error
}

// Normalizer is implemented by machines whose state may depend on where a
// member began when it was built from an old snapshot or from commands of an
// older format. The learner calls MarkLegacy before it applies a batch of
// the old format and Normalize before each batch of the current one; the
// first such batch is at the same slot on every member, so Normalize makes
// their states equal there.
type Normalizer interface {
	MarkLegacy()
	Normalize()
}

// Clocked is implemented by machines that use the log's time. Before each
// batch of commands the learner calls Advance with the batch's time stamp
// (Unix milliseconds, from the clock of the leader that proposed it); the
// same stamps reach every learner at the same slots, so a machine may act
// on them and stay deterministic. Stamps from different leaders may go
// back: keep the highest seen.
type Clocked interface {
	Advance(ms uint64)
}

// Watcher is implemented by machines whose clients can follow their changes
// (the KV machine's watch). Watch answers the query q as of the last applied
// command. When nothing q asks for has happened yet, ready is false, answer
// is what to reply if the wait ends now, and next is q moved past what was
// looked at: the member asks again with next after later commands. A bad
// query gets an answer that says so, ready.
type Watcher interface {
	Watch(q []byte) (answer, next []byte, ready bool)
}

// Querier is implemented by machines that answer read-only queries without
// a slot, for reads that the read rules allow to skip the log.
type Querier interface {
	Query(q []byte) ([]byte, error)
}

var (
	registryMu sync.Mutex
	registry   = map[string]func() Machine{}
)

// ErrUnknownMachine reports a name no machine was registered under.
var ErrUnknownMachine = errors.New("statemachine: unknown machine")

// Register makes a machine available under name, for the daemon's --machine
// flag. It panics if name is empty or already taken; call it from init.
func Register(name string, factory func() Machine) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" || factory == nil {
		panic("statemachine: Register needs a name and a factory")
	}
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("statemachine: machine %q registered twice", name))
	}
	registry[name] = factory
}

// New returns a fresh machine of the kind registered under name.
func New(name string) (Machine, error) {
	registryMu.Lock()
	f := registry[name]
	registryMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("%w %q (registered: %v)", ErrUnknownMachine, name, Names())
	}
	return f(), nil
}

// Names returns the registered machine names in order.
func Names() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
