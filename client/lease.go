package client

import "time"

// SessionState is the client's view of its session, as in Chubby §2.8.
type SessionState uint8

// Session states.
const (
	// StateSafe: the local lease holds; the last KeepAlive succeeded.
	StateSafe SessionState = iota + 1
	// StateJeopardy: the local lease ran out without a successful
	// KeepAlive. The cell may still hold the session (it counts its lease
	// from later than the client does, and a new leader extends every
	// lease); the client keeps trying every replica for the grace period.
	// Locks may already have been lost: do not act on their authority.
	StateJeopardy
	// StateExpired: the grace period ended without a KeepAlive, or the cell
	// said the session is gone. Final.
	StateExpired
	// StateClosed: Close ended the session. Final.
	StateClosed
)

// String returns the state's name.
func (s SessionState) String() string {
	switch s {
	case StateSafe:
		return "safe"
	case StateJeopardy:
		return "jeopardy"
	case StateExpired:
		return "expired"
	case StateClosed:
		return "closed"
	}
	return "state?"
}

// lease is the pure core of the session's bookkeeping: the local lease end
// and the jeopardy/grace/expired transitions. It reads no clock; the
// keepalive loop passes times in.
//
//	safe --(now >= end)--> jeopardy --(now >= end+grace)--> expired
//	jeopardy --(renew)--> safe
//
// The lease end is estimated conservatively from each KeepAlive (see renew).
type lease struct {
	state SessionState
	end   time.Time // the local lease end: conservative (counted from the send plus the cell's hold)
	grace time.Duration
}

func newLease(sent time.Time, ttl, grace time.Duration) lease {
	return lease{state: StateSafe, end: sent.Add(ttl), grace: grace}
}

// renew records a successful KeepAlive, sent at sent, that the cell held for
// held (on its clock) and that granted ttl. The cell guarantees the lease for
// ttl from when it counted it, which is at least held after the call arrived,
// which is after sent: sent+held+ttl is a conservative estimate that needs no
// assumption about the reply's time in flight, only that the clocks advance
// at about the same rate (the session margin covers the difference; Chubby
// §2.8). The lease end only moves forward. It returns the new state and
// whether it changed (jeopardy -> safe). A final state never changes.
func (l *lease) renew(sent time.Time, held, ttl time.Duration) (SessionState, bool) {
	if l.final() {
		return l.state, false
	}
	if end := sent.Add(max(held, 0) + ttl); end.After(l.end) {
		l.end = end
	}
	if l.state == StateJeopardy {
		l.state = StateSafe
		return l.state, true
	}
	return l.state, false
}

// advance applies the passage of time up to now and returns the new state
// and whether it changed. A lease that is safe at end goes to jeopardy; one in
// jeopardy at end+grace expires. Both can happen in one call.
func (l *lease) advance(now time.Time) (SessionState, bool) {
	before := l.state
	if l.state == StateSafe && !now.Before(l.end) {
		l.state = StateJeopardy
	}
	if l.state == StateJeopardy && !now.Before(l.end.Add(l.grace)) {
		l.state = StateExpired
	}
	return l.state, l.state != before
}

// deadline returns when advance next has something to do (the zero time in
// a final state).
func (l *lease) deadline() time.Time {
	switch l.state {
	case StateSafe:
		return l.end
	case StateJeopardy:
		return l.end.Add(l.grace)
	}
	return time.Time{}
}

// final reports whether the session is over.
func (l *lease) final() bool { return l.state == StateExpired || l.state == StateClosed }
