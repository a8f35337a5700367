package cli

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/latch/internal/bench"
)

func benchCommand(g *globals) *cobra.Command {
	var cfg bench.Config
	var runs int
	var metricsURLs, cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench lock|contended|put|get|mget|txn|sessions [--clients N] [--sessions S] [--conns C] [--duration D]",
		Short: "measure the cell: throughput and latency of one kind of operation",
		Long: `bench runs N client sessions against the cell, each doing one kind of
operation back to back, for --duration (or until --max-ops operations), and
prints one JSON line per run: ops, ops/s, latency p50/p99/p999/max in ms,
errors. A progress line is shown on a terminal.

  lock       each client locks and unlocks a lock of its own (op: the pair)
  contended  every client locks and unlocks the same lock (op: one handoff)
  put        each client writes its own node (--size bytes)
  get        every client reads one node (--size bytes; linearizable unless --stale)
  mget       every client reads the same two nodes with one read-only Txn
             (two gets at one moment; op: the Txn)
  txn        each client runs compare-and-set transactions on two nodes of
             its own (op: one Txn of two generation checks and two puts
             of --size bytes)
  sessions   open N sessions (op: one Dial), keep them idle for --duration,
             and report the CPU used meanwhile by this process and, with
             --metrics-url (latchd's /metrics), by the server

Nodes are written under --prefix (default /bench); each client's first operation is a warm-up
and is not counted.`,
		Args: exactArgs(1, "one of "+strings.Join(bench.Kinds, ", ")),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Kind = args[0]
			cfg.Stale = g.stale
			ccfg, err := g.clientConfig(cmd)
			if err != nil {
				return err
			}
			cfg.Dial = func(ctx context.Context) (*client.Client, error) {
				dctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
				defer cancel()
				return client.Dial(dctx, ccfg)
			}
			if g.env.IsTerminal {
				cfg.Progress = func(p bench.Progress) { fmt.Fprint(g.env.Stderr, "\r\033[K"+progressLine(p, cfg)) }
			}
			cfg.ProcessCPU = processCPU
			if metricsURLs != "" {
				urls := strings.Split(metricsURLs, ",")
				hc := http.DefaultClient
				if g.tls != nil {
					hc = &http.Client{Transport: &http.Transport{TLSClientConfig: g.tls}}
				}
				cfg.ServerCPU = func(ctx context.Context) (time.Duration, error) { return scrapeCPU(ctx, hc, urls) }
			}
			if err := cfg.Check(); err != nil {
				return usageErr(err)
			}
			if runs < 1 {
				return usagef("--runs %d must be at least 1", runs)
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			for range runs {
				res, err := bench.Run(cmd.Context(), cfg)
				if cfg.Progress != nil {
					fmt.Fprint(g.env.Stderr, "\r\033[K")
				}
				if err != nil {
					return err
				}
				if err := g.printJSON(res); err != nil {
					return err
				}
				if cmd.Context().Err() != nil {
					break
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.Clients, "clients", 1, "number of clients (workers, one call in flight each)")
	fl.IntVar(&cfg.Sessions, "sessions", 0, "number of sessions the clients share; 0: one each")
	fl.IntVar(&cfg.Conns, "conns", 0, "number of connections the sessions share (Client.NewSession); 0: one each")
	fl.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long each run lasts (sessions: how long they stay idle)")
	fl.Int64Var(&cfg.MaxOps, "max-ops", 10_000_000, "stop a run after this many operations (0: no cap)")
	fl.IntVar(&cfg.ValueSize, "size", 128, "value size in bytes for put and get")
	fl.IntVar(&runs, "runs", 1, "number of runs (one JSON line each)")
	fl.IntVar(&cfg.DialConcurrency, "dial-concurrency", 64, "sessions opened at once")
	fl.StringVar(&cfg.Prefix, "prefix", "/bench", "namespace path to work under")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the clients) to FILE")
	fl.StringVar(&metricsURLs, "metrics-url", "", "comma-separated latchd /metrics URLs whose process CPU the sessions benchmark sums")
	return cmd
}

// startCPUProfile profiles this process's CPU into file until stop.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// progressLine renders a progress report.
func progressLine(p bench.Progress, cfg bench.Config) string {
	rate := 0.0
	if p.Elapsed > 0 {
		rate = float64(p.Ops) / p.Elapsed.Seconds()
	}
	limit := ""
	if p.Phase == "run" || p.Phase == "idle" {
		limit = "/" + cfg.Duration.String()
	}
	return fmt.Sprintf("bench %s: %s %s%s  %d ops  %.0f ops/s  %d errors",
		p.Kind, p.Phase, p.Elapsed.Round(time.Second), limit, p.Ops, rate, p.Errors)
}

// processCPU returns the CPU time (user + system) this process used so far.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// scrapeCPU sums process_cpu_seconds_total from each /metrics URL, fetched
// with hc (which carries the TLS flags, for https URLs).
func scrapeCPU(ctx context.Context, hc *http.Client, urls []string) (time.Duration, error) {
	var total float64
	for _, u := range urls {
		v, err := scrapeMetric(ctx, hc, u, "process_cpu_seconds_total")
		if err != nil {
			return 0, err
		}
		total += v
	}
	return time.Duration(total * float64(time.Second)), nil
}

// scrapeMetric reads one unlabeled sample from a Prometheus text page.
func scrapeMetric(ctx context.Context, hc *http.Client, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}
