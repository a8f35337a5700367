package wire

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// slowCloseConn is a connection whose Close blocks until release is closed.
type slowCloseConn struct {
	net.Conn
	release chan struct{}
}

func (c *slowCloseConn) Close() error {
	<-c.release
	return c.Conn.Close()
}

// A session's end wakes the call stream's reader at once: it does not wait
// (spinning inside yamux) until Session.Close has closed the connection
// underneath and force-closed the streams.
func TestSessionEndWakesReaderAtOnce(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	release := make(chan struct{})
	bc := newBatchConn(&slowCloseConn{Conn: a, release: release}, time.Second)
	cfg := ConnConfig{}.mustDefaults(t)
	sess, err := yamux.Client(bc, cfg.yamux())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := yamux.Server(b, cfg.yamux())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	var ended atomic.Bool
	wakeOnClose(bc, st, &ended)
	lr := newLiveReader(st, time.Hour, time.Hour, false, func() error { return nil }, &ended)
	read := make(chan error, 1)
	go func() {
		_, err := lr.Read(make([]byte, 16))
		read <- err
	}()
	closed := make(chan struct{})
	go func() {
		sess.Close() // blocks in slowCloseConn.Close until release
		close(closed)
	}()
	select {
	case err := <-read:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read on an ending session = %v; want net.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the reader was not woken while the session was closing")
	}
	close(release)
	<-closed
}
