package wire

import (
	"context"
	"testing"
)

// BenchmarkCall measures one call's cost on a loopback connection, client
// and server together: serially (one caller, the latency path) and from
// many callers sharing the connection (the coalescing path).
func BenchmarkCall(b *testing.B) {
	for _, bc := range []struct {
		name     string
		parallel int
	}{{"serial", 0}, {"parallel64", 64}} {
		b.Run(bc.name, func(b *testing.B) {
			s := startServer(b, ConnConfig{})
			c := dial(b, s)
			req := &Get{Header: Header{Session: 1, Request: 2}, Path: "/bench/node"}
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallel == 0 {
				for b.Loop() {
					if _, err := c.Call(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(bc.parallel)
			b.RunParallel(func(pb *testing.PB) {
				req := &Get{Header: Header{Session: 1, Request: 2}, Path: "/bench/node"}
				for pb.Next() {
					if _, err := c.Call(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
