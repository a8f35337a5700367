package lockserver

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/latchd/latch/internal/wire"
)

// conn is one client connection: a yamux session over TCP on which every
// call is a stream carrying one request frame and one reply frame.
type conn struct {
	s     *Server
	nc    net.Conn
	mux   *yamux.Session
	ctx   context.Context // ends when the connection closes
	stop  context.CancelFunc
	hello atomic.Bool // the client sent Hello
	peer  string
}

// acceptLoop accepts client connections until the listener closes.
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
		if s.metrics.Conns.Load() >= int64(s.cfg.MaxConns) {
			s.metrics.ConnsRejected.Add(1)
			nc.Close()
			continue
		}
		c, err := s.newConn(nc)
		if err != nil {
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go c.serve()
	}
}

func (s *Server) yamuxConfig() *yamux.Config {
	yc := yamux.DefaultConfig()
	yc.AcceptBacklog = max(256, min(s.cfg.MaxStreams, 4096))
	yc.EnableKeepAlive = true
	yc.KeepAliveInterval = 15 * time.Second
	yc.ConnectionWriteTimeout = 10 * time.Second
	yc.StreamCloseTimeout = 30 * time.Second
	yc.StreamOpenTimeout = 30 * time.Second
	yc.LogOutput = io.Discard
	// A stream's window must hold a whole frame, so a reply never waits
	// for the client to read part of it.
	yc.MaxStreamWindowSize = uint32(max(256<<10, s.cfg.MaxFrame+64))
	return yc
}

// newConn registers a connection, or fails if the server is closing.
func (s *Server) newConn(nc net.Conn) (*conn, error) {
	mux, err := yamux.Server(nc, s.yamuxConfig())
	if err != nil {
		return nil, err
	}
	c := &conn{s: s, nc: nc, mux: mux, peer: nc.RemoteAddr().String()}
	c.ctx, c.stop = context.WithCancel(s.ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.stop()
		mux.Close()
		return nil, ErrClosed
	}
	s.conns[c] = struct{}{}
	s.metrics.Conns.Add(1)
	s.metrics.ConnsTotal.Add(1)
	return c, nil
}

// close ends the connection and every call on it.
func (c *conn) close() {
	c.stop()
	c.mux.Close()
}

// serve accepts the connection's streams, one goroutine each, at most
// MaxStreams at once, until the connection closes.
func (c *conn) serve() {
	s := c.s
	defer s.wg.Done()
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.MaxStreams)
	defer func() {
		c.close()
		wg.Wait()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.metrics.Conns.Add(-1)
	}()
	go func() {
		// yamux closes the session on garbage or a broken TCP connection.
		select {
		case <-c.mux.CloseChan():
			c.stop()
		case <-c.ctx.Done():
		}
	}()
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-c.ctx.Done():
			st.Close()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.serveStream(st)
		}()
	}
}

// codec is a reusable frame decoder and encoder for one stream at a time.
type codec struct {
	dec *wire.Decoder
	enc *wire.Encoder
}

func (s *Server) getCodec(st io.ReadWriter) *codec {
	if v, ok := s.codecs.Get().(*codec); ok {
		v.dec.Reset(st)
		v.enc.Reset(st)
		return v
	}
	return &codec{dec: wire.NewDecoder(st, s.cfg.MaxFrame), enc: wire.NewEncoder(st, s.cfg.MaxFrame)}
}

func (s *Server) putCodec(c *codec) {
	c.dec.Reset(nil)
	c.enc.Reset(nil)
	s.codecs.Put(c)
}

// serveStream reads one request, answers it, and closes the stream. A frame
// over the limit or cut short closes the whole connection (the stream's
// position is lost); a malformed or unknown message is answered BadRequest
// and the connection carries on.
func (c *conn) serveStream(st *yamux.Stream) {
	s := c.s
	defer st.Close()
	// The request must arrive promptly: a stream opened and left silent
	// costs a goroutine.
	st.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	msg, err := c.readRequest(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, io.EOF) {
			return
		}
		if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrTruncated) || isTimeout(err) {
			s.metrics.BadFrames.Add(1)
			s.log.Debug("closing a client connection after a bad frame", "peer", c.peer, "err", err)
			c.writeReply(st, wire.Errorf(codeForFrameErr(err), "%v; closing the connection", err))
			c.close()
			return
		}
		c.writeReply(st, wire.Errorf(wire.BadRequest, "%v", err))
		return
	}
	s.metrics.request(msg.Type())
	reply := s.dispatch(c, st, msg)
	s.metrics.reply(reply)
	c.writeReply(st, reply)
}

func codeForFrameErr(err error) wire.Code {
	if errors.Is(err, wire.ErrFrameTooLarge) {
		return wire.TooLarge
	}
	return wire.BadRequest
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, yamux.ErrTimeout)
}

// readRequest reads one frame with the server's limit.
func (c *conn) readRequest(st *yamux.Stream) (wire.Message, error) {
	cd := c.s.getCodec(st)
	defer c.s.putCodec(cd)
	return cd.dec.Decode()
}

// writeReply writes the reply frame. A reply over the frame limit (which
// validation should prevent) becomes an error reply.
func (c *conn) writeReply(st *yamux.Stream, m wire.Message) {
	cd := c.s.getCodec(st)
	defer c.s.putCodec(cd)
	st.SetWriteDeadline(time.Now().Add(c.s.cfg.RequestTimeout))
	err := cd.enc.Encode(m)
	if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) {
		err = cd.enc.Encode(wire.Errorf(wire.TooLarge, "reply: %v", err))
	}
	if err != nil {
		c.s.log.Debug("writing a reply failed", "peer", c.peer, "err", err)
	}
}
