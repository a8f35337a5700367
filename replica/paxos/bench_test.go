package paxos

import (
	"fmt"
	"testing"
)

// benchCell is a minimal in-memory cell for benchmarks: storage is a
// no-op, messages are delivered in FIFO order, nothing is printed.
type benchCell struct {
	nodes []*Node
	queue []Message
	next  []Message
}

func newBenchCell(b *testing.B, size, window int) *benchCell {
	peers := make([]uint64, size)
	for i := range peers {
		peers[i] = uint64(i + 1)
	}
	c := &benchCell{}
	for _, id := range peers {
		cfg := DefaultConfig(id, peers)
		cfg.Window = window
		n, err := New(cfg, State{})
		if err != nil {
			b.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	c.nodes[0].Campaign()
	c.settle(b)
	return c
}

func (c *benchCell) settle(b *testing.B) {
	for {
		for _, n := range c.nodes {
			for n.HasReady() {
				rd, err := n.Ready()
				if err != nil {
					b.Fatal(err)
				}
				c.queue = append(c.queue, rd.Messages...)
				if err := n.Advance(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if len(c.queue) == 0 {
			return
		}
		c.queue, c.next = c.next[:0], c.queue
		for _, m := range c.next {
			if err := c.nodes[m.To-1].Step(m); err != nil {
				b.Fatal(err)
			}
		}
		clear(c.next)
	}
}

// BenchmarkStableLeader measures the cost, in all replicas' cores together,
// of one instance with a stable leader: Propose, Accept, Accepted, commit.
// batch instances are proposed between two Readys (the window pipelines).
func BenchmarkStableLeader(b *testing.B) {
	value := make([]byte, 128)
	for _, size := range []int{3, 5} {
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("n=%d/batch=%d", size, batch), func(b *testing.B) {
				c := newBenchCell(b, size, 64)
				leader := c.nodes[0]
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += batch {
					for range batch {
						if _, err := leader.Propose(value); err != nil {
							b.Fatal(err)
						}
					}
					c.settle(b)
				}
				if st := leader.Status(); st.Commit < uint64(b.N) {
					b.Fatalf("commit %d after %d proposals", st.Commit, b.N)
				}
			})
		}
	}
}
