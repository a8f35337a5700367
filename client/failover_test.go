package client_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// The leader is stopped (twice: handing off, then as in a crash) in the
// middle of a workload of writers and lock holders. Clients carry on through
// each fail-over: no acknowledged write is lost, no write is applied twice,
// and no two clients ever hold the exclusive lock at once (each grant's
// generation is greater than the last).
func TestLeaderStoppedMidWorkload(t *testing.T) {
	cell := startCell(t)
	ctx, stop := context.WithCancel(bg(t, 60*time.Second))
	defer stop()

	const writers, lockers = 3, 3
	type writer struct {
		acked     atomic.Int64 // last value acknowledged
		attempted atomic.Int64 // last value sent
	}
	ws := make([]*writer, writers)
	var wg sync.WaitGroup
	for i := range writers {
		w := &writer{}
		ws[i] = w
		c := dial(t, cell, longGrace)
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/data/w%d", i)
			for v := int64(1); v <= 2000 && ctx.Err() == nil; v++ {
				w.attempted.Store(v)
				_, err := c.Put(ctx, path, []byte(strconv.FormatInt(v, 10)), client.CreateParents())
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("writer %d: Put %d: %v", i, v, err)
					}
					return
				}
				w.acked.Store(v)
			}
		}()
	}

	var (
		holder  atomic.Uint64 // session id of the client acting as holder; 0 if none
		grants  atomic.Int64
		mu      sync.Mutex
		lastGen uint64
	)
	for range lockers {
		c := dial(t, cell, longGrace)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := c.Lock(ctx, "/ls/mutex")
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("session %d: Lock: %v", c.SessionID(), err)
					}
					return
				}
				if prev := holder.Swap(c.SessionID()); prev != 0 {
					t.Errorf("session %d granted the lock while session %d holds it", c.SessionID(), prev)
				}
				mu.Lock()
				gen := l.Sequencer().LockGen
				if gen <= lastGen {
					t.Errorf("grant generation %d after %d; want increasing", gen, lastGen)
				}
				lastGen = gen
				mu.Unlock()
				grants.Add(1)
				time.Sleep(time.Millisecond)
				select {
				case <-l.Lost():
					t.Errorf("session %d lost the lock; sessions should survive a fail-over", c.SessionID())
				default:
				}
				// Stop acting as the holder before releasing.
				holder.Store(0)
				if err := l.Unlock(context.WithoutCancel(ctx)); err != nil {
					t.Errorf("session %d: Unlock: %v", c.SessionID(), err)
					return
				}
			}
		}()
	}

	progress := func(what string) {
		t.Helper()
		base := make([]int64, writers)
		for i, w := range ws {
			base[i] = w.acked.Load()
		}
		g := grants.Load()
		waitFor(t, 20*time.Second, what, func() bool {
			for i, w := range ws {
				if w.acked.Load() < base[i]+10 {
					return false
				}
			}
			return grants.Load() >= g+5
		})
	}
	progress("progress before the first fail-over")
	for round := range 2 {
		old := leaderIndex(t, cell)
		// Round 0: the leader hands off (as on SIGTERM); round 1: it
		// vanishes as in a crash, and the others wait out its lease.
		stop := cell.Stop
		if round == 1 {
			stop = cell.Crash
		}
		if err := stop(old); err != nil {
			t.Fatal(err)
		}
		progress(fmt.Sprintf("progress after stopping leader %d (round %d)", old, round))
		if err := cell.Restart(old); err != nil {
			t.Fatal(err)
		}
		progress(fmt.Sprintf("progress after restarting replica %d", old))
	}
	stop()
	wg.Wait()

	check := dial(t, cell)
	vctx := bg(t)
	for i, w := range ws {
		n, err := check.Get(vctx, fmt.Sprintf("/data/w%d", i))
		if err != nil {
			t.Fatalf("Get writer %d: %v", i, err)
		}
		v, _ := strconv.ParseInt(string(n.Data), 10, 64)
		acked, attempted := w.acked.Load(), w.attempted.Load()
		if v < acked || v > attempted {
			t.Errorf("writer %d: the cell has %d; acknowledged %d, attempted %d", i, v, acked, attempted)
		}
		// Each Put applied once: the content generation counts the writes.
		if gen := int64(n.Stat.ContentGen); gen != v {
			t.Errorf("writer %d: content generation %d for value %d; a write was applied twice or lost", i, gen, v)
		}
	}
	t.Logf("writes acknowledged: %d, %d, %d; lock grants: %d", ws[0].acked.Load(), ws[1].acked.Load(), ws[2].acked.Load(), grants.Load())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the workload ran out of time")
	}
}
