// Package lockserver is latch's server: it wires a Multi-Paxos replica
// (package replica), the namespace state machine (package namespace), the
// leader's session keeping (package session) and the client protocol
// (package internal/wire) into one replica of a cell that clients talk to.
//
// # Request flow
//
//  1. A client connects over TCP, runs yamux on top, and opens one call
//     stream, the session's only stream, that carries every call: a
//     request frame and its reply frame share a call id, and calls are
//     answered in any order. The first call is Hello.
//  2. The server validates the request (paths, sizes, mode, known session)
//     before anything is proposed; a bad request gets a typed error code and
//     the connection carries on. A frame that cannot be decoded (over the
//     limit, cut short, malformed, of another version) closes that
//     connection only.
//  3. Writes and linearizable reads need the leader. Any other replica
//     answers NotLeader with the leader's client address (or Unavailable if
//     it knows of none); the client retries there with the same request id.
//  4. A write is stamped with the leader's command time (cellClock) and
//     proposed as one log command (see below). When it is chosen, every
//     replica applies it to its namespace in log order; the proposer
//     answers from the result.
//  5. A linearizable read waits for a read barrier (free under the leader's
//     Paxos lease, coalesced across concurrent reads) and reads the local
//     namespace. A read with Stale set is answered by any replica from its
//     own state at once.
//
// # Log commands
//
// The server owns the format of the log entries, which live forever: a
// version byte (1), a kind byte, and a namespace.Command. Kind 1 applies the
// command as is; kind 2 is an unconditional Put that Apply resolves, in log
// order, into a create or a set-content. An entry of an unknown version or
// kind is rejected by every replica alike. The adapter that applies them is
// a replica.StateMachine.
//
// # Leader duties
//
// While this replica leads, a term holds the session manager: leases,
// KeepAlive long polls, event queues and watches. A new term gives every
// session in the namespace a fresh lease and a Failover event. Only the
// leader expires sessions, by proposing an expire command; it also proposes
// a tick when a lock-delay with waiters has ended. Event sequence numbers
// carry the term's epoch (its ballot's round, then its leader's rank) in
// their high 32 bits, so they keep increasing across leaders.
//
// # Local cells
//
// StartCell runs a whole cell in one process on loopback, for tests and
// `latchd dev`.
//
// docs/server.md has the details and the decisions behind them.
package lockserver
