package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Lock takes the exclusive lock on path, waiting in FIFO order behind
// earlier requests (the queue lives in the cell's replicated state, so it
// survives fail-overs). ctx cancels the wait: Lock then returns ctx's error
// and the client withdraws the request in the background, releasing the
// lock if it was granted meanwhile, so a canceled Lock never leaves a lock
// held. The node is created (with its parents) if it does not exist.
// Options: LockDelay.
//
// One Client holds a path at most once: a second Lock, RLock or TryLock of a
// path this client holds or waits for waits for (or, TryLock, fails with
// ErrLocked until) the first one's Unlock.
func (c *Client) Lock(ctx context.Context, path string, opts ...Option) (*Lock, error) {
	return c.lock(ctx, "Lock", path, Exclusive, true, opts)
}

// RLock takes the shared lock on path, waiting like Lock. Shared holders
// exclude exclusive ones, not each other. Options: LockDelay.
func (c *Client) RLock(ctx context.Context, path string, opts ...Option) (*Lock, error) {
	return c.lock(ctx, "RLock", path, Shared, true, opts)
}

// TryLock takes the exclusive lock on path if it can be granted at once, and
// fails with ErrLocked otherwise (held in a conflicting mode, requests
// queued ahead, or in lock-delay). Options: LockDelay.
func (c *Client) TryLock(ctx context.Context, path string, opts ...Option) (*Lock, error) {
	return c.lock(ctx, "TryLock", path, Exclusive, false, opts)
}

// TryRLock is TryLock for the shared lock. Options: LockDelay.
func (c *Client) TryRLock(ctx context.Context, path string, opts ...Option) (*Lock, error) {
	return c.lock(ctx, "TryRLock", path, Shared, false, opts)
}

func (c *Client) lock(ctx context.Context, op, path string, mode LockMode, wait bool, opts []Option) (*Lock, error) {
	o, err := c.prepare(op, path, optLockDelay, opts)
	if err != nil {
		return nil, err
	}
	var release func()
	if wait {
		release, err = c.slots.acquire(ctx, path, c.life.Done())
		if err != nil {
			return nil, c.ctxError(c.causeCtx(ctx), op, nil)
		}
	} else if release = c.slots.try(path); release == nil {
		return nil, fmt.Errorf("%s: %w: this client already holds or waits for %q", op, ErrLocked, path)
	}
	seq, err := c.acquire(ctx, op, path, mode, wait, o.lockDelay, release)
	if err != nil {
		return nil, err
	}
	l := &Lock{c: c, path: path, seq: seq, lost: make(chan struct{}), release: release}
	c.mu.Lock()
	if c.err != nil {
		// The session ended as the grant arrived: the grant is void.
		c.mu.Unlock()
		release()
		return nil, fmt.Errorf("%s: %w", op, c.Err())
	}
	c.locks[l] = struct{}{}
	c.mu.Unlock()
	return l, nil
}

// causeCtx returns ctx as do would see it: its error is the session's end
// if that came first.
func (c *Client) causeCtx(ctx context.Context) context.Context {
	if c.life.Err() != nil && ctx.Err() == nil {
		return c.life
	}
	return ctx
}

// acquire sends Acquire until it is granted or refused. A missing node is
// created (with parents) and the request sent again. On failure it either
// releases the local slot or hands it to the background withdrawal of a
// request that may still be queued.
func (c *Client) acquire(ctx context.Context, op, path string, mode LockMode, wait bool, delay time.Duration, release func()) (Sequencer, error) {
	for created := false; ; created = true {
		h := c.header()
		req := &wire.Acquire{Header: h, Path: path, Mode: wire.LockMode(mode), Wait: wait, LockDelay: delay}
		reply, err := c.do(ctx, op, req, callOpts{blocking: wait})
		if errors.Is(err, ErrNotFound) && !created {
			if err := c.ensureNode(ctx, op, path); err != nil {
				release()
				return Sequencer{}, err
			}
			continue
		}
		if err != nil {
			if wait && ctx.Err() != nil && c.life.Err() == nil {
				// The request may be queued at the cell (or even granted):
				// withdraw it before anyone else may use the slot.
				c.wg.Add(1)
				go c.withdraw(path, mode, h, release)
				return Sequencer{}, err
			}
			release()
			return Sequencer{}, err
		}
		r, ok := reply.(*wire.AcquireReply)
		if !ok {
			release()
			return Sequencer{}, fmt.Errorf("%s: %w: answered with %s", op, ErrProtocol, reply.Type())
		}
		return seqFromWire(r.Sequencer), nil
	}
}

