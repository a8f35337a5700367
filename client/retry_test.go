package client_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

// fakeConfig is a client Config for fake servers: quick backoff and
// attempts.
func fakeConfig(endpoints ...string) client.Config {
	cfg := client.DefaultConfig(endpoints...)
	cfg.DialTimeout = 200 * time.Millisecond
	cfg.AttemptTimeout = 300 * time.Millisecond
	cfg.BackoffMin = time.Millisecond
	cfg.BackoffMax = 20 * time.Millisecond
	cfg.CloseTimeout = 300 * time.Millisecond
	return cfg
}

func dialFake(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.Dial(bg(t, 5*time.Second), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRetryAfterDroppedConnectionKeepsRequestID(t *testing.T) {
	var puts atomic.Int32
	f := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if p, ok := m.(*wire.Put); ok {
			if puts.Add(1) == 1 {
				return fakeAnswer{drop: true} // the reply is lost
			}
			return answer(&wire.PutReply{Path: p.Path, Stat: wire.Stat{ContentGen: 1}})
		}
		return fakeAnswer{}
	})
	c := dialFake(t, fakeConfig(f.addr()))
	if _, err := c.Put(bg(t), "/a", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got := seen[*wire.Put](f)
	if len(got) != 2 {
		t.Fatalf("the fake saw %d Puts; want 2 (the lost one and its retry)", len(got))
	}
	if got[0].Header != got[1].Header || got[0].Session != 7 || got[0].Request == 0 {
		t.Fatalf("retry headers %+v then %+v; want the same session 7 and request id", got[0].Header, got[1].Header)
	}
	// The next call gets a new request id.
	if _, err := c.Put(bg(t), "/b", nil); err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if got := seen[*wire.Put](f); got[2].Request == got[0].Request {
		t.Fatalf("a new call reused request id %d", got[0].Request)
	}
}

// A replica whose Welcome named another leader (one that is gone: during a
// fail-over the replica that becomes leader may still name the old one)
// and that then answers KeepAlives is the leader Leader reports.
func TestLeaderIsTheReplicaAnsweringKeepAlives(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := dead.Addr().String()
	dead.Close()
	f := startFake(t, "2", func(wire.Message) fakeAnswer { return fakeAnswer{} })
	f.leader = gone
	c := dialFake(t, fakeConfig(gone, f.addr()))
	if l := c.Leader(); l == gone {
		t.Fatalf("Leader() = %q right after Dial: the Welcome named it, but it had just failed to dial", l)
	}
	deadline := time.Now().Add(20 * time.Second)
	for f.kas.Load() < 2 { // the first KeepAlive has been answered
		if time.Now().After(deadline) {
			t.Fatalf("%d KeepAlives reached the replica in 20 s", f.kas.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := c.Leader(); l != f.addr() {
		t.Fatalf("Leader() = %q after the replica answered a KeepAlive; want %q (its Welcome named %q)", l, f.addr(), gone)
	}
}

func TestNotLeaderRedirectsToTheNamedLeader(t *testing.T) {
	leader := startFake(t, "2", func(m wire.Message) fakeAnswer {
		if g, ok := m.(*wire.Get); ok {
			return answer(&wire.GetReply{Content: []byte(g.Path)})
		}
		return fakeAnswer{}
	})
	follower := startFake(t, "1", func(m wire.Message) fakeAnswer {
		return answer(&wire.Error{Code: wire.NotLeader, Message: "follower", Leader: leader.addr()})
	})
	follower.leader = "" // the Welcome does not name it; the NotLeader does
	c := dialFake(t, fakeConfig(follower.addr()))
	n, err := c.Get(bg(t), "/x")
	if err != nil || string(n.Data) != "/x" {
		t.Fatalf("Get = %q, %v; want the leader's answer", n.Data, err)
	}
	if c.Leader() != leader.addr() {
		t.Fatalf("Leader() = %q; want %q", c.Leader(), leader.addr())
	}
	open := seen[*wire.OpenSession](follower)
	opened := seen[*wire.OpenSession](leader)
	if len(open) != 1 || len(opened) != 1 || open[0].Header != opened[0].Header {
		t.Fatalf("OpenSession at follower %+v, at leader %+v; want one each with the same request id", open, opened)
	}
}

func TestWelcomeNamesTheLeader(t *testing.T) {
	leader := startFake(t, "2", nil)
	follower := startFake(t, "1", nil)
	follower.leader = leader.addr()
	c := dialFake(t, fakeConfig(follower.addr()))
	if got := len(seen[*wire.OpenSession](leader)); got != 1 {
		t.Fatalf("the leader saw %d OpenSession; want 1 (the follower's Welcome named it)", got)
	}
	if got := len(seen[*wire.OpenSession](follower)); got != 0 {
		t.Fatalf("the follower saw %d OpenSession; want 0", got)
	}
	_ = c
}

func TestUnavailableIsRetried(t *testing.T) {
	var n atomic.Int32
	f := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Delete); ok {
			if n.Add(1) <= 3 {
				return answer(wire.Errorf(wire.Unavailable, "electing"))
			}
			return answer(&wire.Ack{})
		}
		return fakeAnswer{}
	})
	c := dialFake(t, fakeConfig(f.addr()))
	if err := c.Delete(bg(t), "/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	ds := seen[*wire.Delete](f)
	if len(ds) != 4 {
		t.Fatalf("%d Deletes; want 4", len(ds))
	}
	for _, d := range ds[1:] {
		if d.Header != ds[0].Header {
			t.Fatalf("retry header %+v; want %+v", d.Header, ds[0].Header)
		}
	}
}

func TestContextEndsWhileUnavailable(t *testing.T) {
	f := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Get); ok {
			return answer(wire.Errorf(wire.Unavailable, "no quorum"))
		}
		return fakeAnswer{}
	})
	c := dialFake(t, fakeConfig(f.addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "/a")
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v; want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestHungReplicaIsLeftAfterAttemptTimeout(t *testing.T) {
	b := startFake(t, "2", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.StatPath); ok {
			return answer(&wire.StatReply{Stat: wire.Stat{Instance: 2}})
		}
		return fakeAnswer{}
	})
	a := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.StatPath); ok {
			return fakeAnswer{hang: true}
		}
		return fakeAnswer{}
	})
	a.leader = "" // so the client does not insist on it
	b.leader = ""
	c := dialFake(t, fakeConfig(a.addr(), b.addr()))
	st, err := c.Stat(bg(t), "/a")
	if err != nil || st.Instance != 2 {
		t.Fatalf("Stat = %+v, %v; want replica 2's answer", st, err)
	}
}

