package wire

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// batchConn coalesces the writes to a connection under a yamux session.
// yamux's send loop writes every frame's header and body with a write
// system call of its own and makes the stream's writer wait until it has;
// batchConn's Write only appends to a buffer, so the send loop, and the
// caller waiting on it, are released at once, and a flusher goroutine
// writes whatever has accumulated in one system call: an idle connection
// writes at once (no added delay), a busy one writes many frames at a time.
// [Serve] and [NewConn] put one under their yamux session. (The peer
// transport uses internal/muxconn instead, which writes on the send loop
// itself: measured with `latch bench get`, 64 clients each on its own
// connection, batchConn cost about the same CPU per call but kept about
// 1.5 times the throughput, the system calls running beside the callers.)
//
// Write returns before the bytes reach the socket; a failed flush closes the
// connection and is returned by the next Write. Writes block while
// maxPending bytes wait, so a peer that does not read cannot grow the
// buffer. Nothing is held back: the flusher writes as soon as it wakes and
// finds bytes queued.
type batchConn struct {
	net.Conn
	flushTimeout time.Duration // bounds one flush: a peer that stops reading is cut off

	mu      sync.Mutex
	cond    sync.Cond // signaled when the buffer was taken or the conn failed
	buf     []byte    // bytes waiting for the flusher
	spare   []byte    // the flusher's previous buffer, for reuse
	err     error     // the first write error, or net.ErrClosed after Close
	writing bool      // the flusher is writing a buffer
	wake    chan struct{}
	done    chan struct{}
	closing sync.Once
	onClose func() // run first by Close; set once by setOnClose
}

const (
	maxPending    = 4 << 20
	maxSpareBytes = 256 << 10
	// closeFlushTimeout bounds the last flush on Close, including one the
	// flusher has in progress.
	closeFlushTimeout = time.Second
)

// newBatchConn starts coalescing the writes to c; each flush must finish
// within flushTimeout. Close stops it.
func newBatchConn(c net.Conn, flushTimeout time.Duration) *batchConn {
	b := &batchConn{Conn: c, flushTimeout: flushTimeout, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.cond.L = &b.mu
	go b.flusher()
	return b
}

// setOnClose makes Close call f before anything else.
func (b *batchConn) setOnClose(f func()) {
	b.mu.Lock()
	b.onClose = f
	b.mu.Unlock()
}

// Write queues p for the flusher.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for b.err == nil && len(b.buf) > 0 && len(b.buf)+len(p) > maxPending {
		b.cond.Wait()
	}
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// flusher writes the accumulated bytes until the connection closes or a
// write fails. Close wakes it to stop.
func (b *batchConn) flusher() {
	defer close(b.done)
	for {
		<-b.wake
		// Let the writer finish its burst (yamux writes a frame's header
		// and body, and often several frames, back to back) before taking
		// the buffer: one system call instead of several, at the cost of a
		// trip through the scheduler.
		runtime.Gosched()
		b.mu.Lock()
		out := b.buf
		b.buf = b.spare[:0]
		b.spare = nil
		failed := b.err != nil
		b.writing = len(out) > 0 && !failed
		if b.writing {
			// Under mu, so that a Close that follows shortens it.
			b.Conn.SetWriteDeadline(time.Now().Add(b.flushTimeout))
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		if failed {
			return
		}
		if len(out) == 0 {
			continue
		}
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.writing = false
		if err != nil && b.err == nil {
			b.err = err
		}
		b.cond.Broadcast()
		if cap(out) <= maxSpareBytes {
			b.spare = out[:0]
		}
		b.mu.Unlock()
		if err != nil {
			b.Conn.Close()
			return
		}
	}
}

// flushed returns a channel closed once everything written so far has been
// handed to the connection (or the connection failed). For tests.
func (b *batchConn) flushed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		b.mu.Lock()
		defer b.mu.Unlock()
		for b.err == nil && (len(b.buf) > 0 || b.writing) {
			b.cond.Wait()
		}
	}()
	return ch
}

// Close flushes what is queued, then closes the connection and waits for
// the flusher. The flush in progress and the last one each get at most
// closeFlushTimeout, so Close returns promptly even if the peer stopped
// reading.
func (b *batchConn) Close() error {
	var err error
	b.closing.Do(func() {
		b.mu.Lock()
		onClose := b.onClose
		b.mu.Unlock()
		if onClose != nil {
			onClose()
		}
		b.mu.Lock()
		pending := b.buf
		b.buf = nil
		failed := b.err != nil
		if b.err == nil {
			b.err = net.ErrClosed
		}
		b.cond.Broadcast()
		b.mu.Unlock()
		b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		select {
		case b.wake <- struct{}{}:
		default:
		}
		<-b.done
		if !failed && len(pending) > 0 {
			b.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			b.Conn.Write(pending)
		}
		err = b.Conn.Close()
	})
	return err
}
