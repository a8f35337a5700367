package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runSessions opens cfg.Clients sessions (one op per Dial), keeps them idle
// for cfg.Duration while measuring the CPU the server and this process use,
// checks that every session is still alive, and closes them.
func runSessions(ctx context.Context, cfg Config) (Result, error) {
	var cnt counters
	var mu sync.Mutex
	var h Histogram
	start := time.Now()
	stop := progress(cfg, "open", start, &cnt)
	clients, err := openClients(ctx, cfg, func(d time.Duration) {
		mu.Lock()
		h.Record(d)
		mu.Unlock()
		cnt.ops.Add(1)
	})
	opened := time.Since(start)
	stop()
	defer closeClients(clients, cfg.DialConcurrency)
	if err != nil {
		return Result{}, err
	}
	res := summary(cfg, opened, int64(h.Count()), &cnt, &h)

	server0, serverErr := sampleServer(ctx, cfg)
	proc0, procErr := sampleProcess(cfg)
	t0 := time.Now()
	stop = progress(cfg, "idle", t0, &cnt)
	select {
	case <-ctx.Done():
	case <-time.After(cfg.Duration):
	}
	stop()
	idle := time.Since(t0)
	res.IdleSeconds = idle.Seconds()
	server1, serverErr1 := sampleServer(ctx, cfg)
	proc1, procErr1 := sampleProcess(cfg)
	percent := func(d time.Duration) *float64 {
		p := 100 * d.Seconds() / idle.Seconds()
		return &p
	}
	if serverErr == nil && serverErr1 == nil && cfg.ServerCPU != nil {
		res.ServerCPUPercent = percent(server1 - server0)
	} else if cfg.ServerCPU != nil {
		cnt.fail(fmt.Errorf("%w: sampling the server's CPU: %w", ErrBench, firstOf(serverErr, serverErr1)))
	}
	if procErr == nil && procErr1 == nil && cfg.ProcessCPU != nil {
		res.ClientCPUPercent = percent(proc1 - proc0)
	}
	// A session that did not survive the idle period is an error.
	for _, c := range clients {
		if err := c.Err(); err != nil {
			cnt.fail(fmt.Errorf("%w: session %d ended while idle: %w", ErrBench, c.SessionID(), err))
		}
	}
	res.Errors = cnt.errs.Load()
	if e := cnt.firstErr.Load(); e != nil {
		res.FirstError = *e
	}
	return res, nil
}

func sampleServer(ctx context.Context, cfg Config) (time.Duration, error) {
	if cfg.ServerCPU == nil {
		return 0, nil
	}
	return cfg.ServerCPU(ctx)
}

func sampleProcess(cfg Config) (time.Duration, error) {
	if cfg.ProcessCPU == nil {
		return 0, nil
	}
	return cfg.ProcessCPU()
}

func firstOf(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
