package client_test

import (
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
	select {
	case ev := <-events:
		t.Fatalf("idle session reported %v; want no event over two leases", ev)
	case <-time.After(4 * time.Second):
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
	c := dial(t, cell, func(cfg *client.Config) { cfg.Grace = 20 * time.Second })
	ctx := bg(t, 40*time.Second)
	l, err := c.Lock(ctx, "/ls/survivor")
	if err != nil {
		t.Fatal(err)
	}
	events := c.SessionEvents()
	leader := cell.Leader()
	follower := (leader + 1) % 3
	for _, i := range []int{leader, follower} {
		if err := cell.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	ev, _ := recv(t, events, 10*time.Second, "jeopardy")
	if ev.State != client.StateJeopardy || ev.Failover {
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
	c := dial(t, cell, func(cfg *client.Config) { cfg.Grace = 500 * time.Millisecond })
	events := c.SessionEvents()
	reg, err := client.Register(bg(t), c, "/svc/expiring", "10.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	client.PauseKeepAlives(c, true)
	var states []client.SessionState
	for ev := range events {
		states = append(states, ev.State)
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
