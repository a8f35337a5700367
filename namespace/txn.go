package namespace

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Transactions (OpTxn). A txn is one command that carries a list of
// sub-operations, conditions and node writes, applied in order as if no
// other command ran between them, all or nothing: ZooKeeper's multi() and
// etcd's Txn in latch's terms, with Chubby's fenced write ("write X only if
// I still hold lock L") as the condition on a sequencer.
//
// Rollback is an undo log. While a txn is applied, Tree.undo is set and the
// few primitives that a node write can reach record how to reverse what
// they change (see undoLog); when a sub-op fails, the log is run backwards,
// the instance counter and the event buffer are put back, and the state is
// what it was before the txn's first sub-op. A standalone command pays one
// nil check per primitive.

// MaxTxnOps is the most sub-ops one txn may carry, as etcd's default
// --max-txn-ops. It is part of the log format: DecodeCommand and Apply
// both refuse more.
const MaxTxnOps = 128

// txnOpFixed bounds the msgpack bytes of one sub-op's fields other than
// its strings (at most 49: array header, op, flags, mode, generation,
// instance and the five string headers); a txn may carry that much more
// than one create (Config.maxTxnSize).
const txnOpFixed = 64

// TxnOp is one sub-operation of a txn: a condition (OpCheckExists,
// OpCheckMissing, OpCheckSequencer) or a node write (OpCreate,
// OpSetContent, OpDelete, OpSetACL). Its fields mean what the same fields
// of a Command mean for that op; fields an op does not use are ignored.
// Build sub-ops with the Txn* constructors and a txn with NewTxn.
//
// Lock ops and session ops cannot be sub-ops: a grant may queue, and its
// effects (waiters, lock-delay, events to other sessions) are not a
// node's, so they have no place in an all-or-nothing write.
type TxnOp struct {
	// Op is the sub-op's kind.
	Op Op
	// Path is the node (for check-sequencer, the sequencer's path).
	Path string
	// Content is the content of a create or set-content.
	Content []byte
	// Flags: FlagEphemeral, FlagParents, FlagSequential (create),
	// FlagRecursive (delete). A txn is marked FlagRestricted as a whole,
	// never its sub-ops.
	Flags Flags
	// Mode is the sequencer's lock mode (check-sequencer).
	Mode Mode
	// Generation, when non-zero, is the content generation that
	// check-exists, set-content and delete require, the ACL generation
	// that set-acl requires; for check-sequencer it is the sequencer's lock
	// generation.
	Generation uint64
	// ACL is the node's ACL names (create: zero inherits; set-acl).
	ACL ACL
	// Instance is the sequencer's node instance (check-sequencer).
	Instance uint64
}

// NewTxn returns a command that applies ops in order, all or nothing: every
// condition holds and every write succeeds, or nothing changes and
// Result.Txn.Failed is the index of the sub-op that failed. On success
// Result.Txn.Ops has one result per sub-op. Set Time, Session and Request as for any command
// (a retried txn applies once); a server marks a client's sessionless txn
// FlagRestricted with its Principal, as it marks a single write.
//
//	cmd := namespace.NewTxn(
//		namespace.TxnCheckSequencer(seq),
//		namespace.TxnSetContent("/svc/config", data, 0),
//	)
func NewTxn(ops ...TxnOp) Command {
	return Command{Version: CommandVersion, Op: OpTxn, Ops: ops}
}

// TxnCheckExists returns a condition: the node at path exists and, when
// ifGen is non-zero, its content generation is ifGen. Its result carries
// the node's Stat (the caller needs the read right, as for a stat).
func TxnCheckExists(path string, ifGen uint64) TxnOp {
	return TxnOp{Op: OpCheckExists, Path: path, Generation: ifGen}
}

// TxnCheckMissing returns a condition: no node exists at path.
func TxnCheckMissing(path string) TxnOp {
	return TxnOp{Op: OpCheckMissing, Path: path}
}

