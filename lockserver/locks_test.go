package lockserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// TestFIFOHandoff queues three waiters behind a holder and checks that the
// lock passes to them in the order they queued, each grant with a higher
// lock generation, and that a released grant's sequencer goes stale.
func TestFIFOHandoff(t *testing.T) {
	c := testCell(t)
	holder := newClient(t, c)
	holder.open(5 * time.Second)
	holder.must(&wire.Put{Path: "/L"})
	first := holder.must(&wire.Acquire{Path: "/L", Mode: wire.Exclusive}).(*wire.AcquireReply).Sequencer

	var waiters []*client
	var calls []<-chan callResult
	for i := range 3 {
		w := newClient(t, c)
		w.open(5 * time.Second)
		waiters = append(waiters, w)
		calls = append(calls, async(w, &wire.Acquire{Path: "/L", Mode: wire.Exclusive, Wait: true}))
		waitFor(t, 10*time.Second, fmt.Sprintf("waiter %d to queue", i), func() bool {
			return lockInfo(t, holder, "/L").Waiters == uint32(i+1)
		})
	}
	prev := first
	releaser := holder
	for i, ch := range calls {
		for j := i; j < len(calls); j++ {
			if !pending(calls[j]) {
				t.Fatalf("waiter %d was answered while %d still holds the lock", j, i)
			}
		}
		releaser.must(&wire.Release{Path: "/L", LockGen: prev.LockGen})
		if releaser.must(&wire.CheckSequencer{Sequencer: prev}).(*wire.CheckReply).Valid {
			t.Fatalf("sequencer %v still valid after its release", prev)
		}
		r := recv(t, ch, fmt.Sprintf("waiter %d", i))
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		seq := r.m.(*wire.AcquireReply).Sequencer
		if seq.LockGen <= prev.LockGen {
			t.Fatalf("waiter %d granted lock gen %d after %d", i, seq.LockGen, prev.LockGen)
		}
		li := lockInfo(t, holder, "/L")
		if len(li.Holders) != 1 || li.Holders[0] != waiters[i].sid {
			t.Fatalf("after handoff %d holders = %v; want [%d]", i, li.Holders, waiters[i].sid)
		}
		prev, releaser = seq, waiters[i]
	}
}

// TestSharedExclusive checks reader/writer semantics: readers share, a
// writer waits for them all, and a reader arriving behind a queued writer
// does not overtake it.
func TestSharedExclusive(t *testing.T) {
	c := testCell(t)
	r1, r2, w, r3 := newClient(t, c), newClient(t, c), newClient(t, c), newClient(t, c)
	for _, cl := range []*client{r1, r2, w, r3} {
		cl.open(5 * time.Second)
	}
	r1.must(&wire.Put{Path: "/rw"})
	s1 := r1.must(&wire.Acquire{Path: "/rw", Mode: wire.Shared}).(*wire.AcquireReply).Sequencer
	s2 := r2.must(&wire.Acquire{Path: "/rw", Mode: wire.Shared}).(*wire.AcquireReply).Sequencer
	if s1.LockGen != s2.LockGen || s1.Mode != wire.Shared {
		t.Fatalf("shared grants %v and %v; want one generation", s1, s2)
	}
	if _, err := w.do(&wire.Acquire{Path: "/rw", Mode: wire.Exclusive}); codeOf(err) != wire.Locked {
		t.Fatalf("exclusive try while shared = %v; want Locked", err)
	}
	wc := async(w, &wire.Acquire{Path: "/rw", Mode: wire.Exclusive, Wait: true})
	waitFor(t, 10*time.Second, "the writer to queue", func() bool { return lockInfo(t, r1, "/rw").Waiters == 1 })
	if _, err := r3.do(&wire.Acquire{Path: "/rw", Mode: wire.Shared}); codeOf(err) != wire.Locked {
		t.Fatalf("shared try behind a queued writer = %v; want Locked", err)
	}
	r1.must(&wire.Release{Path: "/rw", LockGen: s1.LockGen})
	if !pending(wc) {
		t.Fatal("writer granted while a reader still holds the lock")
	}
	r2.must(&wire.Release{Path: "/rw", LockGen: s2.LockGen})
	r := recv(t, wc, "writer")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if seq := r.m.(*wire.AcquireReply).Sequencer; seq.Mode != wire.Exclusive || seq.LockGen != s1.LockGen+1 {
		t.Fatalf("writer's sequencer = %v", seq)
	}
}

