// Package wal is paxosd's durable storage: one Pebble database per daemon
// holding the acceptor's promise and accepted values and the learner's chosen
// log and applied slot.
//
// Store.Save writes every record of one flush in one Pebble batch committed
// with pebble.Sync (group commit): when it returns, the records are on disk,
// and after a crash either all of them are there or none. Open recovers the
// state and checks it; a store that fails a check refuses to open with
// ErrCorrupt, naming the key and what is wrong. Nothing is ever skipped. A
// failed fsync is never retried: Save returns ErrFailed, and so does every
// later call, because the state on disk is then unknown; the node stops.
//
// Key layout (slots big-endian, so Pebble iterates in slot order):
//
//	"f"          format version
//	"p"          promised ballot
//	"a" + slot   accepted ballot and value
//	"c" + slot   chosen value
//	"l"          applied slot
//
// Every value starts with a CRC-32C of the rest, so a damaged value is
// reported rather than used.
package wal
