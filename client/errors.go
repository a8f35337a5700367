package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/latchd/latch/internal/wire"
)

// Errors returned by the client. Every error a call returns wraps at most one
// of the cell's sentinels (ErrNotFound ... ErrUnavailable) and keeps the
// server's message, so test with errors.Is:
//
//	if errors.Is(err, client.ErrNotFound) { ... }
//
// Context errors are returned wrapped as they are, so errors.Is(err,
// context.Canceled) and errors.Is(err, context.DeadlineExceeded) work too.
var (
	// ErrNotFound: the node (or its parent, or a watch) does not exist.
	ErrNotFound = errors.New("client: not found")
	// ErrExists: the node already exists (Create).
	ErrExists = errors.New("client: already exists")
	// ErrNotEmpty: a non-recursive Delete of a node that has children.
	ErrNotEmpty = errors.New("client: node has children")
	// ErrBadPath: the path is malformed, too long or too deep.
	ErrBadPath = errors.New("client: bad path")
	// ErrTooLarge: the content or the request is over the cell's limit.
	ErrTooLarge = errors.New("client: too large")
	// ErrLimit: another limit was reached (children, ephemeral nodes,
	// sessions, watches, sequential names).
	ErrLimit = errors.New("client: limit reached")
	// ErrLocked: the lock is held in a conflicting mode, is in lock-delay,
	// or this client already holds or waits for it (TryLock).
	ErrLocked = errors.New("client: lock is held")
	// ErrNotHolder: Unlock of a lock this session no longer holds.
	ErrNotHolder = errors.New("client: not the lock holder")
	// ErrSessionExpired: the session ended (expired at the cell, or its
	// grace period ran out while the cell was unreachable). Every later
	// call fails the same way; Dial a new Client.
	ErrSessionExpired = errors.New("client: session expired")
	// ErrGenerationMismatch: an IfGeneration condition failed.
	ErrGenerationMismatch = errors.New("client: generation mismatch")
	// ErrPermission: the node's ACL or kind forbids the call.
	ErrPermission = errors.New("client: permission denied")
	// ErrUnavailable: the cell could not serve the call before the context
	// ended (no leader, no quorum, no replica reachable, or no answer yet).
	// The error also wraps the context's error. A Lock whose wait is
	// canceled returns the context's error alone.
	ErrUnavailable = errors.New("client: cell unavailable")

	// ErrBadRequest: the cell rejected the request as malformed or not
	// allowed in its state.
	ErrBadRequest = errors.New("client: bad request")
	// ErrInternal: the cell reported an internal error; the request may or
	// may not have been applied.
	ErrInternal = errors.New("client: internal server error")
	// ErrProtocol: a replica sent something this client cannot understand
	// (an unknown version, a malformed frame or an unexpected reply).
	ErrProtocol = errors.New("client: protocol error")
	// ErrTLS: TLS with a replica failed for want of trust: its
	// certificate is not signed by a CA of Config.TLS.RootCAs or not valid
	// for the endpoint's host, or it refused this client's certificate
	// (or its lack of one). Retrying cannot help, so a call fails with it
	// at once when every endpoint tried failed so.
	ErrTLS = errors.New("client: TLS failed")
	// ErrCanceled: the cell canceled the call.
	ErrCanceled = errors.New("client: canceled by the cell")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrInvalid: an argument or option is invalid for the call (checked
	// before anything is sent).
	ErrInvalid = errors.New("client: invalid argument")
	// ErrConfig: Config.Validate found a bad value.
	ErrConfig = errors.New("client: invalid config")
	// ErrBadSequencer: ParseSequencer was given a string that is not a
	// sequencer.
	ErrBadSequencer = errors.New("client: malformed sequencer")
	// ErrNoLeader: an election has no current leader.
	ErrNoLeader = errors.New("client: no leader elected")

	// ErrUnknownMember: a member change names an id that is not a member
	// of the cell (or was removed). Errors that wrap it wrap ErrNotFound
	// too.
	ErrUnknownMember = errors.New("client: unknown member")
	// ErrChangePending: a member change must wait: another voter change
	// is chosen and not yet in effect, or a voter is rebuilding lost
	// state. Retry once it took effect (MemberSet.Pending is nil).
	ErrChangePending = errors.New("client: member change pending")
	// ErrNotCaughtUp: PromoteMember of a learner that has not joined yet
	// (its replica never started with Join) or lags too far behind the
	// leader; retry once it caught up.
	ErrNotCaughtUp = errors.New("client: learner not caught up")
)

// codeErrors maps the wire codes that end a call to the client's sentinels.
// NotLeader and Unavailable are retried and never reach the caller as such.
var codeErrors = map[wire.Code]error{
	wire.NotFound:           ErrNotFound,
	wire.Exists:             ErrExists,
	wire.NotEmpty:           ErrNotEmpty,
	wire.BadPath:            ErrBadPath,
	wire.TooLarge:           ErrTooLarge,
	wire.Limit:              ErrLimit,
	wire.Locked:             ErrLocked,
	wire.NotHolder:          ErrNotHolder,
	wire.SessionExpired:     ErrSessionExpired,
	wire.GenerationMismatch: ErrGenerationMismatch,
	wire.Permission:         ErrPermission,
	wire.NotLeader:          ErrUnavailable,
	wire.Unavailable:        ErrUnavailable,
	wire.BadRequest:         ErrBadRequest,
	wire.Internal:           ErrInternal,
	wire.Canceled:           ErrCanceled,
	wire.ChangePending:      ErrChangePending,
	wire.NotCaughtUp:        ErrNotCaughtUp,
}

// mapError turns a wire error into the client's sentinel, keeping the
// server's message. A code this version does not know counts as Internal.
func mapError(op string, e *wire.Error) error {
	sentinel, ok := codeErrors[e.Code]
	if !ok {
		sentinel = ErrInternal
	}
	if e.Message == "" {
		return txnError(e, fmt.Errorf("%s: %w", op, sentinel))
	}
	return txnError(e, fmt.Errorf("%s: %w: %s", op, sentinel, e.Message))
}

// isContextErr reports whether err comes from a context ending.
func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
