// Package client is the Go client of a paxosd cluster: it finds the leader,
// follows redirects, and retries a command with the same (session, sequence
// number), so that a retried write is applied at most once.
//
// Every error a call returns is one of two kinds, and errors.Is tells them
// apart: ErrNotApplied means the command was certainly not applied (for
// example no member was reachable, or it was refused as too large), so it is
// safe to try again as a new command; ErrUnknownOutcome means it was sent and
// no answer came in time, so it may have been applied. Conditions are not
// errors of either kind: Get of a missing key returns ErrNotFound, and a
// compare-and-swap that did not swap returns false.
//
// A Client is safe for concurrent use. Each call in flight uses a session of
// its own, and requests share one connection per member.
//
// The retry rules are a Call over a Router: where the next attempt goes,
// how long to wait before it, and what the answers so far say about the
// outcome. Client drives a Call over TCP; the simulator drives the same
// Call over its simulated network, so the rules are tested under its
// faults.
package client
