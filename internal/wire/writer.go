package wire

import (
	"runtime"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// frameSink is what the frame writer needs of the call stream (a yamux
// stream, or any net.Conn).
type frameSink interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
}

// frameWriter coalesces the frames one side of a connection sends. send
// encodes a frame straight into a shared buffer under mu; the sender that
// finds no write in progress becomes the flusher, yields once so that the
// senders already runnable queue their frames too, and writes, with one
// Write to the call stream, its frame and whatever other senders queued
// meanwhile ("flush combining"). A sender that finds a write in progress
// only appends: the flusher writes its frame next. So one caller alone
// costs one stream Write on its own goroutine, with no hand-off to a writer
// goroutine of ours (yamux's send loop and the batchConn flusher under the
// session carry the bytes on to the socket), and many concurrent callers
// share writes. An idle writer is a small buffer; it has no goroutine.
type frameWriter struct {
	sink     frameSink
	timeout  time.Duration // bounds one Write: a peer that stops reading is cut off
	deadline time.Time     // the sink's write deadline; the flusher's alone
	onFail   func()        // called once, by the flusher, when a Write fails

	mu       sync.Mutex
	cond     sync.Cond // signaled when the buffer was taken or the flusher stopped
	maxFrame int
	out      sliceWriter // frames waiting to be written
	enc      *msgpack.Encoder
	spare    []byte // the previous buffer, for reuse
	err      error  // why the writer ended; nil while it runs
	flushing bool   // a flusher is writing or about to
	drains   sync.WaitGroup
}

const (
	// maxQueued bounds the bytes waiting to be written; senders wait
	// beyond it, so a peer that does not read cannot grow the buffer.
	maxQueued = 4 << 20
	// maxSpare is the largest buffer kept for reuse between flushes.
	maxSpare = 64 << 10
	// maxInlineRounds bounds the writes one sender does for others: past
	// it, a goroutine of its own takes over the flushing, so a caller is
	// not kept writing for ever by a steady stream of other callers.
	maxInlineRounds = 4
)

// newFrameWriter returns a writer on sink; close stops it.
func newFrameWriter(sink frameSink, maxFrame int, timeout time.Duration, onFail func()) *frameWriter {
	w := &frameWriter{sink: sink, timeout: timeout, onFail: onFail, maxFrame: maxFrame}
	w.cond.L = &w.mu
	w.enc = msgpack.NewEncoder(&w.out)
	return w
}

// writeMode says who writes a frame that queue finds no write in progress
// for.
type writeMode int

const (
	writeInline writeMode = iota // the sender itself (send)
	writeAsync                   // a drain goroutine (sendAsync)
	writeHeld                    // flushHeld, later (hold)
)

// send queues m as a frame of the given call and, if no write is in
// progress, writes it (with anything else queued) before it returns. It
// fails if the frame is over the limit (an error matching ErrFrameTooLarge;
// nothing is queued) or the writer has ended. It waits only while maxQueued
// bytes are queued, or for its own write (bounded by the timeout).
func (w *frameWriter) send(call uint32, m Message) error {
	return w.queue(call, m, writeInline)
}

// sendAsync is send without waiting for a write: if no write is in
// progress, a goroutine writes the frame. For a reader answering a Ping,
// which must never block on a write.
func (w *frameWriter) sendAsync(call uint32, m Message) error {
	return w.queue(call, m, writeAsync)
}

// hold queues m as a frame without writing it: a write in progress takes
// it along, or else the next flushHeld (or any send) writes it. So a reader
// that answers a burst of requests itself writes the replies with one
// write once it has read the burst. Past holdMax bytes queued, hold writes
// them at once.
func (w *frameWriter) hold(call uint32, m Message) error {
	return w.queue(call, m, writeHeld)
}

// holdMax bounds the bytes hold leaves queued without a write.
const holdMax = 64 << 10

// flushHeld writes what hold queued, unless a write in progress is already
// taking it along. It waits for its write, like send.
func (w *frameWriter) flushHeld() {
	w.mu.Lock()
	if w.flushing || w.err != nil || len(w.out.b) == 0 {
		w.mu.Unlock()
		return
	}
	w.flushing = true
	w.flush(maxInlineRounds) // unlocks
}

func (w *frameWriter) queue(call uint32, m Message, mode writeMode) error {
	w.mu.Lock()
	// Only a write in progress drains the buffer; without one, the sender
	// writes it (hold's bytes stay below holdMax).
	for w.err == nil && w.flushing && len(w.out.b) >= maxQueued {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if err := appendFrame(&w.out, w.enc, call, m, w.maxFrame); err != nil {
		w.mu.Unlock()
		return err
	}
	if w.flushing || (mode == writeHeld && len(w.out.b) < holdMax) {
		w.mu.Unlock() // the flusher, or flushHeld, writes it next
		return nil
	}
	w.flushing = true
	switch mode {
	case writeAsync:
		w.drains.Add(1)
		w.mu.Unlock()
		go w.drain()
		return nil
	case writeHeld:
		w.flush(maxInlineRounds) // unlocks
		return nil
	}
	// Let the senders that are runnable queue their frames first: one
	// write for the burst instead of one each. Alone, this costs a trip
	// through the scheduler and nothing else.
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	w.flush(maxInlineRounds) // unlocks
	return nil
}

// drain flushes on a goroutine of its own until nothing is queued.
func (w *frameWriter) drain() {
	defer w.drains.Done()
	w.mu.Lock()
	w.flush(-1)
}

// flush writes the queued bytes, with mu held and flushing set, until
// nothing is queued, the writer ended, or it has written rounds times (if
// rounds >= 0: then a drain goroutine goes on). It returns with mu
// unlocked.
func (w *frameWriter) flush(rounds int) {
	for w.err == nil && len(w.out.b) > 0 {
		if rounds == 0 {
			w.drains.Add(1)
			w.mu.Unlock()
			go w.drain()
			return
		}
		rounds--
		out := w.out.b
		w.out.b = w.spare[:0]
		w.spare = nil
		w.cond.Broadcast()
		w.mu.Unlock()
		w.refreshDeadline()
		_, err := w.sink.Write(out)
		w.mu.Lock()
		if cap(out) <= maxSpare {
			w.spare = out[:0]
		}
		if err != nil && w.err == nil {
			w.err = err
			w.flushing = false
			w.cond.Broadcast()
			w.mu.Unlock()
			w.onFail()
			return
		}
	}
	w.flushing = false
	w.cond.Broadcast()
	w.mu.Unlock()
}

// refreshDeadline keeps the sink's write deadline between timeout/2 and
// timeout ahead. It is moved only when half of it has been used up, not on
// every write.
func (w *frameWriter) refreshDeadline() {
	now := time.Now()
	if w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.sink.SetWriteDeadline(w.deadline)
	}
}

// setMaxFrame changes the limit on the frames send accepts.
func (w *frameWriter) setMaxFrame(n int) {
	w.mu.Lock()
	w.maxFrame = n
	w.mu.Unlock()
}

// close stops the writer, dropping what is queued, and waits for a write
// in progress to return (the caller closes the connection first, or the
// write ends at its deadline). Later sends fail.
func (w *frameWriter) close() {
	w.mu.Lock()
	if w.err == nil {
		w.err = ErrConnClosed
	}
	w.cond.Broadcast()
	for w.flushing {
		w.cond.Wait()
	}
	w.mu.Unlock()
	w.drains.Wait()
}
