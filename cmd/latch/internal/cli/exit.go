package cli

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
)

// Exit codes of latch. `lock` and `elect` with a command exit with the
// command's status instead when they ran it to its end.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other error (internal, protocol, I/O)
	ExitUsage       = 2   // bad command line: unknown command or flag, wrong arguments
	ExitNotFound    = 3   // the node does not exist
	ExitConflict    = 4   // exists, has children, or generation mismatch (--if-gen)
	ExitLocked      = 5   // lock held (or --timeout passed), lock or session lost
	ExitUnavailable = 6   // the cell could not be reached or had no leader in time
	ExitRejected    = 7   // the cell refused the request: bad path, too large, limit, permission
	ExitRetry       = 8   // a member change must wait: another voter change pending, learner not caught up
	ExitCannotRun   = 126 // the command given to lock/elect could not be started
	ExitNoCommand   = 127 // the command given to lock/elect was not found
)

// ErrUsage is wrapped by command-line errors.
var ErrUsage = errors.New("usage")

// ErrLost: the lock or leadership was lost while the command ran, or the
// session ended.
var ErrLost = errors.New("lost")

func usageErr(err error) error { return fmt.Errorf("%w: %w", ErrUsage, err) }

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// exitError carries an exit code chosen by a command; with a nil err, Main
// exits with code silently (the status of a command run under a lock).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// ExitCode maps an error to latch's exit code.
func ExitCode(err error) int {
	var x *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &x):
		return x.code
	case errors.Is(err, ErrUsage), strings.HasPrefix(err.Error(), "unknown command"):
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted // SIGINT or SIGTERM cut a call short
	case errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrNoLeader):
		return ExitNotFound
	case errors.Is(err, client.ErrExists), errors.Is(err, client.ErrNotEmpty), errors.Is(err, client.ErrGenerationMismatch):
		return ExitConflict
	case errors.Is(err, client.ErrLocked), errors.Is(err, client.ErrNotHolder), errors.Is(err, client.ErrSessionExpired), errors.Is(err, ErrLost):
		return ExitLocked
	case errors.Is(err, client.ErrChangePending), errors.Is(err, client.ErrNotCaughtUp):
		return ExitRetry
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return ExitUnavailable
	case errors.Is(err, client.ErrBadPath), errors.Is(err, client.ErrTooLarge), errors.Is(err, client.ErrLimit),
		errors.Is(err, client.ErrPermission), errors.Is(err, client.ErrBadRequest), errors.Is(err, client.ErrInvalid):
		return ExitRejected
	case errors.Is(err, exec.ErrNotFound):
		return ExitNoCommand
	}
	return ExitError
}

// Argument checks that report usage errors.

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: want %s", cmd.Name(), what)
		}
		return nil
	}
}

func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s: want %s", cmd.Name(), what)
		}
		return nil
	}
}
