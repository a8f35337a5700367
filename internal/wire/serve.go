package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Handler serves the requests of one connection. ServeWire is called on its
// own goroutine for each request and must return a reply message or an
// *Error; a nil reply is answered with an Internal error. ctx is canceled
// when the client gives up on the call (a CancelCall frame), when the
// connection ends, or when Serve's context is done. For Hello, the handler
// fills in the Welcome (server id, leader, limits); Serve sets the version.
type Handler interface {
	ServeWire(ctx context.Context, req Message) Message
}

// QuickHandler is a Handler that can answer some requests at once, on the
// connection's reader goroutine, instead of on a call goroutine: a read
// served from memory, for instance. Serve offers it every request (after
// the Hello) before it starts a call; ServeQuick returns ok false for one
// it leaves to ServeWire, and must never wait (no I/O, no lock held for
// long), since the connection reads nothing more meanwhile. The replies of
// the requests that arrived together go out with one write once the reader
// has taken in the burst: with many calls in flight on a connection, this
// saves a goroutine hand-off per call and most of the writes.
type QuickHandler interface {
	Handler
	ServeQuick(req Message) (reply Message, ok bool)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Message) Message

// ServeWire calls f.
func (f HandlerFunc) ServeWire(ctx context.Context, req Message) Message { return f(ctx, req) }

// errCallCanceled is the cause of a handler's context canceled by the
// client's CancelCall.
var errCallCanceled = errors.New("wire: call canceled by the client")

