package namespace

import "strings"

// ACLDir is the directory of ACL files (Chubby §2.3): an ACL name N on a
// node stands for the principals listed in the content of ACLDir/N.
const ACLDir = "/acl"

// Everyone, as a line of an ACL file, admits every principal, the
// anonymous one ("", a connection without a client certificate) included.
const Everyone = "*"

// Right is what a caller wants to do to a node; each right is governed by
// one of the node's three ACL names.
type Right uint8

// Rights.
const (
	// RightRead: read the content, stat, ACL names and children (reader ACL).
	RightRead Right = iota + 1
	// RightWrite: write the content, create children, delete the node, and
	// acquire its lock in either mode (writer ACL).
	RightWrite
	// RightChange: replace the ACL names (changer ACL).
	RightChange
)

// String returns "read", "write" or "change".
func (r Right) String() string {
	switch r {
	case RightRead:
		return "read"
	case RightWrite:
		return "write"
	case RightChange:
		return "change-ACL"
	}
	return "right(?)"
}

// Caller is who asks: the principal its connection authenticated as (""
// when anonymous) and whether the server counts that principal as a
// superuser. A read is checked for the caller its server names; a write
// for its session's, as the session was opened (Command.Principal,
// FlagRestricted).
type Caller struct {
	Principal string
	Superuser bool
}

// aclName returns the node's ACL name for r ("" when the node has none).
func (n *node) aclName(r Right) string {
	if n.acl == nil {
		return ""
	}
	switch r {
	case RightRead:
		return n.acl.Reader
	case RightWrite:
		return n.acl.Writer
	}
	return n.acl.Changer
}

// reader returns the node's reader ACL name (Event.Reader).
func (n *node) reader() string { return n.aclName(RightRead) }

// permits reports whether c may exercise r on n (Admits for n's ACL name
// for r).
func (t *Tree) permits(n *node, r Right, c Caller) bool {
	return t.Admits(n.aclName(r), c)
}

// Admits reports whether the ACL name admits c, as the ACL files stand:
// always for a superuser or the empty name; otherwise when the file
// ACLDir/name lists c's principal or Everyone. A missing ACL file admits
// nobody but superusers (and the leader or an operator, session 0, who are
// never checked). Servers call it to decide who sees an event
// (Event.Reader).
func (t *Tree) Admits(name string, c Caller) bool {
	if name == "" || c.Superuser {
		return true
	}
	f := t.lookup(ACLDir + "/" + name)
	return f != nil && listsPrincipal(f.content, c.Principal)
}

// listsPrincipal reports whether an ACL file's content names p or
// Everyone: one principal per line, surrounding spaces ignored, blank lines
// and lines starting with '#' skipped.
func listsPrincipal(content, p string) bool {
	for content != "" {
		var line string
		line, content, _ = strings.Cut(content, "\n")
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line == Everyone || line == p {
			return true
		}
	}
	return false
}

// access says how a session's writes are checked.
type access uint8

const (
	// accessUnchecked: opened before ACLs were enforced (neither
	// FlagRestricted nor FlagSuperuser); never checked, as then.
	accessUnchecked access = iota
	// accessRestricted: checked as its principal (FlagRestricted).
	accessRestricted
	// accessSuperuser: a superuser's (FlagSuperuser); never checked, and
	// may set the root's ACL names.
	accessSuperuser
	accessEnd
)

// commandCaller is who a command acts for: its session's principal,
// unrestricted unless the session is restricted; for a command without a
// session, the leader or an operator (never restricted) unless the server
// marked it FlagRestricted, acting for Command.Principal.
func commandCaller(cmd *Command, s *session) Caller {
	switch {
	case s != nil:
		return Caller{Principal: s.principal, Superuser: s.access != accessRestricted}
	case cmd.Flags&FlagRestricted != 0:
		return Caller{Principal: cmd.Principal}
	}
	return Caller{Superuser: true}
}

// operator reports whether cmd comes from the leader or an operator:
// no session, and not restricted.
func operator(cmd *Command, s *session) bool {
	return s == nil && cmd.Flags&FlagRestricted == 0
}

// mayChangeRoot reports whether cmd may set the root's ACL names: only
// the leader, an operator or a superuser's session may.
func mayChangeRoot(cmd *Command, s *session) bool {
	return operator(cmd, s) || s != nil && s.access == accessSuperuser
}

// checkRight returns an ErrPermission error unless cmd may exercise r on n
// (at path p).
func (t *Tree) checkRight(p string, n *node, r Right, cmd *Command, s *session) *Error {
	return t.check(p, n, r, commandCaller(cmd, s))
}

// check returns an ErrPermission error unless c may exercise r on n (at
// path p).
func (t *Tree) check(p string, n *node, r Right, c Caller) *Error {
	if t.permits(n, r, c) {
		return nil
	}
	who := "the anonymous principal"
	if c.Principal != "" {
		who = "principal " + quote(c.Principal)
	}
	return errorf(CodePermission, "%s may not %s %s (ACL %s)", who, r, quote(p), quote(n.aclName(r)))
}

// Permits returns nil if c may exercise r on the node at p, an error
// wrapping ErrNotFound if there is none, and one wrapping ErrPermission if
// the node's ACL does not admit c. Servers call it before answering a read.
func (t *Tree) Permits(p string, r Right, c Caller) error {
	n := t.lookup(p)
	if n == nil {
		return errorf(CodeNotFound, "%s", quote(p))
	}
	if err := t.check(p, n, r, c); err != nil {
		return err
	}
	return nil
}
