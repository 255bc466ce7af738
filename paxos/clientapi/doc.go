// Package clientapi is the protocol between paxosd clients and members: the
// requests a client sends to a member's client port, the responses it gets
// back, and the status a member reports.
//
// A client connection opens with a wire.Hello of kind HelloClient in each
// direction, then carries Request and Response frames (package wire). A
// client may have many requests outstanding on one connection; each carries
// an ID that its response echoes, and responses come in whatever order the
// requests finish.
//
// Every Code but CodeOK says whether the request may have been applied,
// which decides what a client may safely do next: CodeNotLeader,
// CodeOverloaded, CodeBadRequest and CodeUnavailable mean it certainly was
// not; CodeTimeout means it may still be; CodeStale means it was applied at
// most once and its answer is gone.
package clientapi
