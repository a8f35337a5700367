package replica

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPropose measures Propose on the leader of a 3-replica cell over
// loopback TCP with LevelDB synced writes, all in one process, with 64-byte
// commands. It reports latency percentiles and throughput.
func BenchmarkPropose(b *testing.B) {
	for _, proposers := range []int{1, 64} {
		b.Run(map[int]string{1: "proposers=1", 64: "proposers=64"}[proposers], func(b *testing.B) {
			benchPropose(b, proposers)
		})
	}
}

// benchSM is a minimal state machine for benchmarks: it counts commands and
// echoes each one, so the benchmark measures replication, not the state.
type benchSM struct {
	*testSM
	n atomic.Uint64
}

func (s *benchSM) Apply(index uint64, cmd []byte) []byte {
	s.n.Add(1)
	return cmd
}

func benchPropose(b *testing.B, proposers int) {
	c := newCell(b, cellOpts{tcp: true, wrap: func(_ uint32, sm *testSM) StateMachine { return &benchSM{testSM: sm} }, tune: func(cfg *Config) {
		d := DefaultConfig()
		cfg.TickInterval, cfg.HeartbeatInterval = d.TickInterval, d.HeartbeatInterval
		cfg.LeaseDuration, cfg.ElectionTimeout = d.LeaseDuration, d.ElectionTimeout
		cfg.SnapshotEvery = 1 << 40 // measure the log path, not snapshots
	}})
	lead := c.leader(1, 20*time.Second)
	ctx := context.Background()
	cmd := bytes.Repeat([]byte{'x'}, 64)
	// Warm up connections and the leader's pipeline.
	for range 100 {
		if _, err := lead.Propose(ctx, 1, cmd); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([][]time.Duration, proposers)
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	before := c.stats(b)
	b.ResetTimer()
	start := time.Now()
	for p := range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				t0 := time.Now()
				// Through whichever replica leads: an overloaded machine
				// can cause an election mid-run.
				if _, err := c.propose(ctx, 1, cmd); err != nil {
					b.Error(err)
					return
				}
				lat[p] = append(lat[p], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	reportDiskMetrics(b, before, c.stats(b), elapsed)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(q float64) float64 {
		return float64(all[min(len(all)-1, int(q*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "cmds/s")
	if testing.Verbose() {
		for id, r := range c.reps {
			st, _ := r.Status(ctx, 1)
			b.Logf("replica %d: %+v", id, st.Stats)
		}
	}
}

// stats returns every replica's group 1 counters.
func (c *cell) stats(b *testing.B) []Stats {
	var out []Stats
	for _, id := range slices.Sorted(maps.Keys(c.reps)) {
		st, err := c.reps[id].Status(context.Background(), 1)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, st.Stats)
	}
	return out
}

// reportDiskMetrics reports what the cell asked of the disk between two
// stats snapshots: synced writes per second (all replicas) and commands per
// synced write of the replica that proposed them.
func reportDiskMetrics(b *testing.B, before, after []Stats, elapsed time.Duration) {
	var syncs, props, leadSyncs, batches, piped uint64
	var syncTime time.Duration
	for i := range after {
		syncs += after[i].SyncedWrites - before[i].SyncedWrites
		syncTime += after[i].SyncTime - before[i].SyncTime
		p := after[i].Proposals - before[i].Proposals
		if p > props {
			props, leadSyncs = p, after[i].SyncedWrites-before[i].SyncedWrites
			batches = after[i].Batches - before[i].Batches
			piped = after[i].Pipelined - before[i].Pipelined
		}
	}
	b.ReportMetric(float64(syncs)/elapsed.Seconds(), "fsyncs/s")
	if syncs > 0 {
		b.ReportMetric(syncTime.Seconds()*1000/float64(syncs), "ms/fsync")
	}
	if leadSyncs > 0 && batches > 0 {
		b.ReportMetric(float64(props)/float64(leadSyncs), "cmds/fsync")
		b.ReportMetric(float64(props)/float64(batches), "cmds/batch")
		b.ReportMetric(float64(piped)/float64(batches), "pipelined/batch")
	}
}
