package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// kaResult is the outcome of one KeepAlive attempt.
type kaResult struct {
	conn     *conn     // nil if no connection was reached
	sent     time.Time // when the KeepAlive was sent
	reply    *wire.KeepAliveReply
	err      error
	timedOut bool // the attempt ran out of time (the replica did not answer)
}

// keepAliveLoop keeps the session alive: it always has one KeepAlive in
// flight (the cell holds it until the lease is near its end or events are
// ready), renews the local lease from each reply, hands events to watchers,
// and drives the lease's jeopardy/grace/expired transitions. It is the only
// goroutine that changes the lease (besides end) and the only reader of
// KeepAlive replies. It exits when the session is over.
func (c *Client) keepAliveLoop() {
	defer c.wg.Done()
	var (
		acked      uint64 // highest event sequence number received
		lastServer string // the replica that answered the last KeepAlive
		results    = make(chan kaResult, 1)
		inflight   bool
		cancel     context.CancelFunc = func() {}
		retry      <-chan time.Time
		fails      int
	)
	start := func() {
		var ctx context.Context
		ctx, cancel = context.WithCancel(c.life)
		inflight = true
		go func(acked uint64) { results <- c.keepAliveOnce(ctx, acked) }(acked)
	}
	defer func() {
		cancel()
		if inflight {
			<-results
		}
	}()
	start()
	for {
		c.mu.Lock()
		due := c.lease.deadline()
		c.mu.Unlock()
		var leaseTimer <-chan time.Time
		if !due.IsZero() {
			leaseTimer = c.cfg.Clock.After(due.Sub(c.cfg.Clock.Now()))
		}
		select {
		case <-c.life.Done():
			return
		case <-leaseTimer:
			c.advanceLease()
		case <-retry:
			retry = nil
			start()
		case r := <-results:
			inflight = false
			cancel()
			if c.pauseKA.Load() {
				// Test hook: behave as if every replica were unreachable.
				retry = c.cfg.Clock.After(c.cfg.BackoffMax)
				continue
			}
			switch c.handleKeepAlive(r, &acked, &lastServer) {
			case kaRenewed:
				fails = 0
				start()
			case kaRedirected:
				fails++
				if fails <= 3 {
					start()
				} else {
					retry = c.cfg.Clock.After(backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, fails, rand.Float64()))
				}
			case kaFailed:
				fails++
				retry = c.cfg.Clock.After(backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, fails, rand.Float64()))
			case kaEnded:
				return
			}
		}
	}
}

type kaOutcome uint8

const (
	kaRenewed    kaOutcome = iota // the lease was renewed
	kaRedirected                  // NotLeader: try the named leader at once
	kaFailed                      // retry after a backoff
	kaEnded                       // the session is over
)

// keepAliveOnce sends one KeepAlive acknowledging events up to acked.
func (c *Client) keepAliveOnce(ctx context.Context, acked uint64) kaResult {
	if c.pauseKA.Load() {
		return kaResult{err: errors.New("keepalives paused")}
	}
	cn, err := c.pool.get(ctx)
	if err != nil {
		return kaResult{err: err}
	}
	// A healthy replica answers within the lease (it holds the call until
	// a margin before the lease's end); give it that plus one attempt.
	actx, cancel := context.WithTimeout(ctx, c.timeout+c.cfg.AttemptTimeout)
	defer cancel()
	r := kaResult{conn: cn, sent: c.cfg.Clock.Now()}
	reply, err := cn.call(actx, &wire.KeepAlive{Header: c.header(), Acked: acked}, nil)
	r.timedOut = actx.Err() != nil && ctx.Err() == nil
	if err != nil {
		r.err = err
		return r
	}
	ka, ok := reply.(*wire.KeepAliveReply)
	if !ok {
		r.err = errors.Join(ErrProtocol, errors.New("KeepAlive answered with "+reply.Type().String()))
		return r
	}
	r.reply = ka
	return r
}