// A replica that answers Unavailable naming no leader (one cut off from its
// peers knows of none) is left for the next endpoint, rather than asked
// again and again: by a call, and by the session's KeepAlives. One that
// names itself (a leader taking over, or whose log was slow) is asked again
// on the same connection.
func TestUnavailableMovesOnUnlessTheReplicaLeads(t *testing.T) {
	unavailable := wire.Errorf(wire.Unavailable, "no leader known; retry")
	start := func() (a, b *fakeServer) {
		b = startFake(t, "2", func(m wire.Message) fakeAnswer {
			if _, ok := m.(*wire.StatPath); ok {
				return answer(&wire.StatReply{Stat: wire.Stat{Instance: 2}})
			}
			return fakeAnswer{}
		})
		a = startFake(t, "1", func(m wire.Message) fakeAnswer {
			if _, ok := m.(*wire.StatPath); ok {
				return answer(unavailable)
			}
			return fakeAnswer{}
		})
		a.leader, b.leader = "", "" // neither names a leader to follow
		return a, b
	}
	t.Run("call", func(t *testing.T) {
		a, b := start()
		c := dialFake(t, fakeConfig(a.addr(), b.addr()))
		st, err := c.Stat(bg(t), "/a")
		if err != nil || st.Instance != 2 {
			t.Fatalf("Stat = %+v, %v; want replica 2's answer", st, err)
		}
	})
	t.Run("naming itself", func(t *testing.T) {
		// A leader that names itself (taking over, or its log was slow)
		// is asked again on the same connection.
		var a *fakeServer
		var n atomic.Int32
		a = startFake(t, "1", func(m wire.Message) fakeAnswer {
			if _, ok := m.(*wire.StatPath); ok {
				if n.Add(1) <= 3 {
					e := wire.Errorf(wire.Unavailable, "taking over")
					e.Leader = a.addr()
					return answer(e)
				}
				return answer(&wire.StatReply{Stat: wire.Stat{Instance: 1}})
			}
			return fakeAnswer{}
		})
		b := startFake(t, "2", nil)
		c := dialFake(t, fakeConfig(a.addr(), b.addr()))
		st, err := c.Stat(bg(t), "/a")
		if err != nil || st.Instance != 1 {
			t.Fatalf("Stat = %+v, %v; want replica 1's answer", st, err)
		}
		a.mu.Lock()
		conns := len(a.conns)
		a.mu.Unlock()
		if conns != 1 || n.Load() != 4 {
			t.Errorf("replica 1 saw %d connections and %d Stats; want 1 and 4", conns, n.Load())
		}
	})
	t.Run("keepalive", func(t *testing.T) {
		a, b := start()
		a.kaHold, b.kaHold = 10*time.Millisecond, 10*time.Millisecond
		a.kaError = unavailable
		dialFake(t, fakeConfig(a.addr(), b.addr()))
		waitFor(t, 10*time.Second, "a KeepAlive at replica 2", func() bool { return b.kas.Load() > 0 })
	})
}