// TxnCheckSequencer returns a condition: seq is current, as
// Tree.CheckSequencer says (its node instance exists and its lock is held
// in seq.Mode at seq.LockGen). It is the fence of Chubby's sequencers.
func TxnCheckSequencer(seq Sequencer) TxnOp {
	return TxnOp{Op: OpCheckSequencer, Path: seq.Path, Mode: seq.Mode, Generation: seq.LockGen, Instance: seq.Instance}
}

// TxnCreate returns a write that creates path with content, as NewCreate.
// Set the ACL field to give the node its own ACL names.
func TxnCreate(path string, content []byte, flags Flags) TxnOp {
	return TxnOp{Op: OpCreate, Path: path, Content: content, Flags: flags}
}

// TxnSetContent returns a write that sets the content of path, as
// NewSetContent.
func TxnSetContent(path string, content []byte, ifGen uint64) TxnOp {
	return TxnOp{Op: OpSetContent, Path: path, Content: content, Generation: ifGen}
}

// TxnPut returns a write that sets the content of path if the node exists
// when the sub-op applies, and otherwise creates it with flags
// (FlagEphemeral, FlagParents): the unconditional put of a client. Its
// result is a create's or a set-content's.
func TxnPut(path string, content []byte, flags Flags) TxnOp {
	return TxnOp{Op: OpPut, Path: path, Content: content, Flags: flags}
}

// TxnDelete returns a write that deletes path (and its subtree if
// recursive), as NewDelete.
func TxnDelete(path string, recursive bool, ifGen uint64) TxnOp {
	o := TxnOp{Op: OpDelete, Path: path, Generation: ifGen}
	if recursive {
		o.Flags = FlagRecursive
	}
	return o
}

// TxnSetACL returns a write that sets the ACL names of path, as NewSetACL.
func TxnSetACL(path string, acl ACL, ifGen uint64) TxnOp {
	return TxnOp{Op: OpSetACL, Path: path, ACL: acl, Generation: ifGen}
}

// isCondition reports whether op is one of a txn's conditions.
func isCondition(op Op) bool {
	return op == OpCheckExists || op == OpCheckMissing || op == OpCheckSequencer
}

// txnOpFlags returns the flags a sub-op of kind op takes: those of the
// standalone write but FlagRestricted (a txn's), none for a condition.
func txnOpFlags(op Op) Flags {
	if isCondition(op) {
		return 0
	}
	return opFlags[op] &^ FlagRestricted
}

// checkTxnShape checks what DecodeCommand also checks of a txn: the number
// of sub-ops, and each one's kind, flags and (check-sequencer) mode. On
// failure it returns the index of the sub-op at fault, or -1 when the txn
// as a whole is.
func checkTxnShape(ops []TxnOp) (int, *Error) {
	switch {
	case len(ops) == 0:
		return -1, errorf(CodeInvalidCommand, "empty txn")
	case len(ops) > MaxTxnOps:
		return -1, errorf(CodeInvalidCommand, "txn of %d sub-ops; the limit is %d", len(ops), MaxTxnOps)
	}
	for i := range ops {
		o := &ops[i]
		switch o.Op {
		case OpCreate, OpSetContent, OpDelete, OpSetACL, OpPut, OpCheckExists, OpCheckMissing, OpCheckSequencer:
		case OpTxn:
			return i, errorf(CodeInvalidCommand, "a txn cannot contain a txn")
		case OpInvalid:
			return i, errorf(CodeUnknownOp, "")
		default:
			if o.Op >= opEnd {
				return i, errorf(CodeUnknownOp, "")
			}
			return i, errorf(CodeInvalidCommand, "%s cannot be part of a txn (only conditions and node writes)", o.Op)
		}
		if extra := o.Flags &^ txnOpFlags(o.Op); extra != 0 {
			return i, errorf(CodeInvalidCommand, "flags %#x not allowed for %s in a txn", uint8(extra), o.Op)
		}
		if o.Op == OpCheckSequencer && o.Mode != ModeExclusive && o.Mode != ModeShared {
			return i, errorf(CodeInvalidCommand, "sequencer lock mode %s", o.Mode)
		}
	}
	return -1, nil
}

