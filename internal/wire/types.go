package wire

import (
	"strconv"
	"time"
)

// Stat is the metadata of one node. Times are Unix nanoseconds as stamped by
// the leader into the command that made the change.
type Stat struct {
	// Instance is new for each creation of the path: a node deleted and
	// created again has a different Instance.
	Instance   uint64 `msgpack:"inst,omitempty"`
	ContentGen uint64 `msgpack:"cgen,omitempty"` // bumped by every content write; 1 after creation
	LockGen    uint64 `msgpack:"lgen,omitempty"` // bumped by every exclusive grant; the fencing number
	ACLGen     uint64 `msgpack:"agen,omitempty"` // bumped by every SetACL
	Checksum   uint64 `msgpack:"sum,omitempty"`  // checksum of the content
	Size       uint64 `msgpack:"size,omitempty"` // content length in bytes

	CreatedIndex  uint64 `msgpack:"cidx,omitempty"` // log index of the creating command
	ModifiedIndex uint64 `msgpack:"midx,omitempty"` // log index of the last change
	CreatedTime   int64  `msgpack:"ctime,omitempty"`
	ModifiedTime  int64  `msgpack:"mtime,omitempty"`

	EphemeralOwner uint64 `msgpack:"eph,omitempty"` // owning session of an ephemeral node; 0 if persistent
	Children       uint32 `msgpack:"kids,omitempty"`
}

// Entry is one element of a List (Name is a child's name) or Walk (Name is a
// full path) page.
type Entry struct {
	Name string `msgpack:"name"`
	Stat Stat   `msgpack:"stat"`
}

// ACL names the ACL files (/acl/NAME, whose content lists principals) that
// say who may read, write (content, children, locks) and change the ACL of
// a node: at most one name each. An empty list means "anyone".
type ACL struct {
	Read  []string `msgpack:"r,omitempty"`
	Write []string `msgpack:"w,omitempty"`
	Admin []string `msgpack:"a,omitempty"`
}

// LockMode is the mode of a lock request or grant.
type LockMode uint8

// Lock modes. The zero value is not a mode, so a request that forgot to set
// one is rejected rather than taken as exclusive.
const (
	Exclusive LockMode = 1 // one holder, a writer
	Shared    LockMode = 2 // any number of holders, readers
)

