package lockserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Benchmarks against an in-process 3-replica cell over loopback TCP, with
// production timings and LevelDB (synced writes) in b.TempDir(). Clients
// speak raw wire (wire.Conn), one connection each, straight to the leader.
// Commands are in docs/benchmarks.md.

// benchCell starts a cell with default timings and returns it with its
// leader's client address.
func benchCell(b *testing.B) (*Cell, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := StartCell(ctx, CellConfig{N: 3, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	i, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return c, c.Endpoints()[i]
}

// benchClient is one client: a connection and a session.
type benchClient struct {
	conn    *wire.Conn
	sid     uint64
	rid     uint64
	retries int
}

// benchRetries counts the calls the benchmark clients had to retry (a
// leader change under load); it is reported with the figures.
var benchRetries atomic.Int64

// call makes one call, following NotLeader and retrying Unavailable with the
// same request (so the server deduplicates it), for up to 30 s.
func (c *benchClient) call(ctx context.Context, req wire.Message) (wire.Message, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := c.conn.Call(ctx, req)
		var we *wire.Error
		if err == nil || !errors.As(err, &we) || !we.Code.Retryable() || time.Now().After(deadline) {
			return m, err
		}
		benchRetries.Add(1)
		if we.Code == wire.NotLeader && we.Leader != "" {
			if conn, derr := benchDial(ctx, we.Leader); derr == nil {
				c.conn.Close()
				c.conn = conn
				continue
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func benchDo[R wire.Message](ctx context.Context, c *benchClient, req wire.Message) (R, error) {
	m, err := c.call(ctx, req)
	r, _ := m.(R)
	return r, err
}

func newBenchClient(b *testing.B, addr string, timeout time.Duration) *benchClient {
	b.Helper()
	ctx := context.Background()
	conn, err := benchDial(ctx, addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchClient{conn: conn}
	b.Cleanup(func() { c.conn.Close() })
	so, err := benchDo[*wire.SessionOpened](ctx, c, &wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}, Timeout: timeout})
	if err != nil {
		b.Fatal(err)
	}
	c.sid = so.Session
	return c
}

func (c *benchClient) head() wire.Header {
	c.rid++
	return wire.Header{Session: c.sid, Request: c.rid}
}

func benchDial(ctx context.Context, addr string) (*wire.Conn, error) {
	return wire.Dial(ctx, addr, wire.ConnConfig{}, wire.Hello{Client: "bench"})
}

// run spreads b.N operations over the clients, one goroutine each, and
// reports throughput and latency percentiles. op does one operation.
func run(b *testing.B, clients []*benchClient, unit string, op func(c *benchClient) error) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	var failed atomic.Value
	retries0 := benchRetries.Load()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := op(c); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit+"/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	// Process CPU (the whole cell and the clients) per operation: steadier
	// than the rate on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	if r := benchRetries.Load() - retries0; r > 0 {
		b.ReportMetric(float64(r), "retries")
	}
}

func benchClients(b *testing.B, addr string, n int) []*benchClient {
	b.Helper()
	out := make([]*benchClient, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = newBenchClient(b, addr, time.Minute)
		}()
	}
	wg.Wait()
	return out
}

// BenchmarkLockUnlock: each client takes and releases its own lock
// (Acquire + Release = one pair, two log commands).
func BenchmarkLockUnlock(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			_, addr := benchCell(b)
			clients := benchClients(b, addr, n)
			ctx := context.Background()
			for i, c := range clients {
				if _, err := c.call(ctx, &wire.Put{Header: c.head(), Path: fmt.Sprintf("/l%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			paths := map[*benchClient]string{}
			for i, c := range clients {
				paths[c] = fmt.Sprintf("/l%d", i)
			}
			run(b, clients, "pairs", func(c *benchClient) error {
				a, err := benchDo[*wire.AcquireReply](ctx, c, &wire.Acquire{Header: c.head(), Path: paths[c], Mode: wire.Exclusive})
				if err != nil {
					return err
				}
				_, err = c.call(ctx, &wire.Release{Header: c.head(), Path: paths[c], LockGen: a.Sequencer.LockGen})
				return err
			})
		})
	}
}

// BenchmarkHandoff: 64 clients take turns on one lock (waiting Acquire,
// then Release); each operation is one handoff.
func BenchmarkHandoff(b *testing.B) {
	_, addr := benchCell(b)
	clients := benchClients(b, addr, 64)
	ctx := context.Background()
	if _, err := clients[0].call(ctx, &wire.Put{Header: clients[0].head(), Path: "/hot"}); err != nil {
		b.Fatal(err)
	}
	run(b, clients, "handoffs", func(c *benchClient) error {
		a, err := benchDo[*wire.AcquireReply](ctx, c, &wire.Acquire{Header: c.head(), Path: "/hot", Mode: wire.Exclusive, Wait: true})
		if err != nil {
			return err
		}
		_, err = c.call(ctx, &wire.Release{Header: c.head(), Path: "/hot", LockGen: a.Sequencer.LockGen})
		return err
	})
}

// BenchmarkPut writes 64-byte contents to the client's own node.
func BenchmarkPut(b *testing.B) {
	content := make([]byte, 64)
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			_, addr := benchCell(b)
			clients := benchClients(b, addr, n)
			ctx := context.Background()
			paths := map[*benchClient]string{}
			for i, c := range clients {
				paths[c] = fmt.Sprintf("/p%d", i)
			}
			run(b, clients, "puts", func(c *benchClient) error {
				_, err := c.call(ctx, &wire.Put{Header: c.head(), Path: paths[c], Content: content})
				return err
			})
		})
	}
}

