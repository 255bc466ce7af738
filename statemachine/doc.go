// Package statemachine defines the Machine that paxosd replicates, a registry
// of machines by name, the session table that makes retried commands apply
// once, and KV, the key-value machine that ships with paxosd.
//
// A Machine must be deterministic: the same commands applied in the same
// order to the same state give the same answers and the same state, on every
// node. It may not read the clock, draw random numbers or do I/O outside
// itself, and it must copy any byte slice it keeps, because the bytes it is
// given belong to the caller.
package statemachine
