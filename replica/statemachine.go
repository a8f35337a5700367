package replica

import "io"

// StateMachine is what a Replica replicates: the user's deterministic state,
// changed only by commands chosen through Paxos. Each group has its own
// StateMachine.
//
// Concurrency contract:
//   - Apply is called on one goroutine per group (the group's apply
//     goroutine), for every chosen command, in log order, exactly once per
//     incarnation of the state (after a Restore, only commands after the
//     snapshot are applied).
//   - Snapshot and Restore run on that same goroutine, so they are never
//     concurrent with Apply or with each other.
//   - Nothing else in package replica calls the StateMachine; the user may
//     read its state from other goroutines under a lock of their own, and
//     ReadBarrier says when such a read is linearizable.
//
// Determinism contract: Apply must depend only on the state and the command
// (no clocks, randomness or map iteration order), so that every replica that
// applies the same log reaches the same state and returns the same results.
type StateMachine interface {
	// Apply applies the command chosen at index and returns its result.
	// index increases by at least one between calls (one log instance may
	// hold several commands; each gets its own index, see Replica.Propose).
	// The result is returned to the proposer if it is waiting on this
	// replica; cmd must not be retained after Apply returns.
	Apply(index uint64, cmd []byte) []byte
	// Snapshot writes the whole state to w. The state must be exactly what
	// Restore rebuilds.
	Snapshot(w io.Writer) error
	// Restore replaces the whole state with one Snapshot wrote.
	Restore(r io.Reader) error
}
