package client_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// fakeServer speaks the client protocol on loopback with scripted answers,
// for tests of the client's retry and error handling that a real cell cannot
// produce on demand. It answers Hello itself (naming leader as the leader),
// OpenSession with session 7, and holds each KeepAlive for a moment; every
// other request goes to handle.
type fakeServer struct {
	t        testing.TB
	id       string
	ln       net.Listener
	leader   string // announced in Welcome ("" = unknown); "self" = this one
	kaHold   time.Duration
	lease    time.Duration // granted by OpenSession and KeepAlive
	handle   func(m wire.Message) fakeAnswer
	kaError  *wire.Error  // if set, the answer to every KeepAlive (after kaHold)
	kas      atomic.Int32 // KeepAlives received
	done     chan struct{}
	ctx      context.Context // ends with done
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	requests []wire.Message
	conns    []net.Conn
}

// fakeAnswer is what the fake does with one request.
type fakeAnswer struct {
	reply wire.Message
	drop  bool // close the whole connection without answering
	hang  bool // never answer (until the server closes)
}

func answer(m wire.Message) fakeAnswer { return fakeAnswer{reply: m} }

func startFake(t testing.TB, id string, handle func(wire.Message) fakeAnswer) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeServer{t: t, id: id, ln: ln, leader: "self", kaHold: 200 * time.Millisecond, lease: 10 * time.Second, handle: handle, done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) close() {
	select {
	case <-f.done:
		return
	default:
	}
	close(f.done)
	f.cancel()
	f.ln.Close()
	f.mu.Lock()
	for _, s := range f.conns {
		s.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// dropAll closes every client connection.
func (f *fakeServer) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.conns {
		s.Close()
	}
}

// seen returns the requests of type T received so far.
func seen[T wire.Message](f *fakeServer) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []T
	for _, m := range f.requests {
		if r, ok := m.(T); ok {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeServer) accept() {
	defer f.wg.Done()
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, nc)
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			wire.Serve(f.ctx, nc, wire.ConnConfig{}, wire.HandlerFunc(func(ctx context.Context, m wire.Message) wire.Message {
				return f.serve(ctx, nc, m)
			}))
		}()
	}
}

// serve answers one request on connection nc (a wire.Handler).
func (f *fakeServer) serve(ctx context.Context, nc net.Conn, m wire.Message) wire.Message {
	a := f.answer(m)
	switch {
	case a.drop:
		nc.Close()
		<-ctx.Done()
	case a.hang:
		<-ctx.Done()
	case a.reply != nil:
		return a.reply
	}
	return wire.Errorf(wire.Canceled, "the fake dropped the call")
}

func (f *fakeServer) answer(m wire.Message) fakeAnswer {
	switch m.(type) {
	case *wire.Hello:
		w := &wire.Welcome{Version: wire.Version, ServerID: f.id, Limits: wire.Limits{MaxFrame: wire.DefaultMaxFrame}}
		switch f.leader {
		case "self":
			w.IsLeader, w.Leader = true, f.addr()
		default:
			w.Leader = f.leader
		}
		return answer(w)
	case *wire.KeepAlive:
		f.kas.Add(1)
		select {
		case <-time.After(f.kaHold):
		case <-f.done:
			return fakeAnswer{}
		}
		if f.kaError != nil {
			return answer(f.kaError)
		}
		return answer(&wire.KeepAliveReply{TTL: f.lease})
	}
	f.mu.Lock()
	f.requests = append(f.requests, m)
	f.mu.Unlock()
	var a fakeAnswer
	if f.handle != nil {
		a = f.handle(m)
	}
	if a != (fakeAnswer{}) {
		return a
	}
	// Defaults for what the handler left alone.
	switch m.(type) {
	case *wire.OpenSession:
		return answer(&wire.SessionOpened{Session: 7, Timeout: f.lease})
	case *wire.CloseSession:
		return answer(&wire.Ack{})
	}
	return answer(wire.Errorf(wire.Internal, "the fake has no answer for %s", m.Type()))
}
