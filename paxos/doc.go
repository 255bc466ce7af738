// Package paxos is the shared vocabulary of paxosd: node IDs, ballots, slots,
// the messages the roles exchange, the records they make durable, the cluster
// configuration with its quorum rule, the Node driver that joins the
// deterministic role cores to storage, the network and the state machine,
// and the wire: the frame codec and the TCP transport.
//
// The role cores (packages acceptor, proposer and learner) are plain structs
// whose only inputs are Step and Tick and whose only output is Ready. Node
// runs them with synchronous methods (Deliver, Tick, Propose, Flush), so the
// simulator under tests/sim and the daemon drive exactly the same code; the
// daemon adds Run, a loop that feeds them from the network and a ticker.
//
// Node keeps one ordering rule that the protocol's safety depends on: every
// Record a core produced is durable before any Message the same cores produced
// leaves, and decisions are handed to the application only after both.
//
// On the wire, a frame is a 4-byte big-endian length and one msgpack map with
// short keys. Decoding treats every byte as hostile: lengths are checked
// against the frame before anything is allocated, so decoding N bytes costs a
// small multiple of N, and anything unexpected is ErrBadFrame. Every
// connection starts with a Hello in each direction that names the cluster,
// the sender and the protocol version; a TCPTransport closes connections from
// other clusters, non-members and senders of bad frames, and identifies peers
// by their Hello, never by their address.
package paxos
