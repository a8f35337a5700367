package replica

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

var chaosTime = flag.Duration("chaos", 3*time.Second, "how long TestChaos and TestChaosMembers run their nemesis")

// TestChaos runs five replicas on the in-memory network with small
// snapshots while writers propose from many goroutines and a nemesis
// isolates replicas, heals the network and restarts replicas from their data
// dirs. Afterwards every replica must hold the same log, containing every
// acknowledged command.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (nemesis choices only; timing is real)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	c := newCell(t, cellOpts{n: 5, tune: func(cfg *Config) {
		cfg.SnapshotEvery = 30
		cfg.SnapshotChunk = 1024
	}})
	ctx, cancel := context.WithTimeout(context.Background(), *chaosTime+60*time.Second)
	defer cancel()
	w := startWriters(ctx, t, c, 8)

	down := map[uint64]bool{}
	end := time.Now().Add(*chaosTime)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		id := uint64(1 + rng.IntN(5))
		switch op := rng.IntN(4); {
		case op == 0:
			c.mem.Isolate(id)
		case op == 1:
			c.mem.Heal()
		case op == 2 && !down[id] && len(down) < 2:
			c.stop(id)
			down[id] = true
		default:
			for d := range down {
				c.start(d)
				delete(down, d)
			}
		}
	}
	c.mem.Heal()
	for d := range down {
		c.start(d)
	}
	checkLog(ctx, t, c, w.stop())
}

// writers propose distinct commands from several goroutines until stopped
// and remember which were acknowledged.
type writers struct {
	mu    sync.Mutex
	acked map[string]bool
	done  chan struct{}
	wg    sync.WaitGroup
}

// startWriters starts n writers proposing to whichever replica of c leads.
func startWriters(ctx context.Context, t *testing.T, c *cell, n int) *writers {
	w := &writers{acked: map[string]bool{}, done: make(chan struct{})}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.write(ctx, t, c, i)
		}()
	}
	return w
}

func (w *writers) write(ctx context.Context, t *testing.T, c *cell, id int) {
	for i := 0; ; i++ {
		select {
		case <-w.done:
			return
		default:
		}
		// Each command is proposed until it is acknowledged or its outcome
		// becomes unknown; only a *NotLeaderError (nothing was proposed) is
		// retried, so a command that shows up twice in the log is a bug.
		cmd := fmt.Sprintf("w%d-%d", id, i)
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := proposeOnce(pctx, c, []byte(cmd))
		pcancel()
		var nl *NotLeaderError
		switch {
		case err == nil:
			w.mu.Lock()
			w.acked[cmd] = true
			w.mu.Unlock()
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrClosed),
			errors.Is(err, ErrLeadershipLost), errors.As(err, &nl):
		default:
			t.Errorf("propose(%s) = %v", cmd, err)
			return
		}
	}
}

// stop stops the writers and returns the commands acknowledged.
func (w *writers) stop() map[string]bool {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// checkLog proposes one more command through the healed cell, waits until
// every running replica applied the same commands, and fails unless each
// is there once and every acknowledged one is there.
func checkLog(ctx context.Context, t *testing.T, c *cell, acked map[string]bool) {
	t.Helper()
	// Each attempt is a new command: an attempt that fails with its outcome
	// unknown (lost leadership) may still be chosen, and retrying the same
	// bytes would then rightly show up twice.
	for attempt := 0; ; attempt++ {
		err := proposeOnce(ctx, c, []byte(fmt.Sprintf("final-%d", attempt)))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no command completed after the faults healed: %v", err)
		}
	}
	lead := c.leader(1, 10*time.Second)
	st, err := lead.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.waitConverged(1, 30*time.Second)
	log := c.checkSame(1)
	have := map[string]bool{}
	for _, cmd := range log {
		if have[string(cmd)] {
			t.Fatalf("command %q applied twice", cmd)
		}
		have[string(cmd)] = true
	}
	for cmd := range acked {
		if !have[cmd] {
			t.Fatalf("acknowledged command %q was lost", cmd)
		}
	}
	var snaps uint64
	for _, id := range c.ids() {
		s, _ := c.reps[id].Status(ctx, 1)
		snaps += s.Stats.SnapshotsRecv
	}
	t.Logf("%d acknowledged, %d applied, leader %d at instance %d, %d snapshots installed", len(acked), len(log), lead.ID(), st.Applied, snaps)
}

// proposeOnce proposes cmd on the current leader, retrying only while the
// answer is "not the leader" (which guarantees nothing was proposed).
func proposeOnce(ctx context.Context, c *cell, cmd []byte) error {
	for {
		var err error
		if lead := c.leaderOf(1); lead != nil {
			if _, err = lead.Propose(ctx, 1, cmd); err == nil {
				return nil
			}
			var nl *NotLeaderError
			if !errors.As(err, &nl) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
