package session

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestManager(t testing.TB, edit func(*Config)) (*Manager[string], *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Clock = clock
	cfg.Shards = 4
	if edit != nil {
		edit(&cfg)
	}
	m, err := New[string](cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m, clock
}

// isHeld reports whether session id has a KeepAlive waiting.
func (m *Manager[E]) isHeld(id uint64) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.sessions[id]
	return e != nil && e.waiter != nil
}

// waitHeld waits until session id has a KeepAlive waiting. It yields rather
// than sleeps, and gives up (failing the test) only if the KeepAlive never
// arrives.
func waitHeld(t *testing.T, m *Manager[string], id uint64) {
	t.Helper()
	for i := 0; !m.isHeld(id); i++ {
		if i > 1e7 {
			t.Fatalf("KeepAlive of session %d never arrived", id)
		}
		runtime.Gosched()
	}
}

type kaResult struct {
	r   Reply[string]
	err error
}

// startKeepAlive runs KeepAlive in a goroutine and waits until it is held.
func startKeepAlive(t *testing.T, ctx context.Context, m *Manager[string], id, acked uint64) <-chan kaResult {
	t.Helper()
	ch := make(chan kaResult, 1)
	go func() {
		r, err := m.KeepAlive(ctx, id, acked)
		ch <- kaResult{r, err}
	}()
	waitHeld(t, m, id)
	return ch
}

// pending reports whether a result is ready (without waiting).
func pending(ch <-chan kaResult) bool {
	select {
	case r := <-ch:
		panic(fmt.Sprintf("KeepAlive returned early: %+v", r))
	default:
		return true
	}
}

// expectTick calls Tick and fails unless it reports exactly want.
func expectTick(t *testing.T, m *Manager[string], want ...uint64) {
	t.Helper()
	got := m.Tick()
	if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("Tick() = %v; want %v", got, want)
	}
}

func seqs(items []Item[string]) []uint64 {
	var s []uint64
	for _, it := range items {
		s = append(s, it.Seq)
	}
	return s
}

func TestLeaseExpiresOnceAndStaysExpired(t *testing.T) {
	m, clock := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(1, 0); !errors.Is(err, ErrExists) {
		t.Errorf("Open(1) twice = %v; want ErrExists", err)
	}
	clock.Advance(12*time.Second - 1)
	expectTick(t, m)
	clock.Advance(1)
	expectTick(t, m, 1)
	expectTick(t, m)
	if _, err := m.KeepAlive(context.Background(), 1, 0); !errors.Is(err, ErrExpired) {
		t.Errorf("KeepAlive(expired) = %v; want ErrExpired", err)
	}
	if m.Deliver(1, "x") {
		t.Errorf("Deliver(expired) = true")
	}
	if _, err := m.Watch(1, "/a", false); !errors.Is(err, ErrExpired) {
		t.Errorf("Watch(expired) = %v; want ErrExpired", err)
	}
	if _, ok := m.Expiry(1); ok {
		t.Errorf("Expiry(expired) ok")
	}
	if m.Len() != 2 || !m.Remove(1) || m.Remove(1) || m.Len() != 1 {
		t.Errorf("Remove/Len wrong: Len=%d", m.Len())
	}
	if _, err := m.KeepAlive(context.Background(), 1, 0); !errors.Is(err, ErrUnknown) {
		t.Errorf("KeepAlive(removed) = %v; want ErrUnknown", err)
	}
	clock.Advance(8 * time.Second)
	expectTick(t, m, 2)
}

func TestKeepAliveArrivingAfterLeaseEndFails(t *testing.T) {
	m, clock := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	clock.Advance(12 * time.Second) // no Tick yet
	if _, err := m.KeepAlive(context.Background(), 1, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("late KeepAlive = %v; want ErrExpired", err)
	}
	expectTick(t, m, 1)
}

