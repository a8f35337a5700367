package wire

import (
	"errors"
	"net"
	"os"
	"sync"
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
// checks the peer is alive. A watchdog timer fires every half ping
// interval and counts the reads since it last fired: after about an
// interval with nothing read it sends a Ping, and after one more interval
// with nothing (not even the Pong) it wakes the reader with errPeerSilent,
// which ends the connection. Any frame shows the peer is alive.
//
// The stream carries no read deadline while the watchdog runs: yamux's
// Stream.Read makes a timer (and its channel) on every call while one is
// set, which cost a tenth of a leader's CPU serving small reads over many
// connections. The one deadline kept is the strict first one: until the
// first byte arrives, passing it is an error (the server's RequestTimeout
// for the Hello); the watchdog starts with that first byte.
type liveReader struct {
	nc       net.Conn
	interval time.Duration
	ping     func() error // queues a Ping without blocking
	strict   bool         // reader only: the first deadline is still set
	ended    *atomic.Bool // set when the session ends (see wakeOnClose)
	reads    atomic.Uint64
	failed   atomic.Pointer[error] // set by the watchdog before it wakes the reader

	mu      sync.Mutex // guards the watchdog's state below
	timer   *time.Timer
	stopped bool
	seen    uint64 // reads at the last firing
	quiet   int    // firings in a row with nothing read
}

// newLiveReader starts checking nc: if strict, the first byte must arrive
// within first; otherwise the watchdog starts at once.
func newLiveReader(nc net.Conn, interval, first time.Duration, strict bool, ping func() error, ended *atomic.Bool) *liveReader {
	r := &liveReader{nc: nc, interval: interval, ping: ping, strict: strict, ended: ended}
	if strict {
		nc.SetReadDeadline(time.Now().Add(first))
	} else {
		r.startWatchdog()
	}
	return r
}

// Read reads from the connection. An error it returns ends the reader; it
// stops the watchdog then.
func (r *liveReader) Read(p []byte) (int, error) {
	for {
		if r.ended.Load() {
			r.stopWatchdog()
			return 0, net.ErrClosed
		}
		n, err := r.nc.Read(p)
		if n > 0 {
			r.reads.Add(1)
			if r.strict {
				r.strict = false
				r.nc.SetReadDeadline(time.Time{})
				r.startWatchdog()
			}
		}
		if err == nil {
			if n > 0 {
				return n, nil
			}
			continue
		}
		r.stopWatchdog()
		switch {
		case r.ended.Load():
			return n, net.ErrClosed
		case r.failed.Load() != nil:
			return n, *r.failed.Load() // the watchdog's verdict
		case r.strict && isTimeout(err):
			return n, errFirstFrameLate
		}
		return n, err
	}
}

// startWatchdog arms the watchdog's first firing, half an interval away.
func (r *liveReader) startWatchdog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.timer = time.AfterFunc(r.interval/2, r.watch)
}

// stopWatchdog stops the watchdog for good.
func (r *liveReader) stopWatchdog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
}

// watch is the watchdog's firing: every half interval, in the timer's
// goroutine. Two firings in a row with nothing read (about an interval of
// silence) send a Ping; two more (an interval after the Ping) end the
// connection: the reader is woken by a read deadline in the past and
// returns the error stored in failed.
func (r *liveReader) watch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.ended.Load() {
		return
	}
	if n := r.reads.Load(); n != r.seen {
		r.seen, r.quiet = n, 0
	} else {
		r.quiet++
	}
	var fail error
	switch r.quiet {
	case 2:
		fail = r.ping()
	case 4:
		fail = errPeerSilent
	}
	if fail != nil {
		r.failed.Store(&fail)
		r.stopped = true
		r.nc.SetReadDeadline(wakeNow)
		return
	}
	r.timer.Reset(r.interval / 2)
}

// wakeNow is a read deadline in the past: setting it wakes a reader
// blocked in Read at once.
var wakeNow = time.Unix(1, 0)

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
		st.SetReadDeadline(wakeNow)
	})
}
