package namespace

import (
	"container/heap"
	"math"
	"slices"
	"time"
)

// Locks. Any node is a reader/writer lock. A lockState exists only while the
// lock is held, has waiters, or is in lock-delay; it lives in Tree.locks keyed
// by path and dies with its node.
//
// Granting rules: a request is granted at once when no lock-delay is pending,
// no one is queued, and the lock is free or held shared and the request is
// shared. Otherwise it fails (try) or queues (FlagWait), FIFO. Whenever the
// holders change, the head of the queue is granted while it is compatible:
// one exclusive waiter, or every shared waiter at the head. While a
// lock-delay is pending nothing is granted; the first command applied at or
// after its end grants the queue (Tree.endDelays).

type holder struct {
	session uint64
	delay   time.Duration // lock-delay applied if the session expires
}

type waiter struct {
	session uint64
	request uint64
	mode    Mode
	delay   time.Duration
}

type lockState struct {
	path       string
	node       *node
	mode       Mode // of the holders; ModeNone when free
	holders    []holder
	waiters    []waiter
	delayUntil int64  // end of the pending lock-delay; past values mean none
	heapIdx    [2]int // positions in Tree.delayed and Tree.blocked, -1 if absent
}

func (ls *lockState) holderIndex(id uint64) int {
	return slices.IndexFunc(ls.holders, func(h holder) bool { return h.session == id })
}

func (ls *lockState) waiterIndex(id uint64) int {
	return slices.IndexFunc(ls.waiters, func(w waiter) bool { return w.session == id })
}

func (t *Tree) sequencer(ls *lockState) Sequencer {
	return Sequencer{Path: ls.path, Mode: ls.mode, LockGen: ls.node.lockGen, Instance: ls.node.instance}
}

// addTime returns now+d, saturating at the largest time.
func addTime(now int64, d time.Duration) int64 {
	if now > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return now + int64(d)
}

// lockDelay resolves an acquire's requested lock-delay.
func (t *Tree) lockDelay(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d == 0:
		return t.cfg.DefaultLockDelay
	case d > t.cfg.MaxLockDelay:
		return t.cfg.MaxLockDelay
	}
	return d
}

// lockTarget does the checks common to the lock ops: session, path, node.
func (t *Tree) lockTarget(cmd *Command, s *session) (*node, *Error) {
	if s == nil {
		return nil, errorf(CodeInvalidCommand, "%s needs a session", cmd.Op)
	}
	n, _, err := t.find(cmd.Path)
	return n, err
}

// acquire applies OpAcquire. Checks: session, mode, path, existence, write
// right (either mode, as in Chubby: a reader cannot block writers); then a
// holder asking again gets its sequencer (same mode) or ErrLocked (other
// mode), and a waiter asking again stays queued.
func (t *Tree) acquire(cmd *Command, s *session) Result {
	if s == nil {
		return fail(errorf(CodeInvalidCommand, "%s needs a session", cmd.Op))
	}
	if cmd.Mode != ModeExclusive && cmd.Mode != ModeShared {
		return fail(errorf(CodeInvalidCommand, "lock mode %s", cmd.Mode))
	}
	n, err := t.lockTarget(cmd, s)
	if err != nil {
		return fail(err)
	}
	if err := t.checkRight(cmd.Path, n, RightWrite, cmd, s); err != nil {
		return fail(err)
	}
	ls := t.locks[cmd.Path]
	if ls != nil {
		if i := ls.holderIndex(s.id); i >= 0 {
			if ls.mode != cmd.Mode {
				return fail(errorf(CodeLocked, "session %d holds %s in %s mode", s.id, quote(cmd.Path), ls.mode))
			}
			return Result{Sequencer: t.sequencer(ls)}
		}
		if ls.waiterIndex(s.id) >= 0 {
			return Result{Queued: true}
		}
	}
	delay := t.lockDelay(cmd.LockDelay)
	if ls == nil {
		ls = t.newLockState(cmd.Path, n)
		t.locks[cmd.Path] = ls
	}
	if ls.delayUntil <= t.now && len(ls.waiters) == 0 &&
		(len(ls.holders) == 0 || ls.mode == ModeShared && cmd.Mode == ModeShared) {
		t.grant(ls, s, cmd.Request, cmd.Mode, delay)
		return Result{Sequencer: t.sequencer(ls)}
	}
	for _, h := range ls.holders {
		t.emit(Event{Kind: EventLockConflict, Path: ls.path, Instance: n.instance, Session: h.session, By: s.id, Reader: n.reader()})
	}
	if cmd.Flags&FlagWait == 0 {
		err := errorf(CodeLocked, "%s is held in %s mode with %d waiting", quote(cmd.Path), ls.mode, len(ls.waiters))
		if ls.delayUntil > t.now {
			err = errorf(CodeLocked, "%s is in lock-delay until %d", quote(cmd.Path), ls.delayUntil)
		}
		t.settle(ls)
		return fail(err)
	}
	ls.waiters = append(ls.waiters, waiter{session: s.id, request: cmd.Request, mode: cmd.Mode, delay: delay})
	s.waiting = insertSorted(s.waiting, ls.path)
	t.settle(ls)
	return Result{Queued: true}
}