// ensureNode creates path (and its parents) as an empty persistent node if
// it does not exist.
func (c *Client) ensureNode(ctx context.Context, op, path string) error {
	_, err := c.do(ctx, op, &wire.Put{Header: c.header(), Path: path, Create: true, Parents: true}, callOpts{})
	if err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// withdraw cancels the queued Acquire h (whose caller gave up), finds out
// whether it was granted after all, and if so releases the grant; then it
// frees the path's local slot. It runs until done or the session is over.
func (c *Client) withdraw(path string, mode LockMode, h wire.Header, release func()) {
	defer c.wg.Done()
	defer release()
	ctx := c.life
	const op = "Lock (withdraw)"
	for range withdrawRounds {
		if _, err := c.do(ctx, op, &wire.Cancel{Header: c.header(), Target: h.Request}, callOpts{}); err != nil {
			if ctx.Err() == nil {
				c.log.Error("client: could not withdraw a canceled lock request", "path", path, "err", err)
			}
			return
		}
		// The same request id returns the request's stored outcome: the
		// grant, Canceled, or (if the Cancel overtook the request) still
		// queued. If the cell never saw the request, this try-once Acquire
		// is new, and a grant is released below all the same.
		again := &wire.Acquire{Header: h, Path: path, Mode: wire.LockMode(mode)}
		reply, err := c.do(ctx, op, again, callOpts{canceledIsFinal: true})
		if err != nil {
			return // canceled, locked, gone: nothing is held
		}
		r, ok := reply.(*wire.AcquireReply)
		if !ok {
			return
		}
		if r.Sequencer.LockGen == 0 {
			continue // still queued: cancel again
		}
		c.log.Debug("client: releasing a lock granted after its Lock call gave up", "path", path, "lockgen", r.Sequencer.LockGen)
		// The cell may have released it already (it does when the stream of
		// a waiting Acquire is abandoned): NotHolder is fine.
		_, err = c.do(ctx, op, &wire.Release{Header: c.header(), Path: path, LockGen: r.Sequencer.LockGen}, callOpts{})
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotHolder) && !errors.Is(err, ErrGenerationMismatch) {
			c.log.Error("client: could not release a lock granted after its Lock call gave up", "path", path, "err", err)
		}
		return
	}
	c.log.Error("client: a canceled lock request stays queued; it ends with the session", "path", path)
}

// withdrawRounds bounds the Cancel rounds of a withdrawal.
const withdrawRounds = 3

// Lock is a lock grant held by this client's session. Its methods are safe
// for concurrent use.
type Lock struct {
	c       *Client
	path    string
	seq     Sequencer
	lost    chan struct{}
	release func() // frees the path's local slot (idempotent)

	mu       sync.Mutex
	done     bool         // unlocked or lost
	lostOnce sync.Once    // closes lost
	unlockH  *wire.Header // the Release's header, reused when Unlock is retried
}

// Path returns the locked path.
func (l *Lock) Path() string { return l.path }

// Mode returns the lock's mode.
func (l *Lock) Mode() LockMode { return l.seq.Mode }

// Sequencer returns the grant's fencing token.
func (l *Lock) Sequencer() Sequencer { return l.seq }

