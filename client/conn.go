package client

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/latchd/latch/internal/wire"
)

// conn is one connection to one replica: TCP, a yamux session on top, and
// the Welcome the replica answered the Hello with. Each call opens its own
// stream, writes one request frame and reads one reply frame, so blocking
// calls never stall others. A conn is safe for concurrent use; once broken it
// stays broken and the pool replaces it.
//
// Why not wire.Conn: it half-closes a call's stream after the request (as
// docs/protocol.md says), and the lockserver takes the end of a waiting
// Acquire's request stream as the client abandoning the call, answering
// Canceled at once (TestServerBugWaitingAcquireOverWireConn). A conn closes
// the stream only once the reply is read, or to abandon the call, which the
// lockserver then withdraws for us.
type conn struct {
	addr    string
	mux     *yamux.Session
	welcome wire.Welcome
	// maxFrame is the smaller of the replica's announced limit and ours.
	maxFrame int
	broken   atomic.Bool
}

// errTransport marks failures of the connection or stream (as opposed to an
// answer from the replica): the request may or may not have arrived.
var errTransport = errors.New("transport failure")

// dial connects to addr, runs the Hello/Welcome exchange and returns the
// conn. ctx bounds the whole exchange.
func dial(ctx context.Context, addr string, name string, logger *slog.Logger) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", errTransport, addr, err)
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	cfg.KeepAliveInterval = 5 * time.Second
	cfg.ConnectionWriteTimeout = 5 * time.Second
	cfg.StreamCloseTimeout = 30 * time.Second
	cfg.StreamOpenTimeout = 30 * time.Second
	// A stream's window holds a whole frame, so a large request or reply
	// never waits for the other side to read part of it.
	cfg.MaxStreamWindowSize = wire.DefaultMaxFrame + 64
	mux, err := yamux.Client(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: yamux %s: %w", errTransport, addr, err)
	}
	c := &conn{addr: addr, mux: mux, maxFrame: wire.DefaultMaxFrame}
	reply, err := c.call(ctx, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.Version, Client: name})
	if err != nil {
		c.close()
		if e, ok := errors.AsType[*wire.Error](err); ok {
			return nil, fmt.Errorf("%w: hello to %s: %w", errTransport, addr, e)
		}
		return nil, err
	}
	w, ok := reply.(*wire.Welcome)
	if !ok {
		c.close()
		return nil, fmt.Errorf("%w: hello to %s answered with %T", ErrProtocol, addr, reply)
	}
	if w.Version < wire.MinVersion || w.Version > wire.Version {
		c.close()
		return nil, fmt.Errorf("%w: %s chose protocol version %d; this client speaks %d..%d",
			ErrProtocol, addr, w.Version, wire.MinVersion, wire.Version)
	}
	c.welcome = *w
	if m := int(w.Limits.MaxFrame); m >= wire.MinFrame && m < c.maxFrame {
		c.maxFrame = m
	}
	return c, nil
}

// call sends req on a new stream and returns the reply. A reply that is a
// *wire.Error is returned as the error. Failures of the stream or connection
// wrap errTransport; malformed replies wrap ErrProtocol; if ctx ends first,
// ctx's error is returned (the request may still be applied).
func (c *conn) call(ctx context.Context, req wire.Message) (wire.Message, error) {
	if c.broken.Load() {
		return nil, fmt.Errorf("%w: connection to %s is closed", errTransport, c.addr)
	}
	st, err := c.mux.OpenStream()
	if err != nil {
		c.broken.Store(true)
		return nil, fmt.Errorf("%w: open stream to %s: %w", errTransport, c.addr, err)
	}
	defer st.Close()
	// Ending ctx unblocks the read and write below through the deadline.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wire.NewEncoder(st, c.maxFrame).Encode(req); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, fmt.Errorf("%w: request: %w", ErrTooLarge, err)
		}
		return nil, fmt.Errorf("%w: send %s to %s: %w", errTransport, req.Type(), c.addr, err)
	}
	reply, err := wire.ReadFrame(st, c.maxFrame)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, wire.ErrVersion) || errors.Is(err, wire.ErrUnknownType) ||
			errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, fmt.Errorf("%w: reply to %s from %s: %w", ErrProtocol, req.Type(), c.addr, err)
		}
		return nil, fmt.Errorf("%w: reply to %s from %s: %w", errTransport, req.Type(), c.addr, err)
	}
	if e, ok := reply.(*wire.Error); ok {
		return nil, e
	}
	return reply, nil
}

// dead reports whether the connection can no longer carry calls.
func (c *conn) dead() bool { return c.broken.Load() || c.mux.IsClosed() }

// close ends the connection; calls in flight fail with a transport error.
func (c *conn) close() {
	c.broken.Store(true)
	c.mux.Close()
}

// yamux logs through a *log.Logger; slog.NewLogLogger makes one.
var _ yamux.Logger = (*log.Logger)(nil)
