package wire

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code is the outcome of a request. The numeric values are part of the
// protocol and never change; new codes are only ever added.
type Code uint16

// The codes of the protocol, with their fixed numeric values.
const (
	OK                 Code = 0  // success
	NotFound           Code = 1  // the node, lock, watch or member does not exist
	Exists             Code = 2  // the node already exists
	NotEmpty           Code = 3  // the node has children
	BadPath            Code = 4  // the path is malformed or too long or too deep
	TooLarge           Code = 5  // content or frame over its limit
	Limit              Code = 6  // some other limit was reached (children, sessions, watches)
	Locked             Code = 7  // the lock is held in a conflicting mode (try-once Acquire)
	NotHolder          Code = 8  // Release or a lock-scoped call by a session that does not hold the lock
	SessionExpired     Code = 9  // the session is unknown, closed or expired
	GenerationMismatch Code = 10 // an if-generation condition failed
	Permission         Code = 11 // the ACL forbids the call
	NotLeader          Code = 12 // the call needs the leader; Error.Leader says where it is
	Unavailable        Code = 13 // the cell cannot serve now (no quorum, no leader yet); retry
	BadRequest         Code = 14 // the request is malformed or not allowed in this state
	Internal           Code = 15 // a server bug; the request may or may not have been applied
	Canceled           Code = 16 // the call was withdrawn by a Cancel message (shutdown answers Unavailable)
	ChangePending      Code = 17 // a member change: another voter change is still pending, or a voter is rebuilding
	NotCaughtUp        Code = 18 // a member change: the learner has not joined (bound) or caught up yet
)

var codeNames = [...]string{
	OK:                 "OK",
	NotFound:           "NotFound",
	Exists:             "Exists",
	NotEmpty:           "NotEmpty",
	BadPath:            "BadPath",
	TooLarge:           "TooLarge",
	Limit:              "Limit",
	Locked:             "Locked",
	NotHolder:          "NotHolder",
	SessionExpired:     "SessionExpired",
	GenerationMismatch: "GenerationMismatch",
	Permission:         "Permission",
	NotLeader:          "NotLeader",
	Unavailable:        "Unavailable",
	BadRequest:         "BadRequest",
	Internal:           "Internal",
	Canceled:           "Canceled",
	ChangePending:      "ChangePending",
	NotCaughtUp:        "NotCaughtUp",
}

// String returns the code's name, or "Code(n)" for a code this version does
// not know (a newer server may send one; treat it like Internal).
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Known reports whether c is one of the codes this version defines.
func (c Code) Known() bool { return int(c) < len(codeNames) }

// Retryable reports whether a client may resend the same request (same session
// and request id) after this code: the server is busy or not the leader.
func (c Code) Retryable() bool { return c == NotLeader || c == Unavailable }

// Error is the reply to a request that failed. It is also a Go error, so a
// [Conn] returns it from Call as is; use errors.As to get the code.
type Error struct {
	Code    Code   `msgpack:"code"`
	Message string `msgpack:"msg,omitempty"`
	// Leader is the leader's client address when Code is NotLeader or
	// Unavailable and the replica knows it; empty otherwise. An Unavailable
	// that names the answering replica itself (a leader taking over, or
	// one whose log did not answer in time) means "retry here"; one that
	// names nobody means "try another replica".
	Leader string `msgpack:"leader,omitempty"`
	// Op is, for a Txn that did not apply, the position (from 1) of the
	// op that failed; 0 otherwise.
	Op uint32 `msgpack:"op,omitempty"`
}

// Type implements Message.
func (*Error) Type() Type { return TypeError }

// Error formats the code and message, for example
// "latch: NotLeader: not the leader (leader at 127.0.0.1:7001)".
func (e *Error) Error() string {
	s := "latch: " + e.Code.String()
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Leader != "" {
		s += " (leader at " + e.Leader + ")"
	}
	return s
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: OK for nil, the code of an *Error found with
// errors.As, Canceled for context cancellation, and Internal otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if isContextErr(err) {
		return Canceled
	}
	return Internal
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
