package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestBatchConn checks that coalesced writes arrive complete and in order,
// that Close flushes what is queued, and that writes after Close fail.
func TestBatchConn(t *testing.T) {
	a, b := net.Pipe()
	bc := newBatchConn(a, 10*time.Second)
	var want bytes.Buffer
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	for i := range 2000 {
		p := fmt.Appendf(nil, "frame-%d;", i)
		want.Write(p)
		if n, err := bc.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write #%d = %d, %v", i, n, err)
		}
	}
	if err := bc.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if g := <-got; !bytes.Equal(g, want.Bytes()) {
		t.Fatalf("read %d bytes; want the %d written, in order", len(g), want.Len())
	}
	if _, err := bc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
	}
	if err := bc.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestBatchConnPeerGone checks that a failed flush is reported by a later
// Write and closes the connection.
func TestBatchConnPeerGone(t *testing.T) {
	a, b := net.Pipe()
	bc := newBatchConn(a, 10*time.Second)
	defer bc.Close()
	b.Close()
	var err error
	for range 100 {
		if _, err = bc.Write([]byte("x")); err != nil {
			break
		}
		<-bc.flushed()
	}
	if err == nil {
		t.Fatal("writes to a closed peer kept succeeding")
	}
}

// TestBatchConnCloseStuckPeer checks that Close returns although a flush is
// in progress to a peer that never reads, with a flush timeout far longer
// than the test may run: Close cuts the flush short.
func TestBatchConnCloseStuckPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	bc := newBatchConn(a, time.Hour)
	if _, err := bc.Write([]byte("never read")); err != nil {
		t.Fatalf("Write = %v", err)
	}
	bc.mu.Lock()
	for !bc.writing {
		bc.cond.Wait() // the flusher has taken the buffer and is blocked writing it
	}
	bc.mu.Unlock()
	if _, err := bc.Write([]byte("queued")); err != nil {
		t.Fatalf("second Write = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- bc.Close() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close did not return while the peer was not reading")
	}
}