// txnOpError returns err as the failure of sub-op i of ops ("<sentinel>:
// txn ops[i] (kind): <detail>"), or err itself when i < 0.
// The code stays the sub-op's, so errors.Is sees the sub-op's sentinel.
func txnOpError(i int, ops []TxnOp, err *Error) *Error {
	if i < 0 {
		return err
	}
	prefix := codeSentinels[err.Code].Error()
	detail, _ := strings.CutPrefix(strings.TrimPrefix(err.Msg, prefix), ": ")
	if detail == "" {
		return errorf(err.Code, "txn ops[%d] (%s)", i, ops[i].Op)
	}
	return errorf(err.Code, "txn ops[%d] (%s): %s", i, ops[i].Op, detail)
}

// FailedTxnOp returns the index of the sub-op whose failure err is, read
// from the message txnOpError gives it ("<sentinel>: txn ops[i] (kind)").
// A retried txn's stored result keeps its error, code and message, but
// not Result.Txn (Result.kept), so this is how a server names the failed
// sub-op of a retry. err must be a txn's result; ok is false for any
// other error of a txn, such as that of a txn refused as a whole.
func FailedTxnOp(err error) (i int, ok bool) {
	var e *Error
	if !errors.As(err, &e) || !e.Code.Valid() || codeSentinels[e.Code] == nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(e.Msg, codeSentinels[e.Code].Error()+": txn ops[")
	if !ok {
		return 0, false
	}
	digits, rest, ok := strings.Cut(rest, "] (")
	i, perr := strconv.Atoi(digits)
	if !ok || perr != nil || i < 0 || i >= MaxTxnOps || strconv.Itoa(i) != digits {
		return 0, false
	}
	return i, true
}

// msgpack sizes of unsigned integers and string and bin headers.
func uintSize(v uint64) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<8:
		return 2
	case v < 1<<16:
		return 3
	case v < 1<<32:
		return 5
	}
	return 9
}

func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

