package client_test

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// TestMain checks that no goroutine outlives the clients and cells the
// tests closed.
func TestMain(m *testing.M) {
	// goleveldb's memory-pool drainer (in the test cells) lingers up to a
	// second after DB.Close; it is not the client's.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}

// tune gives a cell short timings, so tests elect, fail over and expire
// quickly, but sessions the leases of testConfig: 10 s, each KeepAlive held
// at most until 5 s before the lease's end (a short lease is held half of
// it), so that a session rides out a loaded machine's pauses.
func tune(cfg *lockserver.Config) {
	lockserver.FastTimings(cfg)
	cfg.Session.Lease = testLease
	cfg.Session.Margin = testLease / 2
	if os.Getenv("CLIENT_TEST_SERVER_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// startCell starts a 3-replica cell on loopback and waits for its leader.
// mods adjust every replica's Config after tune.
func startCell(t testing.TB, mods ...func(*lockserver.Config)) *lockserver.Cell {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cell, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 3, DataDir: t.TempDir(), Tune: func(cfg *lockserver.Config) {
		tune(cfg)
		for _, m := range mods {
			m(cfg)
		}
	}})
	if err != nil {
		t.Fatalf("StartCell: %v", err)
	}
	t.Cleanup(func() {
		if err := cell.Close(); err != nil {
			t.Errorf("Cell.Close: %v", err)
		}
	})
	if _, err := cell.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	leaderIndex(t, cell)
	return cell
}

// leaderIndex waits until the cell's leader has settled, the same replica
// leading at several checks in a row, and returns its index. A loaded
// machine may elect again just after a cell starts or a replica stops or
// restarts; a test that acts on "the leader" should act on a settled one.
func leaderIndex(t testing.TB, cell *lockserver.Cell) int {
	t.Helper()
	const checks = 5 // 20 ms apart
	deadline := time.Now().Add(20 * time.Second)
	last, same := -1, 0
	for {
		i := cell.Leader()
		switch {
		case i < 0:
			same = 0
		case i == last:
			same++
		default:
			same = 1
		}
		last = i
		if same >= checks {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settled leader within 20 s (last seen: %d)", i)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shortLease asks for a 1 s session, for tests of jeopardy and expiry,
// which then come within a second or two.
func shortLease(cfg *client.Config) { cfg.SessionTimeout = time.Second }

// longGrace gives a client a 30 s grace, so it rides out several leader
// changes in a row without its session expiring.
func longGrace(cfg *client.Config) { cfg.Grace = 30 * time.Second }

// testLease is the session lease of testConfig and of a tuned cell.
const testLease = 10 * time.Second

// testConfig is a client Config for a test cell: a 10 s session, which a
// loaded machine does not starve, and a 3 s grace. Tests of jeopardy and
// expiry ask for a short lease (shortLease).
func testConfig(cell *lockserver.Cell) client.Config {
	cfg := client.DefaultConfig(cell.Endpoints()...)
	cfg.SessionTimeout = testLease
	cfg.Grace = 3 * time.Second
	cfg.DialTimeout = 500 * time.Millisecond
	cfg.AttemptTimeout = 5 * time.Second
	cfg.CloseTimeout = time.Second
	cfg.BackoffMin = 5 * time.Millisecond
	cfg.BackoffMax = 100 * time.Millisecond
	if os.Getenv("CLIENT_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// dial opens a client on cell and closes it (checking for leaks) at the
// end of the test.
func dial(t testing.TB, cell *lockserver.Cell, mods ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := testConfig(cell)
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newSession opens another session over c's connection (NewSession) and
// closes it at the end of the test.
func newSession(t testing.TB, c *client.Client) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bg returns a context that ends after d (default 10 s; 0 means never) or
// with the test.
func bg(t testing.TB, d ...time.Duration) context.Context {
	t.Helper()
	timeout := 10 * time.Second
	if len(d) > 0 {
		timeout = d[0]
	}
	if timeout == 0 {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// clientGoroutines returns the stacks of goroutines running code of the
// client package (not its tests).
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "latch/client.") {
			out = append(out, g)
		}
	}
	return out
}

// checkNoClientGoroutines fails if client goroutines are still running a
// moment after every client was closed.
func checkNoClientGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		gs := clientGoroutines()
		if len(gs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d client goroutines outlive Close:\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv waits for a value from ch for at most d.
func recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		var zero T
		return zero, false
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waiters returns the number of requests queued for the lock on path.
func waiters(t testing.TB, c *client.Client, path string) int {
	t.Helper()
	locks, err := c.Locks(bg(t), path)
	if err != nil {
		t.Fatalf("Locks(%s): %v", path, err)
	}
	for _, l := range locks {
		if l.Path == path {
			return l.Waiters
		}
	}
	return 0
}

// nextState returns the next session event that changes the state,
// skipping fail-over notices (a loaded test machine may see a real one).
func nextState(t testing.TB, events <-chan client.SessionEvent, d time.Duration, what string) client.SessionEvent {
	t.Helper()
	for {
		ev, ok := recv(t, events, d, what)
		if !ok {
			t.Fatalf("session events closed; want %s", what)
		}
		if !ev.Failover {
			return ev
		}
	}
}
