package lockserver

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// acceptLoop accepts client connections until the listener closes and
// serves each with wire.Serve (a yamux session on the TCP connection whose
// only stream, the call stream, carries every call; see docs/protocol.md)
// on a goroutine of its own, with the Server as the handler.
func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of file descriptors): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if s.metrics.Conns.Add(1) > int64(s.cfg.MaxConns) {
			s.metrics.Conns.Add(-1)
			s.metrics.ConnsRejected.Add(1)
			nc.Close()
			continue
		}
		s.metrics.ConnsTotal.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.metrics.Conns.Add(-1)
			if err := wire.Serve(s.ctx, nc, s.connConfig(), s); err != nil {
				s.log.Debug("client connection ended", "peer", nc.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// connConfig is the server side of the client connections.
func (s *Server) connConfig() wire.ConnConfig {
	return wire.ConnConfig{
		MaxFrame:       s.cfg.MaxFrame,
		MaxStreams:     s.cfg.MaxStreams,
		RequestTimeout: s.cfg.RequestTimeout,
		Logger:         s.log.With("component", "wire"),
	}
}

var _ wire.Handler = (*Server)(nil)

// ServeWire answers one client request (wire.Handler). wire.Serve calls it
// on a call goroutine (reused for later calls); ctx ends when the client
// gives up on the call (its CancelCall frame) or the connection ends.
func (s *Server) ServeWire(ctx context.Context, req wire.Message) wire.Message {
	s.metrics.request(req.Type())
	reply := s.dispatch(ctx, req)
	s.metrics.reply(reply)
	return reply
}
