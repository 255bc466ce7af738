// Package server runs one paxosd member.
//
// NewMember is the one place a member is assembled: from a MemberConfig
// (identity, membership, state machine, the cores' settings) and a MemberIO
// (storage and what it recovered, the file system for snapshots, a
// transport, an Executor for slow snapshot work, a clock) it checks the
// recovered state, restores the newest snapshot and replays the log after
// it, and builds the cores of the member's roles (packages acceptor,
// proposer and learner) and the paxos.Node that drives them. A Member also
// serves clients (Handle, Sweep, Status): commands and linearizable reads
// wait for their slot and are answered when applied, or time out;
// serializable queries read the learner's state. Everything a Member does
// runs on the node's goroutine and takes its time from MemberIO.Now, so the
// simulator (internal/sim) runs members exactly as the daemon does.
//
// Start is the daemon around a Member: a Pebble WAL and snapshot files in
// the data directory, the TCP transport, a client port, goroutines for the
// node's loop and the background work, and the wall clock. `paxosd serve`
// and `paxosd dev` are thin wrappers around it (StartLocal runs several in
// one process), and a Go program can embed a member with its own
// statemachine.Machine.
//
// A member never initialises itself silently. A data directory holds the
// cluster ID and node ID it was bootstrapped with; an empty one is only
// initialised when Config.Bootstrap is set (the first start of a new
// cluster), and a directory from another cluster or node is refused.
// Forgetting this rule is how Paxos loses data: an acceptor that restarts
// empty has forgotten its promises.
//
// Snapshots live in DATA_DIR/snap. The learner decides when to take one
// (Config.SnapshotEvery, SnapshotBytes); the member writes it in the
// background, keeps the newest two, serves them to lagging peers at
// Config.SnapshotRate, and installs snapshots it receives only after
// checking them whole. A start restores the newest snapshot and replays the
// log after it; a damaged snapshot stops the start with the file's name.
// The formats are in docs/design.md.
package server
