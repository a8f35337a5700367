package transport

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkThroughput measures one-way throughput from replica 1 to replica 2
// over loopback: b.N messages of the given size, spread over the given number
// of groups (one sending goroutine per group). Each sender keeps at most
// QueueLen messages outstanding in its group (a window, as a Paxos leader
// does), taking a token before Send and getting it back when replica 2's
// handler sees the message; so no message is dropped, no sender spins, and
// the clock stops when the last message has been handled.
//
//	go test -run '^$' -bench Throughput -benchtime 2s ./replica/transport
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{64, 4096} {
		for _, groups := range []int{1, 4} {
			b.Run(fmt.Sprintf("payload=%d/groups=%d", size, groups), func(b *testing.B) {
				benchThroughput(b, size, groups)
			})
		}
	}
}

func benchThroughput(b *testing.B, size, groups int) {
	var received atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	cfg1 := testConfig(1, nil)
	window := make([]chan struct{}, groups)
	for g := range window {
		window[g] = make(chan struct{}, cfg1.QueueLen)
	}
	cfg2 := testConfig(2, map[uint64]string{1: ""})
	t2, err := New(cfg2, func(_ uint64, g uint32, p []byte) {
		if len(p) == 0 {
			received.Add(1) // warm-up message
			return
		}
		<-window[g]
		if received.Add(1) == target {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer t2.Close()
	cfg1.Peers = map[uint64]string{2: t2.Addr().String()}
	t1, err := New(cfg1, func(uint64, uint32, []byte) {})
	if err != nil {
		b.Fatal(err)
	}
	defer t1.Close()
	// Connect and open every group's stream before the clock starts.
	for g := range uint32(groups) {
		t1.Send(2, g, nil)
	}
	for received.Load() < int64(groups) {
		time.Sleep(time.Millisecond)
	}
	received.Store(0)

	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := range groups {
		n := b.N / groups
		if g == 0 {
			n += b.N % groups
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				window[g] <- struct{}{}
				if err := t1.Send(2, uint32(g), payload); err != nil {
					b.Errorf("Send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("received %d of %d messages", received.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
