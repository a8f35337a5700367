package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/cmd/latch/internal/bench"
)

func TestBench(t *testing.T) {
	for _, kind := range []string{"lock", "contended", "put", "get", "mget", "txn"} {
		t.Run(kind, func(t *testing.T) {
			r := latch(t, "bench", kind, "--clients", "3", "--duration", "300ms", "--size", "64").ok(t)
			res := decode[bench.Result](t, r)
			if res.Bench != kind || res.Clients != 3 || res.Ops == 0 || res.Errors != 0 || res.OpsPerSec <= 0 {
				t.Errorf("bench %s = %+v", kind, res)
			}
			if res.P50Ms <= 0 || res.P50Ms > res.P99Ms || res.P99Ms > res.P999Ms || res.P999Ms > res.MaxMs {
				t.Errorf("bench %s latencies p50 %v p99 %v p999 %v max %v", kind, res.P50Ms, res.P99Ms, res.P999Ms, res.MaxMs)
			}
		})
	}
	t.Run("shared sessions", func(t *testing.T) {
		r := latch(t, "bench", "get", "--clients", "6", "--sessions", "2", "--duration", "300ms").ok(t)
		res := decode[bench.Result](t, r)
		if res.Clients != 6 || res.Sessions != 2 || res.Ops == 0 || res.Errors != 0 {
			t.Errorf("bench get --clients 6 --sessions 2 = %+v", res)
		}
		latch(t, "bench", "contended", "--clients", "3", "--sessions", "2", "--duration", "300ms").failed(t, ExitUsage, "one session per client")
		// Six sessions over two connections: two Dials (each at most two
		// connections, when the first replica tried points at the leader).
		before := connsAccepted()
		r = latch(t, "bench", "contended", "--clients", "6", "--conns", "2", "--duration", "300ms").ok(t)
		res = decode[bench.Result](t, r)
		if res.Clients != 6 || res.Sessions != 6 || res.Conns != 2 || res.Ops == 0 || res.Errors != 0 {
			t.Errorf("bench contended --clients 6 --conns 2 = %+v", res)
		}
		if n := connsAccepted() - before; n > 4 {
			t.Errorf("bench --conns 2 made %d connections; want at most 4", n)
		}
		latch(t, "bench", "get", "--clients", "6", "--sessions", "2", "--conns", "3", "--duration", "300ms").failed(t, ExitUsage, "conns 3 must be between 1 and sessions (2)")
	})
	t.Run("max-ops", func(t *testing.T) {
		r := latch(t, "bench", "put", "--clients", "4", "--duration", "30s", "--max-ops", "25", "--runs", "2").ok(t)
		lines := strings.Split(strings.TrimSpace(r.out), "\n")
		if len(lines) != 2 {
			t.Fatalf("--runs 2 printed %d lines", len(lines))
		}
		res := decode[bench.Result](t, result{out: lines[1]})
		if res.Ops != 25 || res.Seconds > 20 {
			t.Errorf("--max-ops 25: %+v", res)
		}
	})
	t.Run("txn writes both nodes once per op, run after run", func(t *testing.T) {
		// Two runs over the same nodes: the second one's warm-up must not
		// trip on what the first left, and every counted op is one applied
		// transaction (plus each run's warm-up).
		for run := 1; run <= 2; run++ {
			r := latch(t, "bench", "txn", "--clients", "1", "--duration", "30s", "--max-ops", "10", "--prefix", "/benchtxn").ok(t)
			if res := decode[bench.Result](t, r); res.Ops != 10 || res.Errors != 0 {
				t.Fatalf("run %d: bench txn = %+v", run, res)
			}
			for _, node := range []string{"/benchtxn/txn/w0-a", "/benchtxn/txn/w0-b"} {
				st := decode[StatJSON](t, latch(t, "-o", "json", "stat", node).ok(t))
				if want := uint64(11 * run); st.ContentGen != want {
					t.Errorf("run %d: %s content gen %d; want %d", run, node, st.ContentGen, want)
				}
			}
		}
	})
	t.Run("sessions", func(t *testing.T) {
		metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\n"))
		}))
		defer metrics.Close()
		r := latch(t, "bench", "sessions", "--clients", "20", "--duration", "300ms", "--metrics-url", metrics.URL).ok(t)
		res := decode[bench.Result](t, r)
		if res.Ops != 20 || res.Errors != 0 || res.IdleSeconds < 0.3 || res.ServerCPUPercent == nil || *res.ServerCPUPercent != 0 || res.ClientCPUPercent == nil {
			t.Errorf("bench sessions = %+v", res)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		r := invocation{ctx: ctx}.run(t, "bench", "put", "--clients", "2", "--duration", "1m")
		if r.code != 0 {
			t.Fatalf("interrupted bench exit %d: %s", r.code, r.err)
		}
		if res := decode[bench.Result](t, r); res.Seconds > 30 || res.Ops == 0 {
			t.Errorf("interrupted bench = %+v", res)
		}
	})
}

// connsAccepted sums the client connections the shared cell's replicas
// have accepted.
func connsAccepted() (n int64) {
	for i := range cell.N() {
		if s := cell.Server(i); s != nil {
			n += s.Metrics().ConnsTotal.Load()
		}
	}
	return n
}

func TestProgressLine(t *testing.T) {
	cfg := bench.Config{Duration: 10 * time.Second}
	got := progressLine(bench.Progress{Kind: "put", Phase: "run", Elapsed: 2 * time.Second, Ops: 5000, Errors: 1}, cfg)
	if got != "bench put: run 2s/10s  5000 ops  2500 ops/s  1 errors" {
		t.Errorf("progressLine = %q", got)
	}
}

func TestScrapeMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("process_cpu_seconds_total_x 1\nprocess_cpu_seconds_total 3.25\n"))
	}))
	defer srv.Close()
	d, err := scrapeCPU(context.Background(), http.DefaultClient, []string{srv.URL, srv.URL})
	if err != nil || d != 6500*time.Millisecond {
		t.Errorf("scrapeCPU = %v, %v; want 6.5s", d, err)
	}
	if _, err := scrapeMetric(context.Background(), http.DefaultClient, srv.URL, "nope"); err == nil {
		t.Errorf("scrapeMetric of a missing metric: no error")
	}
}
