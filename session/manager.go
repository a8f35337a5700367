package session

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Lease names a session and its lease, for Failover.
type Lease struct {
	ID  uint64
	TTL time.Duration // 0 means Config.Lease
}

// Reply is what KeepAlive returns.
type Reply[E any] struct {
	// TTL is the lease granted from now. The client should count it from
	// when it sent the KeepAlive, which is conservative.
	TTL time.Duration
	// Expiry is the lease's end on the Manager's clock.
	Expiry time.Time
	// Items are the session's unacknowledged items in Seq order, at most
	// Config.MaxBatch. They are sent again until acknowledged.
	Items []Item[E]
}

// Manager tracks the leases, KeepAlive waiters, event queues and watches of
// the sessions a leader serves. E is the event type the lockserver delivers
// (for example its wire event); the Manager never looks inside it. All
// methods are safe for concurrent use; see the package doc for the locking.
type Manager[E any] struct {
	cfg    Config
	clock  Clock
	log    *slog.Logger
	base   time.Time // times are kept as durations since base (monotonic)
	shards []shard[E]
	mask   uint64
	count  atomic.Int64 // sessions tracked, expired ones included
	held   atomic.Int64 // KeepAlives held
	closed atomic.Bool
	done   chan struct{} // closed by Close
	once   sync.Once
	index  watchIndex
}

type shard[E any] struct {
	mu       sync.Mutex
	sessions map[uint64]*entry[E]
	heap     timerHeap[E]
	closed   bool
	_        [64]byte // keep shards' locks on separate cache lines
}

// entry is one session. Guarded by its shard's lock.
type entry[E any] struct {
	id      uint64
	lease   time.Duration
	hold    time.Duration // how long a KeepAlive is held: lease - margin
	expiry  time.Duration // the lease's end, since base
	key     time.Duration // heap key: at or before the next due time
	index   int           // position in the heap; -1 once expired
	expired bool          // reported by Tick (or about to be); never renewed again
	waiter  *waiter
	queue   queue[E]
	watches map[uint64]watchSpec // nil until the first Watch
	nextW   uint64
}

// next returns when the entry next needs attention.
func (e *entry[E]) next() time.Duration {
	if e.waiter != nil {
		return min(e.waiter.deadline, e.expiry)
	}
	return e.expiry
}

// wakeReason says why a held KeepAlive was released.
type wakeReason uint8

const (
	wakeNone       wakeReason = iota
	wakeDeadline              // the lease is close to its end: reply and renew
	wakeEvents                // events are queued
	wakeSuperseded            // a newer KeepAlive for the session arrived
	wakeRemoved               // the session was removed
	wakeExpired               // the lease ran out
	wakeClosed                // the Manager was closed
)

// waiter is a held KeepAlive. ch is closed (under the shard lock, after why
// is set) to release it.
type waiter struct {
	ch       chan struct{}
	deadline time.Duration
	why      wakeReason
}

// wake releases e's waiter, if any. The heap key is left as is (early keys
// are fixed lazily by Tick), so waking is O(1). Called with the shard lock
// held.
func (m *Manager[E]) wake(e *entry[E], why wakeReason) {
	if ch := m.detach(e, why); ch != nil {
		close(ch)
	}
}

// detach is wake without the signal: it returns the channel to close, which
// the caller closes after releasing the shard lock, so that a burst of
// woken KeepAlives does not pile up on the lock the waker holds.
func (m *Manager[E]) detach(e *entry[E], why wakeReason) chan struct{} {
	w := e.waiter
	if w == nil {
		return nil
	}
	w.why = why
	e.waiter = nil
	m.held.Add(-1)
	return w.ch
}

func closeAll(chs []chan struct{}) {
	for _, ch := range chs {
		close(ch)
	}
}

// New returns a Manager. It starts no goroutine: call Tick periodically, or
// Run.
func New[E any](cfg Config) (*Manager[E], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager[E]{
		cfg:    cfg,
		clock:  cfg.Clock,
		log:    cfg.Logger,
		shards: make([]shard[E], cfg.Shards),
		mask:   uint64(cfg.Shards - 1),
		done:   make(chan struct{}),
	}
	if m.clock == nil {
		m.clock = systemClock{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for i := range m.shards {
		m.shards[i].sessions = make(map[uint64]*entry[E])
	}
	m.index.init()
	m.base = m.clock.Now()
	return m, nil
}

func (m *Manager[E]) now() time.Duration { return m.clock.Now().Sub(m.base) }

func (m *Manager[E]) shard(id uint64) *shard[E] {
	// Fibonacci hashing spreads sequential ids over the shards.
	return &m.shards[(id*0x9E3779B97F4A7C15)>>32&m.mask]
}

func (m *Manager[E]) leaseOf(ttl time.Duration) (lease, hold time.Duration, err error) {
	if ttl == 0 {
		ttl = m.cfg.Lease
	}
	if ttl < 0 {
		return 0, 0, ErrBadLease
	}
	return ttl, ttl - min(m.cfg.Margin, ttl/2), nil
}

// Open starts tracking a new session with the given lease (0 means
// Config.Lease), counted from now. Call it when the OpenSession command has
// been applied. It fails with ErrExists, ErrLimit (MaxSessions reached),
// ErrBadLease or ErrClosed.
func (m *Manager[E]) Open(id uint64, lease time.Duration) error {
	lease, hold, err := m.leaseOf(lease)
	if err != nil {
		return err
	}
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return ErrClosed
	}
	if _, ok := sh.sessions[id]; ok {
		return ErrExists
	}
	if m.count.Add(1) > int64(m.cfg.MaxSessions) {
		m.count.Add(-1)
		return ErrLimit
	}
	e := &entry[E]{id: id, lease: lease, hold: hold}
	e.expiry = m.now() + lease
	e.key = e.expiry
	sh.sessions[id] = e
	sh.heap.push(e)
	return nil
}

// Remove stops tracking a session: call it when a close or expire command
// for it has been applied. A KeepAlive held for it returns ErrUnknown, and
// its watches are dropped. It reports whether the session was tracked.
func (m *Manager[E]) Remove(id uint64) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return m.removeLocked(sh, id)
}

