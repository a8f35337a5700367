package namespace

import (
	"fmt"
	"slices"
	"strings"
)

// Read-only queries. They are not logged; they see the state after the last
// Apply. None of them changes the tree.

// Get returns the node at p with a copy of its content.
func (t *Tree) Get(p string) (Node, error) {
	n, _, err := t.find(p)
	if err != nil {
		return Node{}, err
	}
	return Node{Path: p, Content: []byte(n.content), ACL: n.aclValue(), Stat: n.stat()}, nil
}

// Check evaluates the txn condition o (made by TxnCheckExists,
// TxnCheckMissing or TxnCheckSequencer) against the tree as it stands, for
// caller c, as a txn would: nil if it holds, otherwise the error the txn
// would fail with (ErrNotFound, ErrGenerationMismatch, ErrPermission,
// ErrExists, ErrNotHolder, ErrBadPath, ErrInvalidCommand for a write). For
// an exists check it also returns the node's stat. A server answers a txn
// of conditions and reads with it, from one state, without a command.
func (t *Tree) Check(o TxnOp, c Caller) (Stat, error) {
	var r Result
	switch o.Op {
	case OpCheckExists:
		r = t.checkExists(&o, c)
	case OpCheckMissing:
		r = t.checkMissing(&o)
	case OpCheckSequencer:
		if o.Mode != ModeExclusive && o.Mode != ModeShared {
			return Stat{}, errorf(CodeInvalidCommand, "sequencer lock mode %s", o.Mode)
		}
		r = t.checkSequencer(&o)
	default:
		return Stat{}, errorf(CodeInvalidCommand, "%s is not a txn condition", o.Op)
	}
	if r.Err != nil {
		return Stat{}, r.Err
	}
	return r.Stat, nil
}

// Stat returns the stat of the node at p.
func (t *Tree) Stat(p string) (Stat, error) {
	n, _, err := t.find(p)
	if err != nil {
		return Stat{}, err
	}
	return n.stat(), nil
}

// List returns the children of p in byte order of their names, starting after
// the name after ("" for the first page), at most limit of them (limit <= 0:
// all), and whether more follow. It visits only p's children, never deeper
// descendants: O(len(p) + skipped + returned).
func (t *Tree) List(p, after string, limit int) ([]Entry, bool, error) {
	n, depth, err := t.find(p)
	if err != nil {
		return nil, false, err
	}
	if n.children == 0 {
		return nil, false, nil
	}
	size := int(n.children)
	if limit > 0 {
		size = min(size, limit)
	}
	out := make([]Entry, 0, size)
	more := false
	prefix := childPrefix(p, depth)
	t.nodes.WalkPrefix(prefix, func(k string, v any) bool {
		name := k[len(prefix):]
		if name <= after {
			return false
		}
		if limit > 0 && len(out) == limit {
			more = true
			return true
		}
		out = append(out, Entry{Name: name, Stat: v.(*node).stat()})
		return false
	})
	return out, more, nil
}

// Walk calls fn for p and every descendant in depth-first pre-order, children
// in byte order of their names, until fn returns false.
func (t *Tree) Walk(p string, fn func(path string, st Stat) bool) error {
	n, depth, err := t.find(p)
	if err != nil {
		return err
	}
	t.walk(p, depth, n, fn)
	return nil
}

func (t *Tree) walk(p string, depth int, n *node, fn func(string, Stat) bool) bool {
	if !fn(p, n.stat()) {
		return false
	}
	if n.children == 0 {
		return true
	}
	cont := true
	t.nodes.WalkPrefix(childPrefix(p, depth), func(k string, v any) bool {
		cont = t.walk(keyPath(k), depth+1, v.(*node), fn)
		return !cont
	})
	return cont
}

// CheckSequencer reports whether seq is still current: its node instance
// exists and its lock is held in seq.Mode at seq.LockGen.
func (t *Tree) CheckSequencer(seq Sequencer) bool {
	_, err := t.cfg.checkPath(seq.Path)
	if err != nil {
		return false
	}
	n := t.lookup(seq.Path)
	if n == nil || n.instance != seq.Instance || n.lockGen != seq.LockGen {
		return false
	}
	ls := t.locks[seq.Path]
	return ls != nil && len(ls.holders) > 0 && ls.mode == seq.Mode
}

// Lock returns the lock state of the node at p (Mode none and no holders when free).
func (t *Tree) Lock(p string) (LockInfo, error) {
	n, _, err := t.find(p)
	if err != nil {
		return LockInfo{}, err
	}
	info := LockInfo{Path: p, Instance: n.instance, LockGen: n.lockGen}
	if ls := t.locks[p]; ls != nil {
		info = t.lockInfo(ls)
	}
	return info, nil
}