// String returns "ex", "sh", or "mode(n)".
func (m LockMode) String() string {
	switch m {
	case Exclusive:
		return "ex"
	case Shared:
		return "sh"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Valid reports whether m is Exclusive or Shared.
func (m LockMode) Valid() bool { return m == Exclusive || m == Shared }

// EventType says what an Event reports.
type EventType uint8

// Event types. Values are part of the protocol.
const (
	ContentChanged EventType = 1  // the node's content was written
	ChildAdded     EventType = 2  // Child was created under Path
	ChildRemoved   EventType = 3  // Child was deleted from under Path
	NodeDeleted    EventType = 4  // the node at Path was deleted
	NodeCreated    EventType = 5  // a node was created at Path
	LockAcquired   EventType = 6  // a session was granted the lock on Path
	LockReleased   EventType = 7  // a holder released the lock on Path (or its session ended)
	LockConflict   EventType = 8  // another session waits for a lock this session holds
	Failover       EventType = 9  // a new leader took over: other events may be lost; re-read
	EventsLost     EventType = 10 // the session's event queue overflowed: events were lost; re-read
)

var eventNames = [...]string{
	ContentChanged: "ContentChanged",
	ChildAdded:     "ChildAdded",
	ChildRemoved:   "ChildRemoved",
	NodeDeleted:    "NodeDeleted",
	NodeCreated:    "NodeCreated",
	LockAcquired:   "LockAcquired",
	LockReleased:   "LockReleased",
	LockConflict:   "LockConflict",
	Failover:       "Failover",
	EventsLost:     "EventsLost",
}

// String returns the event type's name.
func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event is one notification delivered on a KeepAlive reply.
type Event struct {
	Type EventType `msgpack:"t"`
	// Seq is the session's event sequence number: strictly increasing per
	// session; a gap means events were dropped (an EventsLost event says so).
	Seq uint64 `msgpack:"seq,omitempty"`
	// Index is the log index of the command that produced the event (0 for
	// Failover and EventsLost).
	Index    uint64 `msgpack:"idx,omitempty"`
	Path     string `msgpack:"path,omitempty"`
	Child    string `msgpack:"child,omitempty"` // the child's name, for ChildAdded and ChildRemoved
	Instance uint64 `msgpack:"inst,omitempty"`  // the node's instance the event is about
	// ContentGen is the content generation after a ContentChanged or NodeCreated.
	ContentGen uint64   `msgpack:"cgen,omitempty"`
	LockGen    uint64   `msgpack:"lgen,omitempty"` // the lock generation, for lock events
	Mode       LockMode `msgpack:"mode,omitempty"` // the lock mode, for lock events
	// Session is the other session involved: the new holder for LockAcquired,
	// the waiter for LockConflict.
	Session uint64 `msgpack:"sid,omitempty"`
	// Watches are the ids of this session's watches that matched the event.
	// Empty for session-level events (LockConflict, Failover, EventsLost).
	Watches []uint64 `msgpack:"w,omitempty"`
}

// Limits are the server's limits, announced in Welcome.
type Limits struct {
	MaxFrame   uint32 `msgpack:"frame"`   // largest frame either side may send
	MaxContent uint32 `msgpack:"content"` // largest node content
	MaxPath    uint32 `msgpack:"path"`    // longest path in bytes
	MaxPage    uint32 `msgpack:"page"`    // most entries in one List, Walk, ListLocks or ListSessions page
	// MinSessionTimeout and MaxSessionTimeout bound OpenSession's timeout.
	MinSessionTimeout time.Duration `msgpack:"minto"`
	MaxSessionTimeout time.Duration `msgpack:"maxto"`
}

// LockInfo describes one lock for ListLocks.
type LockInfo struct {
	Path     string   `msgpack:"path"`
	Mode     LockMode `msgpack:"mode,omitempty"` // mode of the current holders; 0 if free
	LockGen  uint64   `msgpack:"lgen,omitempty"`
	Instance uint64   `msgpack:"inst,omitempty"`
	Holders  []uint64 `msgpack:"holders,omitempty"` // holder session ids
	Waiters  uint32   `msgpack:"waiters,omitempty"` // queued requests
	// DelayUntil is the end of a lock-delay in Unix nanoseconds (command
	// time), or 0 if none.
	DelayUntil int64 `msgpack:"delay,omitempty"`
}

// SessionInfo describes one session for ListSessions.
type SessionInfo struct {
	ID         uint64        `msgpack:"id"`
	Client     string        `msgpack:"client,omitempty"` // the name the client gave at OpenSession
	Timeout    time.Duration `msgpack:"timeout,omitempty"`
	Locks      uint32        `msgpack:"locks,omitempty"`
	Ephemerals uint32        `msgpack:"eph,omitempty"`
	Watches    uint32        `msgpack:"watches,omitempty"`
	OpenedTime int64         `msgpack:"opened,omitempty"` // Unix nanoseconds
	// Principal is who opened it: the CN of its client certificate ("" if
	// anonymous); Superuser says the session is a superuser's.
	Principal string `msgpack:"principal,omitempty"`
	Superuser bool   `msgpack:"super,omitempty"`
}

// Member describes one replica of the cell for Status.
type Member struct {
	ID         string `msgpack:"id"`
	ClientAddr string `msgpack:"client,omitempty"`
	PeerAddr   string `msgpack:"peer,omitempty"`
	Leader     bool   `msgpack:"leader,omitempty"`
	Reachable  bool   `msgpack:"up,omitempty"` // as seen from the answering replica
	Applied    uint64 `msgpack:"applied,omitempty"`
}
