package client_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

// Benchmarks of single calls through the client on a local 3-replica cell
// (loopback TCP, LevelDB with sync): what a service sees per call.
//
//	go test -run X -bench . -benchtime 2000x ./client

// BenchmarkGet reads one node: linearizable (at the leader, after its read
// barrier) and stale (any replica, from its own state).
func BenchmarkGet(b *testing.B) {
	cell := startCell(b)
	c := dial(b, cell)
	ctx := bg(b, 0)
	if _, err := c.Put(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		opts []client.Option
	}{{"linearizable", nil}, {"stale", []client.Option{client.Stale()}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Get(ctx, "/bench", bc.opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
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

// BenchmarkGetFake is one Get through the client against a fake replica
// that answers at once (wire.Serve on loopback, no cell): the client's own
// cost per call plus one loopback round trip.
func BenchmarkGetFake(b *testing.B) {
	f := startFake(b, "1", func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Get); ok {
			return answer(&wire.GetReply{Content: []byte("value")})
		}
		return fakeAnswer{}
	})
	c, err := client.Dial(bg(b, 5*time.Second), client.DefaultConfig(f.addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := bg(b, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "/bench"); err != nil {
			b.Fatal(err)
		}
	}
}
