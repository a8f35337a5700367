package namespace

import (
	"hash/crc64"

	"github.com/armon/go-radix"
)

// node is one node of the tree. It is kept small (112 bytes) because there
// may be millions: the path lives only in the radix key, lock state lives in
// Tree.locks for locked nodes only, and ACLs are shared immutable values.
type node struct {
	content    string
	acl        *ACL // nil: no ACL names; shared with the parent when inherited
	instance   uint64
	contentGen uint64
	lockGen    uint64
	aclGen     uint64
	checksum   uint64
	cIndex     uint64
	mIndex     uint64
	cTime      int64
	mTime      int64
	owner      uint64 // session of an ephemeral node
	children   uint32
	seq        uint32 // next sequential suffix for children
}

// Tree is the namespace state machine: nodes, sessions, locks and the
// idempotence tables. Apply mutates it; the query methods read it. It is not
// safe for concurrent use: the caller runs Apply, Restore and the queries on
// one goroutine, or guards them with a lock (queries may share a read lock).
// Callbacks passed to queries must not call Apply or Restore.
type Tree struct {
	cfg      Config
	nodes    *radix.Tree           // nodeKey(path) -> *node: order, children, subtrees
	byPath   map[string]*node      // path -> *node: point lookups; never ranged over
	sessions map[uint64]*session   // live sessions; never ranged over for output
	locks    map[string]*lockState // locks held, waited for or in lock-delay
	delayed  lockHeap              // locks with a pending lock-delay
	blocked  lockHeap              // delayed locks with waiters (NextDeadline)

	index        uint64 // last applied log index
	now          int64  // command time: the largest Command.Time applied
	nextInstance uint64
	nextSession  uint64

	events    []Event      // events of the command being applied
	freeLocks []*lockState // recycled lock states (memory only, not state)
	undo      *undoLog     // set while a txn is applied (txn.go)
}

var crcTable = crc64.MakeTable(crc64.ECMA)

// checksum is the CRC-64 (ECMA) of content, as crc64.Checksum computes it.
// Short contents (the common case) take an inline table loop, which avoids
// crc64.Update's setup cost.
func checksum(content string) uint64 {
	switch {
	case content == "":
		return 0
	case len(content) >= 64:
		return crc64.Update(0, crcTable, []byte(content))
	}
	crc := ^uint64(0)
	for i := 0; i < len(content); i++ {
		crc = crcTable[byte(crc)^content[i]] ^ crc>>8
	}
	return ^crc
}

// New returns a tree holding only the root "/" and no sessions. It panics if
// cfg is invalid (call cfg.Validate first to get the error).
func New(cfg Config) *Tree {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	t := &Tree{cfg: cfg}
	t.reset(0)
	t.insertNode("/", 0, &node{instance: 1, contentGen: 1, aclGen: 1})
	t.nextInstance = 2
	return t
}

// reset empties the tree's state (no root), sized for about n nodes.
func (t *Tree) reset(n int) {
	t.nodes = radix.New()
	t.byPath = make(map[string]*node, n)
	t.sessions = make(map[uint64]*session)
	t.locks = make(map[string]*lockState)
	t.delayed = lockHeap{slot: 0}
	t.blocked = lockHeap{slot: 1}
	t.index, t.now = 0, 0
	t.nextInstance, t.nextSession = 1, 1
}

// Config returns the tree's configuration.
func (t *Tree) Config() Config { return t.cfg }

// Apply applies one command at log index index and returns its result and the
// events it caused, in order. Apply is deterministic: the same commands in the
// same order give the same results, events and state on every replica.
//
// Before the command itself, any lock whose lock-delay has ended by cmd.Time
// grants its waiters (those grants' events come first). A command whose
// non-zero (Session, Request) was applied before returns the stored result of
// that first application and changes nothing else.
//
// index is recorded as the created/modified index of the nodes the command
// writes; it should not decrease (several commands of one batch may share it).
func (t *Tree) Apply(index uint64, cmd *Command) (Result, []Event) {
	return t.ApplyAppend(nil, index, cmd)
}

// ApplyAppend is Apply appending the events to dst (which may be a reused
// buffer of length 0) and returning the extended slice: a caller that
// recycles one buffer applies commands without allocating for events.
func (t *Tree) ApplyAppend(dst []Event, index uint64, cmd *Command) (Result, []Event) {
	t.events = dst
	if index > t.index {
		t.index = index
	}
	if cmd.Time > t.now {
		t.now = cmd.Time
	}
	t.endDelays()

	s := t.sessions[cmd.Session]
	dedup := s != nil && cmd.Request != 0
	if dedup {
		if r, ok := s.results.get(cmd.Request); ok {
			return r, t.takeEvents()
		}
	}
	r := t.apply(cmd, s)
	if dedup && t.sessions[cmd.Session] == s {
		s.results.put(cmd.Request, r.kept(), t.cfg.Results)
	}
	return r, t.takeEvents()
}

func (t *Tree) takeEvents() []Event {
	ev := t.events
	t.events = nil
	return ev
}

func (t *Tree) emit(e Event) { t.events = append(t.events, e) }