// BenchmarkGet reads a 64-byte node, linearizably (through the leader's
// lease and the coalesced read barrier) or stale.
func BenchmarkGet(b *testing.B) {
	for _, bc := range []struct {
		stale bool
		n     int
	}{{false, 1}, {false, 64}, {true, 64}} {
		stale := bc.stale
		b.Run(fmt.Sprintf("stale=%v/clients=%d", stale, bc.n), func(b *testing.B) {
			_, addr := benchCell(b)
			clients := benchClients(b, addr, bc.n)
			ctx := context.Background()
			if _, err := clients[0].call(ctx, &wire.Put{Header: clients[0].head(), Path: "/g", Content: make([]byte, 64)}); err != nil {
				b.Fatal(err)
			}
			run(b, clients, "gets", func(c *benchClient) error {
				_, err := c.call(ctx, &wire.Get{Header: wire.Header{Session: c.sid}, Path: "/g", Stale: stale})
				return err
			})
		})
	}
}

// BenchmarkIdleSessions keeps sessions alive with the KeepAlive loop a
// client runs, each session on a connection of its own as with the Go
// client, and reports the CPU the cell (all three replicas, this process)
// spends per second of wall time: what `latch bench sessions` measures of
// latchd dev. The clients run in a child process (TestIdleClients), so
// their CPU is not counted. sessions=0 is the cell's own idle cost
// (heartbeats, tickers). One iteration is one second; use -benchtime=30x
// or more, so the window spans several KeepAlive cycles (9 s each).
func BenchmarkIdleSessions(b *testing.B) {
	for _, n := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			_, addr := benchCell(b)
			if n > 0 {
				cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$", "-test.timeout=30m")
				cmd.Env = append(os.Environ(), "LOCKSERVER_IDLE_ADDR="+addr, fmt.Sprintf("LOCKSERVER_IDLE_SESSIONS=%d", n))
				stdin, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				out, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				defer cmd.Wait()
				defer stdin.Close() // the child stops when its stdin closes
				line, err := bufio.NewReader(out).ReadString('\n')
				if err != nil || line != "ready\n" {
					b.Fatalf("idle clients: %q, %v", line, err)
				}
				go io.Copy(io.Discard, out)
			}
			time.Sleep(6 * time.Second) // let the KeepAlive cycle settle
			b.ResetTimer()
			cpu0, wall0 := cpuTime(), time.Now()
			for range b.N {
				time.Sleep(time.Second)
			}
			cpu, wall := cpuTime()-cpu0, time.Since(wall0)
			b.StopTimer()
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu")
		})
	}
}

// TestIdleClients is BenchmarkIdleSessions' child process: it opens
// LOCKSERVER_IDLE_SESSIONS sessions at LOCKSERVER_IDLE_ADDR, each on a
// connection of its own, keeps them alive until its stdin closes, and prints
// "ready" once all are open. Without the variables it is skipped.
func TestIdleClients(t *testing.T) {
	addr := os.Getenv("LOCKSERVER_IDLE_ADDR")
	n, _ := strconv.Atoi(os.Getenv("LOCKSERVER_IDLE_SESSIONS"))
	if addr == "" || n <= 0 {
		t.Skip("the child process of BenchmarkIdleSessions")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := make([]*wire.Conn, n)
	for i := range cs {
		conn, err := wire.Dial(ctx, addr, wire.ConnConfig{}, wire.Hello{Client: "idle"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cs[i] = conn
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, conn := range cs {
		so, err := wire.Do[*wire.SessionOpened](ctx, conn, &wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acked uint64
			for rid := uint64(1); ctx.Err() == nil; rid++ {
				r, err := wire.Do[*wire.KeepAliveReply](ctx, conn, &wire.KeepAlive{Header: wire.Header{Session: so.Session, Request: rid}, Acked: acked})
				if err != nil {
					if ctx.Err() == nil {
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				for _, e := range r.Events {
					acked = e.Seq
				}
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
