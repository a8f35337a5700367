package lockserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
)

// acceptLoop accepts client connections until the listener closes and
// serves each on a goroutine of its own (serveConn).
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
			s.serveConn(nc)
		}()
	}
}

// serveConn serves one client connection: the TLS handshake first with
// Config.TLS (within RequestTimeout), then wire.Serve (a yamux session on
// the connection whose only stream, the call stream, carries every call;
// see docs/protocol.md) with a connHandler for the connection's principal.
// A failed handshake closes this connection only.
func (s *Server) serveConn(nc net.Conn) {
	if s.cfg.TLS != nil {
		tc := tls.Server(nc, s.cfg.TLS)
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.metrics.TLSHandshakeErrors.Add(1)
			s.log.Debug("client TLS handshake failed", "peer", nc.RemoteAddr().String(), "err", err)
			tc.Close()
			return
		}
		nc = tc
	}
	h := &connHandler{s: s, caller: s.callerFor(principalOf(nc))}
	if err := wire.Serve(s.ctx, nc, s.connConfig(), h); err != nil {
		s.log.Debug("client connection ended", "peer", nc.RemoteAddr().String(), "err", err)
	}
}

// principalOf is who the client on nc proved to be: the Subject
// CommonName of its verified TLS client certificate, or "" without one
// (plain TCP, or TLS without client certificates).
func principalOf(nc net.Conn) string {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	return CertPrincipal(&cs)
}

// CertPrincipal is the principal a TLS connection proved: the Subject
// CommonName of its verified client certificate, or "" without one (cs
// nil, or no verified chain). The admin HTTP server names its callers the
// same way.
func CertPrincipal(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
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

// connHandler serves the calls of one client connection, for the
// principal that connection authenticated as (principalOf: the CommonName
// of its verified TLS client certificate, "" without one).
type connHandler struct {
	s      *Server
	caller namespace.Caller
}

var _ wire.QuickHandler = (*connHandler)(nil)

// ServeWire answers one request of the connection (wire.Handler).
// wire.Serve calls it on a call goroutine (reused for later calls); ctx
// ends when the client gives up on the call (its CancelCall frame) or the
// connection ends.
func (h *connHandler) ServeWire(ctx context.Context, req wire.Message) wire.Message {
	return h.s.serve(ctx, h.caller, req)
}

// ServeQuick answers a small read at once if it can (wire.QuickHandler).
func (h *connHandler) ServeQuick(req wire.Message) (wire.Message, bool) {
	return h.s.serveQuick(h.caller, req)
}

// callerFor is who a connection authenticated as principal ("" when
// anonymous) acts as: a superuser if Config.Superusers names it.
func (s *Server) callerFor(principal string) namespace.Caller {
	return namespace.Caller{Principal: principal, Superuser: principal != "" && slices.Contains(s.cfg.Superusers, principal)}
}

var _ wire.QuickHandler = (*Server)(nil)

// ServeWire answers one request of an anonymous client (wire.Handler), as
// connHandler.ServeWire does for its connection's principal.
func (s *Server) ServeWire(ctx context.Context, req wire.Message) wire.Message {
	return s.serve(ctx, s.callerFor(""), req)
}

// ServeQuick is connHandler.ServeQuick for an anonymous client.
func (s *Server) ServeQuick(req wire.Message) (wire.Message, bool) {
	return s.serveQuick(s.callerFor(""), req)
}

func (s *Server) serve(ctx context.Context, c namespace.Caller, req wire.Message) wire.Message {
	s.metrics.request(req.Type())
	reply := s.dispatch(ctx, c, req)
	s.metrics.reply(reply)
	return reply
}