// apply dispatches a command that is not a retry.
func (t *Tree) apply(cmd *Command, s *session) Result {
	if cmd.Version != CommandVersion {
		return fail(errorf(CodeUnknownVersion, "command version %d", cmd.Version))
	}
	if cmd.Op == OpInvalid || cmd.Op >= opEnd {
		return fail(errorf(CodeUnknownOp, "%s", cmd.Op))
	}
	if cmd.Session != 0 && s == nil {
		return fail(t.sessionError(cmd.Session))
	}
	if allowed := opFlags[cmd.Op]; cmd.Flags&^allowed != 0 {
		return fail(errorf(CodeInvalidCommand, "flags %#x not allowed for %s", uint8(cmd.Flags&^allowed), cmd.Op))
	}
	if cmd.Op != OpOpenSession && cmd.Flags&FlagRestricted != 0 {
		if cmd.Session != 0 {
			return fail(errorf(CodeInvalidCommand, "%s from session %d: FlagRestricted is for commands without a session", cmd.Op, cmd.Session))
		}
		if err := t.cfg.checkClientName("principal", cmd.Principal); err != nil {
			return fail(err)
		}
	}
	switch cmd.Op {
	case OpTick:
		return Result{}
	case OpOpenSession:
		return t.openSession(cmd)
	case OpCloseSession:
		return t.closeSession(s)
	case OpExpireSession:
		return t.expireSession(cmd)
	case OpCreate:
		return t.create(cmd, s)
	case OpSetContent:
		return t.setContent(cmd, s)
	case OpDelete:
		return t.delete(cmd, s)
	case OpSetACL:
		return t.setACL(cmd, s)
	case OpAcquire:
		return t.acquire(cmd, s)
	case OpCancel:
		return t.cancel(cmd, s)
	case OpRelease:
		return t.release(cmd, s)
	case OpTxn:
		return t.txn(cmd, s)
	case OpCheckExists, OpCheckMissing, OpCheckSequencer:
		return fail(errorf(CodeInvalidCommand, "%s is a txn condition, not a command", cmd.Op))
	case OpPut:
		return fail(errorf(CodeInvalidCommand, "put is a txn write, not a command"))
	}
	return fail(errorf(CodeUnknownOp, "%s", cmd.Op))
}

// opFlags are the flags each op accepts.
var opFlags = [opEnd]Flags{
	OpOpenSession: FlagRestricted | FlagSuperuser,
	OpCreate:      FlagEphemeral | FlagParents | FlagSequential | FlagRestricted,
	OpSetContent:  FlagRestricted,
	OpSetACL:      FlagRestricted,
	OpDelete:      FlagRecursive | FlagRestricted,
	OpAcquire:     FlagWait,
	OpTxn:         FlagRestricted,
	OpPut:         FlagEphemeral | FlagParents,
}

func fail(err *Error) Result { return Result{Err: err} }

// sessionError explains why session id is not live.
func (t *Tree) sessionError(id uint64) *Error {
	if id != 0 && id < t.nextSession {
		return errorf(CodeSessionExpired, "session %d", id)
	}
	return errorf(CodeSessionUnknown, "session %d", id)
}

// lookup returns the node at a valid path, or nil.
func (t *Tree) lookup(p string) *node { return t.byPath[p] }

// insertNode adds n at path p of the given depth to both indexes and returns
// the path as stored (sharing the radix key's memory).
func (t *Tree) insertNode(p string, depth int, n *node) string {
	key := nodeKey(p, depth)
	t.nodes.Insert(key, n)
	stored := keyPath(key)
	t.byPath[stored] = n
	if t.undo != nil {
		t.record(func() { t.removeNode(stored, depth) })
	}
	return stored
}

// removeNode drops the node at path p of the given depth from both indexes.
func (t *Tree) removeNode(p string, depth int) {
	if t.undo != nil {
		n := t.byPath[p]
		t.record(func() { t.insertNode(p, depth, n) })
	}
	t.nodes.Delete(nodeKey(p, depth))
	delete(t.byPath, p)
}

// find validates p and returns its node and depth.
func (t *Tree) find(p string) (*node, int, *Error) {
	depth, err := t.cfg.checkPath(p)
	if err != nil {
		return nil, 0, err
	}
	n := t.lookup(p)
	if n == nil {
		return nil, 0, errorf(CodeNotFound, "%s", quote(p))
	}
	return n, depth, nil
}

func (n *node) stat() Stat {
	return Stat{
		Instance:       n.instance,
		ContentGen:     n.contentGen,
		LockGen:        n.lockGen,
		ACLGen:         n.aclGen,
		Checksum:       n.checksum,
		Size:           len(n.content),
		CreatedIndex:   n.cIndex,
		CreatedTime:    n.cTime,
		ModifiedIndex:  n.mIndex,
		ModifiedTime:   n.mTime,
		EphemeralOwner: n.owner,
		Children:       int(n.children),
	}
}

func (n *node) aclValue() ACL {
	if n.acl == nil {
		return ACL{}
	}
	return *n.acl
}
