package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestConcurrentUse runs clients' KeepAlive loops, an apply goroutine that
// routes and delivers events, watch churn and a ticking goroutine at once
// (run it with -race). Each client checks that it sees its items in order,
// with no duplicates, and its events in the order they were delivered.
func TestConcurrentUse(t *testing.T) {
	const (
		sessions = 32
		events   = 3000
		ticks    = 400
	)
	m, clock := newTestManager(t, func(c *Config) { c.QueueLen = 16; c.MaxBatch = 8; c.Shards = 8 })
	for id := uint64(1); id <= sessions; id++ {
		if err := m.Open(id, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Watch(id, fmt.Sprintf("/d%d", id%4), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, sessions+4)

	for id := uint64(1); id <= sessions; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acked, lastEvent uint64
			for {
				r, err := m.KeepAlive(ctx, id, acked)
				if errors.Is(err, ErrClosed) || errors.Is(err, ErrExpired) || errors.Is(err, context.Canceled) {
					return
				}
				if err != nil {
					errs <- fmt.Errorf("session %d: KeepAlive: %w", id, err)
					return
				}
				for _, it := range r.Items {
					if it.Seq <= acked {
						continue // resent: already seen
					}
					if it.Seq != acked+1 && r.Items[0].Kind != KindLost && it.Kind != KindLost {
						errs <- fmt.Errorf("session %d: seq %d after %d without a lost item", id, it.Seq, acked)
						return
					}
					acked = it.Seq
					switch it.Kind {
					case KindLost:
						lastEvent = 0
					case KindEvent:
						n, _ := strconv.ParseUint(it.Event, 10, 64)
						if n <= lastEvent {
							errs <- fmt.Errorf("session %d: event %d after %d", id, n, lastEvent)
							return
						}
						lastEvent = n
					}
				}
			}
		}()
	}

	// The apply goroutine: route each event and deliver it, never blocking.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= events; i++ {
			path := fmt.Sprintf("/d%d/n%d", i%4, i%7)
			for _, tg := range m.Route(path) {
				m.Deliver(tg.Session, strconv.FormatUint(i, 10))
			}
		}
	}()

	// Watch churn on the same index.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			id := uint64(i%sessions + 1)
			w, err := m.Watch(id, "/churn/"+strconv.Itoa(i%5), i%2 == 0)
			if err != nil {
				continue // the session may have expired
			}
			m.Route("/churn/1/x")
			if err := m.Unwatch(id, w); err != nil && !errors.Is(err, ErrUnknown) {
				errs <- err
				return
			}
		}
	}()

	// The ticking goroutine, with the clock moving 100 ms per tick.
	wg.Add(1)
	go func() {
		defer wg.Done()
		reported := map[uint64]bool{}
		for i := 0; i < ticks; i++ {
			clock.Advance(100 * time.Millisecond)
			for _, id := range m.Tick() {
				if reported[id] {
					errs <- fmt.Errorf("session %d reported expired twice", id)
					return
				}
				reported[id] = true
			}
		}
		m.Close()
	}()

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