// Serve runs the server side of the client connection nc until the client
// goes away or ctx is done, then closes nc and returns once every call has
// returned. It runs a yamux session on nc (over a batchConn) and accepts
// one stream, the call stream, which carries every call; the stream and
// the client's first frame on it must arrive within RequestTimeout.
// Serve's goroutine reads the request frames; each request runs h on a call
// goroutine (reused for later calls) with a context of its own, at most
// MaxStreams at once, and that goroutine writes the reply itself when no
// write is in progress (else the write in progress takes it along). If h
// is a QuickHandler, the reader first offers it the request and writes the
// replies it gets that way once it has read the burst they came in. Beyond
// MaxStreams Serve stops reading until a call returns, so a CancelCall
// behind the waiting request is read late: its caller has already
// returned, and only the handler's work goes on longer. A client silent
// for about two PingIntervals (a Ping unanswered) is cut off.
//
// The first call must be a Hello, which runs before the next frame is read;
// other requests are answered BadRequest until it succeeds. A well-framed
// frame of an unknown type, or a message that is not a request, is answered
// BadRequest on its call id and the connection goes on. Anything else that
// is wrong with the input (a frame over MaxFrame, a version this side does
// not speak, a body that is not a valid message, a call id already in
// flight) closes the connection, and only that one: the stream cannot be
// trusted to be in step any more. A reply over MaxFrame is replaced by a
// TooLarge error. Serve returns an error for a connection closed because of
// bad input or a missing Hello.
func Serve(ctx context.Context, nc net.Conn, cfg ConnConfig, h Handler) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		nc.Close()
		return err
	}
	bc := newBatchConn(nc, cfg.WriteTimeout)
	sess, err := yamux.Server(bc, cfg.yamux())
	if err != nil {
		nc.Close()
		return fmt.Errorf("wire: start session: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	actx, acancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	st, err := sess.AcceptStreamWithContext(actx)
	acancel()
	if err != nil {
		sess.Close() // closes nc
		switch {
		case ctx.Err() != nil, errors.Is(err, yamux.ErrSessionShutdown), errors.Is(err, io.EOF):
			return nil
		case actx.Err() != nil:
			return errFirstFrameLate
		}
		return fmt.Errorf("wire: accept the call stream: %w", err)
	}
	s := &server{
		cfg:    cfg,
		h:      h,
		sess:   sess,
		nc:     st,
		closed: make(chan struct{}),
		sem:    make(chan struct{}, cfg.MaxStreams),
		idle:   make(chan call),
		calls:  make(map[uint32]context.CancelCauseFunc),
	}
	s.quick, _ = h.(QuickHandler)
	s.w = newFrameWriter(st, cfg.MaxFrame, cfg.WriteTimeout, s.closeConn)
	wakeOnClose(bc, st, &s.ended)
	stop := context.AfterFunc(ctx, s.closeConn)
	defer stop()
	defer func() {
		s.closeConn()
		cancel() // ends the calls in flight
		s.wg.Wait()
		s.w.close()
	}()
	return s.read(ctx)
}

// server is the state of one connection's server side.
type server struct {
	cfg     ConnConfig
	h       Handler
	quick   QuickHandler // h, if it answers some requests at once
	sess    *yamux.Session
	nc      net.Conn    // the call stream
	ended   atomic.Bool // the session is ending (wakeOnClose)
	w       *frameWriter
	closed  chan struct{} // closed with the connection
	closing sync.Once
	sem     chan struct{} // one token per call in flight
	idle    chan call     // unbuffered: a send succeeds when a worker waits for a call
	wg      sync.WaitGroup
	greeted bool // a Hello succeeded; read's alone

	mu    sync.Mutex
	calls map[uint32]context.CancelCauseFunc // calls in flight, by call id
}

// closeConn closes the connection once.
func (s *server) closeConn() {
	s.closing.Do(func() {
		s.sess.Close() // closes the stream and the TCP connection
		close(s.closed)
	})
}

// read reads and dispatches request frames until the stream ends or breaks.
func (s *server) read(ctx context.Context) error {
	ping := func() error { return s.w.sendAsync(0, &Ping{}) }
	lr := newLiveReader(s.nc, s.cfg.PingInterval, s.cfg.RequestTimeout, true, ping, &s.ended)
	br := bufio.NewReaderSize(lr, readBufSize)
	d := NewDecoder(br, s.cfg.MaxFrame)
	for {
		if br.Buffered() == 0 {
			s.w.flushHeld() // the replies of the burst, before waiting for more
		}
		id, m, err := d.DecodeCall()
		switch {
		case errors.Is(err, ErrUnknownType):
			s.replyAsync(id, Errorf(BadRequest, "%v", err))
			continue
		case err == io.EOF, ctx.Err() != nil, s.isClosed():
			return nil
		case err == nil:
			// A call: dispatch it. (Before isConnError, whose errors.As
			// target would cost an allocation per frame.)
		case errors.Is(err, errFirstFrameLate):
			return err
		case errors.Is(err, errPeerSilent):
			s.cfg.Logger.Debug("wire: closing a silent connection", "err", err)
			return nil
		case isConnError(err):
			return nil // the client went away
		case err != nil:
			s.cfg.Logger.Debug("wire: bad input, closing the connection", "err", err)
			return fmt.Errorf("wire: bad input: %w", err)
		}
		if err := s.dispatch(ctx, id, m); err != nil {
			return err
		}
	}
}

// dispatch handles one well-formed frame.
func (s *server) dispatch(ctx context.Context, id uint32, m Message) error {
	switch m := m.(type) {
	case *CancelCall:
		s.cancelCall(id)
		return nil
	case *Ping:
		s.w.sendAsync(0, &Pong{}) // the reader never blocks on a write
		return nil
	case *Pong:
		return nil
	case *Hello:
		s.replyAsync(id, s.hello(ctx, m))
		return nil
	}
	if !s.greeted {
		s.replyAsync(id, Errorf(BadRequest, "%v before Hello", m.Type()))
		return nil
	}
	if _, ok := m.(Request); !ok {
		s.replyAsync(id, Errorf(BadRequest, "%v is not a request", m.Type()))
		return nil
	}
	if s.quick != nil {
		if reply, ok := s.quickCall(m); ok {
			s.sendReply(id, reply, s.w.hold)
			return nil
		}
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.w.flushHeld() // held replies must not wait for a call to end
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return nil
		}
	}
	s.mu.Lock()
	if _, dup := s.calls[id]; dup {
		s.mu.Unlock()
		<-s.sem
		return fmt.Errorf("wire: bad input: call id %d is already in flight", id)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	s.calls[id] = cancel
	s.mu.Unlock()
	j := call{ctx: cctx, cancel: cancel, id: id, req: m}
	select {
	case s.idle <- j: // a worker that finished a call takes it
	default:
		s.wg.Add(1)
		go s.worker(ctx, j)
	}
	return nil
}

// call is one request to run.
type call struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	id     uint32
	req    Message
}

