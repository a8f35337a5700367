package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Client is a session with a latch cell. It keeps the session alive in the
// background, follows the leader across replicas, retries calls with the
// same request id (so a retried write applies once), and reports the
// session's state as Chubby's library does: jeopardy when the local lease
// runs out, safe when a KeepAlive gets through again, expired when the grace
// period ends (see SessionEvents).
//
// A Client is bound to one session. Once the session has expired, every call
// fails with ErrSessionExpired, every held Lock reports Lost, and every watch
// channel is closed; Dial a new Client to go on. A Client is safe for
// concurrent use by many goroutines. Close it when done: no goroutine it
// started outlives Close.
type Client struct {
	cfg  Config
	log  *slog.Logger
	pool *pool

	sid     uint64
	timeout time.Duration // the lease the cell granted
	// principal and superuser: who the cell took the client for when it
	// opened the session.
	principal string
	superuser bool
	rid       atomic.Uint64 // the last request id used

	// life is canceled (with the reason as cause) when the session is over.
	life    context.Context
	endLife context.CancelCauseFunc

	mu       sync.Mutex
	lease    lease
	closing  bool
	err      error // why the session is over; nil while it lives
	subs     []chan SessionEvent
	locks    map[*Lock]struct{}
	watchers map[*watcher]struct{}
	epoch    uint64 // rewatch rounds started (fail-overs seen)

	slots pathSlots

	rewatch   chan struct{} // signals the rewatch loop (capacity 1)
	pauseKA   atomic.Bool   // test hook: stop sending KeepAlives
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Dial connects to the cell named by cfg.Endpoints and opens a session. ctx
// bounds the whole exchange; without a deadline, cfg.OpenTimeout does. The
// returned Client keeps the session alive until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return open(ctx, cfg, newPool(cfg))
}

// NewSession opens another session with the cell over c's connection, as
// etcd's concurrency.NewSession does over one clientv3.Client: the returned
// Client has a lease, locks, ephemeral nodes, watches and events of its
// own, and ends on its own (Close, or expiry), but it shares c's
// connection to the leader (and its leader following), so a process can
// hold many sessions without a TCP connection each. Closing c leaves the
// new session running; the connection closes with the last Client that
// uses it. The new session has c's configuration (even if c has none:
// Config.NoSession). ctx bounds opening it; without a deadline,
// Config.OpenTimeout does.
func (c *Client) NewSession(ctx context.Context) (*Client, error) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing || !c.pool.acquire() {
		return nil, fmt.Errorf("NewSession: %w", ErrClosed)
	}
	cfg := c.cfg
	cfg.NoSession = false
	return open(ctx, cfg, c.pool)
}

// open opens a session (or, with cfg.NoSession, checks that a replica
// answers) over p, whose reference it takes: on error it is released.
func open(ctx context.Context, cfg Config, p *pool) (*Client, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.OpenTimeout)
		defer cancel()
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		pool:     p,
		locks:    make(map[*Lock]struct{}),
		watchers: make(map[*watcher]struct{}),
		slots:    pathSlots{m: make(map[string]*slot)},
		rewatch:  make(chan struct{}, 1),
	}
	c.life, c.endLife = context.WithCancelCause(context.Background())
	if cfg.NoSession {
		// Prove that some replica answers; any replica may (no leader needed).
		if _, err := c.Status(ctx); err != nil {
			c.endLife(ErrClosed)
			c.pool.release()
			return nil, fmt.Errorf("Dial: %w", err)
		}
		c.lease = lease{state: StateSafe}
		return c, nil
	}
	// OpenSession is retried like any call: the random request id lets the
	// cell recognise a retry and return the session it already opened.
	open := &wire.OpenSession{
		Header:  wire.Header{Request: rand.Uint64() | 1},
		Timeout: cfg.SessionTimeout,
		Client:  cfg.Name,
	}
	sent := cfg.Clock.Now()
	reply, err := c.do(ctx, "Dial", open, callOpts{})
	if err != nil {
		c.endLife(ErrClosed)
		c.pool.release()
		return nil, err
	}
	opened, ok := reply.(*wire.SessionOpened)
	if !ok || opened.Session == 0 || opened.Timeout <= 0 {
		c.endLife(ErrClosed)
		c.pool.release()
		return nil, fmt.Errorf("Dial: %w: OpenSession answered with %+v", ErrProtocol, reply)
	}
	c.sid, c.timeout = opened.Session, opened.Timeout
	c.principal, c.superuser = opened.Principal, opened.Superuser
	c.lease = newLease(sent, opened.Timeout, cfg.Grace)
	c.log = c.log.With("session", c.sid)
	c.log.Info("client: session opened", "timeout", c.timeout, "addr", c.pool.leaderAddr())
	c.wg.Add(2)
	go c.keepAliveLoop()
	go c.rewatchLoop()
	return c, nil
}

