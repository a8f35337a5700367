package namespace

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error that Apply or a query returns wraps exactly one
// of them, so callers test with errors.Is. Some refine a broader one (for
// example ErrPathTooLong wraps ErrBadPath), so a caller may test either.
var (
	// ErrNotFound: the node (or its parent) does not exist.
	ErrNotFound = errors.New("namespace: node not found")
	// ErrExists: a node already exists at the path.
	ErrExists = errors.New("namespace: node exists")
	// ErrNotEmpty: a non-recursive delete of a node that has children.
	ErrNotEmpty = errors.New("namespace: node has children")
	// ErrBadPath: the path is malformed (see ValidatePath).
	ErrBadPath = errors.New("namespace: bad path")
	// ErrPathTooLong: the path exceeds Config.MaxPathLen bytes.
	ErrPathTooLong = fmt.Errorf("%w: path too long", ErrBadPath)
	// ErrNameTooLong: a name exceeds Config.MaxNameLen bytes.
	ErrNameTooLong = fmt.Errorf("%w: name too long", ErrBadPath)
	// ErrTooDeep: the path has more than Config.MaxDepth names.
	ErrTooDeep = fmt.Errorf("%w: path too deep", ErrBadPath)
	// ErrTooLarge: the content exceeds Config.MaxContent bytes.
	ErrTooLarge = errors.New("namespace: content too large")
	// ErrLimit: a count limit was reached.
	ErrLimit = errors.New("namespace: limit reached")
	// ErrTooManyChildren: the parent already has Config.MaxChildren children.
	ErrTooManyChildren = fmt.Errorf("%w: too many children", ErrLimit)
	// ErrTooManyEphemerals: the session already owns Config.MaxEphemerals ephemeral nodes.
	ErrTooManyEphemerals = fmt.Errorf("%w: too many ephemeral nodes for the session", ErrLimit)
	// ErrSequenceExhausted: the parent's sequential-name counter is used up.
	ErrSequenceExhausted = fmt.Errorf("%w: sequential names exhausted", ErrLimit)
	// ErrLocked: the lock is held in a conflicting mode (or in lock-delay), or
	// the session holds it in the other mode.
	ErrLocked = errors.New("namespace: lock is held")
	// ErrNotHolder: release by a session that does not hold the lock.
	ErrNotHolder = errors.New("namespace: session does not hold the lock")
	// ErrNotWaiting: cancel by a session that is not queued for the lock.
	ErrNotWaiting = errors.New("namespace: session is not waiting for the lock")
	// ErrCanceled: a queued acquire was canceled before it was granted.
	ErrCanceled = errors.New("namespace: lock request canceled")
	// ErrSessionUnknown: the session id was never issued.
	ErrSessionUnknown = errors.New("namespace: unknown session")
	// ErrSessionExpired: the session existed but has been closed or expired.
	ErrSessionExpired = errors.New("namespace: session expired or closed")
	// ErrGenerationMismatch: a conditional command's generation did not match.
	ErrGenerationMismatch = errors.New("namespace: generation mismatch")
	// ErrPermission: the command may not modify this node (see docs/namespace.md).
	ErrPermission = errors.New("namespace: permission denied")
	// ErrInvalidCommand: the command is malformed (unknown op or version, bad
	// mode, missing session, negative timeout, ...).
	ErrInvalidCommand = errors.New("namespace: invalid command")
	// ErrUnknownVersion: a command or snapshot of a format version this code does not know.
	ErrUnknownVersion = fmt.Errorf("%w: unknown format version", ErrInvalidCommand)
	// ErrUnknownOp: a command with an op this code does not know.
	ErrUnknownOp = fmt.Errorf("%w: unknown op", ErrInvalidCommand)
	// ErrBadSnapshot: Restore read a snapshot that is malformed or inconsistent.
	ErrBadSnapshot = errors.New("namespace: bad snapshot")
	// ErrBadConfig: Config.Validate found a bad value.
	ErrBadConfig = errors.New("namespace: bad config")
)

// Code is the compact, stable number of an error, for the wire and for the
// idempotence table. The values are part of the log and snapshot formats:
// never renumber them.
type Code uint16

// Error codes. CodeOK means no error.
const (
	CodeOK Code = iota
	CodeNotFound
	CodeExists
	CodeNotEmpty
	CodeBadPath
	CodePathTooLong
	CodeNameTooLong
	CodeTooDeep
	CodeTooLarge
	CodeLimit
	CodeTooManyChildren
	CodeTooManyEphemerals
	CodeSequenceExhausted
	CodeLocked
	CodeNotHolder
	CodeNotWaiting
	CodeCanceled
	CodeSessionUnknown
	CodeSessionExpired
	CodeGenerationMismatch
	CodePermission
	CodeInvalidCommand
	CodeUnknownVersion
	CodeUnknownOp
	codeEnd
)

