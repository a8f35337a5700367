package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// ConnConfig configures both sides of a connection.
type ConnConfig struct {
	// MaxFrame limits the frames this side reads and writes
	// (DefaultMaxFrame if 0).
	MaxFrame int
	// MaxStreams bounds the calls a server runs at once on one connection
	// (1024 if 0). The name is from an early draft that had a stream per
	// call; it counts calls on the connection. Beyond it the server stops
	// reading the call stream until a call returns, so further requests
	// wait (in the stream's yamux window and the client's write buffer)
	// rather than fail.
	MaxStreams int
	// RequestTimeout bounds how long a server waits for the call stream
	// and the client's first frame (its Hello) after the connection
	// starts, and how long a client waits for the server to acknowledge
	// the call stream (10 s if 0).
	RequestTimeout time.Duration
	// WriteTimeout bounds writing the queued frames to the call stream
	// (10 s if 0): a peer that stops reading is cut off after between half
	// of it and all of it (the deadline is moved forward only once half of
	// it is used). It also bounds yamux's writes to the connection and each
	// flush of the batchConn under them.
	WriteTimeout time.Duration
	// PingInterval is how long a side waits without reading anything
	// before it sends a Ping; a connection silent for about two intervals
	// (between 1.5 and 2, the Ping unanswered) is closed as dead (15 s if
	// 0).
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

// yamux returns the session config of both sides. The call stream is the
// session's only stream: the server accepts one (a backlog of 1; a second
// stream waits unaccepted, further ones are refused). Its window holds two
// frames of the largest size, so one large reply never stalls on a window
// update. yamux's keep-alive is off: Ping and Pong frames on the call
// stream check the whole path, stream included (see liveReader).
func (c ConnConfig) yamux() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = 1
	y.MaxStreamWindowSize = uint32(max(2*(c.MaxFrame+FrameOverhead), int(y.MaxStreamWindowSize)))
	y.EnableKeepAlive = false
	y.ConnectionWriteTimeout = c.WriteTimeout
	y.StreamOpenTimeout = c.RequestTimeout
	y.LogOutput = nil
	y.Logger = slog.NewLogLogger(c.Logger.Handler(), slog.LevelDebug)
	return y
}

// readBufSize is the read buffer on the call stream: a burst of small
// frames costs one stream Read instead of two per frame.
const readBufSize = 4 << 10

// ErrConnClosed is returned by calls on a connection that has ended, and by
// the calls that were in flight when it did; NewConn and Dial return it
// (wrapped) when the peer hangs up during the handshake. yamux's
// "session shutdown" and io.EOF never leave this package bare.
var ErrConnClosed = errors.New("wire: connection closed")

// isEnded reports whether err only says that the connection is gone: the
// peer hung up (io.EOF, a closed pipe), the socket or the yamux session
// was closed. Callers see these as ErrConnClosed.
func isEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || isConnError(err)
}

// Conn is the client side of a connection: one TCP connection with a yamux
// session on top, whose one stream, the call stream, carries every call as
// frames. Each request frame carries a call id that its reply
// repeats, so calls do not wait for each other and replies come back in any
// order. A caller writes its own frame when no write is in progress, and
// frames of concurrent calls are written together (one write); one
// goroutine reads the replies and hands each to its caller. Conn is safe
// for concurrent use.
type Conn struct {
	sess    *yamux.Session
	nc      net.Conn    // the call stream
	ended   atomic.Bool // the session is ending (wakeOnClose)
	cfg     ConnConfig
	w       *frameWriter
	welcome *Welcome
	done    chan struct{} // closed when the connection has ended
	readEnd chan struct{} // closed when readLoop has returned
	closing sync.Once

	mu    sync.Mutex
	calls map[uint32]*pending // calls waiting for a reply, by call id
	next  uint32              // the last call id given out
	err   error               // why the connection ended; nil while it runs
}

// pending is one call waiting for its reply; readLoop or fail sends it
// exactly one result. Entries are pooled.
type pending struct {
	ch chan result // 1-buffered, so a delivery never blocks
}

type result struct {
	m   Message
	err error
}

var pendingPool = sync.Pool{New: func() any { return &pending{ch: make(chan result, 1)} }}

// Dial connects to addr and performs the handshake (see NewConn).
func Dial(ctx context.Context, addr string, cfg ConnConfig, hello Hello) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(ctx, nc, cfg, hello)
}

// NewConn starts the client side on an established connection nc: it sends
// hello (its version range defaults to what this package speaks) as the
// first frame. It returns once the server's Welcome arrives; the server's
// *Error (for example no common version) is returned as the error. From
// then on requests are limited to the smaller of cfg.MaxFrame and the
// server's Limits.MaxFrame. On error nc is closed.
func NewConn(ctx context.Context, nc net.Conn, cfg ConnConfig, hello Hello) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		nc.Close()
		return nil, err
	}
	bc := newBatchConn(nc, cfg.WriteTimeout)
	sess, err := yamux.Client(bc, cfg.yamux())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("wire: start session: %w", err)
	}
	st, err := sess.OpenStream()
	if err != nil {
		sess.Close() // closes nc
		// The peer may hang up before the stream opens (a TLS server
		// does so to a plain client).
		if isEnded(err) {
			return nil, fmt.Errorf("%w: open the call stream: %v", ErrConnClosed, err)
		}
		return nil, fmt.Errorf("wire: open the call stream: %w", err)
	}
	c := &Conn{sess: sess, nc: st, cfg: cfg, calls: make(map[uint32]*pending), done: make(chan struct{}), readEnd: make(chan struct{})}
	c.w = newFrameWriter(st, cfg.MaxFrame, cfg.WriteTimeout, c.closeConn)
	wakeOnClose(bc, st, &c.ended)
	go c.readLoop()
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
		c.Close() // closes nc
		return nil, err
	}
	if n := int(c.welcome.Limits.MaxFrame); n > 0 && n < cfg.MaxFrame {
		c.w.setMaxFrame(max(n, MinFrame))
	}
	return c, nil
}