func TestKeepAliveLongPollRenews(t *testing.T) {
	m, clock := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	clock.Advance(10 * time.Second)
	ch := startKeepAlive(t, context.Background(), m, 1, 0)
	// Renewed on arrival: the original lease end (12 s) passes harmlessly.
	clock.Advance(3 * time.Second)
	expectTick(t, m)
	pending(ch)
	// Held for lease - margin = 9 s from arrival (t = 19 s).
	clock.Advance(6*time.Second - 1)
	m.Tick()
	pending(ch)
	clock.Advance(1)
	m.Tick()
	res := <-ch
	if res.err != nil {
		t.Fatalf("KeepAlive = %v", res.err)
	}
	if res.r.TTL != 12*time.Second || len(res.r.Items) != 0 {
		t.Errorf("reply = %+v; want TTL 12s, no items", res.r)
	}
	if want := start.Add(31 * time.Second); !res.r.Expiry.Equal(want) {
		t.Errorf("Expiry = %v; want %v (renewed at reply)", res.r.Expiry, want)
	}
	if exp, ok := m.Expiry(1); !ok || !exp.Equal(res.r.Expiry) {
		t.Errorf("Expiry(1) = %v, %v", exp, ok)
	}
	// Without another KeepAlive the lease ends 12 s after the reply.
	clock.Advance(12*time.Second - 1)
	expectTick(t, m)
	clock.Advance(1)
	expectTick(t, m, 1)
}

func TestShortLeaseMarginIsHalf(t *testing.T) {
	m, clock := newTestManager(t, nil)
	if err := m.Open(1, 4*time.Second); err != nil { // margin min(3s, 2s) = 2s
		t.Fatal(err)
	}
	ch := startKeepAlive(t, context.Background(), m, 1, 0)
	clock.Advance(2*time.Second - 1)
	m.Tick()
	pending(ch)
	clock.Advance(1)
	m.Tick()
	if res := <-ch; res.err != nil || res.r.TTL != 4*time.Second {
		t.Fatalf("KeepAlive = %+v", res)
	}
}

func TestKeepAliveReturnsEarlyOnEvents(t *testing.T) {
	m, _ := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	ch := startKeepAlive(t, context.Background(), m, 1, 0)
	if !m.Deliver(1, "a", "b") {
		t.Fatal("Deliver = false")
	}
	res := <-ch // no Tick needed
	if res.err != nil {
		t.Fatal(res.err)
	}
	want := []Item[string]{{Seq: 1, Kind: KindEvent, Event: "a"}, {Seq: 2, Kind: KindEvent, Event: "b"}}
	if !reflect.DeepEqual(res.r.Items, want) {
		t.Fatalf("Items = %+v; want %+v", res.r.Items, want)
	}
	// Not acknowledged: sent again at once.
	r, err := m.KeepAlive(context.Background(), 1, 0)
	if err != nil || !reflect.DeepEqual(r.Items, want) {
		t.Fatalf("KeepAlive(ack 0) = %+v, %v; want the same items again", r.Items, err)
	}
	// Partly acknowledged.
	m.Deliver(1, "c")
	r, err = m.KeepAlive(context.Background(), 1, 1)
	if err != nil || !reflect.DeepEqual(seqs(r.Items), []uint64{2, 3}) {
		t.Fatalf("KeepAlive(ack 1) = %v, %v; want seqs [2 3]", seqs(r.Items), err)
	}
	// Fully acknowledged: the long poll holds again.
	ch = startKeepAlive(t, context.Background(), m, 1, 3)
	pending(ch)
	m.Deliver(1, "d")
	if res := <-ch; res.err != nil || !reflect.DeepEqual(seqs(res.r.Items), []uint64{4}) {
		t.Fatalf("KeepAlive(ack 3) = %+v", res)
	}
}

func TestMaxBatch(t *testing.T) {
	m, _ := newTestManager(t, func(c *Config) { c.MaxBatch = 2 })
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	m.Deliver(1, "a", "b", "c")
	var got []uint64
	acked := uint64(0)
	for range 2 {
		r, err := m.KeepAlive(context.Background(), 1, acked)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seqs(r.Items)...)
		acked = r.Items[len(r.Items)-1].Seq
	}
	if !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Errorf("items in batches = %v; want [1 2 3]", got)
	}
}