// grant makes s a holder of ls in mode, counting a new lock generation when
// the lock was free.
func (t *Tree) grant(ls *lockState, s *session, request uint64, mode Mode, delay time.Duration) {
	if len(ls.holders) == 0 {
		ls.node.lockGen++
		ls.mode = mode
	}
	ls.holders = append(ls.holders, holder{session: s.id, delay: delay})
	s.held = insertSorted(s.held, ls.path)
	t.emit(Event{Kind: EventLockAcquired, Path: ls.path, Instance: ls.node.instance,
		Session: s.id, Request: request, Sequencer: t.sequencer(ls), Reader: ls.node.reader()})
}

// promote grants the head of the queue while it is compatible with the
// holders and no lock-delay is pending. A granted waiter's stored result (if
// still kept) becomes the grant, so a retried Acquire reports it.
func (t *Tree) promote(ls *lockState) {
	for len(ls.waiters) > 0 && ls.delayUntil <= t.now {
		w := ls.waiters[0]
		if len(ls.holders) > 0 && (ls.mode != ModeShared || w.mode != ModeShared) {
			return
		}
		ls.waiters = slices.Delete(ls.waiters, 0, 1)
		s := t.sessions[w.session]
		s.waiting = removeSorted(s.waiting, ls.path)
		t.grant(ls, s, w.request, w.mode, w.delay)
		s.results.update(w.request, Result{Sequencer: t.sequencer(ls)})
	}
}

// release applies OpRelease. Checks: session, path, existence, holder, lock
// generation.
func (t *Tree) release(cmd *Command, s *session) Result {
	n, err := t.lockTarget(cmd, s)
	if err != nil {
		return fail(err)
	}
	ls := t.locks[cmd.Path]
	if ls == nil || ls.holderIndex(s.id) < 0 {
		return fail(errorf(CodeNotHolder, "session %d, %s", s.id, quote(cmd.Path)))
	}
	if cmd.Generation != 0 && cmd.Generation != n.lockGen {
		return fail(errorf(CodeGenerationMismatch, "lock generation of %s is %d, not %d", quote(cmd.Path), n.lockGen, cmd.Generation))
	}
	t.dropHolder(ls, s, ReasonReleased, false)
	return Result{}
}

// cancel applies OpCancel. Checks: session, path, existence, waiter.
func (t *Tree) cancel(cmd *Command, s *session) Result {
	if _, err := t.lockTarget(cmd, s); err != nil {
		return fail(err)
	}
	ls := t.locks[cmd.Path]
	if ls == nil || ls.waiterIndex(s.id) < 0 {
		return fail(errorf(CodeNotWaiting, "session %d, %s", s.id, quote(cmd.Path)))
	}
	t.dropWaiter(ls, s, ReasonCanceled)
	return Result{}
}

// dropHolder removes s from the holders of ls, starting the holder's
// lock-delay if expired, and grants what can be granted.
func (t *Tree) dropHolder(ls *lockState, s *session, reason Reason, expired bool) {
	i := ls.holderIndex(s.id)
	h := ls.holders[i]
	ls.holders = slices.Delete(ls.holders, i, i+1)
	if len(ls.holders) == 0 {
		ls.mode = ModeNone
	}
	s.held = removeSorted(s.held, ls.path)
	t.emit(Event{Kind: EventLockReleased, Path: ls.path, Instance: ls.node.instance, Session: s.id, Reason: reason, Reader: ls.node.reader()})
	if expired && h.delay > 0 {
		ls.delayUntil = max(ls.delayUntil, addTime(t.now, h.delay))
	}
	t.promote(ls)
	t.settle(ls)
}

// dropWaiter removes the queued acquire of s from ls and grants what can be
// granted. A canceled acquire's stored result becomes ErrCanceled.
func (t *Tree) dropWaiter(ls *lockState, s *session, reason Reason) {
	i := ls.waiterIndex(s.id)
	w := ls.waiters[i]
	ls.waiters = slices.Delete(ls.waiters, i, i+1)
	s.waiting = removeSorted(s.waiting, ls.path)
	t.emit(Event{Kind: EventWaitCanceled, Path: ls.path, Instance: ls.node.instance, Session: s.id, Request: w.request, Reason: reason, Reader: ls.node.reader()})
	if reason == ReasonCanceled {
		s.results.update(w.request, fail(errorf(CodeCanceled, "%s", quote(ls.path))))
	}
	t.promote(ls)
	t.settle(ls)
}