// workerIdle is how long a worker that finished a call waits for another
// before it exits. Reusing workers saves starting a goroutine per call and,
// above all, growing its stack again (copying it two or three times while
// the reply is encoded) on every call.
const workerIdle = 2 * time.Second

// worker runs calls until none comes for workerIdle or the connection ends.
func (s *server) worker(ctx context.Context, c call) {
	defer s.wg.Done()
	var idle *time.Timer
	for {
		s.serveCall(c)
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case c = <-s.idle:
		case <-idle.C:
			return
		case <-ctx.Done():
			idle.Stop()
			return
		}
	}
}

// serveCall runs one call and sends its reply, unless the client gave up on
// it.
func (s *server) serveCall(c call) {
	reply := s.call(c.ctx, c.req)
	s.mu.Lock()
	delete(s.calls, c.id)
	s.mu.Unlock()
	<-s.sem
	canceled := context.Cause(c.ctx) == errCallCanceled
	c.cancel(nil)
	if !canceled {
		s.reply(c.id, reply)
	}
}

// cancelCall cancels the handler's context of call id, if it is in flight.
func (s *server) cancelCall(id uint32) {
	s.mu.Lock()
	cancel := s.calls[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(errCallCanceled)
	}
}

// isConnError reports whether err is the connection's failure (reset,
// closed) rather than bad input.
func isConnError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrStreamClosed) ||
		errors.Is(err, yamux.ErrConnectionReset) || errors.Is(err, yamux.ErrStreamsExhausted)
}

// isClosed reports whether the connection was closed.
func (s *server) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// reply writes the reply to call id (or queues it behind a write in
// progress), for a call's goroutine; one over the frame limit is replaced
// by a TooLarge error. If the connection is ending the reply is dropped.
func (s *server) reply(id uint32, reply Message) { s.sendReply(id, reply, s.w.send) }

// replyAsync is reply for the reader, which must not block on a write.
func (s *server) replyAsync(id uint32, reply Message) { s.sendReply(id, reply, s.w.sendAsync) }

func (s *server) sendReply(id uint32, reply Message, send func(uint32, Message) error) {
	err := send(id, reply)
	if errors.Is(err, ErrFrameTooLarge) {
		err = send(id, Errorf(TooLarge, "reply %v is over the frame limit: %v", reply.Type(), err))
	}
	if err != nil && !errors.Is(err, ErrConnClosed) {
		s.cfg.Logger.Debug("wire: write reply", "err", err)
	}
}

func (s *server) hello(ctx context.Context, h *Hello) Message {
	if h.MinVersion > h.MaxVersion || h.MaxVersion < MinVersion || h.MinVersion > Version {
		return Errorf(BadRequest, "no common protocol version: client speaks %d..%d, server %d..%d",
			h.MinVersion, h.MaxVersion, MinVersion, Version)
	}
	reply := s.call(ctx, h)
	w, ok := reply.(*Welcome)
	if !ok {
		return reply
	}
	w.Version = min(h.MaxVersion, Version)
	s.greeted = true
	return w
}

// quickCall offers req to the QuickHandler, turning a nil reply or a panic
// into Internal as call does.
func (s *server) quickCall(req Message) (reply Message, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			reply, ok = s.panicked(req, p), true
		}
	}()
	reply, ok = s.quick.ServeQuick(req)
	if ok {
		reply = checkReply(req, reply)
	}
	return reply, ok
}

// call runs the handler, turning a nil reply or a panic into Internal.
func (s *server) call(ctx context.Context, req Message) (reply Message) {
	defer func() {
		if p := recover(); p != nil {
			reply = s.panicked(req, p)
		}
	}()
	return checkReply(req, s.h.ServeWire(ctx, req))
}

// panicked logs a handler's panic and returns the reply for it.
func (s *server) panicked(req Message, p any) Message {
	s.cfg.Logger.Error("wire: handler panicked", "request", req.Type(), "panic", p)
	return Errorf(Internal, "handler failed on %v", req.Type())
}

// checkReply turns a handler's nil reply into Internal.
func checkReply(req, reply Message) Message {
	if reply == nil || isNilPointer(reply) {
		return Errorf(Internal, "no reply to %v", req.Type())
	}
	return reply
}
