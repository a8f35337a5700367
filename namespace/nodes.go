package namespace

import (
	"fmt"
	"math"
	"slices"
)

// seqDigits is the width of a sequential suffix: a zero-padded uint32.
const seqDigits = 10

var seqPlaceholder = fmt.Sprintf("%0*d", seqDigits, 0)

// mayModify reports whether cmd, from session s, may change or delete n:
// only the owner, the leader or an operator may touch an ephemeral node.
func mayModify(n *node, cmd *Command, s *session) bool {
	return n.owner == 0 || operator(cmd, s) || s != nil && n.owner == s.id
}

func ownerError(p string, n *node) *Error {
	return errorf(CodePermission, "%s is an ephemeral node of session %d", quote(p), n.owner)
}

// checkModify returns an ErrPermission error unless cmd may exercise r on
// n (at p) and, if n is ephemeral, comes from its owner, the leader or an
// operator (mayModify). The ACL comes first, so that a refusal tells a
// caller it does not admit nothing of the node: not whether it is
// ephemeral, nor whose.
func (t *Tree) checkModify(p string, n *node, r Right, cmd *Command, s *session) *Error {
	if err := t.checkRight(p, n, r, cmd, s); err != nil {
		return err
	}
	if !mayModify(n, cmd, s) {
		return ownerError(p, n)
	}
	return nil
}

func (t *Tree) checkACL(a ACL) *Error {
	if err := t.cfg.checkName("reader ACL", a.Reader); err != nil {
		return err
	}
	if err := t.cfg.checkName("writer ACL", a.Writer); err != nil {
		return err
	}
	return t.cfg.checkName("changer ACL", a.Changer)
}

// create applies OpCreate. Checks, in order: session for ephemerals, path,
// content size, ACL names, parent (or nearest ancestor with FlagParents),
// write right on that ancestor, ephemeral ancestor, sequence counter,
// existence, children limit, ephemeral limit. Nothing changes unless all
// pass.
func (t *Tree) create(cmd *Command, s *session) Result {
	eph := cmd.Flags&FlagEphemeral != 0
	seq := cmd.Flags&FlagSequential != 0
	if eph && s == nil {
		return fail(errorf(CodeInvalidCommand, "an ephemeral node needs a session"))
	}
	p := cmd.Path
	if seq {
		p += seqPlaceholder // the checks see the final length
	}
	depth, err := t.cfg.checkPath(p)
	if err != nil {
		return fail(err)
	}
	if depth == 0 {
		return fail(errorf(CodeExists, "%s", quote(p)))
	}
	if len(cmd.Content) > t.cfg.MaxContent {
		return fail(errorf(CodeTooLarge, "%d bytes > %d", len(cmd.Content), t.cfg.MaxContent))
	}
	if err := t.checkACL(cmd.ACL); err != nil {
		return fail(err)
	}
	parentPath, name := splitPath(p)
	parent := t.lookup(parentPath)
	anc, ancPath := parent, parentPath // the existing node that gains a child
	var missing []string               // parents to create, top-down
	if parent == nil {
		if cmd.Flags&FlagParents == 0 {
			return fail(errorf(CodeNotFound, "parent of %s", quote(p)))
		}
		for d := depth - 1; anc == nil; d-- {
			missing = append(missing, ancPath)
			ancPath, _ = splitPath(ancPath)
			anc = t.lookup(ancPath)
		}
		slices.Reverse(missing)
	}
	if err := t.checkRight(ancPath, anc, RightWrite, cmd, s); err != nil {
		return fail(err)
	}
	if anc.owner != 0 {
		return fail(errorf(CodePermission, "%s is ephemeral and cannot have children", quote(ancPath)))
	}
	if seq {
		var next uint32
		if parent != nil {
			if parent.seq == math.MaxUint32 {
				return fail(errorf(CodeSequenceExhausted, "under %s", quote(parentPath)))
			}
			next = parent.seq
		}
		name = fmt.Sprintf("%s%0*d", name[:len(name)-seqDigits], seqDigits, next)
		p = joinPath(parentPath, name)
	}
	if parent != nil && t.lookup(p) != nil {
		return fail(errorf(CodeExists, "%s", quote(p)))
	}
	if int(anc.children) >= t.cfg.MaxChildren {
		return fail(errorf(CodeTooManyChildren, "%s has %d children", quote(ancPath), anc.children))
	}
	if eph && len(s.ephemerals) >= t.cfg.MaxEphemerals {
		return fail(errorf(CodeTooManyEphemerals, "session %d owns %d", s.id, len(s.ephemerals)))
	}

	up, upPath := anc, ancPath
	firstDepth := depth - len(missing)
	for i, mp := range missing {
		up, _ = t.addNode(mp, firstDepth+i, up, upPath, "", up.acl, 0)
		upPath = mp
	}
	acl := up.acl
	if !cmd.ACL.IsZero() {
		a := cmd.ACL
		acl = &a
	}
	var owner uint64
	if eph {
		owner = s.id
	}
	if seq {
		t.saveNode(up)
		up.seq++
	}
	n, stored := t.addNode(p, depth, up, upPath, string(cmd.Content), acl, owner)
	if eph {
		t.saveEphemerals(s)
		s.ephemerals = insertSorted(s.ephemerals, stored)
	}
	return Result{Path: stored, Stat: n.stat()}
}

