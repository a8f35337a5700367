package replica

import (
	"errors"
	"fmt"
)

// Errors returned by this package. They are wrapped with details; test for
// them with errors.Is.
var (
	// ErrConfig wraps every Config.Validate failure.
	ErrConfig = errors.New("replica: invalid config")
	// ErrClosed is returned by calls on a closed (or failed) Replica.
	ErrClosed = errors.New("replica: closed")
	// ErrNotStarted is returned by calls made before Start.
	ErrNotStarted = errors.New("replica: not started")
	// ErrUnknownGroup names a group this replica does not host.
	ErrUnknownGroup = errors.New("replica: unknown group")
	// ErrTooLarge is returned for a command that does not fit in one
	// batch (Config.MaxBatchBytes).
	ErrTooLarge = errors.New("replica: command too large")
	// ErrLeadershipLost is returned to a proposer whose command was handed
	// to the protocol but whose replica stopped leading before it was
	// applied. The command may still be chosen (and applied everywhere)
	// later under the new leader; retry only if the command is idempotent
	// or deduplicated by the state machine.
	ErrLeadershipLost = errors.New("replica: leadership lost; the command may still be chosen")
	// ErrFatal reports that the replica stopped itself after a storage
	// failure (an fsync or write error) or a state machine failure. Restart
	// the process; it recovers from its data dir.
	ErrFatal = errors.New("replica: stopped after a fatal error")
)

// NotLeaderError is returned by Propose and ReadBarrier on a replica that is
// not the group's leader. The command was not proposed. Leader and Addr name
// the leader when this replica knows it (Leader 0 otherwise), so the caller
// can retry there.
type NotLeaderError struct {
	Group  uint32
	Leader uint64
	Addr   string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("replica: not the leader of group %d (leader unknown)", e.Group)
	}
	return fmt.Sprintf("replica: not the leader of group %d (leader is %d at %s)", e.Group, e.Leader, e.Addr)
}
