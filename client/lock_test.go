package client_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// Waiters are granted the lock in the order they asked, one at a time.
func TestLockFIFOHandoff(t *testing.T) {
	cell := startCell(t)
	holder := dial(t, cell)
	ctx := bg(t, 20*time.Second)
	const path = "/ls/fifo"
	first, err := holder.Lock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		order   []int
		gens    []uint64
		holders int
		wg      sync.WaitGroup
	)
	for i := range 4 {
		c := dial(t, cell)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Lock(ctx, path)
			if err != nil {
				t.Errorf("waiter %d: Lock: %v", i, err)
				return
			}
			mu.Lock()
			holders++
			if holders != 1 {
				t.Errorf("waiter %d granted while %d others hold %s", i, holders-1, path)
			}
			order = append(order, i)
			gens = append(gens, l.Sequencer().LockGen)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			holders--
			mu.Unlock()
			if err := l.Unlock(ctx); err != nil {
				t.Errorf("waiter %d: Unlock: %v", i, err)
			}
		}()
		// Queue the next waiter only once this one is queued.
		waitFor(t, 5*time.Second, "waiter to queue", func() bool { return waiters(t, holder, path) == i+1 })
	}
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !slices.Equal(order, []int{0, 1, 2, 3}) {
		t.Fatalf("grant order %v; want FIFO [0 1 2 3]", order)
	}
	if !slices.IsSorted(gens) || gens[0] <= first.Sequencer().LockGen || slices.Compact(slices.Clone(gens))[3] != gens[3] {
		t.Fatalf("lock generations %v after %d; want strictly increasing", gens, first.Sequencer().LockGen)
	}
}

func TestSharedAndExclusive(t *testing.T) {
	cell := startCell(t)
	a, b, w := dial(t, cell), dial(t, cell), dial(t, cell)
	ctx := bg(t)
	const path = "/ls/rw"
	ra, err := a.RLock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.TryRLock(ctx, path)
	if err != nil {
		t.Fatalf("second reader: %v; want a shared grant", err)
	}
	if ra.Mode() != client.Shared || rb.Mode() != client.Shared || ra.Sequencer().LockGen != rb.Sequencer().LockGen {
		t.Fatalf("readers %s and %s; want the same shared grant generation", ra.Sequencer(), rb.Sequencer())
	}
	if _, err := w.TryLock(ctx, path); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock while read-held = %v; want ErrLocked", err)
	}
	granted := make(chan *client.Lock, 1)
	go func() {
		l, err := w.Lock(ctx, path)
		if err != nil {
			t.Errorf("writer: %v", err)
		}
		granted <- l
	}()
	waitFor(t, 5*time.Second, "writer to queue", func() bool { return waiters(t, a, path) == 1 })
	// A writer is queued: a new reader may not jump it.
	c := dial(t, cell)
	if _, err := c.TryRLock(ctx, path); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryRLock with a writer queued = %v; want ErrLocked", err)
	}
	if err := ra.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-granted:
		t.Fatalf("writer granted while a reader still holds the lock")
	case <-time.After(50 * time.Millisecond):
	}
	if err := rb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wl, _ := recv(t, granted, 5*time.Second, "writer grant")
	if wl == nil || wl.Mode() != client.Exclusive || wl.Sequencer().LockGen <= ra.Sequencer().LockGen {
		t.Fatalf("writer grant %v; want exclusive with a new generation", wl)
	}
}

