package session

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// openSessions returns a Manager with the default config on a fake clock,
// with sessions 1..n open.
func openSessions(b *testing.B, n uint64) (*Manager[string], *fakeClock, Config) {
	b.Helper()
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Clock = clock
	m, err := New[string](cfg)
	if err != nil {
		b.Fatal(err)
	}
	for id := uint64(1); id <= n; id++ {
		if err := m.Open(id, 0); err != nil {
			b.Fatal(err)
		}
	}
	return m, clock, cfg
}

// BenchmarkKeepAlive10k measures the CPU cost of one KeepAlive long poll
// among 10,000 sessions that do nothing else: each session's client
// goroutine sends its next KeepAlive as soon as the last returns; each
// benchmark iteration is one round in which every session's held KeepAlive
// reaches its deadline (one Tick) and is answered. ns/keepalive is the
// whole cost: arrival, heap update, Tick, wake, renewal, reply, and the
// parking and waking of the caller's goroutine; cpu-ns/keepalive is the CPU
// time of the whole process per KeepAlive (both cores; it includes the
// benchmark's own polling for the end of a round).
func BenchmarkKeepAlive10k(b *testing.B) {
	const n = 10_000
	m, clock, cfg := openSessions(b, n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for id := uint64(1); id <= n; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := m.KeepAlive(ctx, id, 0); err != nil {
					return
				}
			}
		}()
	}
	waitAllHeld := func() {
		for m.Held() < n {
			runtime.Gosched()
		}
	}
	hold := cfg.Lease - cfg.Margin
	waitAllHeld()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		clock.Advance(hold)
		if exp := m.Tick(); len(exp) != 0 {
			b.Fatalf("%d sessions expired", len(exp))
		}
		waitAllHeld()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/keepalive")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/keepalive")
	}
	cancel()
	m.Close()
	wg.Wait()
}

// BenchmarkIdleSessionMemory reports the heap bytes one idle session costs
// (table entry, heap slot, map overhead), with no KeepAlive held.
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 10_000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, _, _ := openSessions(b, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
		runtime.KeepAlive(m)
		m.Close()
	}
}

// BenchmarkDeliver measures queuing one event for a session with no
// KeepAlive held (the apply goroutine's cost per routed event).
func BenchmarkDeliver(b *testing.B) {
	m, _ := newTestManager(b, func(c *Config) { c.Shards = 64 })
	const n = 1024
	for id := uint64(1); id <= n; id++ {
		m.Open(id, 0)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := uint64(i%n + 1)
		m.Deliver(id, "ev")
		if i%n == n-1 { // keep queues from overflowing: acknowledge everything
			b.StopTimer()
			for id := uint64(1); id <= n; id++ {
				m.KeepAlive(canceled, id, 1<<62)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkRoute10k measures routing one event path with 10,000 sessions,
// each watching its own node exactly and one of 100 subtrees recursively.
func BenchmarkRoute10k(b *testing.B) {
	m, _ := newTestManager(b, nil)
	const n = 10_000
	for id := uint64(1); id <= n; id++ {
		m.Open(id, time.Hour)
		if _, err := m.Watch(id, fmt.Sprintf("/svc/s%d/node%d", id%100, id), false); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Watch(id, fmt.Sprintf("/cfg/c%d", id%100), true); err != nil {
			b.Fatal(err)
		}
	}
	paths := []string{"/svc/s7/node107", "/cfg/c7/x/y", "/other/path"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Route(paths[i%len(paths)])
	}
}
