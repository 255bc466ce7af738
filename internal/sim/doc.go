// Package sim is paxosd's deterministic cluster simulator.
//
// One goroutine, one seeded *rand.Rand and virtual ticks drive whole
// clusters: two to five full members, and split layouts of acceptor-only,
// proposer-learner, acceptor-learner and learner-only members. Each member
// is built by server.NewMember, the function the daemon uses, so the
// simulator runs the daemon's own assembly, recovery checks, request
// handling (server.Member.Handle and its timeouts) and snapshot store (on
// Pebble's crashable in-memory file system), and the clients follow the Go
// client's retry rules (client.Call). Only sockets, goroutines and the
// clock are the simulator's own.
//
// Faults are drawn per seed: message loss, duplication, reordering and
// delay; symmetric and one-way partitions; member pauses (the member
// handles nothing while the clock moves on, and what was sent to it waits)
// and clocks that run slow or fast; crash-restarts that lose every
// write not yet synced, including crashes in the middle of a synced batch
// and in the middle of snapshot work; client connections that break; old
// client requests that arrive after newer ones were answered; disks that
// fill up (a member with a full disk must write nothing: invariant 13).
//
// After every step the checker tests the invariants of docs/design.md that
// can be checked at a step (1-4, 8, and parts of 5 and 9); after the
// faults stop, every pending operation must finish within a bound (7); at
// the end the learners must hold the same state, no call reported not
// applied may have been applied, and the client history goes to
// Options.Check, where the tests check it is linearizable (6). The
// simulator links no checker of its own, so that `paxosd sim` carries no
// test code. A failure reports the seed, the step, each node's state, the
// last events and the command that replays it.
package sim
