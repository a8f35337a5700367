package client

import (
	"strconv"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// EventType says what an Event reports.
type EventType uint8

// Event types. Events are delivered after the change happened: a read made
// after receiving one sees the change or a later state (Chubby §2.5).
const (
	EventNodeCreated    EventType = iota + 1 // a node was created at Path
	EventNodeDeleted                         // the node at Path was deleted
	EventContentChanged                      // the node's content was written
	EventChildAdded                          // Child was created under Path
	EventChildRemoved                        // Child was deleted from under Path
	EventLockAcquired                        // Session was granted the lock on Path
	EventLockReleased                        // a holder of the lock on Path released it, or its session ended
	EventLockConflict                        // another session is waiting for a lock this session holds
	// EventFailover: the cell changed leader. Events may have been missed
	// in between; re-read what you depend on. The watch itself has already
	// been registered again with the new leader when this is delivered.
	EventFailover
	// EventMissed: events were dropped (the cell's or this client's queue
	// for the session overflowed); re-read what you depend on.
	EventMissed
)

var eventNames = [...]string{
	EventNodeCreated:    "node-created",
	EventNodeDeleted:    "node-deleted",
	EventContentChanged: "content-changed",
	EventChildAdded:     "child-added",
	EventChildRemoved:   "child-removed",
	EventLockAcquired:   "lock-acquired",
	EventLockReleased:   "lock-released",
	EventLockConflict:   "lock-conflict",
	EventFailover:       "failover",
	EventMissed:         "missed",
}

// String returns the event type's name, such as "content-changed".
func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return "event(" + strconv.Itoa(int(t)) + ")"
}

// Event is one notification for a Watch.
type Event struct {
	Type EventType
	// Path is the node the event is about (the parent, for child events;
	// empty for EventFailover and EventMissed).
	Path string
	// Child is the child's name, for EventChildAdded and EventChildRemoved.
	Child string
	// Index is the log index of the command that caused the event (0 for
	// EventFailover and EventMissed).
	Index uint64
	// Instance is the instance of the node the event is about.
	Instance uint64
	// ContentGen is the content generation after EventContentChanged or
	// EventNodeCreated.
	ContentGen uint64
	// LockGen and Mode describe the lock, for lock events.
	LockGen uint64
	Mode    LockMode
	// Session is the other session involved: the new holder for
	// EventLockAcquired, the waiter for EventLockConflict.
	Session uint64
	// Err is set on an EventFailover after which the new leader refused to
	// register the watch again (errors.Is(Err, ErrPermission), ErrLimit):
	// it is the watch's last event, and its channel closes after it.
	Err error
}

// Rescan reports whether the event says that events may have been lost, so
// the watcher should re-read the state it depends on (EventFailover,
// EventMissed).
func (e Event) Rescan() bool { return e.Type == EventFailover || e.Type == EventMissed }

// String renders the event on one line.
func (e Event) String() string {
	s := e.Type.String()
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.Child != "" {
		s += " child=" + e.Child
	}
	if e.Index != 0 {
		s += " index=" + strconv.FormatUint(e.Index, 10)
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}

// wireEventTypes maps the wire's node and lock event types to the client's.
var wireEventTypes = map[wire.EventType]EventType{
	wire.ContentChanged: EventContentChanged,
	wire.ChildAdded:     EventChildAdded,
	wire.ChildRemoved:   EventChildRemoved,
	wire.NodeDeleted:    EventNodeDeleted,
	wire.NodeCreated:    EventNodeCreated,
	wire.LockAcquired:   EventLockAcquired,
	wire.LockReleased:   EventLockReleased,
	wire.LockConflict:   EventLockConflict,
	wire.Failover:       EventFailover,
	wire.EventsLost:     EventMissed,
}

func eventFromWire(w wire.Event) (Event, bool) {
	t, ok := wireEventTypes[w.Type]
	if !ok {
		return Event{}, false
	}
	return Event{
		Type:       t,
		Path:       w.Path,
		Child:      w.Child,
		Index:      w.Index,
		Instance:   w.Instance,
		ContentGen: w.ContentGen,
		LockGen:    w.LockGen,
		Mode:       LockMode(w.Mode),
		Session:    w.Session,
	}, true
}

// SessionEvent reports a change of the session's state, or a fail-over of
// the cell. Subscribe with Client.SessionEvents.
type SessionEvent struct {
	// State is the session's state after the event.
	State SessionState
	// Failover is true for the notice that the cell changed leader (State
	// is then unchanged, usually StateSafe).
	Failover bool
	// At is when the client saw the change (its clock).
	At time.Time
}

// String renders the event, such as "jeopardy" or "failover (safe)".
func (e SessionEvent) String() string {
	if e.Failover {
		return "failover (" + e.State.String() + ")"
	}
	return e.State.String()
}