func TestWireErrorsMapToSentinels(t *testing.T) {
	cases := []struct {
		code wire.Code
		want error
	}{
		{wire.NotFound, client.ErrNotFound},
		{wire.Exists, client.ErrExists},
		{wire.NotEmpty, client.ErrNotEmpty},
		{wire.BadPath, client.ErrBadPath},
		{wire.TooLarge, client.ErrTooLarge},
		{wire.Limit, client.ErrLimit},
		{wire.Locked, client.ErrLocked},
		{wire.NotHolder, client.ErrNotHolder},
		{wire.GenerationMismatch, client.ErrGenerationMismatch},
		{wire.Permission, client.ErrPermission},
		{wire.BadRequest, client.ErrBadRequest},
		{wire.Internal, client.ErrInternal},
		{wire.Code(99), client.ErrInternal},
		{wire.SessionExpired, client.ErrSessionExpired},
	}
	var code atomic.Uint32
	f := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Put); ok {
			return answer(&wire.Error{Code: wire.Code(code.Load()), Message: "scripted"})
		}
		return fakeAnswer{}
	})
	for _, tc := range cases {
		t.Run(tc.code.String(), func(t *testing.T) {
			code.Store(uint32(tc.code))
			c := dialFake(t, fakeConfig(f.addr()))
			_, err := c.Put(bg(t), "/a", nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Put answered %v = %v; want %v", tc.code, err, tc.want)
			}
			var we *wire.Error
			if errors.As(err, &we) {
				t.Fatalf("Put error %v exposes a wire type", err)
			}
			if tc.code == wire.SessionExpired {
				recv(t, c.Done(), time.Second, "end of the session")
				if _, err := c.Get(bg(t), "/a"); !errors.Is(err, client.ErrSessionExpired) {
					t.Fatalf("Get after expiry = %v; want ErrSessionExpired", err)
				}
			}
		})
	}
}

func TestUnexpectedReplyIsAProtocolError(t *testing.T) {
	f := startFake(t, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Get); ok {
			return answer(&wire.Ack{})
		}
		return fakeAnswer{}
	})
	c := dialFake(t, fakeConfig(f.addr()))
	if _, err := c.Get(bg(t), "/a"); !errors.Is(err, client.ErrProtocol) {
		t.Fatalf("Get answered with Ack = %v; want ErrProtocol", err)
	}
}

