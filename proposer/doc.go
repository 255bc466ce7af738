// Package proposer is the proposer core of paxosd: it turns client commands
// into chosen slots.
//
// A proposer starts as a follower. When it hears nothing from a leader for a
// randomized number of ticks it becomes a candidate and runs phase 1 once,
// for every slot from the first one it does not know to be chosen, with a
// ballot above every ballot it has seen (Lamport, "Paxos Made Simple", §3).
// On a quorum of promises it re-proposes, slot by slot, the value accepted at
// the highest ballot, fills every hole with a no-op, and becomes the
// distinguished leader. From then on it runs phase 2 only: it batches queued
// client commands into one value per slot, keeps up to Window slots in
// flight, retransmits unanswered Accepts, and announces chosen slots with
// MsgDecide. It sends heartbeats so that followers do not campaign, and it
// steps down when it meets a higher ballot.
//
// Invariants:
//   - a proposer never proposes two different values in one slot with one
//     ballot: each slot gets its value once per ballot, and ballots are never
//     reused within a run (acceptors refuse a Prepare at or below their
//     promise, so a ballot reused after a restart cannot win a quorum);
//   - a leader's value for a slot at or above its phase-1 start is the value
//     of the highest ballot a quorum of acceptors reported, or a no-op when
//     none reported one.
//
// The core is deterministic: randomness comes from Config.Rand and every map
// it ranges over is sorted before it can shape output.
package proposer
