// Package acceptor is the acceptor core of paxosd: the durable voter of
// Multi-Paxos.
//
// An Acceptor holds one promised ballot for all slots and, per slot, the
// value it accepted at the highest ballot. It answers MsgPrepare with
// MsgPromise or MsgNack and MsgAccept with MsgAccepted or MsgNack (Lamport,
// "Paxos Made Simple", §2.2; the single promise for every slot is the
// Multi-Paxos optimisation of §3).
//
// Invariants:
//   - promised never decreases, also across restarts: every change to it is
//     emitted as a Record in the same Ready as the reply that depends on it,
//     and the driver makes Writes durable before it sends Messages;
//   - the acceptor never accepts below promised, so every accepted ballot is
//     at or below promised;
//   - it forgets slots only up to its floor, which rises once a majority of
//     the learners report durable snapshots covering it, and it never accepts
//     at or below the floor. Every Promise carries the floor. The argument
//     for why this is safe is in docs/design.md, "Truncation".
//
// The core is deterministic: the same state and inputs give the same Ready.
package acceptor
