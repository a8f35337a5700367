package session

// Kind says what a queued Item is.
type Kind uint8

// Item kinds.
const (
	// KindEvent is an event given to Deliver; Item.Event holds it.
	KindEvent Kind = iota + 1
	// KindFailover is queued by Failover: a new leader took over and the
	// client should re-read what it caches and register its watches again.
	KindFailover
	// KindLost replaces a queue that overflowed: events were dropped and the
	// client should re-read.
	KindLost
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "event"
	case KindFailover:
		return "failover"
	case KindLost:
		return "lost"
	}
	return "kind?"
}

// Item is one entry of a session's event queue.
type Item[E any] struct {
	// Seq numbers the session's items: strictly increasing, starting at 1.
	// A client acknowledges items by Seq on its next KeepAlive.
	Seq   uint64
	Kind  Kind
	Event E // the delivered event; zero unless Kind is KindEvent
}

// keepCap is the largest backing array an empty queue keeps for reuse.
const keepCap = 64

// queue is a session's bounded FIFO of unacknowledged items. Items stay in
// the queue after they are sent, until acknowledged, so a lost reply is sent
// again. Not safe for concurrent use: the shard lock guards it.
type queue[E any] struct {
	items []Item[E]
	head  int
	next  uint64 // the Seq of the next item; 0 means 1
}

func (q *queue[E]) len() int { return len(q.items) - q.head }

// push appends an item. If the queue already holds limit items, they (and
// this one) are replaced by a single KindLost item, and push reports true.
func (q *queue[E]) push(kind Kind, ev E, limit int) (overflow bool) {
	if q.next == 0 {
		q.next = 1
	}
	if q.len() >= limit {
		q.items = make([]Item[E], 0, 4) // let the long backlog be collected
		q.head = 0
		kind, ev, overflow = KindLost, *new(E), true
	} else if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, Item[E]{Seq: q.next, Kind: kind, Event: ev})
	q.next++
	return overflow
}

// ack drops the items with Seq <= acked.
func (q *queue[E]) ack(acked uint64) {
	for q.head < len(q.items) && q.items[q.head].Seq <= acked {
		q.items[q.head] = Item[E]{}
		q.head++
	}
	if q.head == len(q.items) {
		q.head = 0
		if cap(q.items) > keepCap {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
	}
}

// peek returns a copy of the first n items at most.
func (q *queue[E]) peek(n int) []Item[E] {
	n = min(n, q.len())
	if n == 0 {
		return nil
	}
	return append([]Item[E](nil), q.items[q.head:q.head+n]...)
}
