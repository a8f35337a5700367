package client_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

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
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	requests []wire.Message
	conns    []*yamux.Session
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
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		mux, err := yamux.Server(nc, cfg)
		if err != nil {
			nc.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, mux)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(mux)
	}
}

func (f *fakeServer) serve(mux *yamux.Session) {
	defer f.wg.Done()
	defer mux.Close()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer st.Close()
			m, err := wire.ReadFrame(st, 0)
			if err != nil {
				return
			}
			a := f.answer(m)
			switch {
			case a.drop:
				mux.Close()
			case a.hang:
				select {
				case <-f.done:
				case <-mux.CloseChan():
				}
			case a.reply != nil:
				wire.WriteFrame(st, a.reply)
			}
		}()
	}
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
		select {
		case <-time.After(f.kaHold):
		case <-f.done:
			return fakeAnswer{}
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