// Lost returns a channel that is closed if the lock is lost while held: the
// session expired or was closed, or the cell no longer counts this session as
// the holder (found by Unlock). It is not closed by a successful Unlock.
// Note that a session in jeopardy (see SessionEvents) may already have lost
// its locks at the cell; Lost is closed when the client knows.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Unlock releases this grant. The release names the grant's lock generation,
// so it can never free a later grant; a retried Unlock (after an error that
// left the outcome unknown, such as ctx ending) reuses the same request id,
// so it applies once. It fails with ErrNotHolder if the lock was already
// unlocked or lost.
func (l *Lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return fmt.Errorf("Unlock: %w: %s was already unlocked or lost", ErrNotHolder, l.path)
	}
	if l.unlockH == nil {
		h := l.c.header()
		l.unlockH = &h
	}
	h := *l.unlockH
	l.mu.Unlock()

	_, err := l.c.do(ctx, "Unlock", &wire.Release{Header: h, Path: l.path, LockGen: l.seq.LockGen}, callOpts{})
	switch {
	case err == nil:
		l.finish(false)
		return nil
	case errors.Is(err, ErrNotHolder), errors.Is(err, ErrGenerationMismatch), errors.Is(err, ErrNotFound):
		// The cell does not count this grant any more.
		l.finish(true)
		return err
	case errors.Is(err, ErrSessionExpired), errors.Is(err, ErrClosed):
		l.finish(true)
		return err
	}
	// Unknown outcome: the lock stays ours until a retry says otherwise.
	return err
}

// finish marks the grant over, frees the slot, and closes Lost if lost.
func (l *Lock) finish(lost bool) {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
	c := l.c
	c.mu.Lock()
	if c.locks != nil {
		delete(c.locks, l)
	}
	c.mu.Unlock()
	l.release()
	if lost {
		l.markLost()
	}
}

// markLost closes Lost (once) and frees the path's local slot.
func (l *Lock) markLost() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
	l.release()
	l.lostOnce.Do(func() { close(l.lost) })
}

// CheckSequencer asks the cell whether seq is still current: the lock is
// held in that mode with that generation on the same node instance.
// Options: Stale.
func (c *Client) CheckSequencer(ctx context.Context, seq Sequencer, opts ...Option) (bool, error) {
	o, err := parseOptions("CheckSequencer", optStale, opts)
	if err != nil {
		return false, err
	}
	if err := checkPath("CheckSequencer", seq.Path); err != nil {
		return false, err
	}
	if seq.Mode != Exclusive && seq.Mode != Shared {
		return false, fmt.Errorf("CheckSequencer: %w: mode %s", ErrInvalid, seq.Mode)
	}
	reply, err := c.do(ctx, "CheckSequencer", &wire.CheckSequencer{Header: c.readHeader(o.stale), Sequencer: seq.toWire(), Stale: o.stale}, callOpts{})
	if err != nil {
		return false, err
	}
	r, ok := reply.(*wire.CheckReply)
	if !ok {
		return false, fmt.Errorf("CheckSequencer: %w: answered with %s", ErrProtocol, reply.Type())
	}
	return r.Valid, nil
}

// pathSlots lets one Client hold or wait for a path's lock at most once at a
// time: the cell counts locks per session, so two Lock calls of one client
// on one path would otherwise share a grant.
type pathSlots struct {
	mu sync.Mutex
	m  map[string]*slot
}

type slot struct {
	ch   chan struct{} // capacity 1: full while taken
	refs int
}

func (p *pathSlots) ref(path string) *slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.m[path]
	if s == nil {
		s = &slot{ch: make(chan struct{}, 1)}
		p.m[path] = s
	}
	s.refs++
	return s
}

func (p *pathSlots) unref(path string, s *slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(p.m, path)
	}
}

// acquire takes path's slot, waiting until it is free, ctx ends or done is
// closed. It returns the function that frees it (safe to call twice).
func (p *pathSlots) acquire(ctx context.Context, path string, done <-chan struct{}) (func(), error) {
	s := p.ref(path)
	select {
	case s.ch <- struct{}{}:
		return p.releaser(path, s), nil
	case <-ctx.Done():
		p.unref(path, s)
		return nil, ctx.Err()
	case <-done:
		p.unref(path, s)
		return nil, ErrClosed
	}
}

// try takes path's slot if it is free, or returns nil.
func (p *pathSlots) try(path string) func() {
	s := p.ref(path)
	select {
	case s.ch <- struct{}{}:
		return p.releaser(path, s)
	default:
		p.unref(path, s)
		return nil
	}
}

func (p *pathSlots) releaser(path string, s *slot) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-s.ch
			p.unref(path, s)
		})
	}
}