// One client holds a path at most once: a second Lock waits for the first
// Unlock, TryLock fails at once.
func TestOneClientHoldsAPathOnce(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)
	const path = "/ls/self"
	l, err := c.TryLock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryLock(ctx, path); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("second TryLock by the same client = %v; want ErrLocked", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.RLock(short, path)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RLock of a path the client holds = %v; want it to wait (DeadlineExceeded)", err)
	}
	second := make(chan *client.Lock, 1)
	go func() {
		l2, err := c.Lock(ctx, path)
		if err != nil {
			t.Errorf("second Lock: %v", err)
		}
		second <- l2
	}()
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l2, _ := recv(t, second, 5*time.Second, "second grant")
	if l2 == nil || l2.Sequencer().LockGen <= l.Sequencer().LockGen {
		t.Fatalf("second grant %v after %v", l2, l.Sequencer())
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSequencerStaleAfterRelease(t *testing.T) {
	cell := startCell(t)
	c, other := dial(t, cell), dial(t, cell)
	ctx := bg(t)
	l, err := c.Lock(ctx, "/ls/fence")
	if err != nil {
		t.Fatal(err)
	}
	seq := l.Sequencer()
	parsed, err := client.ParseSequencer(seq.String())
	if err != nil || parsed != seq {
		t.Fatalf("ParseSequencer(%q) = %+v, %v", seq, parsed, err)
	}
	for _, checker := range []*client.Client{c, other} {
		if ok, err := checker.CheckSequencer(ctx, parsed); err != nil || !ok {
			t.Fatalf("CheckSequencer(%s) while held = %v, %v; want true", seq, ok, err)
		}
	}
	if ok, err := other.CheckSequencer(ctx, client.Sequencer{Path: seq.Path, Mode: client.Shared, LockGen: seq.LockGen, Instance: seq.Instance}); err != nil || ok {
		t.Fatalf("CheckSequencer in the wrong mode = %v, %v; want false", ok, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("second Unlock = %v; want ErrNotHolder", err)
	}
	if ok, err := other.CheckSequencer(ctx, seq); err != nil || ok {
		t.Fatalf("CheckSequencer after release = %v, %v; want false", ok, err)
	}
	l2, err := other.Lock(ctx, "/ls/fence")
	if err != nil {
		t.Fatal(err)
	}
	if l2.Sequencer().LockGen <= seq.LockGen {
		t.Fatalf("next grant %s; want a greater generation than %s", l2.Sequencer(), seq)
	}
	if ok, _ := c.CheckSequencer(ctx, seq); ok {
		t.Fatalf("the old sequencer is valid again after a new grant")
	}
	if ok, err := c.CheckSequencer(ctx, l2.Sequencer(), client.Stale()); err != nil {
		t.Fatalf("stale CheckSequencer: %v", err)
	} else if !ok {
		t.Logf("stale CheckSequencer answered false (a lagging replica may)")
	}
	if _, err := c.CheckSequencer(ctx, client.Sequencer{Path: "/x", Mode: 9}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("CheckSequencer of a bad mode = %v; want ErrInvalid", err)
	}
}

// A Lock whose context ends while it waits returns the context's error and
// leaves nothing held or queued: the next waiter gets the lock.
func TestCanceledLockLeavesNothingHeld(t *testing.T) {
	cell := startCell(t)
	a, b, c := dial(t, cell), dial(t, cell), dial(t, cell)
	ctx := bg(t, 20*time.Second)
	const path = "/ls/cancel"
	la, err := a.Lock(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancelB := context.WithCancel(ctx)
	bErr := make(chan error, 1)
	go func() {
		_, err := b.Lock(bctx, path)
		bErr <- err
	}()
	waitFor(t, 5*time.Second, "b to queue", func() bool { return waiters(t, a, path) == 1 })
	cGot := make(chan *client.Lock, 1)
	go func() {
		l, err := c.Lock(ctx, path)
		if err != nil {
			t.Errorf("c: %v", err)
		}
		cGot <- l
	}()
	waitFor(t, 5*time.Second, "c to queue", func() bool { return waiters(t, a, path) == 2 })
	cancelB()
	if err := <-bErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Lock = %v; want context.Canceled", err)
	}
	waitFor(t, 5*time.Second, "b's request withdrawn", func() bool { return waiters(t, a, path) == 1 })
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	lc, _ := recv(t, cGot, 5*time.Second, "c's grant")
	locks, err := a.Locks(ctx, path)
	if err != nil || len(locks) != 1 || !slices.Equal(locks[0].Holders, []uint64{c.SessionID()}) {
		t.Fatalf("Locks = %+v, %v; want only c (%d) holding", locks, err, c.SessionID())
	}
	if err := lc.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// b may lock the path again once the withdrawal in the background has
	// freed its local slot.
	lb, err := b.Lock(ctx, path)
	if err != nil {
		t.Fatalf("b Lock after its canceled Lock: %v", err)
	}
	lb.Unlock(ctx)
}

// Cancel races with the grant: whichever wins, a canceled Lock never leaves
// the lock held.
func TestCanceledLockRacingTheGrant(t *testing.T) {
	cell := startCell(t)
	a, b := dial(t, cell), dial(t, cell)
	ctx := bg(t, 30*time.Second)
	const path = "/ls/race"
	for i := range 10 {
		la, err := a.Lock(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		bctx, cancelB := context.WithCancel(ctx)
		res := make(chan error, 1)
		go func() {
			l, err := b.Lock(bctx, path)
			if err == nil {
				err = l.Unlock(ctx)
			}
			res <- err
		}()
		waitFor(t, 5*time.Second, "b to queue", func() bool { return waiters(t, a, path) == 1 })
		go la.Unlock(ctx)
		time.Sleep(time.Duration(i) * time.Millisecond)
		cancelB()
		if err := <-res; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: b = %v", i, err)
		}
		// Whatever happened, a gets the lock again.
		waitFor(t, 5*time.Second, "the lock to be free", func() bool {
			locks, err := a.Locks(ctx, path)
			return err == nil && (len(locks) == 0 || len(locks[0].Holders) == 0 && locks[0].Waiters == 0)
		})
	}
}

// When the session expires, every held lock reports Lost, and another
// session gets the lock (after the lock-delay) with a greater generation.
func TestLostWhenSessionExpires(t *testing.T) {
	cell := startCell(t)
	a := dial(t, cell, shortLease)
	b := dial(t, cell)
	ctx := bg(t, 20*time.Second)
	events := a.SessionEvents()
	l, err := a.Lock(ctx, "/ls/lost", client.LockDelay(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.Lock(ctx, "/ls/lost2")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch, err := a.Watch(wctx, "/ls")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := b.Lock(ctx, "/ls/busy")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Unlock(ctx)
	waiting := make(chan error, 1)
	go func() {
		_, err := a.Lock(ctx, "/ls/busy")
		waiting <- err
	}()
	waitFor(t, 5*time.Second, "a to queue", func() bool { return waiters(t, b, "/ls/busy") == 1 })

	client.PauseKeepAlives(a, true)
	ev := nextState(t, events, 10*time.Second, "jeopardy")
	if ev.State != client.StateJeopardy {
		t.Fatalf("first event %v; want jeopardy", ev)
	}
	select {
	case <-l.Lost():
		t.Fatalf("Lost closed in jeopardy; want it closed only on expiry")
	default:
	}
	ev = nextState(t, events, 10*time.Second, "expiry")
	if ev.State != client.StateExpired {
		t.Fatalf("second event %v; want expired", ev)
	}
	recv(t, l.Lost(), time.Second, "Lost of the first lock")
	recv(t, other.Lost(), time.Second, "Lost of the second lock")
	for range watch {
	} // closed at expiry
	if _, err := a.Get(ctx, "/ls"); !errors.Is(err, client.ErrSessionExpired) {
		t.Fatalf("Get after expiry = %v; want ErrSessionExpired", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Unlock after expiry = %v; want ErrNotHolder", err)
	}
	if err, _ := recv(t, waiting, 5*time.Second, "the waiting Lock to end"); !errors.Is(err, client.ErrSessionExpired) {
		t.Fatalf("Lock waiting at expiry = %v; want ErrSessionExpired", err)
	}
	if a.State() != client.StateExpired {
		t.Fatalf("State() = %v; want expired", a.State())
	}
	// The cell expires the session too (its lease ran out) and b gets the
	// lock with a greater generation.
	lb, err := b.Lock(ctx, "/ls/lost")
	if err != nil {
		t.Fatal(err)
	}
	if lb.Sequencer().LockGen <= l.Sequencer().LockGen {
		t.Fatalf("b's grant %s; want a greater generation than %s", lb.Sequencer(), l.Sequencer())
	}
	if ok, err := b.CheckSequencer(ctx, l.Sequencer()); err != nil || ok {
		t.Fatalf("CheckSequencer(expired holder's) = %v, %v; want false", ok, err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close after expiry: %v", err)
	}
}

// Closing the client releases its locks at once (no lock-delay) and closes
// Lost.
func TestCloseReleasesLocks(t *testing.T) {
	cell := startCell(t)
	a, b := dial(t, cell), dial(t, cell)
	ctx := bg(t)
	l, err := a.Lock(ctx, "/ls/close", client.LockDelay(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	recv(t, l.Lost(), time.Second, "Lost at Close")
	lb, err := b.TryLock(ctx, "/ls/close")
	if err != nil {
		t.Fatalf("TryLock after the holder closed: %v; want the lock free at once", err)
	}
	lb.Unlock(ctx)
}

// Deleting a locked node drops the lock: the holder's Unlock says so and
// Lost closes.
func TestLockOfDeletedNode(t *testing.T) {
	cell := startCell(t)
	a, b := dial(t, cell), dial(t, cell)
	ctx := bg(t)
	l, err := a.Lock(ctx, "/ls/doomed")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "/ls/doomed"); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, client.ErrNotHolder) && !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Unlock of a deleted node's lock = %v; want ErrNotHolder or ErrNotFound", err)
	}
	recv(t, l.Lost(), time.Second, "Lost")
}
