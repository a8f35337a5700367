// Package bench is the load generator behind `latch bench`: N client
// sessions run one kind of operation against a cell for a bounded time (and
// at most a bounded number of operations), and the run is summed up as
// throughput, latency quantiles and errors.
//
// Kinds:
//   - lock: each client takes and releases an exclusive lock of its own
//     (no contention); one op is one Lock+Unlock pair.
//   - contended: every client takes and releases the same lock; one op is one
//     handoff (a Lock that waited its turn, then its Unlock).
//   - put: each client writes its own node; one op is one Put.
//   - get: every client reads one node (linearizable unless Stale); one op is
//     one Get.
//   - txn: each client moves a unit between two nodes of its own with a
//     compare-and-set transaction (both nodes' generations checked, both
//     written); one op is one applied Txn of two conditions and two writes.
//   - mget: every client reads the same two nodes with one read-only Txn
//     (OpGet, OpGet: both at one moment, no log command); one op is one Txn.
//   - sessions: open N sessions (one op is one Dial), keep them idle for the
//     duration while sampling the server's CPU, then close them.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/client"
)

// ErrBench is wrapped by the errors of a run's setup.
var ErrBench = errors.New("bench")

// Kinds lists the benchmarks Run knows.
var Kinds = []string{"lock", "contended", "put", "get", "mget", "txn", "sessions"}

// Config describes one run.
type Config struct {
	// Kind is one of Kinds.
	Kind string
	// Clients is the number of workers, each one goroutine calling one
	// operation at a time.
	Clients int
	// Sessions is the number of sessions (each a client.Client) the
	// workers share, worker i using session i mod Sessions; 0 means one
	// each. Not for contended (its workers must be distinct holders) or
	// sessions.
	Sessions int
	// Conns is the number of connections the sessions use, session i
	// riding on connection i mod Conns (the first session of each is
	// Dialed, the others opened on it with Client.NewSession); 0 means
	// one each. Fewer connections than workers puts several calls in
	// flight on one connection, like etcd's benchmark's --conns.
	Conns int
	// Duration bounds the measured part of the run (for sessions: how
	// long they stay idle).
	Duration time.Duration
	// MaxOps stops the run after this many operations (0: no cap). For
	// sessions it does not apply: Clients sessions are opened.
	MaxOps int64
	// ValueSize is the size of the value put (put) or read (get).
	ValueSize int
	// Prefix is the namespace path the run works under (default /bench).
	Prefix string
	// Stale makes get read with client.Stale.
	Stale bool
	// DialConcurrency bounds the sessions being opened at once (default 64).
	DialConcurrency int

	// Dial opens one session with the cell.
	Dial func(ctx context.Context) (*client.Client, error)
	// Progress, if set, is called about once a second from one goroutine.
	Progress func(Progress)
	// ServerCPU, if set, returns the server's CPU time so far; sessions
	// samples it before and after the idle period.
	ServerCPU func(ctx context.Context) (time.Duration, error)
	// ProcessCPU returns this process's CPU time so far (nil: not measured).
	ProcessCPU func() (time.Duration, error)
}

// Progress is a running count, for a progress line.
type Progress struct {
	Kind    string
	Phase   string // "open", "run", "idle", "close"
	Elapsed time.Duration
	Ops     int64
	Errors  int64
}