// handleKeepAlive applies one attempt's outcome.
func (c *Client) handleKeepAlive(r kaResult, acked *uint64, lastServer *string) kaOutcome {
	if r.err != nil {
		if errors.Is(r.err, ErrClosed) || c.life.Err() != nil {
			return kaEnded
		}
		if we, ok := errors.AsType[*wire.Error](r.err); ok {
			switch we.Code {
			case wire.SessionExpired:
				c.log.Warn("client: the cell says the session is gone", "err", we)
				c.end(ErrSessionExpired)
				return kaEnded
			case wire.NotLeader:
				c.pool.redirect(r.conn, we.Leader)
				return kaRedirected
			case wire.Unavailable:
				// As in doOn: stay if the replica names itself as the
				// leader, else go to the one it names or the next.
				if we.Leader != r.conn.addr {
					c.pool.redirect(r.conn, we.Leader)
				}
			}
			c.log.Debug("client: KeepAlive failed", "err", we)
			return kaFailed
		}
		c.log.Debug("client: KeepAlive failed", "err", r.err, "timed_out", r.timedOut)
		if r.conn != nil {
			c.pool.fail(r.conn)
		}
		return kaFailed
	}
	// Only the leader answers a KeepAlive: r.conn's replica leads, even if
	// it did not when the connection was made (its Welcome then named
	// another leader, maybe one that is gone).
	c.pool.leaderAnswered(r.conn)
	c.mu.Lock()
	state, changed := c.lease.renew(r.sent, r.reply.Held, r.reply.TTL)
	if changed {
		c.publish(SessionEvent{State: state, At: c.cfg.Clock.Now()})
		c.log.Info("client: session safe again")
	}
	c.mu.Unlock()

	server := r.conn.welcome().ServerID
	if *lastServer != "" && server != *lastServer {
		// Another replica answers now: the leader changed. Watches live on
		// the leader, so register them again even if the cell's Failover
		// event was lost.
		c.log.Info("client: KeepAlive answered by a new replica", "server", server, "previous", *lastServer)
		c.failover()
	}
	*lastServer = server
	c.dispatch(r.reply.Events, acked)
	return kaRenewed
}

// advanceLease applies the passage of time to the lease and reports the
// transitions; an expired lease ends the session.
func (c *Client) advanceLease() {
	c.mu.Lock()
	before := c.lease.state
	state, changed := c.lease.advance(c.cfg.Clock.Now())
	if state == StateExpired {
		// end makes the transition and publishes it (with the jeopardy
		// that was skipped if the lease went from safe to expired at once).
		c.lease.state = before
		c.mu.Unlock()
		c.end(ErrSessionExpired)
		return
	}
	if changed {
		c.publish(SessionEvent{State: state, At: c.cfg.Clock.Now()})
		c.log.Warn("client: session in jeopardy", "grace", c.cfg.Grace)
	}
	c.mu.Unlock()
}

// dispatch hands the events of one KeepAlive reply to the watchers, in
// order, skipping those already seen.
func (c *Client) dispatch(events []wire.Event, acked *uint64) {
	for _, we := range events {
		if we.Seq != 0 {
			if we.Seq <= *acked {
				continue // a resend of an event already delivered
			}
			gap := *acked != 0 && we.Seq > *acked+1
			*acked = we.Seq
			if gap && we.Type != wire.Failover && we.Type != wire.EventsLost {
				c.log.Warn("client: gap in event sequence; telling watchers to re-read", "seq", we.Seq)
				c.broadcast(Event{Type: EventMissed})
			}
		}
		ev, ok := eventFromWire(we)
		if !ok {
			c.log.Warn("client: unknown event type ignored", "type", we.Type)
			continue
		}
		switch ev.Type {
		case EventFailover:
			c.log.Info("client: cell failed over")
			c.failover()
		case EventMissed:
			c.log.Warn("client: the cell dropped events for this session")
			c.broadcast(ev)
		case EventLockConflict:
			if len(we.Watches) == 0 {
				c.log.Debug("client: another session waits for a lock this session holds", "path", ev.Path, "waiter", ev.Session)
				continue
			}
			c.route(ev)
		default:
			c.route(ev)
		}
	}
}

// failover reacts to a change of leader: subscribers are told, and the
// watches are registered again with the new leader (the rewatch loop then
// delivers EventFailover to each).
func (c *Client) failover() {
	c.mu.Lock()
	if c.err == nil {
		c.publish(SessionEvent{State: c.lease.state, Failover: true, At: c.cfg.Clock.Now()})
	}
	c.mu.Unlock()
	select {
	case c.rewatch <- struct{}{}:
	default: // a rewatch is already pending; it covers this one
	}
}
