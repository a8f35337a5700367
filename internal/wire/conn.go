package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// ConnConfig configures both sides of a connection.
type ConnConfig struct {
	// MaxFrame limits the frames this side reads and writes
	// (DefaultMaxFrame if 0).
	MaxFrame int
	// MaxStreams bounds the calls a server serves at once on one
	// connection (1024 if 0); further streams wait to be accepted.
	MaxStreams int
	// RequestTimeout bounds how long a server waits for the request frame
	// of a new stream (10 s if 0).
	RequestTimeout time.Duration
	// WriteTimeout bounds writing one frame (10 s if 0).
	WriteTimeout time.Duration
	// PingInterval is the yamux keep-alive interval that detects a dead
	// connection (15 s if 0).
	PingInterval time.Duration
	// Logger receives connection-level failures; nil discards them.
	Logger *slog.Logger
}

// ErrBadConfig is returned for a ConnConfig with negative values.
var ErrBadConfig = errors.New("wire: invalid connection config")

func (c ConnConfig) withDefaults() (ConnConfig, error) {
	if c.MaxFrame < 0 || c.MaxStreams < 0 || c.RequestTimeout < 0 || c.WriteTimeout < 0 || c.PingInterval < 0 {
		return c, fmt.Errorf("%w: negative value in %+v", ErrBadConfig, c)
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	c.MaxFrame = max(c.MaxFrame, MinFrame)
	if c.MaxStreams == 0 {
		c.MaxStreams = 1024
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (c ConnConfig) yamux() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = c.MaxStreams
	y.KeepAliveInterval = c.PingInterval
	y.ConnectionWriteTimeout = c.WriteTimeout
	y.LogOutput = nil
	y.Logger = slog.NewLogLogger(c.Logger.Handler(), slog.LevelDebug)
	return y
}

// pools of codecs, so a call costs no codec allocation.
var (
	encoders = sync.Pool{New: func() any { return NewEncoder(nil, DefaultMaxFrame) }}
	decoders = sync.Pool{New: func() any { return NewDecoder(nil, DefaultMaxFrame) }}
)

// maxPooledBuf is the largest decode buffer kept in the pool.
const maxPooledBuf = 64 << 10

func writeMsg(w io.Writer, m Message, maxFrame int) error {
	e := encoders.Get().(*Encoder)
	e.Reset(w)
	e.maxFrame = maxFrame
	err := e.Encode(m)
	e.Reset(nil)
	if e.buf.Cap() <= maxPooledBuf {
		encoders.Put(e)
	}
	return err
}

func readMsg(r io.Reader, maxFrame int) (Message, error) {
	d := decoders.Get().(*Decoder)
	d.Reset(r)
	d.maxFrame = maxFrame
	m, err := d.Decode()
	d.Reset(nil)
	if cap(d.buf) <= maxPooledBuf {
		decoders.Put(d)
	}
	return m, err
}

// Conn is the client side of a connection: one yamux session over one TCP
// connection, one stream per call. It is safe for concurrent use; calls do
// not wait for each other.
type Conn struct {
	sess    *yamux.Session
	cfg     ConnConfig
	welcome *Welcome
}

// Dial connects to addr and performs the handshake (see NewConn).
func Dial(ctx context.Context, addr string, cfg ConnConfig, hello Hello) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(ctx, nc, cfg, hello)
}

// NewConn starts the client side on an established connection nc and sends
// hello (its version range defaults to what this package speaks). It returns
// once the server's Welcome arrives; the server's *Error (for example no
// common version) is returned as the error. On error nc is closed. Writes to
// nc are coalesced: yamux frames queued together go out in one write.
func NewConn(ctx context.Context, nc net.Conn, cfg ConnConfig, hello Hello) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc = newBatchConn(nc, cfg.WriteTimeout)
	sess, err := yamux.Client(nc, cfg.yamux())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("wire: start session: %w", err)
	}
	c := &Conn{sess: sess, cfg: cfg}
	if hello.MinVersion == 0 && hello.MaxVersion == 0 {
		hello.MinVersion, hello.MaxVersion = MinVersion, Version
	}
	reply, err := c.Call(ctx, &hello)
	if err == nil {
		w, ok := reply.(*Welcome)
		if !ok {
			err = fmt.Errorf("%w: reply to Hello is %v", ErrMalformed, reply.Type())
		} else {
			c.welcome = w
		}
	}
	if err != nil {
		sess.Close() // closes nc
		return nil, err
	}
	return c, nil
}

// Welcome returns the server's answer to the handshake.
func (c *Conn) Welcome() *Welcome { return c.welcome }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.sess.CloseChan() }

// Close ends the connection; calls in flight fail.
func (c *Conn) Close() error { return c.sess.Close() }

// Call sends req on a new stream and returns the reply. A reply of type
// *Error is returned as the error (use errors.As). If ctx ends first, the
// stream is abandoned and ctx's error returned; the server learns nothing
// of it (a waiting Acquire must be withdrawn with a Cancel call).
func (c *Conn) Call(ctx context.Context, req Message) (Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("wire: open stream: %w", err)
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	st.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if err := writeMsg(st, req, c.cfg.MaxFrame); err != nil {
		return nil, c.callErr(ctx, "write", err)
	}
	st.SetWriteDeadline(time.Time{})
	st.Close() // half-close: the request is complete
	reply, err := readMsg(st, c.cfg.MaxFrame)
	if err != nil {
		return nil, c.callErr(ctx, "read", err)
	}
	if e, ok := reply.(*Error); ok {
		return nil, e
	}
	return reply, nil
}

