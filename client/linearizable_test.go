package client_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// regOp is one call on the register: a Put of value, or a Get.
type regOp struct {
	put   bool
	value string
}

// registerModel is a single register that starts absent (""): a Put sets
// it, a Get must return what it holds.
var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regOp)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		if in := input.(regOp); in.put {
			return "put " + in.value
		}
		return fmt.Sprintf("get -> %q", output)
	},
}

// history is a record of calls for porcupine, timed on the monotonic
// clock from its origin; several goroutines add to it.
type history struct {
	origin time.Time
	done   atomic.Int64 // operations recorded so far

	mu  sync.Mutex
	ops []porcupine.Operation
}

func newHistory() *history { return &history{origin: time.Now()} }

// now is the time for an operation's Call or Return.
func (h *history) now() int64 { return time.Since(h.origin).Nanoseconds() }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	h.done.Add(1)
}

// progress waits up to 20 s for 100 more operations (or for ctx to end,
// when the workload stops anyway).
func (h *history) progress(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	base := h.done.Load()
	waitFor(t, 20*time.Second, what, func() bool { return h.done.Load() >= base+100 || ctx.Err() != nil })
}

// check fails the test unless the history is linearizable under model.
func (h *history) check(t *testing.T, model porcupine.Model) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(model, h.ops, 30*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("%d operations linearizable", len(h.ops))
	case porcupine.Illegal:
		where := "not written"
		if f, err := os.CreateTemp("", "latch-client-history-*.html"); err == nil {
			porcupine.Visualize(model, info, f)
			f.Close()
			where = "written to " + f.Name()
		}
		t.Fatalf("history of %d operations is not linearizable (visualization %s)", len(h.ops), where)
	default:
		t.Fatalf("porcupine gave up on %d operations within 30 s", len(h.ops))
	}
}

// changeLeaders stops the leader twice, waiting for progress after each
// stop and each restart: once handing off (it resigns, as on SIGTERM), and
// once vanishing as in a crash (the others wait out its lease).
func changeLeaders(t *testing.T, cell *lockserver.Cell, progress func(what string)) {
	t.Helper()
	for _, how := range []struct {
		name string
		stop func(int) error
	}{{"resign", cell.Stop}, {"crash", cell.Crash}} {
		old := leaderIndex(t, cell)
		if err := how.stop(old); err != nil {
			t.Fatalf("%s of leader %d: %v", how.name, old, err)
		}
		progress("progress after the leader's " + how.name)
		if err := cell.Restart(old); err != nil {
			t.Fatal(err)
		}
		progress("progress after the restart")
	}
}

// TestLinearizableAcrossLeaderChanges checks the history of Puts and
// linearizable Gets (lease reads on the leader) of several sessions on one
// node with porcupine, while the leader is stopped and restarted twice
// (changeLeaders). A Put that fails may or may not have been applied: it
// is recorded as open-ended. A failed Get is left out (it observed
// nothing). Sessions 1 and 3 share the connections of sessions 0 and 2
// (NewSession).
func TestLinearizableAcrossLeaderChanges(t *testing.T) {
	cell := startCell(t)
	ctx, stop := context.WithCancel(bg(t, 60*time.Second))
	defer stop()
	const clients, maxOps = 4, 2000 // the workload stops after the last progress; maxOps is only a bound
	h := newHistory()
	var wg sync.WaitGroup
	var prev *client.Client
	for i := range clients {
		var c *client.Client
		if i%2 == 0 {
			c = dial(t, cell, longGrace)
		} else {
			c = newSession(t, prev)
		}
		prev = c
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		wg.Go(func() {
			for n := 0; n < maxOps && ctx.Err() == nil; n++ {
				octx, cancel := context.WithTimeout(ctx, 3*time.Second)
				call := h.now()
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("c%d-%d", i, n)
					_, err := c.Put(octx, "/reg", []byte(v))
					ret := h.now()
					if err != nil {
						ret = math.MaxInt64 // applied or not, at any time after the call
					}
					h.add(porcupine.Operation{ClientId: i, Input: regOp{put: true, value: v}, Call: call, Output: "", Return: ret})
				} else {
					n, err := c.Get(octx, "/reg")
					ret := h.now()
					switch {
					case err == nil:
						h.add(porcupine.Operation{ClientId: i, Input: regOp{}, Call: call, Output: string(n.Data), Return: ret})
					case errors.Is(err, client.ErrNotFound):
						h.add(porcupine.Operation{ClientId: i, Input: regOp{}, Call: call, Output: "", Return: ret})
					}
				}
				cancel()
			}
		})
	}
	progress := func(what string) { t.Helper(); h.progress(t, ctx, what) }
	progress("progress before the first leader change")
	changeLeaders(t, cell, progress)
	stop()
	wg.Wait()
	h.check(t, registerModel)
}

// The model and checker reject a stale read: a Get that returns a value
// overwritten before it was called.
func TestRegisterModelCatchesAStaleRead(t *testing.T) {
	ops := []porcupine.Operation{
		{ClientId: 0, Input: regOp{put: true, value: "a"}, Call: 0, Return: 1},
		{ClientId: 0, Input: regOp{put: true, value: "b"}, Call: 2, Return: 3},
		{ClientId: 1, Input: regOp{}, Output: "a", Call: 4, Return: 5},
	}
	if porcupine.CheckOperations(registerModel, ops) {
		t.Fatalf("a stale read checked as linearizable")
	}
	ops[2].Output = "b"
	if !porcupine.CheckOperations(registerModel, ops) {
		t.Fatalf("a fresh read checked as not linearizable")
	}
}