func binSize(n int) int {
	switch {
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

// size returns the msgpack bytes of o as a command encodes it (content
// counted as a bin even when nil, which encodes one byte shorter).
func (o *TxnOp) size() int {
	return 1 + uintSize(uint64(o.Op)) + strSize(len(o.Path)) + binSize(len(o.Content)) +
		uintSize(uint64(o.Flags)) + uintSize(uint64(o.Mode)) + uintSize(o.Generation) +
		strSize(len(o.ACL.Reader)) + strSize(len(o.ACL.Writer)) + strSize(len(o.ACL.Changer)) +
		uintSize(o.Instance)
}

// txnSize returns the msgpack bytes of a txn's sub-ops.
func txnSize(ops []TxnOp) int {
	n := 0
	for i := range ops {
		n += ops[i].size()
	}
	return n
}

// maxTxnSize is the most bytes a txn's sub-ops may encode to: what one
// create can carry (content, path, three ACL names) plus txnOpFixed. So a
// txn never makes a log entry much larger than the largest single command,
// and the server's frame and batch limits, sized for single commands,
// hold.
func (c *Config) maxTxnSize() int {
	return c.MaxContent + c.MaxPathLen + 3*c.MaxNameLen + txnOpFixed
}

// txn applies OpTxn. Checks: the shape (checkTxnShape), the size
// (ErrTooLarge), then each sub-op in order exactly as its standalone
// command (or, for a condition, its query) is checked, against the state
// the earlier sub-ops left. The first failure undoes every earlier sub-op
// and is the result, with Txn.Failed set.
func (t *Tree) txn(cmd *Command, s *session) Result {
	if i, err := checkTxnShape(cmd.Ops); err != nil {
		if i < 0 {
			return fail(err)
		}
		return Result{Err: txnOpError(i, cmd.Ops, err), Txn: &TxnResult{Failed: i}}
	}
	if size, limit := txnSize(cmd.Ops), t.cfg.maxTxnSize(); size > limit {
		return fail(errorf(CodeTooLarge, "txn sub-ops of %d bytes > %d", size, limit))
	}
	t.undo = &undoLog{events: len(t.events), nextInstance: t.nextInstance}
	results := make([]Result, len(cmd.Ops))
	for i := range cmd.Ops {
		r := t.txnOp(cmd, &cmd.Ops[i], s)
		if r.Err != nil {
			t.rollback()
			// Every failure of the ops is built by fail, an *Error.
			return Result{Err: txnOpError(i, cmd.Ops, r.Err.(*Error)), Txn: &TxnResult{Failed: i}}
		}
		results[i] = r
	}
	t.undo = nil
	return Result{Txn: &TxnResult{Ops: results}}
}

// txnOp applies one sub-op of txn: a condition here, a write through the
// standalone op with a command made of the sub-op and the txn's session,
// principal and FlagRestricted.
func (t *Tree) txnOp(txn *Command, o *TxnOp, s *session) Result {
	switch o.Op {
	case OpCheckExists:
		return t.checkExists(o, commandCaller(txn, s))
	case OpCheckMissing:
		return t.checkMissing(o)
	case OpCheckSequencer:
		return t.checkSequencer(o)
	}
	sub := Command{
		Version: CommandVersion, Op: o.Op, Time: txn.Time, Session: txn.Session, Request: txn.Request,
		Path: o.Path, Content: o.Content, Flags: o.Flags | txn.Flags&FlagRestricted,
		Generation: o.Generation, ACL: o.ACL, Principal: txn.Principal,
	}
	switch o.Op {
	case OpCreate:
		return t.create(&sub, s)
	case OpSetContent:
		return t.setContent(&sub, s)
	case OpDelete:
		return t.delete(&sub, s)
	case OpSetACL:
		return t.setACL(&sub, s)
	case OpPut:
		if n := t.lookup(o.Path); n == nil || !putSets(n.owner, txn.Session, o.Flags) {
			sub.Op = OpCreate
			return t.create(&sub, s)
		}
		sub.Op, sub.Flags = OpSetContent, sub.Flags&FlagRestricted
		return t.setContent(&sub, s)
	}
	return fail(errorf(CodeInvalidCommand, "%s cannot be part of a txn", o.Op)) // checkTxnShape refused it
}

// putSets says whether a put with flags by session sid sets the content of
// an existing node owned by owner (0: persistent), rather than creating it
// (which fails with ErrExists). A put that asks for an ephemeral node sets
// only the session's own ephemeral: it never leaves a persistent node, or
// another session's, what it was under a write that asked for an
// ephemeral one. The lock server's standalone put decides the same way.
func putSets(owner, sid uint64, flags Flags) bool {
	return flags&FlagEphemeral == 0 || owner != 0 && owner == sid
}

// PutSets is putSets for a standalone put resolved by the lock server:
// whether a put by sid with flags sets the content of the existing node st
// describes.
func PutSets(st Stat, sid uint64, flags Flags) bool { return putSets(st.EphemeralOwner, sid, flags) }

// checkExists applies the condition OpCheckExists. Checks: path, exists,
// read right (as a stat), content generation.
func (t *Tree) checkExists(o *TxnOp, c Caller) Result {
	n, _, err := t.find(o.Path)
	if err != nil {
		return fail(err)
	}
	if err := t.check(o.Path, n, RightRead, c); err != nil {
		return fail(err)
	}
	if o.Generation != 0 && o.Generation != n.contentGen {
		return fail(errorf(CodeGenerationMismatch, "content generation of %s is %d, not %d", quote(o.Path), n.contentGen, o.Generation))
	}
	return Result{Stat: n.stat()}
}

// checkMissing applies the condition OpCheckMissing. Checks: path, absent
// (ErrExists). No right is needed: whether a node exists is no secret (a
// stat of an unreadable node says ErrPermission, of a missing one
// ErrNotFound).
func (t *Tree) checkMissing(o *TxnOp) Result {
	if _, err := t.cfg.checkPath(o.Path); err != nil {
		return fail(err)
	}
	if t.lookup(o.Path) != nil {
		return fail(errorf(CodeExists, "%s", quote(o.Path)))
	}
	return Result{}
}

// checkSequencer applies the condition OpCheckSequencer. Checks: path,
// then current (ErrNotHolder whatever the reason, which the message
// gives). No right is needed, as for CheckSequencer.
func (t *Tree) checkSequencer(o *TxnOp) Result {
	if _, err := t.cfg.checkPath(o.Path); err != nil {
		return fail(err)
	}
	seq := Sequencer{Path: o.Path, Mode: o.Mode, LockGen: o.Generation, Instance: o.Instance}
	if t.CheckSequencer(seq) {
		return Result{}
	}
	why := "its lock is not held in that mode"
	switch n := t.lookup(o.Path); {
	case n == nil:
		why = "the node does not exist"
	case n.instance != seq.Instance:
		why = "the node is another instance"
	case n.lockGen != seq.LockGen:
		why = "the lock has been granted again since"
	}
	return fail(errorf(CodeNotHolder, "sequencer %s is not current: %s", seq, why))
}

// undoLog reverses the changes a txn's writes made so far. The writes
// change state only through these primitives, each of which records its
// inverse while Tree.undo is set:
//
//   - insertNode and removeNode (the radix tree and the path map);
//   - saveNode, called before any field of an existing node changes
//     (content, generations, times, ACL, child count, sequence counter);
//   - saveEphemerals, before a session's list of ephemerals changes;
//   - saveLock, before the lock of a deleted node is torn down (its
//     holders' and waiters' lists, the waiters' stored results, the lock
//     record and the heaps);
//
// and the instance counter and the event buffer, put back from the values
// at the start. Lock ops, which grant, queue and start lock-delays, are
// not sub-ops, so nothing else of the locks can change.
type undoLog struct {
	events       int    // len(Tree.events) when the txn started
	nextInstance uint64 // Tree.nextInstance then
	steps        []func()
}

// record adds an undo step. Callers check t.undo first, so that a
// standalone command builds no closure.
func (t *Tree) record(step func()) {
	t.undo.steps = append(t.undo.steps, step)
}

// rollback undoes the txn being applied, newest change first, and ends it.
func (t *Tree) rollback() {
	u := t.undo
	t.undo = nil // the steps themselves must not record
	for i := len(u.steps) - 1; i >= 0; i-- {
		u.steps[i]()
	}
	t.nextInstance = u.nextInstance
	clear(t.events[u.events:])
	t.events = t.events[:u.events]
}

// saveNode records n's fields before they change.
func (t *Tree) saveNode(n *node) {
	if t.undo != nil {
		before := *n
		t.record(func() { *n = before })
	}
}

// saveEphemerals records s's list of ephemerals before it changes (the
// sorted-slice helpers edit it in place, so the list is copied).
func (t *Tree) saveEphemerals(s *session) {
	if t.undo != nil {
		before := slices.Clone(s.ephemerals)
		t.record(func() { s.ephemerals = before })
	}
}

// saveLock records the lock ls before dropLock tears it down. The undo
// step puts a new record with the same holders, waiters and lock-delay
// back (dropLock may recycle ls), the path back in each holder's and
// waiter's sorted lists, and the waiters' stored results as they were.
func (t *Tree) saveLock(ls *lockState) {
	if t.undo == nil {
		return
	}
	path, n, mode, delayUntil := ls.path, ls.node, ls.mode, ls.delayUntil
	holders, waiters := slices.Clone(ls.holders), slices.Clone(ls.waiters)
	stored := make([]Result, len(waiters))
	kept := make([]bool, len(waiters))
	for i, w := range waiters {
		stored[i], kept[i] = t.sessions[w.session].results.get(w.request)
	}
	t.record(func() {
		ls := &lockState{path: path, node: n, mode: mode, holders: holders, waiters: waiters,
			delayUntil: delayUntil, heapIdx: [2]int{-1, -1}}
		t.locks[path] = ls
		for _, h := range holders {
			s := t.sessions[h.session]
			s.held = insertSorted(s.held, path)
		}
		for i, w := range waiters {
			s := t.sessions[w.session]
			s.waiting = insertSorted(s.waiting, path)
			if kept[i] {
				s.results.update(w.request, stored[i])
			}
		}
		t.settle(ls)
	})
}
