package client

import (
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Lock modes are converted to and from the wire by value.
func TestLockModesMatchTheWire(t *testing.T) {
	if Exclusive != LockMode(wire.Exclusive) || Shared != LockMode(wire.Shared) {
		t.Fatalf("client modes %d, %d; wire %d, %d", Exclusive, Shared, wire.Exclusive, wire.Shared)
	}
	if Exclusive.String() != "ex" || Shared.String() != "sh" {
		t.Fatalf("mode names %q, %q", Exclusive, Shared)
	}
}

// The lease state machine of Chubby §2.8, step by step on a fake timeline.
func TestLeaseTransitions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const ttl, grace = 12 * time.Second, 45 * time.Second

	type step struct {
		name        string
		renew       bool          // renew(sent=at(when), held, ttl) instead of advance(at(when))
		when        time.Duration // offset from t0
		held        time.Duration // renew: how long the cell held the call
		wantState   SessionState
		wantChanged bool
		wantDue     time.Duration // deadline offset; -1 for none
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"safe while the lease holds", []step{
			{name: "before the end", when: 11 * time.Second, wantState: StateSafe, wantDue: ttl},
		}},
		{"jeopardy at the lease end, expired after the grace", []step{
			{name: "lease end", when: ttl, wantState: StateJeopardy, wantChanged: true, wantDue: ttl + grace},
			{name: "in grace", when: ttl + grace - time.Nanosecond, wantState: StateJeopardy, wantDue: ttl + grace},
			{name: "grace over", when: ttl + grace, wantState: StateExpired, wantChanged: true, wantDue: -1},
			{name: "final", renew: true, when: ttl + grace, wantState: StateExpired, wantDue: -1},
		}},
		{"a KeepAlive in jeopardy makes it safe", []step{
			{name: "lease end", when: ttl, wantState: StateJeopardy, wantChanged: true, wantDue: ttl + grace},
			{name: "renewed", renew: true, when: 20 * time.Second, wantState: StateSafe, wantChanged: true, wantDue: 20*time.Second + ttl},
			{name: "still safe", when: 31 * time.Second, wantState: StateSafe, wantDue: 32 * time.Second},
		}},
		{"safe to expired in one late advance", []step{
			{name: "late", when: 2 * time.Minute, wantState: StateExpired, wantChanged: true, wantDue: -1},
		}},
		{"a long poll counts from its send plus the hold", []step{
			// Sent at 0, held by the cell 9 s (lease 12 s − margin 3 s):
			// the lease counts from 9 s. The next poll, sent when the
			// reply arrives at 9.1 s, is held 9 s too: its reply arrives
			// by 18.2 s, before the lease end at 21 s.
			{name: "held reply", renew: true, when: 0, held: 9 * time.Second, wantState: StateSafe, wantDue: 9*time.Second + ttl},
			{name: "next reply", renew: true, when: 9100 * time.Millisecond, held: 9 * time.Second, wantState: StateSafe, wantDue: 18100*time.Millisecond + ttl},
		}},
		{"a reply without a hold counts from the send", []step{
			{name: "reply", renew: true, when: 2 * time.Second, wantState: StateSafe, wantDue: 2*time.Second + ttl},
			{name: "a negative hold counts as none", renew: true, when: 3 * time.Second, held: -time.Hour, wantState: StateSafe, wantDue: 3*time.Second + ttl},
		}},
		{"the lease end never moves back", []step{
			{name: "renew", renew: true, when: 5 * time.Second, wantState: StateSafe, wantDue: 17 * time.Second},
			{name: "an older reply", renew: true, when: time.Second, wantState: StateSafe, wantDue: 17 * time.Second},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLease(t0, ttl, grace)
			for _, s := range tc.steps {
				var state SessionState
				var changed bool
				if s.renew {
					state, changed = l.renew(at(s.when), s.held, ttl)
				} else {
					state, changed = l.advance(at(s.when))
				}
				if state != s.wantState || changed != s.wantChanged {
					t.Fatalf("%s: got (%v, %v); want (%v, %v)", s.name, state, changed, s.wantState, s.wantChanged)
				}
				due := l.deadline()
				if s.wantDue < 0 {
					if !due.IsZero() {
						t.Fatalf("%s: deadline %v; want none", s.name, due)
					}
				} else if !due.Equal(at(s.wantDue)) {
					t.Fatalf("%s: deadline %v; want t0+%v", s.name, due.Sub(t0), s.wantDue)
				}
			}
		})
	}
}

