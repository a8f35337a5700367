package namespace

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Benchmarks for the bars in docs/benchmarks.md ("## namespace"). The big
// tree has 1,001,011 nodes: /bench-tree, 10 dirs, 100 subdirs each, 1,000
// leaves each, leaves with 16-byte contents and 40-byte paths:
//
//	/bench-tree/dir-7/subdir-042/n-000123456
//
// Run them with:
//
//	go test -run '^$' -bench . -benchtime 2s ./namespace/

const (
	benchDirs    = 10
	benchSubdirs = 100
	benchLeaves  = 1000
	benchNodes   = 1 + benchDirs + benchDirs*benchSubdirs + benchDirs*benchSubdirs*benchLeaves + 1 // + root
	benchContent = "0123456789abcdef"
)

func benchLeaf(i int) string {
	d, rest := i/(benchSubdirs*benchLeaves), i%(benchSubdirs*benchLeaves)
	return fmt.Sprintf("/bench-tree/dir-%d/subdir-%03d/n-%09d", d, rest/benchLeaves, i)
}

// buildBenchTree creates the big tree through Apply, as a replica would.
func buildBenchTree(tb testing.TB) *Tree {
	t := New(DefaultConfig())
	index := uint64(0)
	apply := func(c Command) {
		index++
		if r, _ := t.Apply(index, &c); r.Err != nil {
			tb.Fatalf("%s %s: %v", c.Op, c.Path, r.Err)
		}
	}
	apply(NewCreate("/bench-tree", nil, 0))
	for d := 0; d < benchDirs; d++ {
		apply(NewCreate(fmt.Sprintf("/bench-tree/dir-%d", d), nil, 0))
		for s := 0; s < benchSubdirs; s++ {
			apply(NewCreate(fmt.Sprintf("/bench-tree/dir-%d/subdir-%03d", d, s), nil, 0))
		}
	}
	content := []byte(benchContent)
	for i := 0; i < benchDirs*benchSubdirs*benchLeaves; i++ {
		apply(NewCreate(benchLeaf(i), content, 0))
	}
	if t.Len() != benchNodes {
		tb.Fatalf("built %d nodes; want %d", t.Len(), benchNodes)
	}
	return t
}

var (
	benchOnce sync.Once
	benchTree *Tree
)

// sharedBenchTree builds the big tree once per test binary.
func sharedBenchTree(b *testing.B) *Tree {
	benchOnce.Do(func() {
		benchTree = buildBenchTree(b)
		liveHeap() // collect the build's garbage before anything is timed
	})
	return benchTree
}

// benchPaths returns n leaf paths, in random order or in tree order.
func benchPaths(n int, random bool) []string {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]string, n)
	leaves := benchDirs * benchSubdirs * benchLeaves
	for i := range out {
		j := i % leaves
		if random {
			j = rng.IntN(leaves)
		}
		out[i] = benchLeaf(j)
	}
	return out
}

func benchSetContent(b *testing.B, distinct int, random bool) {
	t := sharedBenchTree(b)
	open := NewOpenSession(60e9)
	s, _ := t.Apply(t.AppliedIndex()+1, &open)
	sess := s.Session
	paths := benchPaths(distinct, random)
	cmds := make([]Command, len(paths))
	for i, p := range paths {
		cmds[i] = NewSetContent(p, []byte("fedcba9876543210"), 0)
		cmds[i].Session = sess
	}
	index := t.AppliedIndex()
	var ev []Event
	var r Result
	b.ReportAllocs()
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		c := &cmds[i&(len(cmds)-1)]
		index++
		c.Request = index
		if r, ev = t.ApplyAppend(ev[:0], index, c); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	m.stop(b, "ops/s")
}

// cpuMeter reports, besides the wall-clock figures, the CPU time of the
// applying thread per op and the throughput that makes on one core.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU(b *testing.B) *cpuMeter {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	m := &cpuMeter{}
	m.start, m.ok = threadCPU()
	b.ResetTimer()
	return m
}

func (m *cpuMeter) stop(b *testing.B, unit string) {
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
	if end, ok := threadCPU(); ok && m.ok && end > m.start {
		cpu := end - m.start
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), unit+"-per-cpu-s")
	}
}