// TestExpiryLockDelay lets a session stop its KeepAlives: the leader expires
// it, its ephemeral node goes, its lock is freed but kept from the waiter
// for the lock-delay (in command time, driven by a fake clock), and then
// granted to the waiter by a tick command.
func TestExpiryLockDelay(t *testing.T) {
	clk := newFakeClock()
	c := testCell(t, func(cfg *Config) { cfg.Clock = clk })
	d := expireInDelay(t, c, clk.Advance)
	other := d.other
	waitFor(t, 10*time.Second, "the ephemeral node of the expired session to go", func() bool {
		_, err := other.do(&wire.StatPath{Path: "/svc/dead"})
		return codeOf(err) == wire.NotFound
	})
	if _, err := other.do(&wire.Put{Header: wire.Header{Session: d.dead, Request: 100}, Path: "/x"}); codeOf(err) != wire.SessionExpired {
		t.Fatalf("write by the expired session = %v; want SessionExpired", err)
	}
	if other.must(&wire.CheckSequencer{Sequencer: d.old}).(*wire.CheckReply).Valid {
		t.Fatal("the expired holder's sequencer is still valid")
	}
	if _, err := other.do(&wire.Acquire{Path: "/svc", Mode: wire.Exclusive}); codeOf(err) != wire.Locked {
		t.Fatalf("try during lock-delay = %v; want Locked", err)
	}
	time.Sleep(100 * time.Millisecond) // real time passes; command time does not
	if !pending(d.wc) {
		t.Fatal("waiter granted during the lock-delay")
	}
	clk.Advance(2 * time.Second) // past the lock-delay: the leader proposes a tick
	d.granted(t)
}

// inDelay is a lock, /svc, whose holder's session (dead) expired: it is
// in its lock-delay (expiryDelay, from the expiry) with one waiter, whose
// blocked Acquire answers on wc.
type inDelay struct {
	other *client // a live session, for checks
	dead  uint64  // the expired session
	old   wire.Sequencer
	wc    <-chan callResult
}

// expiryDelay is the lock-delay of expireInDelay's lock.
const expiryDelay = 1500 * time.Millisecond

// expireInDelay builds an inDelay on cell c, whose replicas' clocks advance
// moves (fake clocks: the expiry needs 2 s of their time).
func expireInDelay(t *testing.T, c *Cell, advance func(time.Duration)) inDelay {
	t.Helper()
	dead, waiter, other := newClient(t, c), newClient(t, c), newClient(t, c)
	dead.open(time.Second)
	waiter.open(30 * time.Second)
	other.open(30 * time.Second)
	dead.must(&wire.Put{Path: "/svc", Content: nil})
	dead.must(&wire.Put{Path: "/svc/dead", Ephemeral: true})
	old := dead.must(&wire.Acquire{Path: "/svc", Mode: wire.Exclusive, LockDelay: expiryDelay}).(*wire.AcquireReply).Sequencer
	wc := async(waiter, &wire.Acquire{Path: "/svc", Mode: wire.Exclusive, Wait: true})
	waitFor(t, 10*time.Second, "the waiter to queue", func() bool { return lockInfo(t, other, "/svc").Waiters == 1 })

	advance(2 * time.Second) // past the dead session's lease, not the others'
	waitFor(t, 10*time.Second, "the expired holder's lock to be freed", func() bool {
		return len(lockInfo(t, other, "/svc").Holders) == 0
	})
	d := inDelay{other: other, dead: dead.sid, old: old, wc: wc}
	d.delayed(t, "after the expiry")
	return d
}

