package namespace

import (
	"testing"
	"time"
)

// Chubby §2.4: a lock freed by a failed holder is not granted again until the
// lock-delay ends; a released lock is granted at once.
func TestLockDelayHoldsBackWaitersUntilTick(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeExclusive, false, 5*time.Second), a)
	if r, _ := h.apply(NewAcquire("/l", ModeExclusive, true, 0), b, 7); !r.Queued {
		t.Fatalf("acquire by b = %+v; want queued", r)
	}
	if _, ok := h.tree.NextDeadline(); ok {
		t.Fatalf("NextDeadline set before any expiry")
	}
	expiredAt := h.now
	h.must(NewExpireSession(a), 0)
	d, ok := h.tree.NextDeadline()
	if !ok || d != expiredAt+int64(5*time.Second) {
		t.Fatalf("NextDeadline() = %d, %v; want %d", d, ok, expiredAt+int64(5*time.Second))
	}
	h.now = d - 1
	if _, ev := h.apply(NewTick(), 0, 0); len(ev) != 0 {
		t.Fatalf("tick before the deadline emitted %v", ev)
	}
	h.now = d
	_, ev := h.apply(NewTick(), 0, 0)
	wantEvents(t, ev, "lock-acquired /l inst=2 session=2 req=7 seq=/l:exclusive:2:2")
	if _, ok := h.tree.NextDeadline(); ok {
		t.Fatalf("NextDeadline still set after the grant")
	}
	// The queued acquire's stored result now reports the grant.
	r, ev := h.apply(NewAcquire("/l", ModeExclusive, true, 0), b, 7)
	if r.Sequencer.LockGen != 2 || r.Queued || len(ev) != 0 {
		t.Fatalf("retried acquire = %+v, %v; want the grant", r, ev)
	}
}

func TestLockDelayGrantsInDeadlineOrder(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	for _, p := range []string{"/x", "/y", "/z"} {
		h.must(NewCreate(p, nil, 0), 0)
	}
	h.must(NewAcquire("/z", ModeExclusive, false, 2*time.Second), a)
	h.must(NewAcquire("/y", ModeExclusive, false, 3*time.Second), a)
	h.must(NewAcquire("/x", ModeExclusive, false, 3*time.Second), a)
	for _, p := range []string{"/x", "/y", "/z"} {
		h.must(NewAcquire(p, ModeShared, true, 0), b)
	}
	h.must(NewExpireSession(a), 0)
	h.advance(time.Hour)
	_, ev := h.apply(NewSetContent("/x", []byte("any command ends delays"), 0), 0, 0)
	wantEvents(t, ev,
		"lock-acquired /z inst=4 session=2 seq=/z:shared:2:4",
		"lock-acquired /x inst=2 session=2 seq=/x:shared:2:2",
		"lock-acquired /y inst=3 session=2 seq=/y:shared:2:3",
		"content-changed /x inst=2")
}

func TestLockDelayBounds(t *testing.T) {
	tests := []struct {
		name  string
		asked time.Duration
		want  time.Duration
	}{
		{"default", 0, 10 * time.Second},
		{"chosen", 3 * time.Second, 3 * time.Second},
		{"capped", time.Hour, time.Minute},
		{"none", -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			a, b := h.open(), h.open()
			h.must(NewCreate("/l", nil, 0), 0)
			h.must(NewAcquire("/l", ModeExclusive, false, tt.asked), a)
			h.must(NewExpireSession(a), 0)
			l, _ := h.tree.Lock("/l")
			want := int64(0)
			if tt.want > 0 {
				want = h.now + int64(tt.want)
			}
			if l.DelayUntil != want {
				t.Fatalf("DelayUntil = %d; want %d", l.DelayUntil, want)
			}
			r, _ := h.apply(NewAcquire("/l", ModeExclusive, false, 0), b, 0)
			if (r.Err == nil) != (tt.want == 0) {
				t.Fatalf("acquire during delay %v = %v", tt.want, r.Err)
			}
			h.advance(tt.want)
			h.must(NewAcquire("/l", ModeExclusive, false, 0), b)
		})
	}
}

func TestReleaseHasNoLockDelay(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeExclusive, false, 0), a)
	h.must(NewAcquire("/l", ModeExclusive, true, 0), b)
	_, ev := h.apply(NewCloseSession(), a, 0)
	wantEvents(t, ev,
		"session-closed session=1",
		"lock-released /l inst=2 session=1 reason=session-closed",
		"lock-acquired /l inst=2 session=2 seq=/l:exclusive:2:2")
}

