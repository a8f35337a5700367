package namespace

import (
	"fmt"
	"strings"
	"time"
)

// Stat is the metadata of a node (Chubby §2.3 plus ZooKeeper-style indexes).
type Stat struct {
	// Instance is new for each creation of the path: greater than the instance
	// of any earlier node, at any path.
	Instance uint64
	// ContentGen is 1 at creation and goes up with each content write.
	ContentGen uint64
	// LockGen is 0 at creation and goes up each time the lock goes from free to held.
	LockGen uint64
	// ACLGen is 1 at creation and goes up with each ACL write.
	ACLGen uint64
	// Checksum is the CRC-64 (ECMA) of the content.
	Checksum uint64
	// Size is the content length in bytes.
	Size int
	// CreatedIndex and CreatedTime are the log index and command time of the creation.
	CreatedIndex uint64
	CreatedTime  int64
	// ModifiedIndex and ModifiedTime are those of the last content write
	// (the creation if none).
	ModifiedIndex uint64
	ModifiedTime  int64
	// EphemeralOwner is the owning session of an ephemeral node, else 0.
	EphemeralOwner uint64
	// Children is the number of direct children.
	Children int
}

// Sequencer describes one grant of a lock (Chubby's fencing token). It is
// current while the node instance exists and its lock is held in Mode at
// LockGen; CheckSequencer tells.
type Sequencer struct {
	Path     string
	Mode     Mode
	LockGen  uint64
	Instance uint64
}

// String renders the sequencer as "path:mode:lockgen:instance".
func (s Sequencer) String() string {
	return fmt.Sprintf("%s:%s:%d:%d", s.Path, s.Mode, s.LockGen, s.Instance)
}

// Result is what Apply returns for one command. Err is nil or an *Error; the
// other fields are set by the ops named in their comments. A retried command
// gets the stored Result of its first application.
type Result struct {
	// Err is the command's failure, an *Error (use errors.Is with the sentinels).
	Err error
	// Path is the created node's path (create; with the sequential suffix).
	Path string
	// Stat is the node's stat after create, set-content and set-acl.
	Stat Stat
	// Session is the id of the opened session (open-session).
	Session uint64
	// Sequencer is the grant (acquire, when granted).
	Sequencer Sequencer
	// Queued is true when an acquire was queued behind the holders.
	Queued bool
	// Deleted is the number of nodes a delete removed.
	Deleted int
	// Txn is what a txn reports beyond Err: its sub-ops' results, or
	// which sub-op failed. Nil for other commands, for a txn refused as a
	// whole (empty, too many sub-ops, too large, its session's checks)
	// and on a retry (see kept). A pointer, so that Result stays
	// comparable; compare two with reflect.DeepEqual.
	Txn *TxnResult
}

// TxnResult is a txn's outcome beyond Result.Err.
type TxnResult struct {
	// Ops are the sub-ops' results, one per sub-op in order, when the
	// txn succeeded (nil when it failed): Path and Stat of a create, Stat
	// of a set-content, set-acl or check-exists, Deleted of a delete,
	// nothing for the other conditions.
	Ops []Result
	// Failed is the index of the sub-op whose error Result.Err is, when
	// the txn failed (the message names it too: "txn ops[1]
	// (set-content): ...").
	Failed int
}

// Code returns the code of r.Err.
func (r Result) Code() Code { return CodeOf(r.Err) }

// kept returns r as the idempotence table keeps it and a retry returns
// it: without a txn's Txn, which the table's snapshot record (one
// fixed-size result per request) has no room for. A retried txn thus
// learns whether it applied, and its error (code and message, which names
// the failed sub-op), but not the sub-ops' results.
func (r Result) kept() Result {
	r.Txn = nil
	return r
}

// EventKind names what happened.
type EventKind uint8

// Event kinds.
const (
	// EventNodeCreated: a node was created (Path, Instance).
	EventNodeCreated EventKind = iota + 1
	// EventNodeDeleted: a node was deleted (Path, Instance of the deleted node).
	EventNodeDeleted
	// EventContentChanged: a node's content was written.
	EventContentChanged
	// EventACLChanged: a node's ACL names were written.
	EventACLChanged
	// EventChildAdded: Name was created under Path.
	EventChildAdded
	// EventChildRemoved: Name was deleted under Path.
	EventChildRemoved
	// EventLockAcquired: Session became a holder (Sequencer; Request is the
	// acquire's request id, so the server can answer a queued Acquire).
	EventLockAcquired
	// EventLockReleased: Session stopped holding the lock (Reason).
	EventLockReleased
	// EventLockConflict: session By tried or queued for the lock that Session holds.
	EventLockConflict
	// EventWaitCanceled: Session's queued acquire (Request) was dropped (Reason).
	EventWaitCanceled
	// EventSessionOpened: Session was opened.
	EventSessionOpened
	// EventSessionClosed: Session was closed by its client.
	EventSessionClosed
	// EventSessionExpired: Session was expired by the leader.
	EventSessionExpired
	eventEnd
)