// BenchmarkApplySetContent applies decoded set-content commands from a
// session (idempotence table on) to 1,024 random leaves of the 1M-node tree
// (a hot set, as in Chubby where a few files take most writes).
func BenchmarkApplySetContent(b *testing.B) { benchSetContent(b, 1<<10, true) }

// BenchmarkApplySetContentUniform writes 65,536 random leaves spread over the
// whole tree: every lookup misses the CPU caches, so memory latency bounds it.
func BenchmarkApplySetContentUniform(b *testing.B) { benchSetContent(b, 1<<16, true) }

// BenchmarkAcquireRelease applies acquire (exclusive, try) + release pairs
// on 1,024 random leaves of the 1M-node tree; one op is one pair.
func BenchmarkAcquireRelease(b *testing.B) {
	t := sharedBenchTree(b)
	open := NewOpenSession(60e9)
	s, _ := t.Apply(t.AppliedIndex()+1, &open)
	sess := s.Session
	paths := benchPaths(1<<10, true)
	acq := make([]Command, len(paths))
	rel := make([]Command, len(paths))
	for i, p := range paths {
		acq[i] = NewAcquire(p, ModeExclusive, false, 0)
		rel[i] = NewRelease(p, 0)
		acq[i].Session, rel[i].Session = sess, sess
	}
	index := t.AppliedIndex()
	var ev []Event
	var r Result
	b.ReportAllocs()
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		j := i & (len(paths) - 1)
		index++
		acq[j].Request = index
		if r, ev = t.ApplyAppend(ev[:0], index, &acq[j]); r.Err != nil {
			b.Fatal(r.Err)
		}
		index++
		rel[j].Request = index
		if r, ev = t.ApplyAppend(ev[:0], index, &rel[j]); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	m.stop(b, "pairs/s")
}

// BenchmarkListChildren lists the 10 children of /bench-tree, which has
// 1,001,010 descendants.
func BenchmarkListChildren(b *testing.B) {
	t := sharedBenchTree(b)
	b.ReportAllocs()
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		es, _, err := t.List("/bench-tree", "", 0)
		if err != nil || len(es) != benchDirs {
			b.Fatalf("List = %d entries, %v", len(es), err)
		}
	}
	m.stop(b, "lists/s")
}

// BenchmarkHeapPerNode builds the 1M-node tree and reports the live heap it
// takes per node (after a GC), the radix tree and the nodes included.
func BenchmarkHeapPerNode(b *testing.B) {
	for i := 0; i < b.N; i++ {
		before := liveHeap()
		t := buildBenchTree(b)
		after := liveHeap()
		b.ReportMetric(float64(after-before)/float64(t.Len()), "B/node")
		runtime.KeepAlive(t)
	}
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkSnapshot writes a snapshot of the 1M-node tree.
func BenchmarkSnapshot(b *testing.B) {
	t := sharedBenchTree(b)
	var n countWriter
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		n = 0
		if err := t.Snapshot(&n); err != nil {
			b.Fatal(err)
		}
	}
	m.stop(b, "snapshots/s")
	b.ReportMetric(float64(n), "bytes")
}

// BenchmarkRestoreReplacing restores the 1M-node tree from an in-memory
// snapshot while another 1M-node tree is live, as when a running replica
// installs a snapshot over its state.
func BenchmarkRestoreReplacing(b *testing.B) {
	benchRestore(b, benchSnapshot(b))
}

// BenchmarkRestore restores the 1M-node tree from an in-memory snapshot with
// no other tree live, as a replica does at start-up. It drops the shared
// tree, so it runs last.
func BenchmarkRestore(b *testing.B) {
	snap := benchSnapshot(b)
	benchOnce, benchTree = sync.Once{}, nil
	liveHeap()
	benchRestore(b, snap)
}

func benchSnapshot(b *testing.B) []byte {
	var buf bytes.Buffer
	if err := sharedBenchTree(b).Snapshot(&buf); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func benchRestore(b *testing.B, snap []byte) {
	m := startCPU(b)
	for i := 0; i < b.N; i++ {
		t := New(DefaultConfig())
		if err := t.Restore(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
		if t.Len() != benchNodes {
			b.Fatalf("restored %d nodes", t.Len())
		}
	}
	m.stop(b, "restores/s")
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)
