package lockserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CellConfig configures a local cell: N replicas in one process on
// loopback, for tests and `latchd dev`.
type CellConfig struct {
	// N is the number of replicas (default 3).
	N int
	// BasePort, if not 0, fixes the ports: replica i (0-based) serves
	// clients on BasePort+i, peers on BasePort+100+i, and is given the
	// HTTP address BasePort+200+i (served by cmd/latchd, not here).
	// 0 picks free ephemeral ports.
	BasePort int
	// DataDir holds the replicas' data dirs (DataDir/r1, r2, ...). Empty
	// means a temporary directory, removed by Close.
	DataDir string
	// Logger receives every replica's log, tagged with its id; nil discards.
	Logger *slog.Logger
	// Tune, if set, adjusts each replica's Config after the cell filled it
	// in (timings, limits, clock).
	Tune func(cfg *Config)
}

// Cell is a local cell of replicas in one process.
type Cell struct {
	cfgs    []Config
	tmp     string // DataDir to remove on Close, if it was created here
	mu      sync.Mutex
	servers []*Server // nil while stopped
}

// FastTimings sets sub-second timings on cfg: a 250 ms master lease, a
// 400 ms election timeout, 2 s sessions, 200 ms lock-delay. A cell tuned so
// elects, fails over and expires sessions within a second or two, which is
// what tests (this package's and the client's) and local experiments want;
// it is too tight for a production cell on a loaded machine.
func FastTimings(cfg *Config) {
	cfg.Replica.TickInterval = 5 * time.Millisecond
	cfg.Replica.HeartbeatInterval = 25 * time.Millisecond
	cfg.Replica.LeaseDuration = 250 * time.Millisecond
	cfg.Replica.ElectionTimeout = 400 * time.Millisecond
	cfg.Session.Lease = 2 * time.Second
	cfg.Session.Margin = 500 * time.Millisecond
	cfg.MinSessionTimeout = 200 * time.Millisecond
	cfg.SessionTick = 10 * time.Millisecond
	cfg.LeaderPoll = 5 * time.Millisecond
	cfg.RequestTimeout = 5 * time.Second
	cfg.Namespace.DefaultLockDelay = 200 * time.Millisecond
	cfg.Namespace.MaxLockDelay = 2 * time.Second
}

// StartCell starts a cell of cfg.N replicas on loopback and returns once
// every replica listens (not necessarily once a leader is elected: see
// WaitLeader). ctx bounds the start-up only.
func StartCell(ctx context.Context, cfg CellConfig) (*Cell, error) {
	if cfg.N == 0 {
		cfg.N = 3
	}
	if cfg.N < 1 || cfg.N > 99 {
		return nil, fmt.Errorf("%w: cell of %d replicas", ErrConfig, cfg.N)
	}
	c := &Cell{}
	dir := cfg.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "latch-cell-")
		if err != nil {
			return nil, err
		}
		dir, c.tmp = d, d
	}
	members := make(map[uint64]Member, cfg.N)
	var free []string
	if cfg.BasePort == 0 {
		// All at once, every listener held until all are drawn, so no two
		// replicas get the same port.
		var err error
		if free, err = freeAddrs(3 * cfg.N); err != nil {
			c.cleanup()
			return nil, err
		}
	}
	for i := range cfg.N {
		m := Member{
			Client: fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+i),
			Peer:   fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+100+i),
			HTTP:   fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+200+i),
		}
		if cfg.BasePort == 0 {
			m = Member{Client: free[3*i], Peer: free[3*i+1], HTTP: free[3*i+2]}
		}
		members[uint64(i+1)] = m
	}
	for i := range cfg.N {
		sc := DefaultConfig()
		sc.ID = uint64(i + 1)
		sc.Members = members
		sc.DataDir = filepath.Join(dir, fmt.Sprintf("r%d", i+1))
		if cfg.Logger != nil {
			sc.Logger = cfg.Logger
		}
		if cfg.Tune != nil {
			cfg.Tune(&sc)
		}
		if err := sc.Validate(); err != nil {
			c.cleanup()
			return nil, err
		}
		c.cfgs = append(c.cfgs, sc)
	}
	c.servers = make([]*Server, cfg.N)
	for i := range cfg.N {
		if err := c.start(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// freeAddrs returns n loopback addresses with free ports. The ports are
// drawn below the usual ephemeral range (32768 and up on Linux), so that no
// outgoing connection of this or another process takes one between this
// check and its use, or while its replica is stopped for a restart. Port 0
// (an ephemeral port) is the fallback.
func freeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		var ln net.Listener
		var err error
		for try := 0; try < 200; try++ {
			port := 20000 + rand.IntN(12000)
			if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				break
			}
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return nil, err
			}
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// start (re)starts replica i from its data dir, retrying while its ports
// are still held by its previous incarnation or another process.
func (c *Cell) start(ctx context.Context, i int) error {
	var err error
	for {
		var s *Server
		s, err = New(c.cfgs[i])
		if err != nil {
			return err
		}
		if err = s.Start(); err == nil {
			c.mu.Lock()
			c.servers[i] = s
			c.mu.Unlock()
			return nil
		}
		s.Close()
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// N returns the number of replicas.
func (c *Cell) N() int { return len(c.cfgs) }

// Endpoints returns the client addresses of every replica, running or not,
// in replica order.
func (c *Cell) Endpoints() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		out[i] = cfg.Members[cfg.ID].Client
	}
	return out
}

// Config returns replica i's Config.
func (c *Cell) Config(i int) Config { return c.cfgs[i] }

// Server returns replica i, or nil while it is stopped.
func (c *Cell) Server(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Stop closes replica i (its data dir stays for Restart). A leader hands
// its leadership off first, as on SIGTERM.
func (c *Cell) Stop(i int) error { return c.stop(i, true) }

// Crash closes replica i without handing off its leadership: its peers see
// it vanish as after a crash (kill -9, a power loss) and elect a new leader
// only once its lease has run out. Its data dir stays for Restart.
func (c *Cell) Crash(i int) error { return c.stop(i, false) }

func (c *Cell) stop(i int, resign bool) error {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.close(resign)
}

// Restart starts replica i again from its data dir (stopping it first if
// it runs).
func (c *Cell) Restart(i int) error {
	if err := c.Stop(i); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.start(ctx, i)
}

// Leader returns the index of the replica that leads and serves sessions,
// or -1 if none does now.
func (c *Cell) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.servers {
		if s != nil && s.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until some replica leads and serves sessions and
// returns its index.
func (c *Cell) WaitLeader(ctx context.Context) (int, error) {
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		if i := c.Leader(); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-tk.C:
		}
	}
}

// Close stops every replica and removes the data dir if StartCell created
// it. No replica hands its leadership off: the whole cell stops, so there is
// nobody to hand it to (each leader would resign to the next replica to
// stop, and the last would wait out the resignation's bound for nothing).
func (c *Cell) Close() error {
	var errs []error
	for i := range c.cfgs {
		if err := c.Crash(i); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.cleanup())
	return errors.Join(errs...)
}

func (c *Cell) cleanup() error {
	if c.tmp == "" {
		return nil
	}
	err := os.RemoveAll(c.tmp)
	c.tmp = ""
	return err
}