// Locks returns every lock that is held, has waiters or is in lock-delay,
// sorted by path.
func (t *Tree) Locks() []LockInfo {
	paths := make([]string, 0, len(t.locks))
	for p := range t.locks {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	out := make([]LockInfo, len(paths))
	for i, p := range paths {
		out[i] = t.lockInfo(t.locks[p])
	}
	return out
}

func (t *Tree) lockInfo(ls *lockState) LockInfo {
	info := LockInfo{Path: ls.path, Instance: ls.node.instance, Mode: ls.mode, LockGen: ls.node.lockGen}
	for _, h := range ls.holders {
		info.Holders = append(info.Holders, h.session)
	}
	for _, w := range ls.waiters {
		info.Waiters = append(info.Waiters, Waiter{Session: w.session, Request: w.request, Mode: w.mode})
	}
	if ls.delayUntil > t.now {
		info.DelayUntil = ls.delayUntil
	}
	return info
}

// Session returns the session id, or an error wrapping ErrSessionUnknown or
// ErrSessionExpired.
func (t *Tree) Session(id uint64) (SessionInfo, error) {
	s := t.sessions[id]
	if s == nil {
		return SessionInfo{}, t.sessionError(id)
	}
	return s.info(), nil
}

// SessionPrincipal returns the principal live session id was opened with,
// without copying the rest of its state (servers check it on every call).
func (t *Tree) SessionPrincipal(id uint64) (string, error) {
	s := t.sessions[id]
	if s == nil {
		return "", t.sessionError(id)
	}
	return s.principal, nil
}

// Sessions returns every live session, sorted by id.
func (t *Tree) Sessions() []SessionInfo {
	ids := t.sessionIDs()
	out := make([]SessionInfo, len(ids))
	for i, id := range ids {
		out[i] = t.sessions[id].info()
	}
	return out
}

func (t *Tree) sessionIDs() []uint64 {
	ids := make([]uint64, 0, len(t.sessions))
	for id := range t.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// NextDeadline returns the earliest end of a pending lock-delay that has
// waiters queued. The leader proposes a tick (or any command) stamped at or
// after it so the waiters are granted. O(1).
func (t *Tree) NextDeadline() (int64, bool) {
	if len(t.blocked.items) == 0 {
		return 0, false
	}
	return t.blocked.items[0].delayUntil, true
}

// LockCounts returns how many locks have holders and how many acquires
// wait in their queues, cheaply (no list is built, unlike Locks).
func (t *Tree) LockCounts() (held, waiting int) {
	for _, ls := range t.locks {
		if len(ls.holders) > 0 {
			held++
		}
		waiting += len(ls.waiters)
	}
	return held, waiting
}

// AppliedIndex returns the largest log index applied.
func (t *Tree) AppliedIndex() uint64 { return t.index }

// Now returns the command time: the largest Command.Time applied.
func (t *Tree) Now() int64 { return t.now }

// Len returns the number of nodes, the root included.
func (t *Tree) Len() int { return t.nodes.Len() }

// Dump renders the subtree at p, one node per line in Walk order, indented by
// depth, with content and the main stat fields: for tests and debugging.
func (t *Tree) Dump(p string) (string, error) {
	var b strings.Builder
	base := pathDepth(p)
	err := t.Walk(p, func(path string, st Stat) bool {
		n := t.lookup(path)
		name := path
		if path != p {
			_, name = splitPath(path)
		}
		b.WriteString(strings.Repeat("  ", pathDepth(path)-base))
		b.WriteString(dumpLine(name, n, st))
		b.WriteByte('\n')
		return true
	})
	return b.String(), err
}

func dumpLine(name string, n *node, st Stat) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s inst=%d cgen=%d", name, st.Instance, st.ContentGen)
	if st.LockGen != 0 {
		fmt.Fprintf(&b, " lgen=%d", st.LockGen)
	}
	if st.ACLGen != 1 || n.acl != nil {
		a := n.aclValue()
		fmt.Fprintf(&b, " agen=%d acl=%s,%s,%s", st.ACLGen, a.Reader, a.Writer, a.Changer)
	}
	if st.EphemeralOwner != 0 {
		fmt.Fprintf(&b, " eph=%d", st.EphemeralOwner)
	}
	if st.Size > 0 {
		fmt.Fprintf(&b, " %q", n.content)
	}
	return b.String()
}
