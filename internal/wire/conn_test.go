package wire

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer serves a tiny fake lockserver on 127.0.0.1: Get echoes the
// path, KeepAlive blocks until release is closed or its context ends, Get
// of "/gate" blocks until the test sends on its gate (by request id), and
// a Get under "/quick/" is answered by ServeQuick (quickTestHandler).
type testServer struct {
	ln       net.Listener
	release  chan struct{}
	held     chan struct{} // one send per KeepAlive that starts waiting
	ended    chan error    // a KeepAlive's context error, when it ends that way
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	cfg      ConnConfig
	inFlight atomic.Int64
	maxSeen  atomic.Int64 // the most handlers seen running at once
	quick    atomic.Int64 // Gets answered by ServeQuick

	mu    sync.Mutex
	gates map[uint64]chan struct{} // by request id
	gated chan uint64              // one send per gated Get that starts waiting
}

// gate returns the channel that releases the gated Get with request id.
func (s *testServer) gate(id uint64) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.gates[id]
	if ch == nil {
		ch = make(chan struct{})
		s.gates[id] = ch
	}
	return ch
}

func startServer(t testing.TB, cfg ConnConfig) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{ln: ln, release: make(chan struct{}), held: make(chan struct{}, 100), ended: make(chan error, 100),
		cancel: cancel, cfg: cfg, gates: make(map[uint64]chan struct{}), gated: make(chan uint64, 1000)}
	h := quickTestHandler{s: s, Handler: HandlerFunc(func(ctx context.Context, req Message) Message {
		if _, ok := req.(*Hello); !ok {
			n := s.inFlight.Add(1)
			defer s.inFlight.Add(-1)
			for m := s.maxSeen.Load(); n > m && !s.maxSeen.CompareAndSwap(m, n); m = s.maxSeen.Load() {
			}
		}
		switch r := req.(type) {
		case *Hello:
			return &Welcome{ServerID: "r1", Leader: ln.Addr().String(), IsLeader: true,
				Limits: Limits{MaxFrame: uint32(cmp.Or(cfg.MaxFrame, DefaultMaxFrame)), MaxContent: DefaultMaxContent}}
		case *Get:
			if r.Path == "/panic" {
				panic("boom")
			}
			if r.Path == "/nil" {
				return nil
			}
			if r.Path == "/gate" {
				gate := s.gate(r.Request)
				s.gated <- r.Request
				select {
				case <-gate:
				case <-ctx.Done():
					return Errorf(Canceled, "connection ended")
				}
			}
			if r.Path == "/big" {
				return &GetReply{Content: make([]byte, cmp.Or(s.cfg.MaxFrame, DefaultMaxFrame))}
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
				s.ended <- ctx.Err()
				return Errorf(Canceled, "connection ended")
			}
		}
		return Errorf(BadRequest, "unexpected %v", req.Type())
	})}
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

func dial(t testing.TB, s *testServer) *Conn {
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
	t.Run("context", func(t *testing.T) { testCallCanceled(t, false) })
	t.Run("stop", func(t *testing.T) { testCallCanceled(t, true) })
}

// testCallCanceled gives up on a held call, by its context or by
// CallUntil's stop channel.
func testCallCanceled(t *testing.T, byStop bool) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.CallUntil(ctx, &KeepAlive{}, stop)
		done <- err
	}()
	<-s.held
	want := context.Canceled
	if byStop {
		close(stop)
		want = ErrStopped
	} else {
		cancel()
	}
	if err := <-done; !errors.Is(err, want) {
		t.Fatalf("abandoned Call = %v; want %v", err, want)
	}
	// The handler's context ends (the client's CancelCall) while the
	// connection lives on.
	if err := <-s.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's context ended with %v", err)
	}
	select {
	case <-c.Done():
		t.Fatal("the connection ended")
	default:
	}
	// The connection still works.
	if _, err := Do[*GetReply](context.Background(), c, &Get{Path: "/a"}); err != nil {
		t.Fatalf("Get after a canceled call: %v", err)
	}
	cancel()
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