// SessionID returns the id of the client's session.
func (c *Client) SessionID() uint64 { return c.sid }

// Principal returns who the cell took the client for when it opened the
// session: the CN of its TLS client certificate ("" if anonymous), and
// whether the cell counts that principal a superuser, whom no ACL
// restricts.
func (c *Client) Principal() (name string, superuser bool) { return c.principal, c.superuser }

// SessionTimeout returns the session lease the cell granted.
func (c *Client) SessionTimeout() time.Duration { return c.timeout }

// Leader returns the leader's client address as last known ("" if unknown).
func (c *Client) Leader() string { return c.pool.leaderAddr() }

// State returns the session's current state.
func (c *Client) State() SessionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease.state
}

// Done returns a channel that is closed when the session is over (expired
// or closed). Err then says which.
func (c *Client) Done() <-chan struct{} { return c.life.Done() }

// Err returns nil while the session lives, then ErrSessionExpired or
// ErrClosed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// SessionEvents returns a new subscription to the session's events:
// jeopardy, safe, fail-over, and finally expired. The channel is closed when
// the session is over. It has a small buffer; a subscriber that falls behind
// misses events (State always has the current state), and the client never
// blocks on it.
func (c *Client) SessionEvents() <-chan SessionEvent {
	ch := make(chan SessionEvent, 16)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		close(ch)
		return ch
	}
	c.subs = append(c.subs, ch)
	return ch
}

// publish sends ev to every subscriber without blocking. Called with c.mu held.
func (c *Client) publish(ev SessionEvent) {
	for _, ch := range c.subs {
		select {
		case ch <- ev:
		default:
			c.log.Warn("client: session event subscriber is full; event dropped", "event", ev)
		}
	}
}

// Close ends the session at the cell (releasing its locks at once and
// deleting its ephemeral nodes), stops the background work, and waits for it.
// Held Locks report Lost and watch channels are closed. Close after the
// session expired only stops the client. It returns nil unless ending the
// session at the cell failed, in which case the cell expires it after its
// lease.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		alive := c.err == nil
		c.mu.Unlock()
		if alive && c.sid != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
			_, err = c.do(ctx, "Close", &wire.CloseSession{Header: c.header()}, callOpts{})
			cancel()
			// The session may end (at the cell, then here) before the reply
			// arrives: that is the close succeeding.
			if errors.Is(err, ErrSessionExpired) || errors.Is(err, ErrClosed) {
				err = nil
			}
		}
		c.end(ErrClosed)
		c.pool.release()
		c.wg.Wait()
		c.log.Info("client: closed")
	})
	return err
}

// end finishes the session with reason (ErrSessionExpired or ErrClosed):
// every waiting call returns it, held locks report Lost, watches close,
// subscribers get the final event. Only the first call has an effect.
func (c *Client) end(reason error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.closing {
		// Whatever the cell says about a session being closed, the user
		// asked for it.
		reason = ErrClosed
	}
	c.err = reason
	state := StateExpired
	if reason == ErrClosed {
		state = StateClosed
	}
	before := c.lease.state
	c.lease.state = state
	if state == StateExpired {
		if before == StateSafe {
			c.publish(SessionEvent{State: StateJeopardy, At: c.cfg.Clock.Now()})
		}
		c.publish(SessionEvent{State: StateExpired, At: c.cfg.Clock.Now()})
		c.log.Warn("client: session expired")
	}
	for _, ch := range c.subs {
		close(ch)
	}
	c.subs = nil
	locks, watchers := c.locks, c.watchers
	c.locks, c.watchers = nil, nil
	c.mu.Unlock()

	c.endLife(reason)
	for l := range locks {
		l.markLost()
	}
	for w := range watchers {
		w.stop()
	}
}

