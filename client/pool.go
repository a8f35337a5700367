package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// pool keeps the client's one current connection and finds the leader.
// The Clients of one Dial (the first and those of NewSession) share it; it
// closes when the last of them releases it.
//
// Leader following: a replica's Welcome names the leader, and a NotLeader
// answer carries its address; the pool dials that address first next time
// (the hint). Without a hint it tries the endpoints round-robin, starting
// after the last one that failed. One caller dials at a time; the others wait
// for its result (or their context).
type pool struct {
	endpoints   []string
	name        string
	dialTimeout time.Duration
	tls         *tls.Config
	log         *slog.Logger

	sem chan struct{} // held while dialing

	mu     sync.Mutex
	cur    *conn
	hint   string // address to try first: the leader as last reported
	leader string // the leader's address as last known, for Client.Leader
	next   int    // index of the endpoint to try after the hint
	// tlsHint is the last dial error that hinted at TLS (errTLSHint), kept
	// until a replica answers, so that the errors of this dial round and
	// of later ones still give the hint when other replicas fail
	// otherwise (down, say) and fail last.
	tlsHint error
	refs    int // Clients using the pool
	closed  bool
}

func newPool(cfg Config) *pool {
	return &pool{
		endpoints:   slices.Clone(cfg.Endpoints),
		name:        cfg.Name,
		dialTimeout: cfg.DialTimeout,
		tls:         cfg.TLS,
		log:         cfg.Logger,
		sem:         make(chan struct{}, 1),
		refs:        1,
	}
}

// acquire takes a reference for another Client; false if the pool is
// closed.
func (p *pool) acquire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.refs++
	return true
}

// release drops a Client's reference; the last one closes the pool.
func (p *pool) release() {
	p.mu.Lock()
	p.refs--
	last := p.refs == 0
	p.mu.Unlock()
	if last {
		p.close()
	}
}

// get returns the current connection, connecting if there is none: first to
// the leader hint, then to each endpoint once. A replica that is not the
// leader but names one is kept only as a fallback while the named leader is
// tried. It returns the last dial error if no replica answered, ErrClosed
// after close, or ctx's error.
func (p *pool) get(ctx context.Context) (*conn, error) {
	if c, err := p.current(); c != nil || err != nil {
		return c, err
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sem }()
	if c, err := p.current(); c != nil || err != nil {
		return c, err
	}
	c, leaderDown, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.close()
		return nil, ErrClosed
	}
	p.cur = c
	p.tlsHint = nil
	if c.welcome().IsLeader {
		p.setLeader(c.addr)
	} else if l := c.welcome().Leader; l != "" && !leaderDown {
		p.setLeader(l)
	}
	p.log.Debug("client: connected", "addr", c.addr, "server", c.welcome().ServerID, "leader", c.welcome().IsLeader)
	return c, nil
}

// current returns the live current connection, or nil; ErrClosed after close.
func (p *pool) current() (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if p.cur != nil && p.cur.dead() {
		p.cur = nil
	}
	return p.cur, nil
}