// delayed fails the test unless the lock is free, in lock-delay, with its
// waiter queued.
func (d inDelay) delayed(t *testing.T, when string) {
	t.Helper()
	if li := lockInfo(t, d.other, "/svc"); len(li.Holders) != 0 || li.DelayUntil == 0 || li.Waiters != 1 {
		t.Fatalf("lock %s = %+v; want free, in lock-delay, one waiter", when, li)
	}
}

// granted waits for the waiter's Acquire and checks its grant.
func (d inDelay) granted(t *testing.T) {
	t.Helper()
	r := recv(t, d.wc, "the waiter")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if seq := r.m.(*wire.AcquireReply).Sequencer; seq.LockGen != d.old.LockGen+1 {
		t.Fatalf("waiter's lock gen = %d; want %d", seq.LockGen, d.old.LockGen+1)
	}
}

// TestCancelWait checks both ways to withdraw a waiting Acquire: a Cancel
// call naming its request id, and the client closing the call's stream.
func TestCancelWait(t *testing.T) {
	c := testCell(t)
	h, w := newClient(t, c), newClient(t, c)
	h.open(5 * time.Second)
	w.open(5 * time.Second)
	h.must(&wire.Put{Path: "/c"})
	hs := h.must(&wire.Acquire{Path: "/c", Mode: wire.Exclusive}).(*wire.AcquireReply).Sequencer

	// Cancel by request id: the blocked call is answered Canceled.
	req := &wire.Acquire{Header: wire.Header{Session: w.sid, Request: 500}, Path: "/c", Mode: wire.Exclusive, Wait: true}
	wc := async(w, req)
	waitFor(t, 10*time.Second, "the waiter to queue", func() bool {
		if !pending(wc) {
			r := <-wc
			t.Fatalf("the waiting Acquire was answered %v, %v", r.m, r.err)
		}
		return lockInfo(t, h, "/c").Waiters == 1
	})
	canceler := newClient(t, c)
	canceler.sid = w.sid
	canceler.must(&wire.Cancel{Target: 500})
	if r := recv(t, wc, "the canceled acquire"); codeOf(r.err) != wire.Canceled {
		t.Fatalf("canceled acquire = %v, %v; want Canceled", r.m, r.err)
	}
	// A retry of the canceled request gets the same outcome.
	if _, err := w.retry(req); codeOf(err) != wire.Canceled {
		t.Fatalf("retried canceled acquire = %v; want Canceled", err)
	}
	// Canceling what is not waiting succeeds and does nothing.
	canceler.must(&wire.Cancel{Target: 500})
	canceler.must(&wire.Cancel{Target: 12345})

	// A raw client that sends a waiting Acquire and reads nothing: the
	// wait goes on, and the grant arrives on its call id.
	leader := c.Endpoints()[leaderIndex(t, c)]
	rc := dialRaw(t, leader)
	id, err := rc.send(&wire.Acquire{Header: wire.Header{Session: w.sid, Request: 501}, Path: "/c", Mode: wire.Exclusive, Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the waiter to queue", func() bool {
		return lockInfo(t, h, "/c").Waiters == 1
	})
	time.Sleep(50 * time.Millisecond)
	if li := lockInfo(t, h, "/c"); li.Waiters != 1 {
		t.Fatalf("a waiting Acquire was withdrawn: %+v", li)
	}
	h.must(&wire.Release{Path: "/c", LockGen: hs.LockGen})
	m, err := rc.recv(id, 10*time.Second)
	if err != nil {
		t.Fatalf("no grant for the waiting Acquire: %v", err)
	}
	if ar, ok := m.(*wire.AcquireReply); !ok || ar.Sequencer.LockGen != hs.LockGen+1 {
		t.Fatalf("the waiting Acquire answered %+v; want the next grant", m)
	}
}
