package lockserver

import (
	"sync/atomic"
	"time"
)

// Clock is the server's time source; tests inject a fake one.
//
// Now is the wall clock, which may step (an NTP step, a VM restored from a
// snapshot). Monotonic is the steady clock: the time elapsed since an
// origin fixed for the clock's life, which never steps and never goes
// back. Every duration the server measures is monotonic time: session
// leases, KeepAlive holds, and command time within a leader term
// (cellClock). The wall clock is read only when command time is set at
// the start of a term. The two are separate methods because a fake clock's
// time.Time values carry no monotonic reading for Sub to use, unlike the
// system clock's.
type Clock interface {
	Now() time.Time
	Monotonic() time.Duration
}

type systemClock struct{}

// systemOrigin is the system clock's monotonic origin (time.Now carries a
// monotonic reading, which time.Since uses).
var systemOrigin = time.Now()

func (systemClock) Now() time.Time           { return time.Now() }
func (systemClock) Monotonic() time.Duration { return time.Since(systemOrigin) }

// steadyClock is c's monotonic time as a time.Time counted from a fixed
// origin: the session.Clock of the leader's session manager, and the clock
// KeepAlive measures against the manager's expiries. Its times are good for
// Sub only, never for display.
type steadyClock struct{ c Clock }

func (s steadyClock) Now() time.Time { return time.Unix(0, 0).Add(s.c.Monotonic()) }

// cellClock is command time as this replica stamps it on the commands it
// proposes (Command.Time, Unix nanoseconds) and compares with the
// namespace's deadlines (lock-delay ends). When a term starts (reset) it is
// set to the larger of the wall clock and the largest command time applied
// so far; from there it runs on the monotonic clock, and never falls behind
// the largest command time applied since (floor: a new leader applying the
// tail of the old leader's log catches up with its clock). So a step of the
// leader's wall clock during its term moves no command time, command time
// never goes backwards across terms, and a leader whose wall clock is ahead
// of its predecessor's moves it forward by that skew at most (Chubby
// assumes clocks of bounded drift). On a healthy machine it stays within
// the wall clock's slew of the wall clock.
//
// Safe for concurrent use.
type cellClock struct {
	c      Clock
	offset atomic.Int64  // command time = offset + c.Monotonic(), unless below floor
	floor  *atomic.Int64 // the largest command time applied (fsm.applied)
}

func newCellClock(c Clock, floor *atomic.Int64) *cellClock {
	k := &cellClock{c: c, floor: floor}
	k.reset(c.Now().UnixNano(), floor.Load())
	return k
}

// reset sets command time to the larger of wall and applied (the largest
// command time applied), from now on counted on the monotonic clock. It may
// move command time back (the wall clock stepped back since the last
// reset), never below what was applied.
func (k *cellClock) reset(wall, applied int64) {
	k.offset.Store(max(wall, applied) - int64(k.c.Monotonic()))
}

// now returns the command time: the clock's, or the floor if that is
// ahead, in which case the clock jumps to the floor and runs on from there.
func (k *cellClock) now() int64 {
	for {
		off, mono := k.offset.Load(), int64(k.c.Monotonic())
		n, f := off+mono, k.floor.Load()
		if n >= f {
			return n
		}
		if k.offset.CompareAndSwap(off, f-mono) {
			return f
		}
	}
}