// candidates returns the addresses to try, in order: the hint, then every
// endpoint starting at p.next. It consumes the hint.
func (p *pool) candidates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.endpoints)+1)
	if p.hint != "" {
		out = append(out, p.hint)
		p.hint = ""
	}
	for i := range p.endpoints {
		e := p.endpoints[(p.next+i)%len(p.endpoints)]
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// connect tries the candidates once each and returns the first leader it
// reaches, or failing that the first replica that answered, and whether
// the leader that replica's Welcome names failed to dial in this round
// (it is then not the leader to report). If none
// answered and every one failed TLS, the error wraps ErrTLS. If any
// failure in this round or an earlier one (since a replica last answered)
// hinted at TLS, the error includes that one.
func (p *pool) connect(ctx context.Context) (*conn, bool, error) {
	todo := p.candidates()
	tried := make(map[string]bool, len(todo))
	failed := make(map[string]bool, len(todo))
	var fallback *conn
	var lastErr error
	allTLS := true
	for len(todo) > 0 {
		addr := todo[0]
		todo = todo[1:]
		if tried[addr] {
			continue
		}
		tried[addr] = true
		dctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
		c, err := dial(dctx, addr, p.name, p.tls, p.log)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			lastErr = err
			failed[addr] = true
			allTLS = allTLS && errors.Is(err, ErrTLS)
			p.dialFailed(addr, err)
			continue
		}
		w := c.welcome()
		if w.IsLeader || w.Leader == "" || tried[w.Leader] {
			if fallback != nil {
				fallback.close()
			}
			return c, !w.IsLeader && failed[w.Leader], nil
		}
		// A follower that knows the leader: try the leader next, keep this
		// connection in case the leader cannot be reached from here.
		if fallback == nil {
			fallback = c
		} else {
			c.close()
		}
		todo = append([]string{w.Leader}, todo...)
	}
	if fallback != nil {
		return fallback, failed[fallback.welcome().Leader], nil
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	switch {
	case lastErr == nil:
		lastErr = fmt.Errorf("%w: no endpoints", errTransport)
	case !allTLS && errors.Is(lastErr, ErrTLS):
		// Some replica failed otherwise (it may be down): worth retrying.
		lastErr = fmt.Errorf("%w: %v", errTransport, lastErr)
	}
	if hint := p.dialHint(); hint != nil && !errors.Is(lastErr, errTLSHint) {
		lastErr = fmt.Errorf("%w; before that, %w", lastErr, hint)
	}
	return nil, false, lastErr
}

// dialFailed moves the round-robin start past addr, which failed with err,
// and keeps err if it hints at TLS.
func (p *pool) dialFailed(addr string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.skipLocked(addr)
	if errors.Is(err, errTLSHint) {
		p.tlsHint = err
	}
}

// dialHint returns the last dial error that hinted at TLS since a replica
// last answered, or nil.
func (p *pool) dialHint() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tlsHint
}

// fail drops c (if it is still current) and closes it, so the next call
// connects again.
func (p *pool) fail(c *conn) {
	p.mu.Lock()
	if p.cur == c {
		p.cur = nil
		p.skipLocked(c.addr)
	}
	p.mu.Unlock()
	c.close()
}

// skipLocked is skip with p.mu held.
func (p *pool) skipLocked(addr string) {
	if i := slices.Index(p.endpoints, addr); i >= 0 {
		p.next = (i + 1) % len(p.endpoints)
	}
}

// redirect handles a NotLeader answer from c naming leader (maybe ""): c is
// dropped, and the next connection goes to leader first.
func (p *pool) redirect(c *conn, leader string) {
	p.mu.Lock()
	if p.cur == c || p.cur == nil {
		p.cur = nil
		if leader != "" && leader != c.addr {
			p.hint = leader
			p.setLeader(leader)
		} else {
			p.skipLocked(c.addr)
		}
	}
	p.mu.Unlock()
	c.close()
}

// setLeader records the leader's address; called with p.mu held.
func (p *pool) setLeader(addr string) {
	if addr != p.leader {
		p.log.Info("client: leader", "addr", addr)
		p.leader = addr
	}
}

// leaderAnswered records that c's replica answered a call only the leader
// answers, so it is the leader to report while c is current.
func (p *pool) leaderAnswered(c *conn) {
	p.mu.Lock()
	if p.cur == c {
		p.setLeader(c.addr)
	}
	p.mu.Unlock()
}

// leaderAddr returns the leader's address as best known: the current
// connection's if that replica said it leads, else the last address a
// replica named ("" if none).
func (p *pool) leaderAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.dead() && p.cur.welcome().IsLeader {
		return p.cur.addr
	}
	return p.leader
}

// close closes the current connection; later gets fail with ErrClosed.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	c := p.cur
	p.cur = nil
	p.mu.Unlock()
	if c != nil {
		c.close()
	}
}
