package client_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/latchd/latch/client"
)

// Benchmarks of single calls through the client on a local 3-replica cell
// (loopback TCP, LevelDB with sync): what a service sees per call.
//
//	go test -run X -bench . -benchtime 2000x ./client

func BenchmarkGet(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	if _, err := c.Put(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Get(ctx, "/bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetStale(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	if _, err := c.Put(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Get(ctx, "/bench", client.Stale()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	data := make([]byte, 100)
	for b.Loop() {
		if _, err := c.Put(ctx, "/bench", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutParallel: many goroutines of one client writing at once (the
// cell batches their commands into Paxos instances).
func BenchmarkPutParallel(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	data := make([]byte, 100)
	b.SetParallelism(16)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		path := fmt.Sprintf("/bench-%d", n.Add(1))
		for pb.Next() {
			if _, err := c.Put(ctx, path, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkLockUnlock(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	for b.Loop() {
		l, err := c.Lock(ctx, "/ls/bench")
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