func TestRepliesOutOfOrder(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	const n = 20
	results := make([]chan error, n)
	for i := range n {
		results[i] = make(chan error, 1)
		go func() {
			r, err := Do[*GetReply](context.Background(), c, &Get{Header: Header{Session: 1, Request: uint64(i)}, Path: "/gate"})
			if err == nil && r.Stat.Instance != uint64(i) {
				err = fmt.Errorf("reply for request %d went to request %d", r.Stat.Instance, i)
			}
			results[i] <- err
		}()
	}
	for range n {
		<-s.gated // all n calls are in the handler at once
	}
	// Release them last first: each reply must reach its own caller.
	for i := n - 1; i >= 0; i-- {
		close(s.gate(uint64(i)))
		if err := <-results[i]; err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				path := fmt.Sprintf("/g%d/%d", g, i)
				r, err := Do[*GetReply](context.Background(), c, &Get{Path: path})
				if err != nil || string(r.Content) != path {
					errs <- fmt.Errorf("Get(%s) = %v, %v", path, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConnDeathFailsPendingCalls(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	const n = 5
	done := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Call(context.Background(), &KeepAlive{})
			done <- err
		}()
	}
	for range n {
		<-s.held
	}
	s.cancel() // every Serve ends: the server side goes away
	for range n {
		if err := <-done; err == nil {
			t.Error("a pending call succeeded on a dead connection")
		}
	}
	<-c.Done()
	if _, err := c.Call(context.Background(), &Get{Path: "/a"}); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Call on a dead connection = %v; want ErrConnClosed", err)
	}
}

func TestCallsBeyondMaxStreamsWait(t *testing.T) {
	s := startServer(t, ConnConfig{MaxStreams: 2})
	c := dial(t, s)
	held := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.Call(context.Background(), &KeepAlive{})
			held <- err
		}()
	}
	<-s.held
	<-s.held // both slots are taken
	const n = 10
	done := make(chan error, n)
	for i := range n {
		go func() {
			_, err := Do[*GetReply](context.Background(), c, &Get{Path: fmt.Sprintf("/w%d", i)})
			done <- err
		}()
	}
	close(s.release)
	for range 2 {
		if err := <-held; err != nil {
			t.Errorf("KeepAlive = %v", err)
		}
	}
	for range n {
		if err := <-done; err != nil {
			t.Errorf("a call beyond MaxStreams failed: %v", err)
		}
	}
	if m := s.maxSeen.Load(); m > 2 {
		t.Errorf("%d handlers ran at once; MaxStreams is 2", m)
	}
}

