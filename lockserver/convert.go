package lockserver

import (
	"errors"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/session"
)

// nsError maps a namespace error to the wire. Where the wire code says
// what the namespace error's root code does, the message carries only the
// rest (namespace.Error.Detail): the client names the code with its own
// sentinel, so a user reads `not found: "/x"`, not `not found: namespace:
// node not found: "/x"`.
func nsError(err error) *wire.Error {
	if err == nil {
		return nil
	}
	var code wire.Code
	same := true // the wire code says what the namespace root code says
	switch namespace.CodeOf(err) {
	case namespace.CodeNotFound:
		code = wire.NotFound
	case namespace.CodeExists:
		code = wire.Exists
	case namespace.CodeNotEmpty:
		code = wire.NotEmpty
	case namespace.CodeBadPath, namespace.CodePathTooLong, namespace.CodeNameTooLong, namespace.CodeTooDeep:
		code = wire.BadPath
	case namespace.CodeTooLarge:
		code = wire.TooLarge
	case namespace.CodeLimit, namespace.CodeTooManyChildren, namespace.CodeTooManyEphemerals, namespace.CodeSequenceExhausted:
		code = wire.Limit
	case namespace.CodeLocked:
		code = wire.Locked
	case namespace.CodeNotHolder:
		code = wire.NotHolder
	case namespace.CodeNotWaiting:
		code, same = wire.NotHolder, false
	case namespace.CodeCanceled:
		code, same = wire.Canceled, false
	case namespace.CodeSessionExpired:
		code = wire.SessionExpired
	case namespace.CodeSessionUnknown:
		code, same = wire.SessionExpired, false
	case namespace.CodeGenerationMismatch:
		code = wire.GenerationMismatch
	case namespace.CodePermission:
		code = wire.Permission
	default:
		code, same = wire.BadRequest, false
	}
	msg := err.Error()
	if ne, ok := err.(*namespace.Error); ok && same {
		msg = ne.Detail()
	}
	return &wire.Error{Code: code, Message: msg}
}

// sessionError maps a session manager error to the wire.
func sessionError(err error) *wire.Error {
	switch {
	case errors.Is(err, session.ErrUnknown), errors.Is(err, session.ErrExpired):
		return wire.Errorf(wire.SessionExpired, "%v", err)
	case errors.Is(err, session.ErrBadPath):
		return wire.Errorf(wire.BadPath, "%v", err)
	case errors.Is(err, session.ErrNoWatch):
		return wire.Errorf(wire.NotFound, "%v", err)
	case errors.Is(err, session.ErrLimit):
		return wire.Errorf(wire.Limit, "%v", err)
	case errors.Is(err, session.ErrSuperseded):
		return wire.Errorf(wire.Canceled, "%v", err)
	case errors.Is(err, session.ErrClosed):
		return wire.Errorf(wire.Unavailable, "leadership changed; retry")
	}
	return wire.Errorf(wire.Internal, "%v", err)
}

func wireStat(st namespace.Stat) wire.Stat {
	return wire.Stat{
		Instance:       st.Instance,
		ContentGen:     st.ContentGen,
		LockGen:        st.LockGen,
		ACLGen:         st.ACLGen,
		Checksum:       st.Checksum,
		Size:           uint64(st.Size),
		CreatedIndex:   st.CreatedIndex,
		ModifiedIndex:  st.ModifiedIndex,
		CreatedTime:    st.CreatedTime,
		ModifiedTime:   st.ModifiedTime,
		EphemeralOwner: st.EphemeralOwner,
		Children:       uint32(st.Children),
	}
}

func wireMode(m namespace.Mode) wire.LockMode {
	switch m {
	case namespace.ModeExclusive:
		return wire.Exclusive
	case namespace.ModeShared:
		return wire.Shared
	}
	return 0
}

func nsMode(m wire.LockMode) namespace.Mode {
	switch m {
	case wire.Exclusive:
		return namespace.ModeExclusive
	case wire.Shared:
		return namespace.ModeShared
	}
	return namespace.ModeNone
}

func wireSequencer(s namespace.Sequencer) wire.Sequencer {
	return wire.Sequencer{Path: s.Path, Mode: wireMode(s.Mode), LockGen: s.LockGen, Instance: s.Instance}
}

func nsSequencer(s wire.Sequencer) namespace.Sequencer {
	return namespace.Sequencer{Path: s.Path, Mode: nsMode(s.Mode), LockGen: s.LockGen, Instance: s.Instance}
}

// nsACL maps a wire ACL to the namespace's three ACL names: each list names
// at most one ACL (the name of the ACL file, as in Chubby).
func nsACL(a wire.ACL) (namespace.ACL, *wire.Error) {
	one := func(what string, l []string) (string, *wire.Error) {
		switch len(l) {
		case 0:
			return "", nil
		case 1:
			return l[0], nil
		}
		return "", wire.Errorf(wire.BadRequest, "%s ACL lists %d names; a node names at most one ACL per right", what, len(l))
	}
	var out namespace.ACL
	var err *wire.Error
	if out.Reader, err = one("read", a.Read); err != nil {
		return out, err
	}
	if out.Writer, err = one("write", a.Write); err != nil {
		return out, err
	}
	out.Changer, err = one("admin", a.Admin)
	return out, err
}

func wireACL(a namespace.ACL) wire.ACL {
	list := func(s string) []string {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	return wire.ACL{Read: list(a.Reader), Write: list(a.Writer), Admin: list(a.Changer)}
}

// walkLess orders full paths as Walk visits them: depth-first pre-order with
// children by name, which is byte order with '/' sorting before every other
// byte (names never contain '/' or NUL).
func walkLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			ca = 0
		}
		if cb == '/' {
			cb = 0
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// under reports whether p is root or below it.
func under(p, root string) bool {
	if root == "/" || p == root {
		return true
	}
	return len(p) > len(root) && p[:len(root)] == root && p[len(root)] == '/'
}