// header returns a header for a new request of this session.
func (c *Client) header() wire.Header {
	return wire.Header{Session: c.sid, Request: c.rid.Add(1)}
}

// callOpts tune how do treats one call.
type callOpts struct {
	// blocking: the call may legitimately wait for a long time (a queued
	// Acquire), so no AttemptTimeout applies to it.
	blocking bool
	// canceledIsFinal: a Canceled answer ends the call. Otherwise it means
	// the replica is shutting down and the call is retried elsewhere, up to
	// maxCanceled times in a row (a request whose stored outcome is Canceled
	// would otherwise be retried for ever).
	canceledIsFinal bool
	// sent, if set, counts the attempts that sent the request (a change
	// of the member set checks the set when it was sent more than once).
	sent *int
}

// maxCanceled bounds the retries of a call the cell keeps answering with
// Canceled.
const maxCanceled = 5

// do sends req until it gets an answer that ends the call: a reply, or an
// error that is not about where or when the call was sent. It keeps req's
// header, so every attempt carries the same request id and the cell applies
// the request at most once. NotLeader redirects to the named leader at once;
// Unavailable and transport failures back off and try the next replica. A
// SessionExpired answer ends the whole session. It returns when ctx ends
// (ErrUnavailable and ctx's error if there were failures) or the session is
// over (ErrSessionExpired or ErrClosed).
func (c *Client) do(ctx context.Context, op string, req wire.Message, co callOpts) (wire.Message, error) {
	m, _, err := c.doOn(ctx, op, req, co)
	return m, err
}

// doOn is do that also returns the connection that answered.
func (c *Client) doOn(ctx context.Context, op string, req wire.Message, co callOpts) (wire.Message, *conn, error) {
	if c.life.Err() != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, context.Cause(c.life))
	}
	if c.cfg.NoSession && needsSession(req) {
		return nil, nil, fmt.Errorf("%s: %w: the client has no session (Config.NoSession)", op, ErrInvalid)
	}
	// The call ends when ctx or the session does. The attempt itself gives
	// up on either without a merged context (cn.call's stop channel, the
	// backoff's select); only dialing, which is rare, gets one.
	var dialCtx context.Context
	var endDial func()
	defer func() {
		if endDial != nil {
			endDial()
		}
	}()
	ended := func() bool { return ctx.Err() != nil || c.life.Err() != nil }

	var lastErr error
	redirects, canceled := 0, 0
	for attempt := 0; ; attempt++ {
		if ended() {
			return nil, nil, c.ctxError(c.causeCtx(ctx), op, lastErr)
		}
		cn, err := c.pool.current()
		if cn == nil && err == nil {
			if dialCtx == nil {
				dialCtx, endDial = c.withLife(ctx)
			}
			cn, err = c.pool.get(dialCtx)
		}
		switch {
		case ended():
			if lastErr == nil {
				// The first dial round was cut short; it may have seen a
				// replica that hinted at TLS.
				lastErr = c.pool.dialHint()
			}
			return nil, nil, c.ctxError(c.causeCtx(ctx), op, lastErr)
		case errors.Is(err, ErrClosed):
			return nil, nil, fmt.Errorf("%s: %w", op, ErrClosed)
		case errors.Is(err, ErrTLS): // every replica failed TLS: a configuration error
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		case err != nil: // no replica answered this round
			lastErr = err
			c.sleep(ctx, attempt)
			continue
		}
		actx, acancel := ctx, context.CancelFunc(func() {})
		if !co.blocking {
			actx, acancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		}
		if co.sent != nil {
			*co.sent++
		}
		reply, err := cn.call(actx, req, c.life.Done())
		timedOut := actx.Err() != nil && ctx.Err() == nil
		acancel()
		if err != nil && !co.blocking && lastErr == nil {
			// If ctx ends now, the cell did not answer in time.
			lastErr = fmt.Errorf("%w: no answer from %s", errTransport, cn.addr)
		}
		if err == nil {
			return reply, cn, nil
		}
		if we, ok := errors.AsType[*wire.Error](err); ok {
			switch {
			case we.Code == wire.NotLeader:
				lastErr = err
				c.pool.redirect(cn, we.Leader)
				if we.Leader != "" && we.Leader != cn.addr && redirects < 3 {
					redirects++
					continue
				}
				redirects = 0
				c.sleep(ctx, attempt)
				continue
			case we.Code == wire.Canceled && !co.canceledIsFinal && canceled < maxCanceled:
				canceled++
				lastErr = err
				c.sleep(ctx, attempt)
				continue
			case we.Code == wire.Unavailable:
				// This replica cannot serve now. If it names itself as the
				// leader (taking over, or its log was slow), retry here;
				// if it names another replica, go there; if it knows of no
				// leader (cut off from its peers, say), move on to the
				// next endpoint, as after a NotLeader that names nobody:
				// staying would keep a client on a replica cut off from
				// the cell until its session expired.
				lastErr = err
				if we.Leader != cn.addr {
					c.pool.redirect(cn, we.Leader)
				}
				c.sleep(ctx, attempt)
				continue
			case we.Code == wire.SessionExpired:
				if _, isOpen := req.(*wire.OpenSession); !isOpen && c.sid != 0 {
					c.end(ErrSessionExpired)
				}
			}
			return nil, nil, mapError(op, we)
		}
		switch {
		case errors.Is(err, ErrProtocol), errors.Is(err, ErrTooLarge):
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		case ended() || pastDeadline(ctx):
			return nil, nil, c.ctxError(c.causeCtx(ctx), op, lastErr)
		}
		// A transport failure or a replica that did not answer in time: the
		// request may or may not have arrived; resend it elsewhere.
		if timedOut {
			err = fmt.Errorf("%w: %s did not answer %s within %v", errTransport, cn.addr, op, c.cfg.AttemptTimeout)
		}
		lastErr = err
		c.log.Debug("client: retrying", "op", op, "err", err)
		c.pool.fail(cn)
		c.sleep(ctx, attempt)
	}
}

