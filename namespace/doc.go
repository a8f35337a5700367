// Package namespace is latch's replicated state machine: a tree of nodes
// (files and directories at once, as in Chubby), advisory reader/writer locks
// on any node, and the table of client sessions.
//
// The package is pure and deterministic. It starts no goroutines, reads no
// clock, draws no random numbers and does no I/O except through the io.Writer
// and io.Reader given to Snapshot and Restore. Time enters only inside
// commands: the leader stamps each Command with its clock, and the tree's
// notion of "now" is the largest stamp applied. Output never depends on Go
// map iteration order.
//
// The contract with the server that wraps a Tree as a replica state machine:
//
//  1. Decode each chosen log entry with DecodeCommand (or as a field of a
//     larger msgpack message; Command implements the msgpack custom coder
//     interfaces) and call Apply(index, cmd) in log order, on one goroutine.
//     Every replica then holds the same state, because Apply depends on
//     nothing but the state and the command.
//  2. Use the Result to answer the client that proposed the command, and the
//     events to fan out watches and to update session-side bookkeeping (a
//     lock-acquired event answers a queued Acquire; a wait-canceled event
//     fails it).
//  3. After each Apply, the leader asks NextDeadline; when that time has come
//     it proposes a tick (NewTick), so that lock-delays end inside the log
//     and followers never act on their own clocks.
//  4. Session expiry is decided by the leader and carried out by proposing
//     NewExpireSession; session ids are never reused, so a late expire
//     cannot hit a different session.
//  5. Snapshot writes the whole state (sessions and idempotence tables
//     included) as a versioned, checksummed stream; Restore replaces the
//     state. Identical states give identical bytes, and a restored tree
//     applies later commands exactly as the original would.
//
// Queries (Get, Stat, List, Walk, CheckSequencer, Lock, Locks, Session,
// Sessions) are not logged; they read the state after the last Apply.
//
// docs/namespace.md describes the data model, every command and error, the
// order of events, and the decisions (lock-delay, idempotence window, ACLs,
// sequential names, snapshot format) with the cost of each operation.
package namespace
