// Package server runs one paxosd member: it joins the role cores (packages
// acceptor, proposer and learner), the Pebble WAL, the TCP peer transport and
// a state machine into a running daemon, and serves clients on a second
// port. `paxosd serve` and `paxosd dev` are thin wrappers around it, and a Go
// program can embed a member with its own statemachine.Machine.
//
// A member never initialises itself silently. A data directory holds the
// cluster ID and node ID it was bootstrapped with; an empty one is only
// initialised when Config.Bootstrap is set (the first start of a new
// cluster), and a directory from another cluster or node is refused.
// Forgetting this rule is how Paxos loses data: an acceptor that restarts
// empty has forgotten its promises.
//
// Snapshots live in DATA_DIR/snap. The learner decides when to take one
// (Config.SnapshotEvery, SnapshotBytes); the member writes it from a
// background goroutine, keeps the newest two, serves them to lagging peers
// at Config.SnapshotRate, and installs snapshots it receives only after
// checking them whole. A start restores the newest snapshot and replays the
// log after it; a damaged snapshot stops the start with the file's name.
package server