func TestIdleDelayedLockIsForgotten(t *testing.T) {
	h := newHarness(t)
	a := h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeShared, false, time.Second), a)
	h.must(NewExpireSession(a), 0)
	if len(h.tree.Locks()) != 1 {
		t.Fatalf("Locks() = %+v; want the delayed lock", h.tree.Locks())
	}
	if _, ok := h.tree.NextDeadline(); ok {
		t.Fatalf("NextDeadline set with no waiters")
	}
	h.advance(time.Second)
	h.must(NewTick(), 0)
	if len(h.tree.Locks()) != 0 || len(h.tree.delayed.items) != 0 {
		t.Fatalf("Locks() = %+v after the delay; want none", h.tree.Locks())
	}
}

// Chubby §2.4: a sequencer is checked against the lock's current state.
func TestSequencerGoesStale(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	seq := h.must(NewAcquire("/l", ModeExclusive, false, 0), a).Sequencer
	if !h.tree.CheckSequencer(seq) {
		t.Fatalf("fresh sequencer %v not current", seq)
	}
	for _, bad := range []Sequencer{
		{Path: "/l", Mode: ModeShared, LockGen: seq.LockGen, Instance: seq.Instance},
		{Path: "/l", Mode: ModeExclusive, LockGen: seq.LockGen + 1, Instance: seq.Instance},
		{Path: "/l", Mode: ModeExclusive, LockGen: seq.LockGen, Instance: seq.Instance + 1},
		{Path: "/m", Mode: ModeExclusive, LockGen: seq.LockGen, Instance: seq.Instance},
		{Path: "l", Mode: ModeExclusive, LockGen: seq.LockGen, Instance: seq.Instance},
	} {
		if h.tree.CheckSequencer(bad) {
			t.Errorf("CheckSequencer(%v) = true; want false", bad)
		}
	}
	h.must(NewRelease("/l", 0), a)
	if h.tree.CheckSequencer(seq) {
		t.Fatalf("sequencer current after release")
	}
	seq2 := h.must(NewAcquire("/l", ModeExclusive, false, 0), b).Sequencer
	if seq2.LockGen != seq.LockGen+1 || h.tree.CheckSequencer(seq) || !h.tree.CheckSequencer(seq2) {
		t.Fatalf("after re-grant: old %v, new %v", seq, seq2)
	}
	h.must(NewDelete("/l", false, 0), 0)
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeExclusive, false, 0), b)
	if h.tree.CheckSequencer(seq2) {
		t.Fatalf("sequencer of a deleted instance is current")
	}
}

func TestExpiryDropsWaitsAndGrantsOthers(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.open(), h.open(), h.open()
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeShared, false, 0), a)
	h.must(NewAcquire("/l", ModeExclusive, true, 0), b)
	h.must(NewAcquire("/l", ModeShared, true, 0), c)
	_, ev := h.apply(NewExpireSession(b), 0, 0)
	wantEvents(t, ev,
		"session-expired session=2",
		"wait-canceled /l inst=2 session=2 reason=session-expired",
		"lock-acquired /l inst=2 session=3 seq=/l:shared:1:2")
}

// LockCounts counts locks with holders and queued acquires.
func TestLockCounts(t *testing.T) {
	h := newHarness(t)
	s1, s2 := h.open(), h.open()
	for _, p := range []string{"/a", "/b", "/c"} {
		h.must(NewCreate(p, nil, 0), s1)
	}
	if held, waiting := h.tree.LockCounts(); held != 0 || waiting != 0 {
		t.Fatalf("LockCounts of no locks = %d, %d", held, waiting)
	}
	h.must(NewAcquire("/a", ModeExclusive, false, 0), s1)
	h.must(NewAcquire("/b", ModeShared, false, 0), s1)
	h.must(NewAcquire("/b", ModeShared, false, 0), s2)
	if r := h.must(NewAcquire("/a", ModeExclusive, true, 0), s2); !r.Queued {
		t.Fatalf("second acquire of /a not queued: %+v", r)
	}
	if held, waiting := h.tree.LockCounts(); held != 2 || waiting != 1 {
		t.Fatalf("LockCounts = %d held, %d waiting; want 2, 1", held, waiting)
	}
}