// addNode inserts a new node under parent and returns it and its path as
// stored in the tree key.
func (t *Tree) addNode(p string, depth int, parent *node, parentPath, content string, acl *ACL, owner uint64) (*node, string) {
	n := &node{
		content:    content,
		acl:        acl,
		instance:   t.nextInstance,
		contentGen: 1,
		aclGen:     1,
		checksum:   checksum(content),
		cIndex:     t.index,
		mIndex:     t.index,
		cTime:      t.now,
		mTime:      t.now,
		owner:      owner,
	}
	t.nextInstance++
	stored := t.insertNode(p, depth, n)
	t.saveNode(parent)
	parent.children++
	_, name := splitPath(stored)
	t.emit(Event{Kind: EventNodeCreated, Path: stored, Instance: n.instance, Reader: n.reader()})
	t.emit(Event{Kind: EventChildAdded, Path: parentPath, Instance: parent.instance, Name: name, Reader: parent.reader()})
	return n, stored
}

// setContent applies OpSetContent. Checks: path, size, existence, root,
// write right, owner, generation.
func (t *Tree) setContent(cmd *Command, s *session) Result {
	depth, err := t.cfg.checkPath(cmd.Path)
	if err != nil {
		return fail(err)
	}
	if len(cmd.Content) > t.cfg.MaxContent {
		return fail(errorf(CodeTooLarge, "%d bytes > %d", len(cmd.Content), t.cfg.MaxContent))
	}
	n := t.lookup(cmd.Path)
	switch {
	case n == nil:
		return fail(errorf(CodeNotFound, "%s", quote(cmd.Path)))
	case depth == 0:
		return fail(errorf(CodePermission, "the root has no content"))
	}
	if err := t.checkModify(cmd.Path, n, RightWrite, cmd, s); err != nil {
		return fail(err)
	}
	if cmd.Generation != 0 && cmd.Generation != n.contentGen {
		return fail(errorf(CodeGenerationMismatch, "content generation of %s is %d, not %d", quote(cmd.Path), n.contentGen, cmd.Generation))
	}
	t.saveNode(n)
	n.content = string(cmd.Content)
	n.checksum = checksum(n.content)
	n.contentGen++
	n.mIndex, n.mTime = t.index, t.now
	t.emit(Event{Kind: EventContentChanged, Path: cmd.Path, Instance: n.instance, Reader: n.reader()})
	return Result{Stat: n.stat()}
}

