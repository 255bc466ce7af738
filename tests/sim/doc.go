// Package sim is paxosd's deterministic cluster simulator.
//
// One goroutine, one seeded *rand.Rand and virtual ticks drive 3-node,
// 5-node and split-role clusters built from the real acceptor, proposer and
// learner cores and the real paxos.Node driver. Faults are drawn per seed:
// message loss, duplication, reordering and delay; symmetric and one-way
// partitions; crash-restarts that lose every write not yet synced, including
// crashes in the middle of a synced batch; lost client replies. Concurrent
// clients submit KV commands and retry with the same (session, seq).
//
// After every step the checker tests invariants 1-5 of DESIGN.md; at the end
// of a run the client history must be linearizable (invariant 6), and after
// the faults are healed every pending command must be decided within a bound
// (invariant 7). A failure reports the seed, the step, the last events and
// the command that replays it.
package sim