var eventNames = [eventEnd]string{"invalid", "node-created", "node-deleted", "content-changed",
	"acl-changed", "child-added", "child-removed", "lock-acquired", "lock-released",
	"lock-conflict", "wait-canceled", "session-opened", "session-closed", "session-expired"}

// String returns the kind's name, such as "lock-acquired".
func (k EventKind) String() string {
	if k < eventEnd {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Reason says why a lock was released or a queued acquire dropped.
type Reason uint8

// Reasons.
const (
	ReasonNone Reason = iota
	// ReasonReleased: the holder released the lock.
	ReasonReleased
	// ReasonCanceled: the waiter canceled its acquire.
	ReasonCanceled
	// ReasonSessionClosed: the session was closed.
	ReasonSessionClosed
	// ReasonSessionExpired: the session expired.
	ReasonSessionExpired
	// ReasonNodeDeleted: the node was deleted.
	ReasonNodeDeleted
	reasonEnd
)

var reasonNames = [reasonEnd]string{"", "released", "canceled", "session-closed", "session-expired", "node-deleted"}

// String returns the reason's name, such as "session-expired".
func (r Reason) String() string {
	if r < reasonEnd {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event is one consequence of a command, for the watch fan-out and the
// session-side bookkeeping. Apply returns events in a deterministic order
// (docs/namespace.md lists it per command).
type Event struct {
	Kind EventKind
	// Path is the node concerned (the parent for child events).
	Path string
	// Instance is the instance of the node at Path.
	Instance uint64
	// Name is the child's name (child events).
	Name string
	// Session is the session the event is about or for: the holder, waiter or
	// grantee of lock events, the session of session events; 0 for node events.
	Session uint64
	// Request is the acquire's request id (lock-acquired, wait-canceled).
	Request uint64
	// By is the requesting session (lock-conflict).
	By uint64
	// Sequencer is the grant (lock-acquired).
	Sequencer Sequencer
	// Reason is why (lock-released, wait-canceled).
	Reason Reason
	// Reader is the reader ACL name of the node at Path when the event
	// happened ("" when it has none, and for session events): a server
	// shows a watch event only to sessions that may read that node, even
	// one deleted by the command (Tree.Admits).
	Reader string
}

// String renders the event on one line, fields that are zero omitted.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.Path != "" {
		fmt.Fprintf(&b, " %s", e.Path)
	}
	if e.Name != "" {
		fmt.Fprintf(&b, " name=%s", e.Name)
	}
	if e.Instance != 0 {
		fmt.Fprintf(&b, " inst=%d", e.Instance)
	}
	if e.Session != 0 {
		fmt.Fprintf(&b, " session=%d", e.Session)
	}
	if e.Request != 0 {
		fmt.Fprintf(&b, " req=%d", e.Request)
	}
	if e.By != 0 {
		fmt.Fprintf(&b, " by=%d", e.By)
	}
	if e.Sequencer != (Sequencer{}) {
		fmt.Fprintf(&b, " seq=%s", e.Sequencer)
	}
	if e.Reason != ReasonNone {
		fmt.Fprintf(&b, " reason=%s", e.Reason)
	}
	if e.Reader != "" {
		fmt.Fprintf(&b, " reader=%s", e.Reader)
	}
	return b.String()
}

// Node is a node as a query returns it.
type Node struct {
	Path    string
	Content []byte
	ACL     ACL
	Stat    Stat
}

// Entry is one child in a listing.
type Entry struct {
	Name string
	Stat Stat
}

// Waiter is a queued acquire.
type Waiter struct {
	Session uint64
	Request uint64
	Mode    Mode
}

// LockInfo describes the lock of one node.
type LockInfo struct {
	Path     string
	Instance uint64
	// Mode is the holders' mode, ModeNone when free.
	Mode    Mode
	LockGen uint64
	// Holders are the holding sessions in grant order.
	Holders []uint64
	// Waiters are the queued acquires, head first.
	Waiters []Waiter
	// DelayUntil is the end of a pending lock-delay (command time), else 0.
	DelayUntil int64
}

// SessionInfo describes one session.
type SessionInfo struct {
	ID      uint64
	Timeout time.Duration
	// Client is the name the client gave when it opened the session ("" if none).
	Client string
	// Principal is the authenticated name it was opened with ("" if
	// anonymous); Restricted says its writes are checked against the ACLs
	// as that principal (FlagRestricted), Superuser that it was opened as a
	// superuser's (FlagSuperuser). A session with neither predates ACL
	// enforcement and is not checked.
	Principal    string
	Restricted   bool
	Superuser    bool
	CreatedIndex uint64
	CreatedTime  int64
	// Ephemerals, Locks and Waiting are the paths of the owned ephemeral
	// nodes, held locks and queued acquires, sorted.
	Ephemerals []string
	Locks      []string
	Waiting    []string
}
