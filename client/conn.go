package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// conn is one connection to one replica: a wire.Conn (TCP with a yamux
// session whose one stream carries every call as a frame tagged with its
// call id, so blocking calls never stall others) and the address it was
// dialed at. It is safe for concurrent use; once broken it stays broken and
// the pool replaces it.
type conn struct {
	addr string
	wc   *wire.Conn
}

// errTransport marks failures of the connection or stream (as opposed to an
// answer from the replica): the request may or may not have arrived.
var errTransport = errors.New("transport failure")

// errTLSHint marks a dial error that looks like a plain client of a TLS
// cell: the replica closed the connection before answering the Hello. The
// pool keeps such an error in the one it reports, so a replica that is down
// as well (and fails last) does not hide the hint.
var errTLSHint = errors.New("the replica closed the connection before answering the hello; " +
	"if the cell uses TLS, give this client its CA: Config.TLS, latch --cacert")

// pingInterval is how long a connection may stay silent before the client
// sends a Ping (a replica silent for about two intervals is cut off). It is
// longer than the cell holds a KeepAlive of the default 12 s lease (9 s), so
// the replies of an open session's long poll keep its connection from
// falling silent and no Pings are sent besides them: with 5 s, two Ping
// round trips rode on every KeepAlive, and they cost an idle cell more CPU
// than the KeepAlives did. A replica that stops answering while the long
// poll is held is noticed by the KeepAlive's own deadline (the session lease
// plus AttemptTimeout) or by the Pings, whichever ends first; a closed or
// reset connection at once.
const pingInterval = 10 * time.Second

// writeTimeout bounds one write to the connection: a replica that stops
// reading is cut off.
const writeTimeout = 5 * time.Second

// dial connects to addr (over TLS with tc, if not nil), runs the
// Hello/Welcome exchange and returns the conn. ctx bounds the whole
// exchange. A TLS failure wraps ErrTLS.
func dial(ctx context.Context, addr string, name string, tc *tls.Config, logger *slog.Logger) (*conn, error) {
	nc, err := dialNet(ctx, addr, tc)
	if err != nil {
		if isTLSErr(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrTLS, addr, err)
		}
		return nil, fmt.Errorf("%w: dial %s: %w", errTransport, addr, err)
	}
	wc, err := wire.NewConn(ctx, nc, wire.ConnConfig{PingInterval: pingInterval, WriteTimeout: writeTimeout, Logger: logger},
		wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.Version, Client: name})
	if err != nil {
		if t, ok := nc.(*tlsConn); ok && t.certAsked.Load() {
			// The replica asked for a client certificate this client does
			// not have. Say so the same way whether its alert ("certificate
			// required") arrived or was lost to the reset of its close.
			cause := err
			if isTLSErr(t.readErr()) {
				cause = t.readErr()
			}
			return nil, fmt.Errorf("%w: %s refused this client: it requires a client certificate and this client has none (set Config.TLS.Certificates): %w", ErrTLS, addr, cause)
		}
		if t, ok := nc.(*tlsConn); ok && isTLSErr(t.readErr()) {
			return nil, fmt.Errorf("%w: %s refused this client: %w", ErrTLS, addr, t.readErr())
		}
		if isProtocolErr(err) {
			return nil, fmt.Errorf("%w: hello to %s: %w", ErrProtocol, addr, err)
		}
		if tc == nil && errors.Is(err, wire.ErrConnClosed) {
			// A TLS server closes a plain connection without a word: say
			// so, or the user only sees closed connections until the
			// timeout.
			return nil, fmt.Errorf("%w: dial %s: %w (%w)", errTransport, addr, err, errTLSHint)
		}
		return nil, fmt.Errorf("%w: dial %s: %w", errTransport, addr, err)
	}
	if v := wc.Welcome().Version; v < wire.MinVersion || v > wire.Version {
		wc.Close()
		return nil, fmt.Errorf("%w: %s chose protocol version %d; this client speaks %d..%d",
			ErrProtocol, addr, v, wire.MinVersion, wire.Version)
	}
	return &conn{addr: addr, wc: wc}, nil
}