func TestBackoffGrowsToItsCapWithJitter(t *testing.T) {
	lo, hi := 10*time.Millisecond, 300*time.Millisecond
	cases := []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0, 5 * time.Millisecond},
		{0, 0.999999, 10 * time.Millisecond},
		{1, 0, 10 * time.Millisecond},
		{3, 0, 40 * time.Millisecond},
		{5, 0, 150 * time.Millisecond}, // 320 ms capped at 300, halved
		{1000, 0.5, 225 * time.Millisecond},
	}
	for _, tc := range cases {
		got := backoff(lo, hi, tc.attempt, tc.r)
		if got < tc.want-time.Microsecond || got > tc.want+time.Microsecond {
			t.Errorf("backoff(%v, %v, %d, %v) = %v; want %v", lo, hi, tc.attempt, tc.r, got, tc.want)
		}
	}
}

func TestWatcherCoversTheSamePathsAsTheCell(t *testing.T) {
	cases := []struct {
		path      string
		recursive bool
		event     string
		want      bool
	}{
		{"/a", false, "/a", true},
		{"/a", false, "/a/b", false},
		{"/a", true, "/a/b/c", true},
		{"/a", true, "/ab", false},
		{"/", true, "/x", true},
		{"/", false, "/x", false},
		{"/a/b", true, "/a", false},
	}
	for _, tc := range cases {
		w := &watcher{path: tc.path, recursive: tc.recursive}
		if got := w.covers(tc.event); got != tc.want {
			t.Errorf("watch(%q, recursive=%v).covers(%q) = %v; want %v", tc.path, tc.recursive, tc.event, got, tc.want)
		}
	}
}

func TestWatcherQueueOverflowBecomesOneMissed(t *testing.T) {
	w := &watcher{limit: 3, wake: make(chan struct{}, 1)}
	for i := range 3 {
		w.push(Event{Type: EventContentChanged, Index: uint64(i + 1)})
	}
	w.push(Event{Type: EventContentChanged, Index: 4}) // overflow
	w.push(Event{Type: EventContentChanged, Index: 5})
	var got []Event
	for {
		ev, _, ok := w.pop()
		if !ok {
			break
		}
		got = append(got, ev)
	}
	if len(got) != 2 || got[0].Type != EventMissed || got[1].Index != 5 {
		t.Fatalf("queue after overflow = %v; want [missed, event 5]", got)
	}
}

// A watch's last event (a refused registration after a fail-over) comes
// after everything queued, even past an overflow, and is marked last.
func TestWatcherLastEventAfterTheQueue(t *testing.T) {
	w := &watcher{limit: 2, wake: make(chan struct{}, 1)}
	for i := range 3 {
		w.push(Event{Type: EventContentChanged, Index: uint64(i + 1)}) // the third overflows
	}
	w.end(Event{Type: EventFailover, Err: ErrPermission})
	var got []Event
	var lasts []bool
	for {
		ev, last, ok := w.pop()
		if !ok {
			break
		}
		got, lasts = append(got, ev), append(lasts, last)
	}
	if len(got) != 2 || got[0].Type != EventMissed || got[1].Err != ErrPermission || lasts[0] || !lasts[1] {
		t.Fatalf("events %v (last %v); want [missed, failover with the error (last)]", got, lasts)
	}
}
