package replica

import (
	"context"
	"testing"
	"time"
)

// TestResignHandsOffLeadership: a leader that resigns while proposals keep
// arriving stops offering lease reads at once, another replica leads, and
// no acknowledged proposal is lost.
func TestResignHandsOffLeadership(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "memnet"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) {
			c := newCell(t, cellOpts{tcp: tcp})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			acked := c.proposeMany(ctx, 1, "a", 4, 40)
			old := c.leader(1, 10*time.Second)
			during := make(chan []string, 1)
			go func() { during <- c.proposeMany(ctx, 1, "b", 4, 100) }()
			c.waitApplied(1, len(acked)+4, 10*time.Second) // the proposers are under way

			start := time.Now()
			if err := old.Resign(ctx); err != nil {
				t.Fatalf("Resign = %v", err)
			}
			took := time.Since(start)
			if old.LeaseRead(1) {
				t.Fatal("LeaseRead on the resigned leader = true")
			}
			id, _, ok := old.Leader(1)
			if !ok || id == old.ID() {
				t.Fatalf("after Resign the old leader knows leader %d (ok %v); want another replica", id, ok)
			}
			cfg := c.cfgs[old.ID()]
			t.Logf("leader %d resigned; it knew leader %d after %v (lease %v, election timeout %v)",
				old.ID(), id, took.Round(time.Millisecond), cfg.LeaseDuration, cfg.ElectionTimeout)

			acked = append(acked, <-during...)
			acked = append(acked, c.proposeMany(ctx, 1, "c", 4, 20)...)
			c.waitApplied(1, len(acked), 30*time.Second)
			c.waitConverged(1, 30*time.Second)
			c.checkContains(1, acked)

			// Resign on a replica that does not lead does nothing.
			if err := old.Resign(ctx); err != nil || c.leaderOf(1) == nil {
				t.Fatalf("Resign on a follower = %v, leader afterwards %v; want nil and a leader", err, c.leaderOf(1))
			}
		})
	}
}

// TestResignAlone: a cell of one has no one to hand off to; Resign still
// ends the lease and returns, and the replica leads again later.
func TestResignAlone(t *testing.T) {
	c := newCell(t, cellOpts{n: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := c.leader(1, 10*time.Second)
	if err := r.Resign(ctx); err != nil {
		t.Fatalf("Resign = %v", err)
	}
	if r.LeaseRead(1) {
		t.Fatal("LeaseRead after Resign = true")
	}
	if _, err := c.propose(ctx, 1, []byte("after")); err != nil {
		t.Fatalf("propose after the lone replica resigned = %v", err)
	}
}