func TestQueueOverflowBecomesEventsLost(t *testing.T) {
	m, _ := newTestManager(t, func(c *Config) { c.QueueLen = 4; c.MaxBatch = 4 })
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	m.Deliver(1, "a", "b", "c", "d")
	r, err := m.KeepAlive(context.Background(), 1, 0)
	if err != nil || len(r.Items) != 4 {
		t.Fatalf("KeepAlive = %+v, %v", r, err)
	}
	m.Deliver(1, "e") // queue full of unacknowledged items: overflow
	r, err = m.KeepAlive(context.Background(), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	// "e" itself is among the lost: the lost item takes its number.
	want := []Item[string]{{Seq: 5, Kind: KindLost}}
	if !reflect.DeepEqual(r.Items, want) {
		t.Fatalf("after overflow Items = %+v; want %+v", r.Items, want)
	}
	m.Deliver(1, "f")
	r, err = m.KeepAlive(context.Background(), 1, 5)
	if err != nil || !reflect.DeepEqual(r.Items, []Item[string]{{Seq: 6, Kind: KindEvent, Event: "f"}}) {
		t.Fatalf("after the lost item Items = %+v, %v", r.Items, err)
	}
}

func TestFailoverExtendsAndNotifies(t *testing.T) {
	m, clock := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(2, 0); err != nil {
		t.Fatal(err)
	}
	clock.Advance(12 * time.Second)
	expectTick(t, m, 1, 2)
	clock.Advance(time.Second)
	// A new leader lists 2 (expired here), 3 (unknown here) with its own lease.
	m.Failover([]Lease{{ID: 2}, {ID: 3, TTL: 30 * time.Second}})
	now := clock.Now()
	if exp, ok := m.Expiry(2); !ok || !exp.Equal(now.Add(12*time.Second)) {
		t.Errorf("Expiry(2) = %v, %v; want now+12s", exp, ok)
	}
	if exp, ok := m.Expiry(3); !ok || !exp.Equal(now.Add(30*time.Second)) {
		t.Errorf("Expiry(3) = %v, %v; want now+30s", exp, ok)
	}
	r, err := m.KeepAlive(context.Background(), 3, 0)
	if err != nil || !reflect.DeepEqual(r.Items, []Item[string]{{Seq: 1, Kind: KindFailover}}) {
		t.Fatalf("KeepAlive(3) = %+v, %v; want a failover item", r, err)
	}
	r2, err := m.KeepAlive(context.Background(), 2, 0)
	if err != nil || len(r2.Items) != 1 || r2.Items[0].Kind != KindFailover {
		t.Fatalf("KeepAlive(2) = %+v, %v", r2, err)
	}
	// Session 2 now expires once more, 12 s after its last renewal.
	clock.Advance(12 * time.Second)
	expectTick(t, m, 2)
	if m.Len() != 3 {
		t.Errorf("Len() = %d; want 3", m.Len())
	}
}

func TestFailoverWakesHeldKeepAlive(t *testing.T) {
	m, _ := newTestManager(t, nil)
	if err := m.Open(1, 0); err != nil {
		t.Fatal(err)
	}
	ch := startKeepAlive(t, context.Background(), m, 1, 0)
	m.Failover([]Lease{{ID: 1}})
	if res := <-ch; res.err != nil || len(res.r.Items) != 1 || res.r.Items[0].Kind != KindFailover {
		t.Fatalf("KeepAlive = %+v", res)
	}
}

func TestKeepAliveEndings(t *testing.T) {
	t.Run("superseded", func(t *testing.T) {
		m, _ := newTestManager(t, nil)
		m.Open(1, 0)
		first := make(chan kaResult, 1)
		go func() {
			r, err := m.KeepAlive(context.Background(), 1, 0)
			first <- kaResult{r, err}
		}()
		waitHeld(t, m, 1)
		second := make(chan kaResult, 1)
		go func() {
			r, err := m.KeepAlive(context.Background(), 1, 0)
			second <- kaResult{r, err}
		}()
		if res := <-first; !errors.Is(res.err, ErrSuperseded) {
			t.Fatalf("first KeepAlive = %v; want ErrSuperseded", res.err)
		}
		waitHeld(t, m, 1)
		m.Deliver(1, "x")
		if res := <-second; res.err != nil || len(res.r.Items) != 1 {
			t.Fatalf("second KeepAlive = %+v", res)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		m, clock := newTestManager(t, nil)
		m.Open(1, 0)
		clock.Advance(5 * time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		ch := startKeepAlive(t, ctx, m, 1, 0)
		cancel()
		if res := <-ch; !errors.Is(res.err, context.Canceled) {
			t.Fatalf("KeepAlive = %v; want context.Canceled", res.err)
		}
		if m.isHeld(1) {
			t.Errorf("a canceled KeepAlive is still held")
		}
		// The lease was renewed on arrival (t = 5 s): it ends at 17 s.
		clock.Advance(12*time.Second - 1)
		expectTick(t, m)
		clock.Advance(1)
		expectTick(t, m, 1)
	})
	t.Run("removed", func(t *testing.T) {
		m, _ := newTestManager(t, nil)
		m.Open(1, 0)
		ch := startKeepAlive(t, context.Background(), m, 1, 0)
		m.Remove(1)
		if res := <-ch; !errors.Is(res.err, ErrUnknown) {
			t.Fatalf("KeepAlive = %v; want ErrUnknown", res.err)
		}
	})
	t.Run("woken then removed", func(t *testing.T) {
		// Events wake the KeepAlive, but the session is removed before the
		// KeepAlive gets the lock back: it must not answer with a lease.
		m, _ := newTestManager(t, nil)
		m.Open(1, 0)
		ch := startKeepAlive(t, context.Background(), m, 1, 0)
		sh := m.shard(1)
		sh.mu.Lock()
		e := sh.sessions[1]
		e.queue.push(KindEvent, "x", m.cfg.QueueLen)
		m.wake(e, wakeEvents)
		m.removeLocked(sh, 1)
		sh.mu.Unlock()
		if res := <-ch; !errors.Is(res.err, ErrUnknown) {
			t.Fatalf("KeepAlive = %+v; want ErrUnknown", res)
		}
	})
	t.Run("closed", func(t *testing.T) {
		m, _ := newTestManager(t, nil)
		m.Open(1, 0)
		ch := startKeepAlive(t, context.Background(), m, 1, 0)
		m.Close()
		m.Close()
		if res := <-ch; !errors.Is(res.err, ErrClosed) {
			t.Fatalf("KeepAlive = %v; want ErrClosed", res.err)
		}
		if err := m.Open(2, 0); !errors.Is(err, ErrClosed) {
			t.Errorf("Open after Close = %v", err)
		}
		if _, err := m.KeepAlive(context.Background(), 1, 0); !errors.Is(err, ErrClosed) {
			t.Errorf("KeepAlive after Close = %v", err)
		}
		if m.Deliver(1, "x") || m.Tick() != nil {
			t.Errorf("Deliver or Tick worked after Close")
		}
		m.Run(context.Background(), time.Hour, nil) // returns at once
	})
}

func TestOpenLimits(t *testing.T) {
	m, _ := newTestManager(t, func(c *Config) { c.MaxSessions = 2 })
	if err := m.Open(1, -time.Second); !errors.Is(err, ErrBadLease) {
		t.Errorf("Open(negative lease) = %v", err)
	}
	m.Open(1, 0)
	m.Open(2, 0)
	if err := m.Open(3, 0); !errors.Is(err, ErrLimit) {
		t.Errorf("Open past MaxSessions = %v; want ErrLimit", err)
	}
	m.Remove(1)
	if err := m.Open(3, 0); err != nil {
		t.Errorf("Open after Remove = %v", err)
	}
}

func TestRunReportsExpiry(t *testing.T) {
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Clock = clock
	m, err := New[string](cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Open(7, time.Second)
	clock.Advance(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []uint64, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, time.Millisecond, func(ids []uint64) { got <- ids })
	}()
	if ids := <-got; !reflect.DeepEqual(ids, []uint64{7}) {
		t.Errorf("Run reported %v; want [7]", ids)
	}
	cancel()
	<-done
	m.Close()
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	bad := map[string]func(*Config){
		"lease":        func(c *Config) { c.Lease = 0 },
		"margin zero":  func(c *Config) { c.Margin = 0 },
		"margin big":   func(c *Config) { c.Margin = c.Lease },
		"queue":        func(c *Config) { c.QueueLen = 1 },
		"batch zero":   func(c *Config) { c.MaxBatch = 0 },
		"batch big":    func(c *Config) { c.MaxBatch = c.QueueLen + 1 },
		"sessions":     func(c *Config) { c.MaxSessions = 0 },
		"watches":      func(c *Config) { c.MaxWatches = -1 },
		"shards 3":     func(c *Config) { c.Shards = 3 },
		"shards 0":     func(c *Config) { c.Shards = 0 },
		"shards 8192:": func(c *Config) { c.Shards = 8192 },
	}
	for name, edit := range bad {
		c := DefaultConfig()
		edit(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate() = %v; want ErrConfig", name, err)
		}
		if _, err := New[string](c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New() = %v; want ErrConfig", name, err)
		}
	}
}
