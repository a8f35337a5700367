package wire

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestNewConnOnClosedPeer starts a connection whose peer has already
// hung up: NewConn's error matches ErrConnClosed, never a bare yamux
// "session shutdown" or a pipe's io.EOF / io.ErrClosedPipe. Which of these
// the handshake meets depends on whether yamux's reader saw the hang-up
// before the call stream opened, so the test tries many times.
func TestNewConnOnClosedPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 200 {
		cn, sn := net.Pipe()
		sn.Close()
		c, err := NewConn(ctx, cn, ConnConfig{}, Hello{})
		if err == nil {
			c.Close()
			t.Fatalf("try %d: NewConn on a closed peer succeeded", i)
		}
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("try %d: NewConn on a closed peer = %v; want an error matching ErrConnClosed", i, err)
		}
	}
}

// TestDialToClosingServer dials a listener that accepts and closes each
// connection at once (what a TLS server does to a plain client): the
// error matches ErrConnClosed.
func TestDialToClosingServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		c, err := Dial(ctx, ln.Addr().String(), ConnConfig{}, Hello{})
		if err == nil {
			c.Close()
			t.Fatalf("try %d: Dial to a closing server succeeded", i)
		}
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("try %d: Dial to a closing server = %v; want an error matching ErrConnClosed", i, err)
		}
	}
}