var codeSentinels = [codeEnd]error{
	CodeNotFound:           ErrNotFound,
	CodeExists:             ErrExists,
	CodeNotEmpty:           ErrNotEmpty,
	CodeBadPath:            ErrBadPath,
	CodePathTooLong:        ErrPathTooLong,
	CodeNameTooLong:        ErrNameTooLong,
	CodeTooDeep:            ErrTooDeep,
	CodeTooLarge:           ErrTooLarge,
	CodeLimit:              ErrLimit,
	CodeTooManyChildren:    ErrTooManyChildren,
	CodeTooManyEphemerals:  ErrTooManyEphemerals,
	CodeSequenceExhausted:  ErrSequenceExhausted,
	CodeLocked:             ErrLocked,
	CodeNotHolder:          ErrNotHolder,
	CodeNotWaiting:         ErrNotWaiting,
	CodeCanceled:           ErrCanceled,
	CodeSessionUnknown:     ErrSessionUnknown,
	CodeSessionExpired:     ErrSessionExpired,
	CodeGenerationMismatch: ErrGenerationMismatch,
	CodePermission:         ErrPermission,
	CodeInvalidCommand:     ErrInvalidCommand,
	CodeUnknownVersion:     ErrUnknownVersion,
	CodeUnknownOp:          ErrUnknownOp,
}

var codeNames = [codeEnd]string{
	CodeOK:                 "ok",
	CodeNotFound:           "not-found",
	CodeExists:             "exists",
	CodeNotEmpty:           "not-empty",
	CodeBadPath:            "bad-path",
	CodePathTooLong:        "path-too-long",
	CodeNameTooLong:        "name-too-long",
	CodeTooDeep:            "too-deep",
	CodeTooLarge:           "too-large",
	CodeLimit:              "limit",
	CodeTooManyChildren:    "too-many-children",
	CodeTooManyEphemerals:  "too-many-ephemerals",
	CodeSequenceExhausted:  "sequence-exhausted",
	CodeLocked:             "locked",
	CodeNotHolder:          "not-holder",
	CodeNotWaiting:         "not-waiting",
	CodeCanceled:           "canceled",
	CodeSessionUnknown:     "session-unknown",
	CodeSessionExpired:     "session-expired",
	CodeGenerationMismatch: "generation-mismatch",
	CodePermission:         "permission",
	CodeInvalidCommand:     "invalid-command",
	CodeUnknownVersion:     "unknown-version",
	CodeUnknownOp:          "unknown-op",
}

// String returns the code's short name, such as "not-found".
func (c Code) String() string {
	if c < codeEnd {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// Valid reports whether c is a code this package knows.
func (c Code) Valid() bool { return c < codeEnd }

// Err returns the sentinel error of the code (nil for CodeOK or an unknown code).
func (c Code) Err() error {
	if c < codeEnd {
		return codeSentinels[c]
	}
	return nil
}

// CodeOf returns the code of err: CodeOK for nil, the code of the most specific
// sentinel err wraps, or CodeInvalidCommand for an error of another package.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	// Most specific first: refined sentinels have higher codes than their parents.
	for c := codeEnd - 1; c > CodeOK; c-- {
		if errors.Is(err, codeSentinels[c]) {
			return c
		}
	}
	return CodeInvalidCommand
}

// Error is the error value every command result carries: a code and the full
// message. It unwraps to the code's sentinel, so errors.Is(err, ErrNotFound)
// works, and it survives the idempotence table and snapshots unchanged.
type Error struct {
	Code Code
	Msg  string
}

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the code's sentinel error.
func (e *Error) Unwrap() error { return e.Code.Err() }

// Detail returns the message without the text of the code's root sentinel
// it begins with: what the root code does not already say ("path too long:
// ..." for "namespace: bad path: path too long: ..."). It is "" when the
// message is the root sentinel's alone.
func (e *Error) Detail() string {
	root := e.Code.Err()
	for u := errors.Unwrap(root); u != nil; u = errors.Unwrap(u) {
		root = u
	}
	rest, ok := strings.CutPrefix(e.Msg, root.Error())
	switch {
	case !ok:
		return e.Msg
	case rest == "":
		return ""
	}
	if d, ok := strings.CutPrefix(rest, ": "); ok {
		return d
	}
	return e.Msg
}

// errorf returns an *Error with code c and the message "<sentinel>: <detail>".
func errorf(c Code, format string, args ...any) *Error {
	msg := codeSentinels[c].Error()
	if format != "" {
		msg += ": " + fmt.Sprintf(format, args...)
	}
	return &Error{Code: c, Msg: msg}
}
