// Package paxos is the shared vocabulary of paxosd: node IDs, ballots, slots,
// the messages the roles exchange, the records they make durable, the cluster
// configuration with its quorum rule, and the Node driver that joins the
// deterministic role cores to storage, the network and the state machine.
//
// The role cores (packages acceptor, proposer and learner) are plain structs
// whose only inputs are Step and Tick and whose only output is Ready. Node
// runs them with synchronous methods (Deliver, Tick, Propose, Flush), so the
// simulator under tests/sim and the daemon drive exactly the same code.
//
// Node keeps one ordering rule that the protocol's safety depends on: every
// Record a core produced is durable before any Message the same cores produced
// leaves, and decisions are handed to the application only after both.
package paxos
