package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer serves a tiny fake lockserver on 127.0.0.1: Get echoes the
// path, KeepAlive blocks until release is closed or the connection ends.
type testServer struct {
	ln      net.Listener
	release chan struct{}
	held    chan struct{} // one send per KeepAlive that starts waiting
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	cfg     ConnConfig
}

func startServer(t *testing.T, cfg ConnConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{ln: ln, release: make(chan struct{}), held: make(chan struct{}, 100), cancel: cancel, cfg: cfg}
	h := HandlerFunc(func(ctx context.Context, req Message) Message {
		switch r := req.(type) {
		case *Hello:
			return &Welcome{ServerID: "r1", Leader: ln.Addr().String(), IsLeader: true,
				Limits: Limits{MaxFrame: DefaultMaxFrame, MaxContent: DefaultMaxContent}}
		case *Get:
			if r.Path == "/panic" {
				panic("boom")
			}
			if r.Path == "/nil" {
				return nil
			}
			return &GetReply{Content: []byte(r.Path), Stat: Stat{Instance: r.Request}}
		case *Put:
			return &PutReply{Path: r.Path}
		case *KeepAlive:
			s.held <- struct{}{}
			select {
			case <-s.release:
				return &KeepAliveReply{TTL: 12e9}
			case <-ctx.Done():
				return Errorf(Canceled, "connection ended")
			}
		}
		return Errorf(BadRequest, "unexpected %v", req.Type())
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				Serve(ctx, nc, cfg, h)
			}()
		}
	}()
	t.Cleanup(func() {
		s.cancel()
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func dial(t *testing.T, s *testServer) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), s.ln.Addr().String(), s.cfg, Hello{Client: "test"})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConnHandshakeAndCall(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	w := c.Welcome()
	if w.Version != Version || w.ServerID != "r1" || !w.IsLeader {
		t.Errorf("Welcome = %+v", w)
	}
	r, err := Do[*GetReply](context.Background(), c, &Get{Header: Header{Session: 1, Request: 5}, Path: "/a"})
	if err != nil || string(r.Content) != "/a" || r.Stat.Instance != 5 {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	// An *Error reply comes back as a typed error.
	_, err = c.Call(context.Background(), &StatPath{Path: "/a"})
	var we *Error
	if !errors.As(err, &we) || we.Code != BadRequest {
		t.Errorf("StatPath = %v; want *Error BadRequest", err)
	}
	// A reply of the wrong type is ErrMalformed.
	if _, err := Do[*StatReply](context.Background(), c, &Get{Path: "/a"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Do[*StatReply](Get) = %v; want ErrMalformed", err)
	}
	// Handler failures become Internal, and the connection goes on.
	for _, p := range []string{"/panic", "/nil"} {
		if _, err := c.Call(context.Background(), &Get{Path: p}); CodeOf(err) != Internal {
			t.Errorf("Get(%s) = %v; want Internal", p, err)
		}
	}
}

func TestBlockingCallDoesNotStallOthers(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), &KeepAlive{Header: Header{Session: 1, Request: 1}})
		done <- err
	}()
	<-s.held // the long poll is held by the server
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/n%d", i)
			r, err := Do[*GetReply](context.Background(), c, &Get{Header: Header{Session: 1, Request: uint64(i + 2)}, Path: path})
			if err != nil || string(r.Content) != path {
				errs <- fmt.Errorf("Get(%s) = %v, %v", path, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	select {
	case err := <-done:
		t.Fatalf("KeepAlive returned early: %v", err)
	default:
	}
	close(s.release)
	if err := <-done; err != nil {
		t.Fatalf("KeepAlive = %v", err)
	}
}

func TestCallCanceled(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, &KeepAlive{})
		done <- err
	}()
	<-s.held
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Call = %v; want context.Canceled", err)
	}
	// The connection still works.
	if _, err := Do[*GetReply](context.Background(), c, &Get{Path: "/a"}); err != nil {
		t.Fatalf("Get after a canceled call: %v", err)
	}
	if _, err := c.Call(ctx, &Get{Path: "/a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Call with a done context = %v", err)
	}
}

func TestServerEndsHeldCallsWhenClientLeaves(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), &KeepAlive{})
		done <- err
	}()
	<-s.held
	c.Close()
	if err := <-done; err == nil {
		t.Fatal("Call on a closed connection succeeded")
	}
	<-c.Done()
	// The server's handler was canceled: Serve returns (checked by the
	// cleanup's WaitGroup and goleak).
}

func TestHandshakeErrors(t *testing.T) {
	s := startServer(t, ConnConfig{})
	_, err := Dial(context.Background(), s.ln.Addr().String(), ConnConfig{}, Hello{MinVersion: 2, MaxVersion: 3})
	var we *Error
	if !errors.As(err, &we) || we.Code != BadRequest {
		t.Errorf("Dial with versions 2..3 = %v; want BadRequest", err)
	}
	// A raw client that skips Hello is refused.
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(nc, ConnConfig{}.mustDefaults(t).yamux())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	c := &Conn{sess: sess, cfg: ConnConfig{}.mustDefaults(t)}
	if _, err := c.Call(context.Background(), &Get{Path: "/a"}); CodeOf(err) != BadRequest {
		t.Errorf("Get before Hello = %v; want BadRequest", err)
	}
	// A reply type sent as a request is refused too.
	if _, err := c.Call(context.Background(), &Hello{MinVersion: 1, MaxVersion: 1}); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	if _, err := c.Call(context.Background(), &Ack{}); CodeOf(err) != BadRequest {
		t.Errorf("Ack as a request = %v; want BadRequest", err)
	}
}

func (c ConnConfig) mustDefaults(t *testing.T) ConnConfig {
	t.Helper()
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBadFramesGetErrorReplies(t *testing.T) {
	s := startServer(t, ConnConfig{MaxFrame: 4096})
	c := dial(t, s)
	// Too large for the server: refused by our own encoder first...
	big := &Put{Path: "/a", Content: make([]byte, 8192)}
	if _, err := c.Call(context.Background(), big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Call(big) = %v; want ErrFrameTooLarge", err)
	}
	// ...and by the server when a client with a larger limit sends it.
	raw := func(frame []byte) (Message, error) {
		st, err := c.sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.Write(frame); err != nil {
			t.Fatal(err)
		}
		st.Close()
		return ReadFrame(st, 0)
	}
	bigFrame, err := Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		frame []byte
		want  Code
	}{
		{"oversized", bigFrame, TooLarge},
		{"garbage", frameOf(Version, TypeGet, []byte{0xc1}), BadRequest},
		{"unknown type", frameOf(Version, 999, []byte{0x80}), BadRequest},
		{"bad version", frameOf(7, TypeGet, []byte{0x80}), BadRequest},
		{"claims 4 GiB", binary.BigEndian.AppendUint32(nil, 1<<32-1), TooLarge},
	}
	for _, tt := range tests {
		m, err := raw(tt.frame)
		e, ok := m.(*Error)
		if err != nil || !ok || e.Code != tt.want {
			t.Errorf("%s: reply = %v, %v; want *Error %v", tt.name, m, err, tt.want)
		}
	}
	// The connection is still usable after all of that.
	if _, err := Do[*GetReply](context.Background(), c, &Get{Path: "/ok"}); err != nil {
		t.Fatalf("Get after bad frames: %v", err)
	}
}

func TestConnConfigErrors(t *testing.T) {
	if _, err := (ConnConfig{MaxFrame: -1}).withDefaults(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("withDefaults(-1) = %v", err)
	}
}