func (m *Manager[E]) removeLocked(sh *shard[E], id uint64) bool {
	e, ok := sh.sessions[id]
	if !ok {
		return false
	}
	delete(sh.sessions, id)
	sh.heap.remove(e)
	m.wake(e, wakeRemoved)
	m.index.removeAll(id, e.watches)
	m.count.Add(-1)
	return true
}

// Failover gives every listed session a fresh full lease from now and queues
// a KindFailover item for it, waking its KeepAlive. A new leader calls it
// once with every session in the namespace, because it cannot know when the
// old leader last heard from them. Sessions not yet tracked are added (even
// past MaxSessions: the namespace is the authority); expired ones are
// revived. An entry with a negative TTL is skipped.
func (m *Manager[E]) Failover(leases []Lease) {
	if m.closed.Load() {
		return
	}
	now := m.now()
	for _, l := range leases {
		lease, hold, err := m.leaseOf(l.TTL)
		if err != nil {
			m.log.Warn("session: failover skipped a session with a bad lease", "session", l.ID, "lease", l.TTL)
			continue
		}
		sh := m.shard(l.ID)
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return
		}
		e, ok := sh.sessions[l.ID]
		if !ok {
			e = &entry[E]{id: l.ID, index: -1}
			sh.sessions[l.ID] = e
			m.count.Add(1)
		}
		e.lease, e.hold = lease, hold
		e.expiry = now + lease
		e.expired = false
		e.queue.push(KindFailover, *new(E), m.cfg.QueueLen)
		m.wake(e, wakeEvents)
		e.key = e.next()
		if e.index < 0 {
			sh.heap.push(e)
		} else {
			sh.heap.fix(e.index)
		}
		sh.mu.Unlock()
	}
	m.log.Info("session: leases extended after failover", "sessions", len(leases))
}

// live returns the session id if it can be served now, or the error to
// return. Called with the shard lock held.
func (sh *shard[E]) live(id uint64, now time.Duration) (*entry[E], error) {
	if sh.closed {
		return nil, ErrClosed
	}
	e, ok := sh.sessions[id]
	if !ok {
		return nil, ErrUnknown
	}
	if e.expired || now >= e.expiry {
		// A lease that ran out is never renewed; Tick reports it.
		return nil, ErrExpired
	}
	return e, nil
}

// KeepAlive is the long poll of session id. It drops the items up to acked,
// renews the lease, and returns at once if items are queued. Otherwise it
// holds until items arrive, until the lease is Margin from its end (the
// deadline, seen by Tick), or until ctx is done; then it renews the lease
// again and returns the items. It fails with ErrUnknown, ErrExpired (the
// lease ran out before the KeepAlive arrived, or while it was held),
// ErrSuperseded (a newer KeepAlive for the session arrived), ErrClosed, or
// ctx's error. An abandoned KeepAlive leaves the lease as renewed on
// arrival.
func (m *Manager[E]) KeepAlive(ctx context.Context, id, acked uint64) (Reply[E], error) {
	sh := m.shard(id)
	sh.mu.Lock()
	now := m.now()
	e, err := sh.live(id, now)
	if err != nil {
		sh.mu.Unlock()
		return Reply[E]{}, err
	}
	e.queue.ack(acked)
	m.wake(e, wakeSuperseded)
	if e.queue.len() > 0 {
		r := m.replyLocked(e, now)
		sh.mu.Unlock()
		return r, nil
	}
	w := &waiter{ch: make(chan struct{}), deadline: now + e.hold}
	e.expiry = now + e.lease // renewed on arrival: a held KeepAlive is proof of life
	e.waiter = w
	m.held.Add(1)
	if e.key > w.deadline {
		sh.heap.setKey(e, w.deadline)
	}
	sh.mu.Unlock()

	select {
	case <-w.ch:
	case <-ctx.Done():
	}

	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.waiter == w {
		e.waiter = nil // abandoned: the early heap key is fixed lazily by Tick
		m.held.Add(-1)
	}
	switch w.why {
	case wakeNone:
		return Reply[E]{}, ctx.Err()
	case wakeSuperseded:
		return Reply[E]{}, ErrSuperseded
	case wakeRemoved:
		return Reply[E]{}, ErrUnknown
	case wakeExpired:
		return Reply[E]{}, ErrExpired
	case wakeClosed:
		return Reply[E]{}, ErrClosed
	}
	// Woken for a deadline or events; the session may have been removed or
	// the Manager closed since.
	if sh.closed {
		return Reply[E]{}, ErrClosed
	}
	if sh.sessions[id] != e {
		return Reply[E]{}, ErrUnknown
	}
	now = m.now()
	if e.expired || now >= e.expiry {
		return Reply[E]{}, ErrExpired
	}
	return m.replyLocked(e, now), nil
}

