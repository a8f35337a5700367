package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// connsAccepted sums the client connections every replica of cell has
// accepted so far.
func connsAccepted(cell *lockserver.Cell) (total, open int64) {
	for i := range cell.N() {
		if s := cell.Server(i); s != nil {
			total += s.Metrics().ConnsTotal.Load()
			open += s.Metrics().Conns.Load()
		}
	}
	return total, open
}

// Sessions opened with NewSession share their parent's connection and are
// otherwise independent: their own locks and ephemeral nodes, each ending
// on its own, in any order; the connection closes with the last of them.
func TestNewSessionSharesTheConnection(t *testing.T) {
	cell := startCell(t)
	ctx := bg(t, 30*time.Second)
	c := dial(t, cell)
	accepted, _ := connsAccepted(cell)

	s1, err := c.NewSession(ctx)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer s1.Close()
	s2, err := s1.NewSession(ctx) // from a child: the same connection
	if err != nil {
		t.Fatalf("NewSession of a NewSession: %v", err)
	}
	defer s2.Close()
	if now, _ := connsAccepted(cell); now != accepted {
		t.Errorf("two more sessions made the cell accept %d connections; want none", now-accepted)
	}
	ids := map[uint64]bool{c.SessionID(): true, s1.SessionID(): true, s2.SessionID(): true}
	if len(ids) != 3 || ids[0] {
		t.Fatalf("session ids %d, %d, %d; want three distinct non-zero ids", c.SessionID(), s1.SessionID(), s2.SessionID())
	}

	// Locks: each session is a holder of its own.
	if _, err := c.Lock(ctx, "/ns/lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.TryLock(ctx, "/ns/lock"); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock from a sibling session of the holder: %v; want ErrLocked", err)
	}
	if _, err := s1.Put(ctx, "/ns/eph1", []byte("one"), client.Ephemeral()); err != nil {
		t.Fatal(err)
	}

	// Closing the parent ends its session (its lock is released) but not
	// the connection the others use.
	if err := c.Close(); err != nil {
		t.Fatalf("Close of the parent: %v", err)
	}
	if _, err := c.NewSession(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("NewSession of a closed Client: %v; want ErrClosed", err)
	}
	l, err := s1.TryLock(ctx, "/ns/lock")
	if err != nil {
		t.Fatalf("TryLock once the parent closed: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s2.Get(ctx, "/ns/eph1"); err != nil || string(n.Data) != "one" {
		t.Fatalf("Get of s1's ephemeral from s2: %v, %v", n, err)
	}

	// Closing s1 deletes its ephemeral node; s2 carries on.
	if err := s1.Close(); err != nil {
		t.Fatalf("Close of s1: %v", err)
	}
	if _, err := s2.Stat(ctx, "/ns/eph1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Stat of a closed session's ephemeral: %v; want ErrNotFound", err)
	}
	if s2.State() != client.StateSafe || s2.Err() != nil {
		t.Fatalf("s2: state %v, err %v; want safe", s2.State(), s2.Err())
	}
	if now, _ := connsAccepted(cell); now != accepted {
		t.Errorf("the sessions made the cell accept %d connections; want none", now-accepted)
	}

	// The last Client closes the connection.
	if err := s2.Close(); err != nil {
		t.Fatalf("Close of s2: %v", err)
	}
	waitFor(t, 5*time.Second, "the shared connection to close", func() bool {
		_, open := connsAccepted(cell)
		return open == 0
	})
}

// Sessions sharing a connection ride out a leader change together: the
// connection is dialled again once, to the new leader, and every session
// survives with its lock.
func TestNewSessionsAcrossFailover(t *testing.T) {
	cell := startCell(t)
	ctx := bg(t, 40*time.Second)
	c := dial(t, cell, longGrace)
	sessions := []*client.Client{c}
	for range 3 {
		s, err := c.NewSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sessions = append(sessions, s)
	}
	var locks []*client.Lock
	for i, s := range sessions {
		l, err := s.Lock(ctx, "/ns/fo/"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	// The leader to stop is a settled one, and the connection is at it: a
	// loaded machine may have elected again since the locks were granted,
	// and a write follows the leader.
	leader := leaderIndex(t, cell)
	if _, err := c.Put(ctx, "/ns/fo/before", nil); err != nil {
		t.Fatal(err)
	}
	accepted, _ := connsAccepted(cell)
	if err := cell.Stop(leader); err != nil {
		t.Fatal(err)
	}
	for i, s := range sessions {
		if _, err := s.Put(ctx, "/ns/fo/after", []byte{byte(i)}); err != nil {
			t.Fatalf("session %d after the failover: %v", i, err)
		}
	}
	for i, l := range locks {
		select {
		case <-l.Lost():
			t.Fatalf("session %d lost its lock in the failover", i)
		default:
		}
		if ok, err := sessions[i].CheckSequencer(ctx, l.Sequencer()); err != nil || !ok {
			t.Fatalf("session %d's sequencer after the failover: %v, %v", i, ok, err)
		}
	}
	// A connection to the new leader (and perhaps one to a follower that
	// pointed at it), not one per session.
	if now, _ := connsAccepted(cell); now-accepted > 2 {
		t.Errorf("four sessions on one connection made %d connections to fail over; want at most 2", now-accepted)
	}
}
