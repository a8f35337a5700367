package session

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestModelLeasesAndQueues drives a Manager with random operations on a fake
// clock, in one goroutine, against a simple model: each session's lease end
// and queue. It checks that Tick reports exactly the sessions whose lease
// has ended, each once, and that KeepAlive returns the model's items.
func TestModelLeasesAndQueues(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const queueLen, batch = 4, 3
		clock := newFakeClock()
		cfg := DefaultConfig()
		cfg.Clock, cfg.Shards, cfg.QueueLen, cfg.MaxBatch = clock, 2, queueLen, batch
		m, err := New[string](cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		canceled, cancel := context.WithCancel(context.Background())
		cancel()

		type modelSession struct {
			lease   time.Duration
			expiry  time.Time
			expired bool // reported, or due to be reported
			items   []Item[string]
			next    uint64
		}
		model := map[uint64]*modelSession{}
		ids := rapid.Uint64Range(1, 6)
		leases := rapid.SampledFrom([]time.Duration{0, time.Second, 5 * time.Second, 30 * time.Second})
		live := func(s *modelSession) bool { return !s.expired && clock.Now().Before(s.expiry) }
		push := func(s *modelSession, it Item[string]) {
			if s.next == 0 {
				s.next = 1
			}
			it.Seq = s.next
			s.next++
			if len(s.items) >= queueLen {
				it = Item[string]{Seq: it.Seq, Kind: KindLost}
				s.items = nil
			}
			s.items = append(s.items, it)
		}
		leaseOf := func(d time.Duration) time.Duration {
			if d == 0 {
				return cfg.Lease
			}
			return d
		}

		t.Repeat(map[string]func(*rapid.T){
			"open": func(t *rapid.T) {
				id, l := ids.Draw(t, "id"), leases.Draw(t, "lease")
				err := m.Open(id, l)
				if _, ok := model[id]; ok {
					if err == nil {
						t.Fatalf("Open(%d) of a tracked session succeeded", id)
					}
					return
				}
				if err != nil {
					t.Fatalf("Open(%d) = %v", id, err)
				}
				model[id] = &modelSession{lease: leaseOf(l), expiry: clock.Now().Add(leaseOf(l))}
			},
			"advance": func(t *rapid.T) {
				clock.Advance(time.Duration(rapid.Int64Range(0, int64(15*time.Second)).Draw(t, "d")))
			},
			"tick": func(t *rapid.T) {
				got := m.Tick()
				var want []uint64
				for id, s := range model {
					if !s.expired && !clock.Now().Before(s.expiry) {
						s.expired = true
						want = append(want, id)
					}
				}
				slices.Sort(want)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("Tick() = %v; want %v", got, want)
				}
			},
			"keepalive": func(t *rapid.T) {
				// With a canceled context: renews on arrival and returns
				// at once, with the items if any are queued.
				id := ids.Draw(t, "id")
				s, ok := model[id]
				var acked uint64
				if ok && s.next > 1 {
					acked = rapid.Uint64Range(0, s.next-1).Draw(t, "acked")
				}
				r, err := m.KeepAlive(canceled, id, acked)
				switch {
				case !ok:
					if err != ErrUnknown {
						t.Fatalf("KeepAlive(unknown) = %v", err)
					}
					return
				case !live(s):
					if err != ErrExpired {
						t.Fatalf("KeepAlive(expired) = %v", err)
					}
					return
				}
				for len(s.items) > 0 && s.items[0].Seq <= acked {
					s.items = s.items[1:]
				}
				s.expiry = clock.Now().Add(s.lease)
				want := s.items[:min(batch, len(s.items))]
				if len(want) == 0 {
					if err != context.Canceled {
						t.Fatalf("KeepAlive with nothing queued = %v; want context.Canceled", err)
					}
					return
				}
				if err != nil || !reflect.DeepEqual(r.Items, want) || r.TTL != s.lease {
					t.Fatalf("KeepAlive = %+v, %v; want items %+v, TTL %v", r, err, want, s.lease)
				}
			},
			"deliver": func(t *rapid.T) {
				id := ids.Draw(t, "id")
				n := rapid.IntRange(1, 3).Draw(t, "n")
				evs := make([]string, n)
				for i := range evs {
					evs[i] = rapid.StringMatching(`[a-z]{1,3}`).Draw(t, "ev")
				}
				got := m.Deliver(id, evs...)
				s, ok := model[id]
				want := ok && !s.expired
				if got != want {
					t.Fatalf("Deliver(%d) = %v; want %v", id, got, want)
				}
				if want {
					for _, ev := range evs {
						push(s, Item[string]{Kind: KindEvent, Event: ev})
					}
				}
			},
			"remove": func(t *rapid.T) {
				id := ids.Draw(t, "id")
				_, ok := model[id]
				if got := m.Remove(id); got != ok {
					t.Fatalf("Remove(%d) = %v; want %v", id, got, ok)
				}
				delete(model, id)
			},
			"failover": func(t *rapid.T) {
				picked := rapid.SliceOfNDistinct(ids, 0, 3, func(id uint64) uint64 { return id }).Draw(t, "ids")
				var ls []Lease
				for _, id := range picked {
					l := leases.Draw(t, "lease")
					ls = append(ls, Lease{ID: id, TTL: l})
					s, ok := model[id]
					if !ok {
						s = &modelSession{}
						model[id] = s
					}
					s.lease = leaseOf(l)
					s.expiry = clock.Now().Add(s.lease)
					s.expired = false
					push(s, Item[string]{Kind: KindFailover})
				}
				m.Failover(ls)
			},
			"": func(t *rapid.T) {
				if m.Len() != len(model) {
					t.Fatalf("Len() = %d; want %d (%v)", m.Len(), len(model), slices.Sorted(maps.Keys(model)))
				}
			},
		})
	})
}