// replyLocked renews e's lease from now and builds the reply. The heap key
// stays as is: it can only be early, which Tick handles.
func (m *Manager[E]) replyLocked(e *entry[E], now time.Duration) Reply[E] {
	e.expiry = now + e.lease
	return Reply[E]{
		TTL:    e.lease,
		Expiry: m.base.Add(e.expiry),
		Items:  e.queue.peek(m.cfg.MaxBatch),
	}
}

// Deliver appends events to session id's queue and wakes its KeepAlive. It
// never blocks on a client and costs O(1) per event: if the queue is full,
// its contents are replaced by one KindLost item. It reports false (and
// drops the events) if the session is unknown, expired, or the Manager is
// closed.
func (m *Manager[E]) Deliver(id uint64, events ...E) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.sessions[id]
	if !ok || e.expired || sh.closed {
		return false
	}
	lost := false
	for _, ev := range events {
		if e.queue.push(KindEvent, ev, m.cfg.QueueLen) {
			lost = true
		}
	}
	if lost {
		m.log.Warn("session: event queue overflowed; events lost", "session", id)
	}
	if len(events) > 0 {
		m.wake(e, wakeEvents)
	}
	return true
}

// Tick releases the KeepAlives whose deadline has passed and returns the ids
// of sessions whose lease has run out, in increasing order. Each expired
// session is returned by exactly one Tick; it stays known (KeepAlive and
// Deliver refuse it) until Remove. The caller proposes an expire command for
// each id. Tick is cheap when nothing is due: O(shards).
func (m *Manager[E]) Tick() []uint64 {
	if m.closed.Load() {
		return nil
	}
	now := m.now()
	var expired []uint64
	var wake []chan struct{}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for len(sh.heap) > 0 && sh.heap[0].key <= now {
			e := sh.heap[0]
			if w := e.waiter; w != nil && w.deadline <= now {
				wake = append(wake, m.detach(e, wakeDeadline))
			}
			if e.expiry <= now {
				e.expired = true
				if ch := m.detach(e, wakeExpired); ch != nil {
					wake = append(wake, ch)
				}
				sh.heap.remove(e)
				expired = append(expired, e.id)
				continue
			}
			sh.heap.setKey(e, e.next())
		}
		sh.mu.Unlock()
		closeAll(wake)
		wake = wake[:0]
	}
	slices.Sort(expired)
	for _, id := range expired {
		m.log.Info("session: lease expired", "session", id)
	}
	return expired
}

// Run calls Tick every interval and passes expired sessions to onExpire,
// until ctx is done or the Manager is closed. It runs in the caller's
// goroutine; onExpire must not block for long (propose and return).
func (m *Manager[E]) Run(ctx context.Context, interval time.Duration, onExpire func(ids []uint64)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.done:
			return
		case <-t.C:
			if ids := m.Tick(); len(ids) > 0 {
				onExpire(ids)
			}
		}
	}
}

// Close ends the Manager, when this replica stops being the leader: held
// KeepAlives return ErrClosed, later calls fail with ErrClosed or do
// nothing, and Run returns. Close is idempotent.
func (m *Manager[E]) Close() {
	m.once.Do(func() {
		m.closed.Store(true)
		for i := range m.shards {
			sh := &m.shards[i]
			sh.mu.Lock()
			sh.closed = true
			var wake []chan struct{}
			for _, e := range sh.sessions {
				if ch := m.detach(e, wakeClosed); ch != nil {
					wake = append(wake, ch)
				}
			}
			sh.mu.Unlock()
			closeAll(wake)
		}
		close(m.done)
	})
}

// Expiry returns the end of session id's lease and whether the session is
// tracked and not expired.
func (m *Manager[E]) Expiry(id uint64) (time.Time, bool) {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.sessions[id]
	if !ok || e.expired {
		return time.Time{}, false
	}
	return m.base.Add(e.expiry), true
}

// Len returns the number of sessions tracked, expired ones not yet removed
// included.
func (m *Manager[E]) Len() int { return int(m.count.Load()) }

// Held returns the number of KeepAlives being held (a gauge for metrics).
func (m *Manager[E]) Held() int { return int(m.held.Load()) }
