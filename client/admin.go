package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Locks returns the locks at or under path that are held, have waiters, or
// are in lock-delay, in byte order of their paths. Options: Stale, PageSize.
func (c *Client) Locks(ctx context.Context, path string, opts ...Option) ([]LockInfo, error) {
	o, err := c.prepare("Locks", path, optStale|optPageSize, opts)
	if err != nil {
		return nil, err
	}
	var out []LockInfo
	err = pages(c, ctx, "Locks", func(after string) wire.Message {
		return &wire.ListLocks{Header: c.readHeader(o.stale), Path: path, After: after, Limit: o.pageSize, Stale: o.stale}
	}, func(m wire.Message) (string, bool, error) {
		r, ok := m.(*wire.LocksReply)
		if !ok {
			return "", false, fmt.Errorf("Locks: %w: answered with %s", ErrProtocol, m.Type())
		}
		for _, l := range r.Locks {
			out = append(out, LockInfo{
				Path: l.Path, Mode: LockMode(l.Mode), LockGen: l.LockGen, Instance: l.Instance,
				Holders: l.Holders, Waiters: int(l.Waiters), DelayUntil: unixTime(l.DelayUntil),
			})
		}
		if len(r.Locks) == 0 {
			return "", false, nil
		}
		return r.Locks[len(r.Locks)-1].Path, r.More, nil
	})
	return out, err
}

// Sessions returns the cell's open sessions in id order. Options: Stale,
// PageSize.
func (c *Client) Sessions(ctx context.Context, opts ...Option) ([]SessionInfo, error) {
	o, err := parseOptions("Sessions", optStale|optPageSize, opts)
	if err != nil {
		return nil, err
	}
	var out []SessionInfo
	err = pages(c, ctx, "Sessions", func(after uint64) wire.Message {
		return &wire.ListSessions{Header: c.readHeader(o.stale), After: after, Limit: o.pageSize, Stale: o.stale}
	}, func(m wire.Message) (uint64, bool, error) {
		r, ok := m.(*wire.SessionsReply)
		if !ok {
			return 0, false, fmt.Errorf("Sessions: %w: answered with %s", ErrProtocol, m.Type())
		}
		for _, s := range r.Sessions {
			out = append(out, SessionInfo{
				ID: s.ID, Client: s.Client, Timeout: s.Timeout, Locks: int(s.Locks),
				Ephemerals: int(s.Ephemerals), Watches: int(s.Watches), Opened: unixTime(s.OpenedTime),
				Principal: s.Principal, Superuser: s.Superuser,
			})
		}
		if len(r.Sessions) == 0 {
			return 0, false, nil
		}
		return r.Sessions[len(r.Sessions)-1].ID, r.More, nil
	})
	return out, err
}

// Status asks the replica the client is connected to (normally the leader)
// about the cell: its members, the leader, and how far each has applied the
// log.
func (c *Client) Status(ctx context.Context) (Status, error) {
	m, cn, err := c.doOn(ctx, "Status", &wire.Status{Header: wire.Header{Request: c.rid.Add(1)}}, callOpts{})
	if err != nil {
		return Status{}, err
	}
	r, ok := m.(*wire.StatusReply)
	if !ok {
		return Status{}, fmt.Errorf("Status: %w: answered with %s", ErrProtocol, m.Type())
	}
	return statusFromWire(cn.addr, r), nil
}

// Members returns the cell's members, each asked directly (StatusOf, in
// parallel, within AttemptTimeout) how far it has applied the log and
// whether it is rebuilding lost state, with its lag behind the leader. A
// member that does not answer is returned with Reachable false, Applied 0
// and Rebuilding false.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	ms := st.Members
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() {
			mctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			defer cancel()
			s, err := StatusOfTLS(mctx, ms[i].ClientAddr, c.cfg.TLS)
			ms[i].Reachable = err == nil
			ms[i].Applied, ms[i].Rebuilding = 0, false
			if err == nil {
				ms[i].Applied, ms[i].Rebuilding = s.Applied, s.Rebuilding
			}
		})
	}
	wg.Wait()
	setLag(ms)
	return ms, nil
}

// StatusOf asks the replica at addr (which need not be one of the
// Endpoints) about the cell, over a connection of its own, with no retries
// and no session. It is how an operator looks at one replica, such as a
// follower that cannot reach the leader. An unreachable replica gives
// ErrUnavailable (and ErrTLS, if TLS failed).
func StatusOf(ctx context.Context, addr string) (Status, error) {
	return StatusOfTLS(ctx, addr, nil)
}

// StatusOfTLS is StatusOf over TLS with tc (as Config.TLS; nil: plain TCP).
func StatusOfTLS(ctx context.Context, addr string, tc *tls.Config) (Status, error) {
	m, err := callOne(ctx, "StatusOf", addr, tc, &wire.Status{Header: wire.Header{Request: uint64(time.Now().UnixNano()) | 1}})
	if err != nil {
		return Status{}, err
	}
	r, ok := m.(*wire.StatusReply)
	if !ok {
		return Status{}, fmt.Errorf("StatusOf: %w: answered with %s", ErrProtocol, m.Type())
	}
	return statusFromWire(addr, r), nil
}

// callOne sends req to the replica at addr alone, over a connection of its
// own, with no retries and no session (within DefaultAttemptTimeout if ctx
// has no deadline). A replica that cannot be reached gives ErrUnavailable
// (and ErrTLS, if TLS failed); an error answer its sentinel.
func callOne(ctx context.Context, op, addr string, tc *tls.Config, req wire.Message) (wire.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultAttemptTimeout)
		defer cancel()
	}
	cfg := DefaultConfig(addr).withDefaults()
	cn, err := dial(ctx, addr, "status", tc, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	defer cn.close()
	m, err := cn.call(ctx, req, nil)
	if err != nil {
		if we, ok := errors.AsType[*wire.Error](err); ok {
			return nil, mapError(op, we)
		}
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return m, nil
}
