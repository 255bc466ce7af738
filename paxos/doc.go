// Package paxos is the shared vocabulary of paxosd: node IDs, ballots, slots,
// the messages the roles exchange, the records they make durable, the
// membership with its quorum rule, and the Node driver that joins the
// deterministic role cores to storage, a transport and the state machine.
// It imports neither the network nor a codec: the packages below it do
// that, each importing only what is beneath it (see docs/design.md):
//
//	paxos/wire       the frame codec and the handshake
//	paxos/transport  member-to-member TCP
//	paxos/clientapi  the client protocol
//	paxos/server     one member, assembled; the daemon around it
//	paxos/client     the Go client
//
// The role cores (packages acceptor, proposer and learner) are plain structs
// whose only inputs are Step and Tick and whose only output is Ready. Node
// runs them with synchronous methods (Deliver, Tick, Propose, Flush), so the
// simulator and the daemon drive exactly the same code; the daemon adds Run,
// a loop that feeds them from the network and a ticker.
//
// Node keeps one ordering rule that the protocol's safety depends on: every
// Record a core produced is durable before any Message the same cores
// produced leaves, and decisions are handed to the application only after
// both (docs/design.md, invariant 4).
package paxos