func TestInvalidOptionsAreRejectedBeforeSending(t *testing.T) {
	f := startFake(t, "1", nil)
	c := dialFake(t, fakeConfig(f.addr()))
	ctx := bg(t)
	checks := []struct {
		name string
		err  error
	}{
		{"Get+Ephemeral", func() error { _, err := c.Get(ctx, "/a", client.Ephemeral()); return err }()},
		{"Put+Sequential", func() error { _, err := c.Put(ctx, "/a", nil, client.Sequential()); return err }()},
		{"Put+IfGeneration(0)", func() error { _, err := c.Put(ctx, "/a", nil, client.IfGeneration(0)); return err }()},
		{"Put+Stale twice", func() error { _, err := c.Get(ctx, "/a", client.Stale(), client.Stale()); return err }()},
		{"Create+IfGeneration", func() error { _, _, err := c.Create(ctx, "/a", nil, client.IfGeneration(3)); return err }()},
		{"Delete+Stale", func() error { return c.Delete(ctx, "/a", client.Stale()) }()},
		{"Lock+Recursive", func() error { _, err := c.Lock(ctx, "/a", client.Recursive()); return err }()},
		{"Lock+LockDelay(-1)", func() error { _, err := c.Lock(ctx, "/a", client.LockDelay(-1)); return err }()},
		{"List+PageSize(-1)", func() error { _, err := c.List(ctx, "/a", client.PageSize(-1)); return err }()},
		{"zero Option", func() error { _, err := c.Get(ctx, "/a", client.Option{}); return err }()},
		{"Resolve+Recursive", func() error { _, err := client.Resolve(ctx, c, "/svc", client.Recursive()); return err }()},
	}
	for _, ch := range checks {
		if !errors.Is(ch.err, client.ErrInvalid) {
			t.Errorf("%s = %v; want ErrInvalid", ch.name, ch.err)
		}
	}
	for _, p := range []string{"", "a", "/a/", "//", "/a//b", "/a/./b", "/..", "/a\x00b", "/\xff"} {
		if _, err := c.Get(ctx, p); !errors.Is(err, client.ErrBadPath) {
			t.Errorf("Get(%q) = %v; want ErrBadPath", p, err)
		}
	}
	if n := len(seen[wire.Request](f)) - len(seen[*wire.OpenSession](f)); n != 0 {
		t.Fatalf("%d requests reached the server; want none", n)
	}
}

func TestDialFailsWhenNoReplicaAnswers(t *testing.T) {
	f := startFake(t, "1", nil)
	addr := f.addr()
	f.close() // nothing listens there now
	cfg := fakeConfig(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := client.Dial(ctx, cfg)
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a closed port = %v; want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestCloseEndsTheSessionAtTheCell(t *testing.T) {
	f := startFake(t, "1", nil)
	c := dialFake(t, fakeConfig(f.addr()))
	events := c.SessionEvents()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := seen[*wire.CloseSession](f); len(got) != 1 || got[0].Session != 7 {
		t.Fatalf("CloseSession requests %+v; want one for session 7", got)
	}
	if _, ok := recv(t, events, time.Second, "close of the event channel"); ok {
		t.Fatalf("SessionEvents delivered an event on Close; want the channel closed")
	}
	if c.State() != client.StateClosed || !errors.Is(c.Err(), client.ErrClosed) {
		t.Fatalf("after Close: State %v, Err %v", c.State(), c.Err())
	}
	if _, err := c.Get(bg(t), "/a"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkNoClientGoroutines(t)
}

func TestSessionEndsWhenKeepAlivesFail(t *testing.T) {
	f := startFake(t, "1", nil)
	f.lease, f.kaHold = 500*time.Millisecond, 100*time.Millisecond
	cfg := fakeConfig(f.addr())
	cfg.Grace = 300 * time.Millisecond
	c := dialFake(t, cfg)
	events := c.SessionEvents()
	f.close() // the only replica goes away for good
	ev, _ := recv(t, events, 5*time.Second, "jeopardy")
	if ev.State != client.StateJeopardy {
		t.Fatalf("first session event %v; want jeopardy", ev)
	}
	ev, _ = recv(t, events, 5*time.Second, "expiry")
	if ev.State != client.StateExpired {
		t.Fatalf("second session event %v; want expired", ev)
	}
	if _, ok := recv(t, events, time.Second, "close"); ok {
		t.Fatalf("events after expiry")
	}
	if !errors.Is(c.Err(), client.ErrSessionExpired) {
		t.Fatalf("Err() = %v; want ErrSessionExpired", c.Err())
	}
}
