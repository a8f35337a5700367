package lockserver

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Command time runs on the monotonic clock within a term, so a step of the
// leader's wall clock neither stalls a lock-delay (S12a) nor cuts it short
// (S12b), and a new leader whose wall clock is behind takes command time on
// from where the log left it (S12c).

// TestCellClock follows command time on a fake clock: it starts at the
// wall clock, runs on monotonic time through steps of the wall clock, jumps
// to a larger applied command time and runs on from there, and a reset (a
// term's start) takes the larger of the wall clock and the applied time.
func TestCellClock(t *testing.T) {
	clk := newFakeClock()
	var applied atomic.Int64
	k := newCellClock(clk, &applied)
	t0 := clk.Now().UnixNano()
	check := func(what string, want time.Duration) {
		t.Helper()
		if got := k.now(); got != t0+int64(want) {
			t.Errorf("%s: command time = start%+v; want start%+v", what, time.Duration(got-t0), want)
		}
	}
	check("at the start", 0)
	clk.Step(-time.Hour)
	clk.Advance(time.Second)
	check("1 s after the wall clock stepped back 1 h", time.Second)
	clk.Step(2 * time.Hour) // the wall clock: start+1h+1s
	check("after it stepped forward 2 h", time.Second)
	applied.Store(t0 + int64(10*time.Second))
	check("behind the applied time", 10*time.Second)
	clk.Advance(time.Second) // the wall clock: start+1h+2s
	check("1 s later", 11*time.Second)
	k.reset(clk.Now().UnixNano(), applied.Load())
	check("reset with the wall clock ahead", time.Hour+2*time.Second)
	clk.Step(-2 * time.Hour) // the wall clock: start-1h+2s
	k.reset(clk.Now().UnixNano(), applied.Load())
	check("reset with the wall clock behind the applied time", 10*time.Second)
}

// mtime writes path and returns the command time of the write.
func mtime(t *testing.T, cl *client, path string) int64 {
	t.Helper()
	return cl.must(&wire.Put{Path: path}).(*wire.PutReply).Stat.ModifiedTime
}

// TestLockDelayWallClockStepsBack steps the leader's wall clock back an
// hour during a lock-delay with a waiter: the waiter is granted once the
// lock-delay's length of monotonic time has passed, not an hour later.
func TestLockDelayWallClockStepsBack(t *testing.T) {
	clk := newFakeClock()
	c := testCell(t, func(cfg *Config) { cfg.Clock = clk })
	d := expireInDelay(t, c, clk.Advance)
	before := mtime(t, d.other, "/before")
	clk.Step(-time.Hour)
	clk.Advance(time.Second) // less than the lock-delay
	if now := mtime(t, d.other, "/after"); now != before+int64(time.Second) {
		t.Errorf("a write 1 s after the wall clock stepped back 1 h is stamped %v after the one before; want 1s", time.Duration(now-before))
	}
	d.delayed(t, "after 1 s of its 1.5 s")
	clk.Advance(time.Second)
	d.granted(t)
}

// TestLockDelayWallClockStepsForward steps the leader's wall clock forward
// an hour during a lock-delay with a waiter: the lock-delay still lasts its
// length, and writes are not stamped an hour ahead.
func TestLockDelayWallClockStepsForward(t *testing.T) {
	clk := newFakeClock()
	c := testCell(t, func(cfg *Config) { cfg.Clock = clk })
	d := expireInDelay(t, c, clk.Advance)
	before := mtime(t, d.other, "/before")
	clk.Step(time.Hour)
	// A write stamped with the wall clock would end the lock-delay as it
	// is applied.
	if now := mtime(t, d.other, "/after"); now != before {
		t.Errorf("a write right after the wall clock stepped forward 1 h is stamped %v after the one before", time.Duration(now-before))
	}
	d.delayed(t, "right after the step")
	clk.Advance(time.Second)
	mtime(t, d.other, "/later")
	d.delayed(t, "after 1 s of its 1.5 s")
	clk.Advance(time.Second)
	d.granted(t)
}

// TestLeaderChangeToSlowWallClock hands the leadership to a replica whose
// wall clock is an hour behind, during a lock-delay with a waiter: command
// time goes on from where the old leader left it (a node written after the
// change is younger than one written before), and the lock-delay ends
// after its length.
func TestLeaderChangeToSlowWallClock(t *testing.T) {
	clks := newFakeClocks(3)
	c := testCell(t, clks.tune)
	d := expireInDelay(t, c, clks.Advance)
	before := mtime(t, d.other, "/before")
	old := waitSettled(t, c, c.N()-1)
	for i, k := range clks {
		if i != old {
			k.Step(-time.Hour)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Server(old).TransferLeadership(ctx); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	waitFor(t, 20*time.Second, "another replica to lead", func() bool {
		i := c.Leader()
		return i >= 0 && i != old
	})
	clks.Advance(time.Second) // less than the lock-delay
	if now := mtime(t, d.other, "/after"); now <= before || now > before+int64(time.Second) {
		t.Errorf("a write 1 s after the leader change is stamped %v after the one before; want (0, 1s]", time.Duration(now-before))
	}
	d.delayed(t, "after 1 s of its 1.5 s, at the new leader")
	clks.Advance(time.Second)
	d.granted(t)
}