// dropLock tears down the lock of a node being deleted: holders released,
// waiters dropped (their stored results become ErrNotFound), state removed.
func (t *Tree) dropLock(ls *lockState) {
	for _, h := range ls.holders {
		s := t.sessions[h.session]
		s.held = removeSorted(s.held, ls.path)
		t.emit(Event{Kind: EventLockReleased, Path: ls.path, Instance: ls.node.instance, Session: h.session, Reason: ReasonNodeDeleted, Reader: ls.node.reader()})
	}
	for _, w := range ls.waiters {
		s := t.sessions[w.session]
		s.waiting = removeSorted(s.waiting, ls.path)
		t.emit(Event{Kind: EventWaitCanceled, Path: ls.path, Instance: ls.node.instance, Session: w.session, Request: w.request, Reason: ReasonNodeDeleted, Reader: ls.node.reader()})
		s.results.update(w.request, fail(errorf(CodeNotFound, "%s was deleted while waiting", quote(ls.path))))
	}
	ls.holders, ls.waiters, ls.delayUntil = nil, nil, 0
	t.settle(ls)
}

// settle puts ls in the heaps it belongs to and forgets it when it is idle.
func (t *Tree) settle(ls *lockState) {
	delayed := ls.delayUntil > t.now
	t.delayed.set(ls, delayed)
	t.blocked.set(ls, delayed && len(ls.waiters) > 0)
	if !delayed && len(ls.holders) == 0 && len(ls.waiters) == 0 {
		delete(t.locks, ls.path)
		t.freeLockState(ls)
	}
}

// maxFreeLocks bounds the recycled lock states kept for reuse.
const maxFreeLocks = 64

// newLockState returns an empty lock state for the node at p, recycled when
// possible: taking and releasing locks then allocates nothing.
func (t *Tree) newLockState(p string, n *node) *lockState {
	if k := len(t.freeLocks); k > 0 {
		ls := t.freeLocks[k-1]
		t.freeLocks = t.freeLocks[:k-1]
		ls.path, ls.node = p, n
		return ls
	}
	return &lockState{path: p, node: n, heapIdx: [2]int{-1, -1}}
}

// freeLockState recycles an idle lock state that is no longer referenced.
func (t *Tree) freeLockState(ls *lockState) {
	if len(t.freeLocks) >= maxFreeLocks {
		return
	}
	clear(ls.holders[:cap(ls.holders)])
	clear(ls.waiters[:cap(ls.waiters)])
	*ls = lockState{holders: ls.holders[:0], waiters: ls.waiters[:0], heapIdx: [2]int{-1, -1}}
	t.freeLocks = append(t.freeLocks, ls)
}

// endDelays ends the lock-delays that are over at the current command time,
// earliest first (ties by path), granting their queues.
func (t *Tree) endDelays() {
	for len(t.delayed.items) > 0 {
		ls := t.delayed.items[0]
		if ls.delayUntil > t.now {
			return
		}
		ls.delayUntil = 0
		t.promote(ls)
		t.settle(ls)
	}
}

// lockHeap is a min-heap of locks by (delayUntil, path); slot says which
// heapIdx entry of a lockState tracks its position.
type lockHeap struct {
	items []*lockState
	slot  int
}

func (h *lockHeap) Len() int { return len(h.items) }

func (h *lockHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.delayUntil != b.delayUntil {
		return a.delayUntil < b.delayUntil
	}
	return a.path < b.path
}

func (h *lockHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].heapIdx[h.slot] = i
	h.items[j].heapIdx[h.slot] = j
}

func (h *lockHeap) Push(x any) {
	ls := x.(*lockState)
	ls.heapIdx[h.slot] = len(h.items)
	h.items = append(h.items, ls)
}

func (h *lockHeap) Pop() any {
	last := len(h.items) - 1
	ls := h.items[last]
	h.items[last] = nil
	h.items = h.items[:last]
	ls.heapIdx[h.slot] = -1
	return ls
}

// set adds, re-positions or removes ls.
func (h *lockHeap) set(ls *lockState, in bool) {
	i := ls.heapIdx[h.slot]
	switch {
	case in && i < 0:
		heap.Push(h, ls)
	case in:
		heap.Fix(h, i)
	case i >= 0:
		heap.Remove(h, i)
	}
}
