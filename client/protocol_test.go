package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/lockserver"
)

// Tests of what the client relies on the cell for, beyond its own API,
// through wire.Conn (the protocol's reference client side). Each was a server
// bug found while building the client, fixed in the lockserver; they stay as
// regression tests of the contract in docs/protocol.md and docs/sessions.md.

// rawConn dials the cell's (settled) leader with wire.Conn, the protocol's
// reference client side, and opens a session with open (if not nil). If
// the leadership moves meanwhile (an Unavailable or NotLeader answer), it
// sends open again, with the same request id, to the new leader, as the
// protocol asks of a client (for at most 20 s).
func rawConn(t *testing.T, ctx context.Context, cell *lockserver.Cell, open *wire.OpenSession) (*wire.Conn, *wire.SessionOpened) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		addr := cell.Endpoints()[leaderIndex(t, cell)]
		conn, err := wire.Dial(ctx, addr, wire.ConnConfig{}, wire.Hello{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if open == nil {
			return conn, nil
		}
		so, err := wire.Do[*wire.SessionOpened](ctx, conn, open)
		if err == nil {
			return conn, so
		}
		if !leadershipMoved(err) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		t.Logf("OpenSession at %s: %v; again at the leader", addr, err)
		conn.Close()
	}
}

// leadershipMoved reports whether err is the answer of a replica that no
// longer leads, or lost its leadership while it served the request.
func leadershipMoved(err error) bool {
	we, ok := errors.AsType[*wire.Error](err)
	return ok && (we.Code == wire.Unavailable || we.Code == wire.NotLeader)
}

// docs/protocol.md: a blocking call waits on its call id while nothing else
// is sent, and only a CancelCall or a broken connection ends its handler. A
// waiting Acquire must therefore keep waiting once its request is sent (in
// protocol version 1 the lockserver once took the request stream's
// half-close for abandonment and answered Canceled at once).
func TestWaitingAcquireKeepsWaiting(t *testing.T) {
	cell := startCell(t)
	holder := dial(t, cell)
	ctx := bg(t)
	l, err := holder.Lock(ctx, "/hc")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	conn, so := rawConn(t, ctx, cell, &wire.OpenSession{Header: wire.Header{Request: 99}})
	actx, cancel := context.WithCancel(ctx)
	time.AfterFunc(500*time.Millisecond, cancel)
	_, err = conn.Call(actx, &wire.Acquire{Header: wire.Header{Session: so.Session, Request: 1}, Path: "/hc", Mode: wire.Exclusive, Wait: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting Acquire of a held lock over wire.Conn returned %v; want it to wait (until canceled)", err)
	}
}

// wire.KeepAliveReply: the lease lasts at least until send + Held + TTL. The
// next KeepAlive, sent when the reply arrives, must then be answered within
// that lease, or a client following the rule is in jeopardy on every cycle
// (the lockserver once held each poll lease − margin while the client counted
// from its send alone: 9 s + 9 s > 12 s with the defaults).
func TestKeepAliveAnsweredWithinTheCountedLease(t *testing.T) {
	// The margin of lockserver.FastTimings, not tune's: a KeepAlive held
	// 1.5 s of the 2 s lease.
	cell := startCell(t, func(cfg *lockserver.Config) { cfg.Session.Margin = 500 * time.Millisecond })
	ctx := bg(t)
	conn, so := rawConn(t, ctx, cell, &wire.OpenSession{Header: wire.Header{Request: 98}, Timeout: 2 * time.Second})
	h := wire.Header{Session: so.Session}
	sent := time.Now()
	h.Request = 1
	r, err := wire.Do[*wire.KeepAliveReply](ctx, conn, &wire.KeepAlive{Header: h})
	if err != nil {
		t.Fatal(err)
	}
	if r.Held <= 0 {
		t.Fatalf("a KeepAlive with no events to wait for reported a hold of %v", r.Held)
	}
	leaseEnd := sent.Add(r.Held + r.TTL) // the documented, conservative count
	h.Request = 2
	if _, err := wire.Do[*wire.KeepAliveReply](ctx, conn, &wire.KeepAlive{Header: h}); err != nil {
		t.Fatal(err)
	}
	if late := time.Since(leaseEnd); late > 0 {
		t.Fatalf("the second KeepAlive was answered %v after the lease counted from the first one's send (held %v, TTL %v)", late, r.Held, r.TTL)
	}
}

// wire.OpenSession: "Header.Request is used for retries". A retry after a
// lost reply must return the session already opened, not leave an orphan
// behind (the lockserver once opened a new session each time).
func TestOpenSessionRetryReturnsTheSameSession(t *testing.T) {
	cell := startCell(t)
	ctx := bg(t)
	open := &wire.OpenSession{Header: wire.Header{Request: 12345}}
	conn, a := rawConn(t, ctx, cell, open)
	b, err := wire.Do[*wire.SessionOpened](ctx, conn, open)
	if leadershipMoved(err) {
		t.Logf("the retry on the same connection: %v; again at the leader", err)
		_, b = rawConn(t, ctx, cell, open)
	} else if err != nil {
		t.Fatal(err)
	}
	if a.Session != b.Session {
		t.Fatalf("OpenSession retried with request id %d opened sessions %d and %d; want the same", open.Request, a.Session, b.Session)
	}
}
