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
// it replays the chosen log it recovered from storage.
//
// TODO: the chosen log is kept in memory to answer catch-up requests, so
// memory grows with history; snapshots and truncation bound it.
package learner