// dialNet opens the connection to addr: TCP, and TLS on it with tc (the
// name to verify is addr's host unless tc names one).
func dialNet(ctx context.Context, addr string, tc *tls.Config) (net.Conn, error) {
	if tc == nil {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	t := &tlsConn{}
	if len(tc.Certificates) == 0 && tc.GetClientCertificate == nil {
		// Without a certificate to give, note that the replica asked for
		// one (crypto/tls then sends none, as it would by itself).
		tc = tc.Clone()
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			t.certAsked.Store(true)
			return &tls.Certificate{}, nil
		}
	}
	nc, err := (&tls.Dialer{Config: tc}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Conn = nc.(*tls.Conn)
	return t, nil
}

// tlsConn is a TLS connection that remembers the first error a Read
// returned. With TLS 1.3 a replica refuses a client's certificate (or its
// lack of one) after the client's side of the handshake is done: the
// replica's alert ends the first read, under yamux, which reports only a
// closed connection. dial reports the alert instead.
type tlsConn struct {
	*tls.Conn
	err       atomic.Pointer[error]
	certAsked atomic.Bool // the replica asked for a certificate this client does not have
}

func (c *tlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// readErr is the first error a Read returned, or nil.
func (c *tlsConn) readErr() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// isTLSErr reports whether err is TLS failing for want of trust, which
// retrying cannot cure: a replica's certificate this client does not
// accept, or an alert from a replica that does not accept this client's.
func isTLSErr(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	// crypto/tls reports an alert from the peer as a *net.OpError with
	// Op "remote error" (its alert type is not exported).
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "remote error"
}

// welcome returns the replica's answer to the Hello.
func (c *conn) welcome() *wire.Welcome { return c.wc.Welcome() }

// call sends req on the connection and returns the reply. A reply that is a
// *wire.Error is returned as the error. Failures of the stream or connection
// wrap errTransport; malformed replies wrap ErrProtocol; a frame over the
// limit wraps ErrTooLarge; if ctx ends first, ctx's error is returned, and
// if stop closes first, wire.ErrStopped (the request may still be applied).
func (c *conn) call(ctx context.Context, req wire.Message, stop <-chan struct{}) (wire.Message, error) {
	reply, err := c.wc.CallUntil(ctx, req, stop)
	switch {
	case err == nil:
		return reply, nil
	case errors.As(err, new(*wire.Error)), ctx.Err() != nil && isContextErr(err), errors.Is(err, wire.ErrStopped):
		return nil, err
	case pastDeadline(ctx):
		// ctx's deadline passed while the call failed otherwise (say its
		// timer had not yet fired): report the deadline, as the caller asked.
		return nil, context.DeadlineExceeded
	case errors.Is(err, wire.ErrFrameTooLarge):
		// A request over the limit (the smaller of ours and the server's)
		// is refused before a byte is written; retrying cannot help.
		return nil, fmt.Errorf("%w: %s: %w", ErrTooLarge, req.Type(), err)
	case isProtocolErr(err):
		return nil, fmt.Errorf("%w: reply to %s from %s: %w", ErrProtocol, req.Type(), c.addr, err)
	}
	return nil, fmt.Errorf("%w: %s to %s: %w", errTransport, req.Type(), c.addr, err)
}

// pastDeadline reports whether ctx's deadline has passed.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// isProtocolErr reports whether err is a replica sending something this
// client cannot read.
func isProtocolErr(err error) bool {
	return errors.Is(err, wire.ErrVersion) || errors.Is(err, wire.ErrUnknownType) || errors.Is(err, wire.ErrMalformed)
}

// dead reports whether the connection can no longer carry calls.
func (c *conn) dead() bool {
	select {
	case <-c.wc.Done():
		return true
	default:
		return false
	}
}

// close ends the connection; calls in flight fail with a transport error.
func (c *conn) close() { c.wc.Close() }
