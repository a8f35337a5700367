package wire

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// errPeerSilent ends a connection whose peer answered neither frames nor
// a Ping for a whole ping interval.
var errPeerSilent = errors.New("wire: peer silent (no answer to a Ping)")

// errFirstFrameLate ends a connection whose first frame did not arrive
// within the first, strict, deadline.
var errFirstFrameLate = errors.New("wire: no frame within the request timeout")

// liveReader reads the call stream for its side's reader goroutine and
// checks the peer is alive, without a goroutine or timer of its own: the read
// deadline is kept between interval/2 and interval ahead (moved only when
// half of it is used up, so a busy connection rarely touches it). When it
// passes with nothing read, the reader sends a Ping and waits one more
// interval; any frame (the Pong, or anything else) shows the peer is
// alive. Nothing at all is an error, errPeerSilent, which ends the
// connection.
//
// Until the first byte arrives the first deadline is strict: passing it is
// an error (the server's RequestTimeout for the Hello).
type liveReader struct {
	nc       net.Conn
	interval time.Duration
	ping     func() error // queues a Ping without blocking
	deadline time.Time    // the read deadline set last
	pinged   bool         // a Ping went out and nothing was read since
	strict   bool         // passing the deadline is an error
	ended    *atomic.Bool // set when the session ends (see wakeOnClose)
}

// newLiveReader starts checking nc; the first deadline is first from now,
// strict if strict is set.
func newLiveReader(nc net.Conn, interval, first time.Duration, strict bool, ping func() error, ended *atomic.Bool) *liveReader {
	r := &liveReader{nc: nc, interval: interval, ping: ping, strict: strict, ended: ended}
	r.deadline = time.Now().Add(first)
	nc.SetReadDeadline(r.deadline)
	return r
}

// Read reads from the connection, sending Pings while it is silent.
func (r *liveReader) Read(p []byte) (int, error) {
	for {
		if r.ended.Load() {
			return 0, net.ErrClosed
		}
		n, err := r.nc.Read(p)
		if n > 0 {
			r.pinged = false
			if now := time.Now(); r.strict || r.deadline.Sub(now) < r.interval/2 {
				r.strict = false
				r.deadline = now.Add(r.interval)
				r.nc.SetReadDeadline(r.deadline)
			}
			return n, err
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return n, err
		}
		if r.strict {
			return 0, errFirstFrameLate
		}
		if r.pinged {
			return 0, errPeerSilent
		}
		if err := r.ping(); err != nil {
			return 0, err
		}
		r.pinged = true
		r.deadline = time.Now().Add(r.interval)
		r.nc.SetReadDeadline(r.deadline)
	}
}

// isTimeout reports whether err is a passed read deadline: the os error of
// a TCP connection or yamux's timeout error of a stream.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// wakeOnClose makes the end of a yamux session wake the call stream's
// reader at once. yamux v0.1's Stream.Read, on a session that is shutting
// down, loops on the closed shutdown channel (making a timer each time)
// until Session.Close has force-closed the session's streams, which it does
// only after it closed the connection underneath and its receive loop
// returned: with many connections ending together those loops spun for
// milliseconds each (500 connections closing cost 1.8 s of CPU). yamux
// closes the connection under the session right after the shutdown
// channel; there ended is set and the stream's read deadline moved into the
// past, so the reader's Read returns and liveReader reports net.ErrClosed.
func wakeOnClose(bc *batchConn, st *yamux.Stream, ended *atomic.Bool) {
	bc.setOnClose(func() {
		ended.Store(true)
		st.SetReadDeadline(time.Unix(1, 0))
	})
}
