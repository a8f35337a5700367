package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// An idle session stays safe: the long-polled KeepAlive is answered before
// the local lease runs out, cycle after cycle (the margin the cell keeps is
// wider than the client's allowance for the reply's flight).
func TestIdleSessionStaysSafe(t *testing.T) {
	cell := startCell(t, func(cfg *lockserver.Config) { cfg.Session.Margin = time.Second })
	c := dial(t, cell, func(cfg *client.Config) { cfg.SessionTimeout = 2 * time.Second })
	if c.SessionTimeout() != 2*time.Second {
		t.Fatalf("SessionTimeout() = %v; want 2s", c.SessionTimeout())
	}
	events := c.SessionEvents()
	timeout := time.After(4 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-events:
			if !ev.Failover {
				t.Fatalf("idle session reported %v; want it safe over two leases", ev)
			}
			t.Logf("the cell failed over meanwhile: %v", ev) // not the client's doing
		case <-timeout:
			done = true
		}
	}
	if c.State() != client.StateSafe {
		t.Fatalf("State() = %v; want safe", c.State())
	}
}

// A session that cannot reach the cell goes to jeopardy when its local lease
// runs out, and back to safe when a KeepAlive gets through again within the
// grace period; its locks survive (the new leader extended every lease).
func TestJeopardyThenSafe(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, shortLease, func(cfg *client.Config) { cfg.Grace = 20 * time.Second })
	ctx := bg(t, 40*time.Second)
	l, err := c.Lock(ctx, "/ls/survivor")
	if err != nil {
		t.Fatal(err)
	}
	events := c.SessionEvents()
	leader := leaderIndex(t, cell)
	follower := (leader + 1) % 3
	for _, i := range []int{leader, follower} {
		if err := cell.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	ev := nextState(t, events, 10*time.Second, "jeopardy")
	if ev.State != client.StateJeopardy {
		t.Fatalf("first session event %v; want jeopardy", ev)
	}
	if c.State() != client.StateJeopardy {
		t.Fatalf("State() = %v; want jeopardy", c.State())
	}
	for _, i := range []int{leader, follower} {
		if err := cell.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	for {
		ev, ok := recv(t, events, 15*time.Second, "safe")
		if !ok {
			t.Fatalf("session events closed (state %v, err %v); want safe", c.State(), c.Err())
		}
		if ev.State == client.StateExpired {
			t.Fatalf("session expired; want safe")
		}
		if ev.State == client.StateSafe && !ev.Failover {
			break
		}
	}
	select {
	case <-l.Lost():
		t.Fatalf("the lock was reported lost; the session survived")
	default:
	}
	if ok, err := c.CheckSequencer(ctx, l.Sequencer()); err != nil || !ok {
		t.Fatalf("CheckSequencer after recovery = %v, %v; want still held", ok, err)
	}
	if _, err := c.Put(ctx, "/after", []byte("ok")); err != nil {
		t.Fatalf("Put after recovery: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock after recovery: %v", err)
	}
}

// A session whose grace period runs out is expired, and says so once: the
// event channel gets jeopardy then expired, then closes.
func TestExpiryAfterGrace(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, shortLease, func(cfg *client.Config) { cfg.Grace = 500 * time.Millisecond })
	events := c.SessionEvents()
	reg, err := client.Register(bg(t), c, "/svc/expiring", "10.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	client.PauseKeepAlives(c, true)
	var states []client.SessionState
	for ev := range events {
		if !ev.Failover { // a real fail-over notice may come in between
			states = append(states, ev.State)
		}
	}
	if len(states) != 2 || states[0] != client.StateJeopardy || states[1] != client.StateExpired {
		t.Fatalf("session events %v; want [jeopardy expired]", states)
	}
	recv(t, c.Done(), time.Second, "Done")
	recv(t, reg.Lost(), time.Second, "registration Lost")
	if !errors.Is(c.Err(), client.ErrSessionExpired) {
		t.Fatalf("Err() = %v; want ErrSessionExpired", c.Err())
	}
	late := c.SessionEvents()
	if _, ok := recv(t, late, time.Second, "closed channel"); ok {
		t.Fatalf("a subscription after expiry delivered an event")
	}
	// The cell expires the session too, and its ephemeral node goes.
	o := dial(t, cell)
	waitFor(t, 10*time.Second, "the ephemeral node to vanish", func() bool {
		insts, err := client.Resolve(bg(t), o, "/svc/expiring")
		return err == nil && len(insts) == 0
	})
	if err := c.Close(); err != nil {
		t.Fatalf("Close after expiry: %v", err)
	}
}

// A client without a session reads (stale reads even while the cell has no
// leader) and refuses to write.
func TestNoSessionReadsWithoutALeader(t *testing.T) {
	cell := startCell(t)
	w := dial(t, cell)
	ctx := bg(t, 20*time.Second)
	if _, err := w.Put(ctx, "/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// The Paxos instance the leader has applied, /x's included. (Status
	// counts instances; Stat's indexes count commands: they differ.)
	lst, err := client.StatusOf(ctx, cell.Endpoints()[leaderIndex(t, cell)])
	if err != nil {
		t.Fatal(err)
	}
	ro := dial(t, cell, func(cfg *client.Config) { cfg.NoSession = true })
	if ro.SessionID() != 0 || ro.State() != client.StateSafe {
		t.Fatalf("NoSession client: session %d, state %v", ro.SessionID(), ro.State())
	}
	if n, err := ro.Get(ctx, "/x"); err != nil || string(n.Data) != "1" {
		t.Fatalf("linearizable Get without a session = %q, %v", n.Data, err)
	}
	for name, err := range map[string]error{
		"Put":    func() error { _, err := ro.Put(ctx, "/x", nil); return err }(),
		"Delete": ro.Delete(ctx, "/x"),
		"Lock":   func() error { _, err := ro.TryLock(ctx, "/x"); return err }(),
		"Watch":  func() error { _, err := ro.Watch(ctx, "/x"); return err }(),
	} {
		if !errors.Is(err, client.ErrInvalid) {
			t.Errorf("%s without a session = %v; want ErrInvalid", name, err)
		}
	}
	// Wait until a follower has applied /x, then take the leader and the
	// other follower away: no leader, no quorum.
	survivor := (leaderIndex(t, cell) + 1) % 3
	waitFor(t, 10*time.Second, "the follower to apply /x", func() bool {
		s, err := client.StatusOf(ctx, cell.Endpoints()[survivor])
		return err == nil && s.Applied >= lst.Applied
	})
	for i := range 3 {
		if i != survivor {
			if err := cell.Stop(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	ro2 := dial(t, cell, func(cfg *client.Config) {
		cfg.NoSession = true
		cfg.Endpoints = []string{cell.Endpoints()[survivor]}
	})
	n, err := ro2.Get(ctx, "/x", client.Stale())
	if err != nil || string(n.Data) != "1" {
		t.Fatalf("stale Get from the surviving replica = %q, %v", n.Data, err)
	}
	if _, err := ro2.List(ctx, "/", client.Stale()); err != nil {
		t.Fatalf("stale List: %v", err)
	}
	// The last replica to stop resigned, naming a successor: the survivor
	// may have been elected with its vote just before it went, and serves
	// linearizable reads while the lease that vote granted lasts. Once it
	// has run out there is no quorum, and a linearizable read is refused.
	linearizable := func() error {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := ro2.Get(short, "/x")
		return err
	}
	waitFor(t, 10*time.Second, "linearizable reads to be refused without a quorum", func() bool {
		return errors.Is(linearizable(), client.ErrUnavailable)
	})
	if err := linearizable(); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("linearizable Get without a leader = %v; want ErrUnavailable", err)
	}
	if err := ro2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
