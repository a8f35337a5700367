package wire

import (
	"runtime"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// callStream is what the frame writer needs of the call stream (a
// *yamux.Stream).
type callStream interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
}

// frameWriter coalesces the frames one side of a connection sends on its
// call stream. send encodes a frame straight into a shared buffer under mu;
// one goroutine (run) writes whatever has accumulated with a single Write,
// so many concurrent calls cost one yamux data frame, not one each. An idle
// writer is a goroutine parked on a channel and a small buffer.
type frameWriter struct {
	st       callStream
	timeout  time.Duration // bounds one Write: a peer that stops reading is cut off
	deadline time.Time     // the stream's write deadline; run's alone
	onFail   func()        // called once, from run, when a Write fails

	mu       sync.Mutex
	cond     sync.Cond // signaled when the buffer was taken or the writer ended
	maxFrame int
	out      sliceWriter // frames waiting for run
	enc      *msgpack.Encoder
	spare    []byte // run's previous buffer, for reuse
	err      error  // why the writer ended; nil while it runs
	wake     chan struct{}
	done     chan struct{}
}

const (
	// maxQueued bounds the bytes waiting for the writer; senders wait
	// beyond it, so a peer that does not read cannot grow the buffer.
	maxQueued = 4 << 20
	// maxSpare is the largest buffer kept for reuse between flushes.
	maxSpare = 64 << 10
)

// newFrameWriter starts a writer on st; close stops it.
func newFrameWriter(st callStream, maxFrame int, timeout time.Duration, onFail func()) *frameWriter {
	w := &frameWriter{st: st, timeout: timeout, onFail: onFail, maxFrame: maxFrame,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	w.cond.L = &w.mu
	w.enc = msgpack.NewEncoder(&w.out)
	go w.run()
	return w
}

// send queues m as a frame of the given call. It fails if the frame is over
// the limit (an error matching ErrFrameTooLarge; nothing is queued) or the
// writer has ended. It waits only while maxQueued bytes are queued.
func (w *frameWriter) send(call uint32, m Message) error {
	w.mu.Lock()
	for w.err == nil && len(w.out.b) >= maxQueued {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	first := len(w.out.b) == 0
	err := appendFrame(&w.out, w.enc, call, m, w.maxFrame)
	w.mu.Unlock()
	// A non-empty buffer already has a wake-up on its way.
	if err == nil && first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// setMaxFrame changes the limit on the frames send accepts.
func (w *frameWriter) setMaxFrame(n int) {
	w.mu.Lock()
	w.maxFrame = n
	w.mu.Unlock()
}

// run writes the queued frames until close or a failed Write.
func (w *frameWriter) run() {
	defer close(w.done)
	for range w.wake {
		// Let the senders that are runnable finish their frames first: one
		// Write for the burst, at the cost of a trip through the scheduler.
		runtime.Gosched()
		w.mu.Lock()
		if w.err != nil {
			w.mu.Unlock()
			return
		}
		out := w.out.b
		w.out.b = w.spare[:0]
		w.spare = nil
		w.cond.Broadcast()
		w.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		w.refreshDeadline()
		_, err := w.st.Write(out)
		w.mu.Lock()
		if cap(out) <= maxSpare {
			w.spare = out[:0]
		}
		if err != nil && w.err == nil {
			w.err = err
			w.cond.Broadcast()
		}
		w.mu.Unlock()
		if err != nil {
			w.onFail()
			return
		}
	}
}

// refreshDeadline keeps the stream's write deadline between timeout/2 and
// timeout ahead. Setting it costs yamux an allocation, so it is moved only
// when half of it has been used up, not on every write.
func (w *frameWriter) refreshDeadline() {
	now := time.Now()
	if w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.st.SetWriteDeadline(w.deadline)
	}
}

// close stops the writer, dropping what is queued, and waits for run to
// return. Later sends fail.
func (w *frameWriter) close() {
	w.mu.Lock()
	if w.err == nil {
		w.err = ErrConnClosed
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.done
}