func (c *Conn) callErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("wire: %s: %w", op, err)
}

// Do sends req and returns the reply as type R. A reply of another type is
// an ErrMalformed error.
func Do[R Message](ctx context.Context, c *Conn, req Message) (R, error) {
	var zero R
	reply, err := c.Call(ctx, req)
	if err != nil {
		return zero, err
	}
	r, ok := reply.(R)
	if !ok {
		return zero, fmt.Errorf("%w: reply to %v is %v", ErrMalformed, req.Type(), reply.Type())
	}
	return r, nil
}

// Handler serves the requests of one connection. ServeWire is called on its
// own goroutine for each request and must return a reply message or an
// *Error; a nil reply is answered with an Internal error. ctx is canceled
// when the connection ends or Serve's context is done. For Hello, the
// handler fills in the Welcome (server id, leader, limits); Serve sets the
// version.
type Handler interface {
	ServeWire(ctx context.Context, req Message) Message
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req Message) Message

// ServeWire calls f.
func (f HandlerFunc) ServeWire(ctx context.Context, req Message) Message { return f(ctx, req) }

// Serve runs the server side of the client connection nc until the client
// goes away or ctx is done, then closes nc and returns once every call has
// returned. Each stream carries one call: Serve reads the request (within
// RequestTimeout), calls h, writes the reply and closes the stream. A
// malformed or oversized request gets an *Error reply on its own stream and
// does not end the connection. The first call must be a Hello; others are
// refused until it succeeds. Writes to nc are coalesced as in [NewConn].
func Serve(ctx context.Context, nc net.Conn, cfg ConnConfig, h Handler) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		nc.Close()
		return err
	}
	nc = newBatchConn(nc, cfg.WriteTimeout)
	sess, err := yamux.Server(nc, cfg.yamux())
	if err != nil {
		nc.Close()
		return fmt.Errorf("wire: start session: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	s := &server{cfg: cfg, h: h, sem: make(chan struct{}, cfg.MaxStreams)}
	var wg sync.WaitGroup
	defer func() {
		sess.Close() // closes nc
		cancel()     // ends the calls in flight
		wg.Wait()
	}()
	for {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		st, err := sess.AcceptStreamWithContext(ctx)
		if err != nil {
			<-s.sem
			if ctx.Err() != nil || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("wire: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			s.serveStream(ctx, st)
		}()
	}
}

type server struct {
	cfg ConnConfig
	h   Handler
	sem chan struct{}

	mu      sync.Mutex
	greeted bool
}

func (s *server) serveStream(ctx context.Context, st *yamux.Stream) {
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	req, err := readMsg(st, s.cfg.MaxFrame)
	st.SetReadDeadline(time.Time{})
	var reply Message
	switch {
	case err != nil:
		reply = decodeErrorReply(err)
		if reply == nil {
			return // the stream broke: nobody to answer
		}
		s.cfg.Logger.Debug("wire: bad request", "err", err)
	default:
		reply = s.dispatch(ctx, req)
	}
	st.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err := writeMsg(st, reply, s.cfg.MaxFrame); err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			err = writeMsg(st, Errorf(TooLarge, "reply %v is over the frame limit", reply.Type()), s.cfg.MaxFrame)
		}
		if err != nil {
			s.cfg.Logger.Debug("wire: write reply", "err", err)
		}
	}
}

// decodeErrorReply maps a request decoding failure to the reply, or nil if
// the stream itself failed.
func decodeErrorReply(err error) Message {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return &Error{Code: TooLarge, Message: err.Error()}
	case errors.Is(err, ErrVersion), errors.Is(err, ErrUnknownType), errors.Is(err, ErrMalformed):
		return &Error{Code: BadRequest, Message: err.Error()}
	}
	return nil
}

func (s *server) dispatch(ctx context.Context, req Message) Message {
	if hello, ok := req.(*Hello); ok {
		return s.hello(ctx, hello)
	}
	s.mu.Lock()
	greeted := s.greeted
	s.mu.Unlock()
	if !greeted {
		return Errorf(BadRequest, "%v before Hello", req.Type())
	}
	if _, ok := req.(Request); !ok {
		return Errorf(BadRequest, "%v is not a request", req.Type())
	}
	return s.call(ctx, req)
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
	s.mu.Lock()
	s.greeted = true
	s.mu.Unlock()
	return w
}

// call runs the handler, turning a nil reply or a panic into Internal.
func (s *server) call(ctx context.Context, req Message) (reply Message) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("wire: handler panicked", "request", req.Type(), "panic", p)
			reply = Errorf(Internal, "handler failed on %v", req.Type())
		}
	}()
	reply = s.h.ServeWire(ctx, req)
	if reply == nil || isNilPointer(reply) {
		return Errorf(Internal, "no reply to %v", req.Type())
	}
	return reply
}