// setACL applies OpSetACL. Checks: path, ACL names, existence, root (the
// leader, an operator or an unrestricted session only), change right,
// owner, ACL generation.
func (t *Tree) setACL(cmd *Command, s *session) Result {
	depth, err := t.cfg.checkPath(cmd.Path)
	if err != nil {
		return fail(err)
	}
	if err := t.checkACL(cmd.ACL); err != nil {
		return fail(err)
	}
	n := t.lookup(cmd.Path)
	switch {
	case n == nil:
		return fail(errorf(CodeNotFound, "%s", quote(cmd.Path)))
	case depth == 0 && !mayChangeRoot(cmd, s):
		return fail(errorf(CodePermission, "only the leader, an operator or a superuser sets the root's ACL"))
	}
	if err := t.checkModify(cmd.Path, n, RightChange, cmd, s); err != nil {
		return fail(err)
	}
	if cmd.Generation != 0 && cmd.Generation != n.aclGen {
		return fail(errorf(CodeGenerationMismatch, "ACL generation of %s is %d, not %d", quote(cmd.Path), n.aclGen, cmd.Generation))
	}
	t.saveNode(n)
	if cmd.ACL.IsZero() {
		n.acl = nil
	} else {
		a := cmd.ACL
		n.acl = &a
	}
	n.aclGen++
	t.emit(Event{Kind: EventACLChanged, Path: cmd.Path, Instance: n.instance, Reader: n.reader()})
	return Result{Stat: n.stat()}
}

// delete applies OpDelete. Checks: path, root, existence, write right,
// owner, generation, children (without FlagRecursive), write right and
// owner of every node in the subtree.
// A subtree goes deepest first, in path order within a depth, the node last.
func (t *Tree) delete(cmd *Command, s *session) Result {
	p := cmd.Path
	depth, err := t.cfg.checkPath(p)
	if err != nil {
		return fail(err)
	}
	if depth == 0 {
		return fail(errorf(CodePermission, "the root cannot be deleted"))
	}
	n := t.lookup(p)
	if n == nil {
		return fail(errorf(CodeNotFound, "%s", quote(p)))
	}
	if err := t.checkModify(p, n, RightWrite, cmd, s); err != nil {
		return fail(err)
	}
	switch {
	case cmd.Generation != 0 && cmd.Generation != n.contentGen:
		return fail(errorf(CodeGenerationMismatch, "content generation of %s is %d, not %d", quote(p), n.contentGen, cmd.Generation))
	case n.children > 0 && cmd.Flags&FlagRecursive == 0:
		return fail(errorf(CodeNotEmpty, "%s has %d children", quote(p), n.children))
	}
	var keys []string
	var nodes []*node
	if n.children > 0 {
		for d := t.cfg.MaxDepth; d > depth; d-- {
			t.nodes.WalkPrefix(levelPrefix(p, d), func(k string, v any) bool {
				keys = append(keys, k)
				nodes = append(nodes, v.(*node))
				return false
			})
		}
		for i, dn := range nodes {
			if err := t.checkModify(keyPath(keys[i]), dn, RightWrite, cmd, s); err != nil {
				return fail(err)
			}
		}
	}
	for i, dn := range nodes {
		t.deleteNode(keyPath(keys[i]), keyDepth(keys[i]), dn)
	}
	t.deleteNode(p, depth, n)
	return Result{Deleted: len(nodes) + 1}
}

// deleteNode removes a node that has no children: its lock state first (with
// events), then the node, its parent's child count and its owner's record.
func (t *Tree) deleteNode(p string, depth int, n *node) {
	if ls := t.locks[p]; ls != nil {
		t.saveLock(ls)
		t.dropLock(ls)
	}
	t.removeNode(p, depth)
	if n.owner != 0 {
		if o := t.sessions[n.owner]; o != nil {
			t.saveEphemerals(o)
			o.ephemerals = removeSorted(o.ephemerals, p)
		}
	}
	parentPath, name := splitPath(p)
	parent := t.lookup(parentPath)
	t.saveNode(parent)
	parent.children--
	t.emit(Event{Kind: EventNodeDeleted, Path: p, Instance: n.instance, Reader: n.reader()})
	t.emit(Event{Kind: EventChildRemoved, Path: parentPath, Instance: parent.instance, Name: name, Reader: parent.reader()})
}

// insertSorted inserts v into the sorted slice s (if absent).
func insertSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

// removeSorted removes v from the sorted slice s (if present).
func removeSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}