// closeConn closes the connection once; readLoop then ends it.
func (c *Conn) closeConn() {
	c.closing.Do(func() { c.sess.Close() }) // closes the stream and the TCP connection
}

// Welcome returns the server's answer to the handshake.
func (c *Conn) Welcome() *Welcome { return c.welcome }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the connection; calls in flight fail with ErrConnClosed. It
// returns once the connection's goroutines have.
func (c *Conn) Close() error {
	c.closeConn()
	<-c.readEnd
	return nil
}

// Call sends req and returns the reply. A reply of type *Error is returned
// as the error (use errors.As). A request over the frame limit is refused
// before anything is sent (an error matching ErrFrameTooLarge). If ctx ends
// first, ctx's error is returned and the server is told with a CancelCall
// frame, which cancels the context of the call's handler; a waiting Acquire
// must still be withdrawn from the lock queue with a Cancel request.
func (c *Conn) Call(ctx context.Context, req Message) (Message, error) {
	return c.CallUntil(ctx, req, nil)
}

// ErrStopped is returned by CallUntil when its stop channel closed first.
var ErrStopped = errors.New("wire: call stopped")

// CallUntil is Call that also gives up, as if ctx had ended, once stop is
// closed (a nil stop never is); it then returns ErrStopped. It spares a
// caller that must end its calls on two signals a merged context per call.
func (c *Conn) CallUntil(ctx context.Context, req Message, stop <-chan struct{}) (Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := pendingPool.Get().(*pending)
	id, err := c.register(p)
	if err != nil {
		pendingPool.Put(p)
		return nil, err
	}
	if err := c.w.send(id, req); err != nil {
		c.forget(id, p)
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownType) {
			return nil, err
		}
		return nil, c.endErr(err)
	}
	select {
	case r := <-p.ch:
		pendingPool.Put(p)
		if r.err != nil {
			return nil, r.err
		}
		if e, ok := r.m.(*Error); ok {
			return nil, e
		}
		return r.m, nil
	case <-ctx.Done():
		c.abandon(id, p)
		return nil, ctx.Err()
	case <-stop:
		c.abandon(id, p)
		return nil, ErrStopped
	}
}

// abandon gives up on call id: the server is told with a CancelCall frame
// unless the reply is already on its way.
func (c *Conn) abandon(id uint32, p *pending) {
	if c.forget(id, p) {
		c.w.send(id, &CancelCall{}) // best effort: the connection may be ending
	}
}

// register gives p the next free call id.
func (c *Conn) register(p *pending) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	id := c.next + 1
	for id == 0 || c.calls[id] != nil { // after wrapping around
		id++
	}
	c.next = id
	c.calls[id] = p
	return id, nil
}

// forget drops the call id from the pending calls and returns p to the
// pool. It reports whether the call was still waiting (false if its result
// was already on its way, which it then drains).
func (c *Conn) forget(id uint32, p *pending) bool {
	c.mu.Lock()
	waiting := c.calls[id] == p
	if waiting {
		delete(c.calls, id)
	}
	c.mu.Unlock()
	if !waiting {
		<-p.ch
	}
	pendingPool.Put(p)
	return waiting
}

// endErr returns the error of an ended connection, or err if it has not
// ended (yet).
func (c *Conn) endErr(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return fmt.Errorf("%w: %v", ErrConnClosed, err)
}

// readLoop reads reply frames and hands each to its call until the
// connection ends; then it fails the calls still waiting. A reply to a call
// that was given up is dropped; a Ping is answered with a Pong. It never
// blocks on a caller or on a write.
func (c *Conn) readLoop() {
	defer close(c.readEnd)
	ping := func() error { return c.w.sendAsync(0, &Ping{}) }
	lr := newLiveReader(c.nc, c.cfg.PingInterval, c.cfg.PingInterval, false, ping, &c.ended)
	d := NewDecoder(bufio.NewReaderSize(lr, readBufSize), c.cfg.MaxFrame)
	var err error
	for {
		id, m, derr := d.DecodeCall()
		if derr != nil && !errors.Is(derr, ErrUnknownType) {
			err = derr
			break
		}
		switch m.(type) {
		case *Ping:
			c.w.sendAsync(0, &Pong{}) // a failure ends the connection anyway
			continue
		case *Pong:
			continue
		}
		c.mu.Lock()
		p := c.calls[id]
		delete(c.calls, id)
		c.mu.Unlock()
		if p != nil {
			p.ch <- result{m: m, err: derr} // an unknown type fails only its call
		}
	}
	c.fail(err)
}

// fail ends the connection after readLoop's error err.
func (c *Conn) fail(err error) {
	c.closeConn()
	c.w.close()
	if isEnded(err) {
		err = ErrConnClosed
	} else {
		c.cfg.Logger.Debug("wire: connection failed", "err", err)
		err = fmt.Errorf("%w: %v", ErrConnClosed, err)
	}
	c.mu.Lock()
	c.err = err
	calls := c.calls
	c.calls = nil
	c.mu.Unlock()
	close(c.done)
	for _, p := range calls {
		p.ch <- result{err: err}
	}
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
