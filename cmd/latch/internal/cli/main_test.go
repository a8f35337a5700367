package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/cmd/internal/testutil"
	"github.com/latchd/latch/lockserver"
)

// cell is the local cell most tests share (tests that stop replicas start
// their own).
var cell *lockserver.Cell

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := startCell(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting the cell:", err)
			return 1
		}
		cell = c
		defer c.Close()
		return m.Run()
	}())
}

// startCell starts a 3-replica cell on free loopback ports and waits for a
// leader.
func startCell(ctx context.Context) (*lockserver.Cell, error) {
	c, err := lockserver.StartCell(ctx, lockserver.CellConfig{})
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// syncBuffer and waitFor are the shared test helpers.
type syncBuffer = testutil.SyncBuffer

var waitFor = testutil.WaitFor

// result is one run of the CLI.
type result struct {
	out, err string
	code     int
}

// invocation is a run of the CLI being prepared.
type invocation struct {
	ctx       context.Context
	stdin     string
	endpoints []string
	env       map[string]string // the environment variables of the run
}

// latch runs the CLI in-process against the shared cell.
func latch(t *testing.T, args ...string) result {
	t.Helper()
	return invocation{}.run(t, args...)
}

func (inv invocation) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx := inv.ctx
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
	}
	var out, errb syncBuffer
	code := inv.start(ctx, &out, &errb, args...)()
	return result{out: out.String(), err: errb.String(), code: code}
}

// start runs the CLI in the background; wait returns its exit code.
func (inv invocation) start(ctx context.Context, out, errb *syncBuffer, args ...string) (wait func() int) {
	eps := inv.endpoints
	if eps == nil {
		eps = cell.Endpoints()
	}
	env := Env{
		Stdin: strings.NewReader(inv.stdin), Stdout: out, Stderr: errb,
		Getenv:  func(k string) string { return inv.env[k] },
		Environ: os.Environ(),
	}
	full := append([]string{"--endpoints", strings.Join(eps, ",")}, args...)
	done := make(chan int, 1)
	go func() { done <- Main(ctx, full, env) }()
	return func() int { return <-done }
}

// ok fails the test unless r succeeded.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d; stderr %q; stdout %q", r.code, r.err, r.out)
	}
	return r
}

// failed fails the test unless r exited with code, printing one error line
// that contains want.
func (r result) failed(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d; want %d (stderr %q)", r.code, code, r.err)
	}
	if strings.Count(r.err, "\n") != 1 || !strings.HasPrefix(r.err, "latch: ") || !strings.Contains(r.err, want) {
		t.Errorf("stderr = %q; want one line \"latch: ...%s...\"", r.err, want)
	}
}

// fresh deletes the subtrees a test works in, so that it starts from the
// same state however often it runs against the shared cell (-count).
func fresh(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if r := latch(t, "rm", "-r", p); r.code != 0 && r.code != ExitNotFound {
			t.Fatalf("rm -r %s: exit %d: %s", p, r.code, r.err)
		}
	}
}

// ownCell starts a cell for a test that stops replicas; it is closed at the
// end of the test.
func ownCell(t *testing.T, ctx context.Context) *lockserver.Cell {
	t.Helper()
	c, err := startCell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
