package lockserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// TestClientLockAcrossFailover drives the server with the real client: a
// holder and a waiter on one lock, the leader stopped while the waiter
// waits, then the lock handed over at the new leader, with the old grant's
// sequencer stale afterwards.
func TestClientLockAcrossFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cell, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 3, DataDir: t.TempDir(), Tune: func(cfg *lockserver.Config) {
		cfg.Replica.TickInterval = 5 * time.Millisecond
		cfg.Replica.HeartbeatInterval = 25 * time.Millisecond
		cfg.Replica.LeaseDuration = 250 * time.Millisecond
		cfg.Replica.ElectionTimeout = 400 * time.Millisecond
		cfg.LeaderPoll = 5 * time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cell.Close() }) // after the clients' cleanups (LIFO)
	if _, err := cell.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	dial := func() *client.Client {
		c, err := client.Dial(ctx, client.DefaultConfig(cell.Endpoints()...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	holder, waiter := dial(), dial()
	if _, err := holder.Put(ctx, "/svc", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	l1, err := holder.Lock(ctx, "/svc")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	var l2 *client.Lock
	go func() {
		var err error
		l2, err = waiter.Lock(ctx, "/svc")
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		locks, err := holder.Locks(ctx, "/svc")
		if err == nil && len(locks) == 1 && locks[0].Waiters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiter did not queue: %v, %v", locks, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	leader, err := cell.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cell.Stop(leader); err != nil {
		t.Fatal(err)
	}
	if err := l1.Unlock(ctx); err != nil {
		t.Fatalf("Unlock across the failover: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting Lock across the failover: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the waiter was never granted the lock")
	}
	if l2.Sequencer().LockGen <= l1.Sequencer().LockGen {
		t.Fatalf("waiter's grant %v is not newer than %v", l2.Sequencer(), l1.Sequencer())
	}
	if ok, err := holder.CheckSequencer(ctx, l1.Sequencer()); err != nil || ok {
		t.Fatalf("CheckSequencer(old grant) = %v, %v; want stale", ok, err)
	}
	if ok, err := holder.CheckSequencer(ctx, l2.Sequencer()); err != nil || !ok {
		t.Fatalf("CheckSequencer(new grant) = %v, %v; want valid", ok, err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