// Result sums up one run; it is printed as one JSON line.
type Result struct {
	Bench      string  `json:"bench"`
	Clients    int     `json:"clients"`
	Sessions   int     `json:"sessions"`
	Conns      int     `json:"conns"`
	Seconds    float64 `json:"seconds"`
	Ops        int64   `json:"ops"`
	OpsPerSec  float64 `json:"opsPerSec"`
	P50Ms      float64 `json:"p50Ms"`
	P99Ms      float64 `json:"p99Ms"`
	P999Ms     float64 `json:"p999Ms"`
	MaxMs      float64 `json:"maxMs"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	ValueSize  int     `json:"valueSize,omitempty"`
	Stale      bool    `json:"stale,omitempty"`
	// Sessions only: how long the sessions stayed idle, and the CPU used
	// meanwhile as a percentage of one core, by the server (if it could be
	// sampled) and by this process (the clients' KeepAlives).
	IdleSeconds      float64  `json:"idleSeconds,omitempty"`
	ServerCPUPercent *float64 `json:"serverCpuPercent,omitempty"`
	ClientCPUPercent *float64 `json:"clientCpuPercent,omitempty"`
}

// Check validates c.
func (c *Config) Check() error {
	var errs []string
	known := false
	for _, k := range Kinds {
		known = known || k == c.Kind
	}
	if !known {
		errs = append(errs, fmt.Sprintf("unknown benchmark %q (want one of %s)", c.Kind, strings.Join(Kinds, ", ")))
	}
	if c.Clients < 1 {
		errs = append(errs, fmt.Sprintf("clients %d must be at least 1", c.Clients))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Sprintf("duration %v must be positive", c.Duration))
	}
	if c.Sessions < 0 || c.Sessions > c.Clients {
		errs = append(errs, fmt.Sprintf("sessions %d must be between 1 and clients (%d), or 0 for one each", c.Sessions, c.Clients))
	} else if c.Sessions != 0 && c.Sessions != c.Clients && (c.Kind == "contended" || c.Kind == "sessions") {
		errs = append(errs, fmt.Sprintf("%s needs one session per client", c.Kind))
	}
	if sessions := cmp.Or(c.Sessions, c.Clients); c.Conns < 0 || c.Conns > sessions {
		errs = append(errs, fmt.Sprintf("conns %d must be between 1 and sessions (%d), or 0 for one each", c.Conns, sessions))
	}
	if c.MaxOps < 0 || c.ValueSize < 0 || c.DialConcurrency < 0 {
		errs = append(errs, "max-ops, value size and dial concurrency must not be negative")
	}
	if c.Dial == nil {
		errs = append(errs, "no Dial")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrBench, strings.Join(errs, "; "))
	}
	if c.Prefix == "" {
		c.Prefix = "/bench"
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = 64
	}
	if c.Sessions == 0 {
		c.Sessions = c.Clients
	}
	if c.Conns == 0 {
		c.Conns = c.Sessions
	}
	return nil
}

// counters are shared by a run's workers. Every attempt, failed or not,
// counts toward the cap, so a run is bounded even when every call fails.
type counters struct {
	attempts, ops, errs atomic.Int64
	firstErr            atomic.Pointer[string]
	maxOps              int64
}

// take reserves one attempt; false once the cap is reached.
func (c *counters) take() bool {
	return c.maxOps == 0 || c.attempts.Add(1) <= c.maxOps
}

// fail records a failed attempt.
func (c *counters) fail(err error) {
	c.errs.Add(1)
	s := err.Error()
	c.firstErr.CompareAndSwap(nil, &s)
}

// Run performs one run. ctx ends it early (the result then covers the time
// until then). It returns an error only if the run could not start: the
// setup failed or no session could be opened.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Check(); err != nil {
		return Result{}, err
	}
	if cfg.Kind == "sessions" {
		return runSessions(ctx, cfg)
	}
	clients, err := openClients(ctx, cfg, nil)
	defer closeClients(clients, cfg.DialConcurrency)
	if err != nil {
		return Result{}, err
	}
	op, err := setup(ctx, cfg, clients[0])
	if err != nil {
		return Result{}, err
	}
	// One warm-up op per worker, not counted: creates each lock node and
	// connects each session to the leader.
	for i := range cfg.Clients {
		if _, err := op(ctx, clients[i%len(clients)], i); err != nil {
			return Result{}, fmt.Errorf("%w: warm-up %s: %w", ErrBench, cfg.Kind, err)
		}
	}
	var cnt counters
	cnt.maxOps = cfg.MaxOps
	hists := make([]Histogram, cfg.Clients)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	deadline, _ := runCtx.Deadline()
	// cutOff: err is the end of the run, not a failure. A call's own
	// context may expire a moment before runCtx reports it.
	cutOff := func(err error) bool {
		return runCtx.Err() != nil || (errors.Is(err, context.DeadlineExceeded) && !time.Now().Before(deadline))
	}
	start := time.Now()
	stopProgress := progress(cfg, "run", start, &cnt)
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		c := clients[i%len(clients)]
		wg.Go(func() {
			for runCtx.Err() == nil && cnt.take() {
				t0 := time.Now()
				lat, err := op(runCtx, c, i)
				switch {
				case err != nil && cutOff(err):
					return // cut off by the end of the run: not an error
				case err != nil:
					cnt.fail(err)
					time.Sleep(10 * time.Millisecond) // no hot loop on a failing cell
				default:
					if lat == 0 {
						lat = time.Since(t0)
					}
					hists[i].Record(lat)
					cnt.ops.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	var h Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	res := summary(cfg, elapsed, int64(h.Count()), &cnt, &h)
	if cfg.Kind == "put" || cfg.Kind == "get" || cfg.Kind == "mget" || cfg.Kind == "txn" {
		res.ValueSize = cfg.ValueSize
	}
	res.Stale = cfg.Stale && cfg.Kind == "get"
	return res, nil
}

// summary fills the common fields of a Result.
func summary(cfg Config, elapsed time.Duration, ops int64, cnt *counters, h *Histogram) Result {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := Result{
		Bench: cfg.Kind, Clients: cfg.Clients, Sessions: cfg.Sessions, Conns: cfg.Conns, Seconds: elapsed.Seconds(), Ops: ops,
		P50Ms: ms(h.Quantile(0.50)), P99Ms: ms(h.Quantile(0.99)), P999Ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max()),
		Errors: cnt.errs.Load(),
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(ops) / elapsed.Seconds()
	}
	if e := cnt.firstErr.Load(); e != nil {
		r.FirstError = *e
	}
	return r
}

// op performs one operation with client c (worker i). It returns the
// latency to record, or 0 to record its wall time.
type op func(ctx context.Context, c *client.Client, i int) (time.Duration, error)

// setup prepares the namespace for cfg.Kind and returns its operation.
func setup(ctx context.Context, cfg Config, c *client.Client) (op, error) {
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	dir := cfg.Prefix + "/" + cfg.Kind
	if _, err := c.Put(ctx, dir, nil, client.CreateParents()); err != nil {
		return nil, fmt.Errorf("%w: setup %s: %w", ErrBench, dir, err)
	}
	switch cfg.Kind {
	case "lock":
		return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
			l, err := c.Lock(ctx, fmt.Sprintf("%s/w%d", dir, i))
			if err != nil {
				return 0, err
			}
			return 0, unlock(l)
		}, nil
	case "contended":
		path := dir + "/lock"
		return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
			l, err := c.Lock(ctx, path)
			if err != nil {
				return 0, err
			}
			return 0, unlock(l)
		}, nil
	case "put":
		return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
			_, err := c.Put(ctx, fmt.Sprintf("%s/w%d", dir, i), value)
			return 0, err
		}, nil
	case "get":
		path := dir + "/value"
		if _, err := c.Put(ctx, path, value); err != nil {
			return nil, fmt.Errorf("%w: setup %s: %w", ErrBench, path, err)
		}
		var opts []client.Option
		if cfg.Stale {
			opts = append(opts, client.Stale())
		}
		return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
			n, err := c.Get(ctx, path, opts...)
			if err == nil && len(n.Data) != len(value) {
				err = fmt.Errorf("%w: get %s: %d bytes; want %d", ErrBench, path, len(n.Data), len(value))
			}
			return 0, err
		}, nil
	case "mget":
		paths := [2]string{dir + "/a", dir + "/b"}
		for _, p := range paths {
			if _, err := c.Put(ctx, p, value); err != nil {
				return nil, fmt.Errorf("%w: setup %s: %w", ErrBench, p, err)
			}
		}
		return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
			res, err := c.Txn(ctx, client.OpGet(paths[0]), client.OpGet(paths[1]))
			if err == nil && (len(res[0].Content) != len(value) || len(res[1].Content) != len(value)) {
				err = fmt.Errorf("%w: mget: %d and %d bytes; want %d", ErrBench, len(res[0].Content), len(res[1].Content), len(value))
			}
			return 0, err
		}, nil
	case "txn":
		return txnOp(dir, value, cfg.Clients), nil
	}
	return nil, fmt.Errorf("%w: unknown benchmark %q", ErrBench, cfg.Kind)
}

// txnOp returns the txn benchmark's operation: worker i keeps two nodes,
// a and b, and each op is one transaction "if a and b are still at the
// generations I last wrote, write both". The generations it expects come
// from the previous op's results; the first op (the warm-up) creates the
// nodes. A worker's transactions never conflict with another's, so every
// failed one is an error of the run.
func txnOp(dir string, value []byte, clients int) op {
	type pair struct{ a, b uint64 }
	gens := make([]pair, clients)
	return func(ctx context.Context, c *client.Client, i int) (time.Duration, error) {
		a, b := fmt.Sprintf("%s/w%d-a", dir, i), fmt.Sprintf("%s/w%d-b", dir, i)
		g := &gens[i]
		var ops []client.TxnOp
		if g.a != 0 && g.b != 0 {
			ops = []client.TxnOp{client.IfExists(a, client.IfGeneration(g.a)), client.IfExists(b, client.IfGeneration(g.b))}
		}
		ops = append(ops, client.OpPut(a, value), client.OpPut(b, value))
		res, err := c.Txn(ctx, ops...)
		if err != nil {
			*g = pair{}
			return 0, err
		}
		*g = pair{}
		if n := len(res); n >= 2 {
			g.a, g.b = res[n-2].Stat.ContentGen, res[n-1].Stat.ContentGen
		}
		return 0, nil
	}
}

// unlock releases l with a context of its own, so that the end of the run
// never leaves a lock held.
func unlock(l *client.Lock) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.Unlock(ctx)
}

// openClients opens cfg.Sessions sessions, at most cfg.DialConcurrency at a
// time, recording each one's opening latency with onOpen if it is not nil:
// first cfg.Conns with Dial, then the others with NewSession on session
// i mod cfg.Conns. On error it returns the sessions opened so far (nil
// for the others) with the first error.
func openClients(ctx context.Context, cfg Config, onOpen func(time.Duration)) ([]*client.Client, error) {
	out := make([]*client.Client, cfg.Sessions)
	err := openRange(ctx, cfg, out, 0, cfg.Conns, onOpen, func(ctx context.Context, _ int) (*client.Client, error) {
		return cfg.Dial(ctx)
	})
	if err == nil {
		err = openRange(ctx, cfg, out, cfg.Conns, cfg.Sessions, onOpen, func(ctx context.Context, i int) (*client.Client, error) {
			return out[i%cfg.Conns].NewSession(ctx)
		})
	}
	return out, err
}

// openRange fills out[from:to] with open, at most cfg.DialConcurrency at a
// time, and returns the first error.
func openRange(ctx context.Context, cfg Config, out []*client.Client, from, to int, onOpen func(time.Duration), open func(context.Context, int) (*client.Client, error)) error {
	sem := make(chan struct{}, cfg.DialConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := from; i < to; i++ {
		sem <- struct{}{}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			c, err := open(ctx, i)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("%w: opening session %d of %d: %w", ErrBench, i+1, cfg.Sessions, err)
				}
				mu.Unlock()
				return
			}
			if onOpen != nil {
				onOpen(time.Since(t0))
			}
			out[i] = c
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = fmt.Errorf("%w: opening sessions: %w", ErrBench, ctx.Err())
	}
	return first
}

// closeClients closes every session (nil entries are skipped), at most
// concurrency at a time.
func closeClients(clients []*client.Client, concurrency int) {
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for _, c := range clients {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.Close()
		})
	}
	wg.Wait()
}

// progress calls cfg.Progress about once a second until the returned stop
// is called.
func progress(cfg Config, phase string, start time.Time, cnt *counters) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				cfg.Progress(Progress{Kind: cfg.Kind, Phase: phase, Elapsed: time.Since(start), Ops: cnt.ops.Load(), Errors: cnt.errs.Load()})
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
