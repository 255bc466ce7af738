// Package learner is the learner core of paxosd: it learns chosen slots and
// applies them to the state machine.
//
// A learner learns a slot's value from the leader's MsgDecide, or from a
// peer learner's MsgCatchUpReply when it notices a gap: a slot above its
// applied prefix is known to be chosen (from a Decide, or from the Commit of
// a heartbeat) while an earlier one is missing. It records each chosen value
// durably, then applies values strictly in slot order, exactly once, through
// a statemachine.Sessions table so that a command chosen in two slots (a
// client retry) is applied once. It keeps a running hash chained over every
// applied value; two learners at the same applied slot have the same hash
// unless they diverged.
//
// Invariants:
//   - applied only grows, by one slot at a time, and every slot up to it was
//     applied exactly once in this run;
//   - a value learned for a slot never changes: a different value for a known
//     slot is refused with ErrConflict.
//
// The learner owns the state machine because applying is deterministic and
// in-memory: the machine never reads the clock or does I/O. After a restart
// it restores the newest snapshot, then replays the chosen log recovered
// from storage after it.
//
// Snapshots. Every SnapshotEvery slots or SnapshotBytes of applied values the
// learner captures a snapshot (Ready.Snapshot; the state is frozen, so the
// driver may write it while applying goes on). Once the driver reports it
// durable (MsgSnapshotSaved), the learner drops its log up to it: in storage
// (RecSnapshot) and in memory down to LogRetain slots below it. It reports
// the snapshot to the acceptors (MsgSnapshotted), which forget votes a
// majority of learners hold in snapshots. A peer that asks for slots no
// longer kept gets MsgSnapshotOffer; the learner on the other side pulls the
// snapshot chunk by chunk (MsgSnapshotPull, MsgSnapshotChunk, a CRC-32C per
// chunk), one transfer at a time, asking again from where it stands when a
// chunk is late and backing off after repeated failures, then has the driver
// install it (Ready.Install, RestoreSnapshot).
//
// More invariants:
//   - the log is dropped only up to a durable snapshot;
//   - every slot from logStart to applied is in the in-memory log, and every
//     slot below logStart is covered by the newest snapshot.
package learner
