// Package wal is paxosd's durable storage: one Pebble database per daemon
// holding the acceptor's promise and accepted values and the learner's chosen
// log and applied slot, and the snapshot files of the learner (Snapshots).
//
// Store.Save writes every record of one flush in one Pebble batch committed
// with pebble.Sync (group commit): when it returns, the records are on disk,
// and after a crash either all of them are there or none. Open recovers the
// state and checks every value and the state as a whole
// (paxos.AcceptorState.Check and paxos.LearnerState.Check, the checks the
// member assembly makes too); a store that fails a check refuses to open
// with ErrCorrupt, saying what is wrong. Nothing is ever skipped. A failed
// fsync is never retried: Save returns ErrFailed, and so does every
// later call, because the state on disk is then unknown; the node stops.
//
// Key layout (slots big-endian, so Pebble iterates in slot order; the full
// description, with what each value holds, is in docs/design.md):
//
//	"f"          format version (2)
//	"i"          identity: cluster ID and node ID, written at bootstrap
//	"p"          acceptor: promised ballot
//	"o"          acceptor: floor; accepted values up to it were dropped
//	"a" + slot   acceptor: accepted ballot and value
//	"b"          learner: snapshot base; chosen values up to it were dropped
//	"c" + slot   learner: chosen value
//	"l"          learner: applied slot
//
// Every value starts with a CRC-32C of the rest, so a damaged value is
// reported rather than used.
package wal