func TestReplyTooLarge(t *testing.T) {
	s := startServer(t, ConnConfig{MaxFrame: 4096})
	c := dial(t, s)
	if _, err := c.Call(context.Background(), &Get{Path: "/big"}); CodeOf(err) != TooLarge {
		t.Errorf("Get of a reply over the limit = %v; want TooLarge", err)
	}
	// Too large for the server: refused by our own encoder first.
	if _, err := c.Call(context.Background(), &Put{Path: "/a", Content: make([]byte, 8192)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Call(big) = %v; want ErrFrameTooLarge", err)
	}
	// A client with a larger limit of its own keeps to the server's.
	c2, err := Dial(context.Background(), s.ln.Addr().String(), ConnConfig{MaxFrame: 1 << 20}, Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Call(context.Background(), &Put{Path: "/a", Content: make([]byte, 8192)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Call(big) past the server's limit = %v; want ErrFrameTooLarge", err)
	}
	if _, err := Do[*GetReply](context.Background(), c, &Get{Path: "/ok"}); err != nil {
		t.Fatalf("Get after refusals: %v", err)
	}
}

// rawClient speaks the protocol by hand on a call stream, for input a Conn
// would never send.
type rawClient struct {
	sess *yamux.Session
	st   net.Conn
	dec  *Decoder
}

// rawYamux is the yamux config of a hand-made peer: the one both sides of
// a Conn use.
func rawYamux(t *testing.T) *yamux.Config { return ConnConfig{}.mustDefaults(t).yamux() }

func dialRaw(t *testing.T, s *testServer) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(nc, rawYamux(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{sess: sess, st: st, dec: NewDecoder(st, 0)}
}

func (r *rawClient) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := r.st.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// call sends m as call id and reads the next frame.
func (r *rawClient) call(t *testing.T, id uint32, m Message) (uint32, Message) {
	t.Helper()
	b, err := MarshalCall(id, m)
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, b)
	got, reply, err := r.dec.DecodeCall()
	if err != nil {
		t.Fatalf("reply to %v: %v", m.Type(), err)
	}
	return got, reply
}

func (r *rawClient) hello(t *testing.T) {
	t.Helper()
	if _, m := r.call(t, 1, &Hello{MinVersion: Version, MaxVersion: Version}); m.Type() != TypeWelcome {
		t.Fatalf("Hello answered %v", m.Type())
	}
}

func TestHandshakeErrors(t *testing.T) {
	s := startServer(t, ConnConfig{})
	_, err := Dial(context.Background(), s.ln.Addr().String(), ConnConfig{}, Hello{MinVersion: Version + 1, MaxVersion: Version + 2})
	var we *Error
	if !errors.As(err, &we) || we.Code != BadRequest {
		t.Errorf("Dial with versions %d..%d = %v; want BadRequest", Version+1, Version+2, err)
	}
	r := dialRaw(t, s)
	// A call before Hello is refused, on its own call id.
	if id, m := r.call(t, 7, &Get{Path: "/a"}); id != 7 || CodeOf(m.(*Error)) != BadRequest {
		t.Errorf("Get before Hello = %d %v; want BadRequest on call 7", id, m)
	}
	r.hello(t)
	// A reply type sent as a request is refused too.
	if id, m := r.call(t, 8, &Ack{}); id != 8 || CodeOf(m.(*Error)) != BadRequest {
		t.Errorf("Ack as a request = %d %v; want BadRequest on call 8", id, m)
	}
}

func TestUnknownTypeAnswered(t *testing.T) {
	s := startServer(t, ConnConfig{})
	r := dialRaw(t, s)
	r.hello(t)
	r.write(t, AppendRawFrame(nil, Version, 999, 5, []byte{0x80}))
	id, m, err := r.dec.DecodeCall()
	if e, ok := m.(*Error); err != nil || id != 5 || !ok || e.Code != BadRequest {
		t.Fatalf("unknown type answered %d %v %v; want BadRequest on call 5", id, m, err)
	}
	// The stream is still in step.
	if id, m := r.call(t, 6, &Get{Path: "/x"}); id != 6 || string(m.(*GetReply).Content) != "/x" {
		t.Fatalf("Get after an unknown type = %d %v", id, m)
	}
}

func TestBadInputClosesOnlyItsConnection(t *testing.T) {
	s := startServer(t, ConnConfig{MaxFrame: 4096})
	by := dial(t, s) // a bystander
	bigFrame, err := MarshalCall(3, &Put{Path: "/a", Content: make([]byte, 8192)})
	if err != nil {
		t.Fatal(err)
	}
	getBody := []byte{0x81, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'x'}
	tests := []struct {
		name  string
		frame []byte
	}{
		{"oversized", bigFrame},
		{"claims 4 GiB", binary.BigEndian.AppendUint32(nil, 1<<32-1)},
		{"garbage body", AppendRawFrame(nil, Version, TypeGet, 3, []byte{0xc1})},
		{"bad version", AppendRawFrame(nil, 7, TypeGet, 3, getBody)},
		{"version 1", AppendRawFrame(nil, 1, TypeGet, 3, getBody)},
		{"short frame", []byte{0, 0, 0, 2, Version, 0}},
		{"http", []byte("GET / HTTP/1.1\r\nHost: latch\r\n\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, s)
			r.hello(t)
			go r.st.Write(tt.frame) // may block on flow control once the server stops reading
			if id, m, err := r.dec.DecodeCall(); err == nil {
				t.Fatalf("the server answered %d %v; want the connection closed", id, m)
			}
			if _, err := Do[*GetReply](context.Background(), by, &Get{Path: "/by"}); err != nil {
				t.Fatalf("the bystander's Get: %v", err)
			}
		})
	}
	// A call id already in flight is bad input too.
	r := dialRaw(t, s)
	r.hello(t)
	b, _ := MarshalCall(9, &KeepAlive{})
	r.st.Write(append(b, b...)) // may report the connection's end: the server closes it at once
	<-s.held
	if id, m, err := r.dec.DecodeCall(); err == nil && m.Type() != TypeError {
		t.Fatalf("a duplicate call id answered %d %v", id, m)
	}
	for range 2 { // the connection ends (after at most the held call's answer)
		if _, _, err := r.dec.DecodeCall(); err != nil {
			return
		}
	}
	t.Fatal("the connection goes on after a duplicate call id")
}

func (c ConnConfig) mustDefaults(t *testing.T) ConnConfig {
	t.Helper()
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConnConfigErrors(t *testing.T) {
	if _, err := (ConnConfig{MaxFrame: -1}).withDefaults(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("withDefaults(-1) = %v", err)
	}
}

func TestIdleConnStaysAliveOnPings(t *testing.T) {
	// An interval far above the scheduling stalls of a loaded 2-core
	// machine under -race (20 ms was not: a stalled peer's Pong came a
	// whole interval late once in CI), and five of them idle.
	cfg := ConnConfig{PingInterval: 200 * time.Millisecond}
	s := startServer(t, cfg)
	c, err := Dial(context.Background(), s.ln.Addr().String(), cfg, Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Both sides go silent for many ping intervals; the Pings and Pongs
	// keep the connection open.
	select {
	case <-c.Done():
		t.Fatal("an idle but healthy connection was closed")
	case <-time.After(time.Second):
	}
	if _, err := Do[*GetReply](context.Background(), c, &Get{Path: "/a"}); err != nil {
		t.Fatalf("Get after idling: %v", err)
	}
}

func TestSilentPeerIsCutOff(t *testing.T) {
	s := startServer(t, ConnConfig{PingInterval: 20 * time.Millisecond})
	r := dialRaw(t, s)
	r.hello(t)
	// The raw client never answers the server's Pings: the server closes.
	r.st.SetReadDeadline(time.Now().Add(30 * time.Second))
	for range 10 {
		_, m, err := r.dec.DecodeCall()
		if err != nil {
			if isTimeout(err) {
				t.Fatal("the server did not close the silent connection")
			}
			return
		}
		if m.Type() != TypePing {
			t.Fatalf("the server sent %v to a silent client; want Ping", m.Type())
		}
	}
	t.Fatal("the server pings a silent client for ever")
}

func TestNoHelloIsCutOff(t *testing.T) {
	s := startServer(t, ConnConfig{RequestTimeout: 20 * time.Millisecond})
	r := dialRaw(t, s)
	r.st.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, m, err := r.dec.DecodeCall(); err == nil || isTimeout(err) {
		t.Fatalf("a client that sends nothing got %v, %v; want the connection closed", m, err)
	}
}

func TestClientCutsOffSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *yamux.Session, 1)
	ycfg := rawYamux(t)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		sess, err := yamux.Server(nc, ycfg)
		if err != nil {
			nc.Close()
			close(accepted)
			return
		}
		accepted <- sess
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		// Answer the Hello, then read but never write again.
		d := NewDecoder(st, 0)
		id, _, _ := d.DecodeCall()
		b, _ := MarshalCall(id, &Welcome{Version: Version})
		st.Write(b)
		io.Copy(io.Discard, st)
	}()
	c, err := Dial(context.Background(), ln.Addr().String(), ConnConfig{PingInterval: 20 * time.Millisecond}, Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess := <-accepted
	if sess == nil {
		t.Fatal("no connection accepted")
	}
	defer sess.Close()
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the client kept a silent connection")
	}
}
