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
//     at or below promised.
//
// The core is deterministic: the same state and inputs give the same Ready.
package acceptor