// needsSession reports whether req can only be made within a session: every
// write (a retried write is applied once only within a session), every lock
// and watch call, and the session's own calls.
func needsSession(req wire.Message) bool {
	switch req.(type) {
	case *wire.Put, *wire.Delete, *wire.SetACL, *wire.Acquire, *wire.Release, *wire.Cancel,
		*wire.Watch, *wire.Unwatch, *wire.KeepAlive, *wire.CloseSession:
		return true
	}
	return false
}

// ctxError is do's error once ctx has ended: the session's end if that was
// the cause, else ctx's error, marked ErrUnavailable if attempts had failed.
func (c *Client) ctxError(ctx context.Context, op string, lastErr error) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, ErrSessionExpired) || errors.Is(cause, ErrClosed) {
		return fmt.Errorf("%s: %w", op, cause)
	}
	err := ctx.Err()
	if err == nil { // the deadline passed a moment before ctx noticed
		err = context.DeadlineExceeded
	}
	if lastErr != nil {
		return fmt.Errorf("%s: %w: %w (last error: %v)", op, ErrUnavailable, err, lastErr)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// sleep waits the backoff for attempt, or until ctx or the session ends.
func (c *Client) sleep(ctx context.Context, attempt int) {
	select {
	case <-c.cfg.Clock.After(backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, attempt, rand.Float64())):
	case <-ctx.Done():
	case <-c.life.Done():
	}
}

// withLife returns ctx that also ends, with the session's end as its cause,
// when the session does; end releases it.
func (c *Client) withLife(ctx context.Context) (_ context.Context, end func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.life, func() { cancel(context.Cause(c.life)) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// backoff returns the pause before retry number attempt (0-based): min
// doubled per attempt up to max, then scaled by a jitter factor in
// [0.5, 1.0) drawn from r in [0, 1).
func backoff(lo, hi time.Duration, attempt int, r float64) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.5 + r/2))
}
