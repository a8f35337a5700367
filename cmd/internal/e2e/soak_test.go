package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

var (
	soakTime = flag.Duration("soak", 0, "run TestSoak's random faults for this long (0: skip it)")
	soakSeed = flag.Uint64("soak-seed", 0, "seed of TestSoak's fault schedule (0: from the clock)")
	soakTLS  = flag.Bool("soak-tls", false, "run TestSoak's cell with TLS: clients, admin HTTP and mutual TLS between the replicas")
	soakMem  = flag.Bool("soak-members", false, "TestSoak also replaces and removes members, on a cell without link proxies (and so without the network faults)")
	// soakRewrite is off by default: an operator may never touch a
	// replica's config after it started, so the soak's replicas restart
	// and rebuild on the configs they were first given.
	soakLogs    = flag.String("soak-logs", "", "directory for the whole output of every latchd process of TestSoak (default: a new directory in $TMPDIR, printed)")
	soakRewrite = flag.Bool("soak-rewrite-configs", false, "with -soak-members, rewrite every replica's config file with the current members after each change (default: each keeps the config it was started with)")
)

// nemesis is one kind of fault TestSoak injects: it breaks the cell and
// returns the function that mends it.
type nemesis struct {
	name  string
	apply func(t *testing.T, cell *procCell, target *node, rng *rand.Rand) (heal func())
}

// nemeses are the faults of the soak, each aimed at the leader or a
// follower (reliability.md S28: a random composition of the single-fault
// scenarios): those of the links, then those of the processes, in the
// order a seed picks them.
var nemeses = append(slices.Clone(linkNemeses), processNemeses...)

// linkNemeses need the cell's per-link proxies (cellOptions.proxied).
var linkNemeses = []nemesis{
	{"cut off", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		c.isolate(n, true)
		return func() { c.isolate(n, false) }
	}},
	{"blackholed", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		c.setLinks(n, linkBlackhole)
		return func() { c.setLinks(n, linkOpen) }
	}},
	{"deaf", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		c.deafen(n, true)
		return func() { c.deafen(n, false) }
	}},
}

// processNemeses act on the latchd processes and their data dirs alone.
var processNemeses = []nemesis{
	{"paused", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		if err := n.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP to %s: %v", n.p.name, err)
		}
		return func() { n.p.cmd.Process.Signal(syscall.SIGCONT) }
	}},
	{"killed", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		n.p.stop(t, syscall.SIGKILL, 10*time.Second)
		return func() { c.start(n) }
	}},
	{"killed with the whole cell", func(t *testing.T, c *procCell, _ *node, _ *rand.Rand) func() {
		c.killAll()
		return func() {
			for _, n := range c.nodes {
				c.start(n)
			}
		}
	}},
	{"wiped (disk lost, rebuilt)", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		c.wipe(n)
		return func() {
			c.start(n)
			c.rebuilt(context.Background(), n)
		}
	}},
	{"stopped with SIGTERM", func(t *testing.T, c *procCell, n *node, _ *rand.Rand) func() {
		if code := n.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("latchd %d exit %d after SIGTERM; want 0", n.id, code)
		}
		return func() { c.start(n) }
	}},
}

// waitUntil polls cond every 50 ms for up to d and reports whether it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// TestSoak (S28) runs the Put/Get, lock and bank workloads for -soak, injecting
// one random fault after another (a replica cut off, blackholed, deaf,
// paused, killed, wiped (restarted on an empty data dir, which it must
// rebuild before the next fault) or stopped, the leader half of the time;
// or the whole cell killed) for one to five seconds each, healing it, and requiring
// progress of every workload before the next. Each fault cycle moves the
// workloads to fresh keys, a fresh lock and a new bank, and porcupine
// checks (and forgets) the histories of the cycles that are over as the
// soak goes, as bankWorkload.check does the banks, so it can run for
// hours. It is skipped unless -soak is set:
//
//	go test ./cmd/internal/e2e -run TestSoak -soak=10m -timeout 0 -v
//
// A failure prints the seed; -soak-seed replays the fault schedule (not
// the timing). With -soak-members the cell also changes its members
// (memberNemeses: a killed replica replaced by a new id, a live one
// removed and replaced), on a cell without link proxies, so the faults of
// the links are left out; the members at the end must be the cell's nodes.
// Each replica keeps the config it was first started with, unless
// -soak-rewrite-configs rewrites them all after each change; -soak-logs
// names where every latchd's output is kept (a new directory by default).
func TestSoak(t *testing.T) {
	if *soakTime <= 0 {
		t.Skip("run with -soak=D (and -timeout 0 for long runs) to soak the cell in random faults")
	}
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("soak seed %d (replay the schedule with -soak-seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx, cancel := context.WithTimeout(context.Background(), *soakTime+5*time.Minute)
	defer cancel()
	logDir := *soakLogs
	if logDir == "" {
		var err error
		if logDir, err = os.MkdirTemp("", "latch-soak-logs-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		// Now, not when the logs are written at the end of a long soak
		// (a 10-minute soak whose checks all passed failed on a missing
		// -soak-logs directory).
		t.Fatalf("-soak-logs: %v", err)
	}
	t.Logf("the output of every latchd process goes to %s at the end (latchd-ID.K.log: K counts the starts)", logDir)
	faults, opts := nemeses, cellOptions{proxied: true, tls: *soakTLS, logDir: logDir}
	if *soakMem {
		faults, opts.proxied = append(slices.Clone(processNemeses), memberNemeses...), false
		if *soakRewrite {
			t.Logf("every replica's config is rewritten with the current members after each change (-soak-rewrite-configs)")
		} else {
			t.Logf("every replica keeps the config it was first started with (founders: the founders; joiners: their seeds)")
		}
	}
	cell := startProcCell(t, ctx, opts)
	spares := 0
	if *soakMem {
		// A member change every 20 s at most (a cycle takes 5 s or more,
		// and 2 kinds of fault in 7 change members); the workloads'
		// clients know every address the cell will ever have.
		spares = 4 + int(*soakTime/(20*time.Second))
		cell.drawSpares(spares)
		cell.endpoints = append(cell.endpoints, cell.spareEndpoints()...)
	}
	// The workloads end with the soak (ctx), not after a count.
	kv := startKVWorkload(t, ctx, cell, 4, 3, math.MaxInt)
	locks := startLockWorkload(t, ctx, cell, 3, math.MaxInt)
	bank := startBankWorkload(t, ctx, cell, 3, math.MaxInt)
	cell.setEndpoints() // the CLI and later clients: the replicas there are
	progress := func(what string) {
		t.Helper()
		kvBase, lockBase, bankBase := kv.h.done.Load(), locks.done.Load(), bank.done.Load()
		ok := waitUntil(60*time.Second, func() bool {
			return kv.h.done.Load() >= kvBase+200 && locks.done.Load() >= lockBase+60 && bank.done.Load() >= bankBase+20
		})
		if !ok {
			out, errs, _ := run(t, ctx, cell.latch, cell.env, "", "-o", "json", "--command-timeout", "2s", "members")
			t.Fatalf("no progress within 60 s %s: %d Put/Get calls, %d lock calls and %d transfers completed since (want 200, 60 and 20); members: %s %s",
				what, kv.h.done.Load()-kvBase, locks.done.Load()-lockBase, bank.done.Load()-bankBase, out, errs)
		}
	}
	progress("before the faults")

	// Each cycle starts a window; the histories of a window are checked,
	// and dropped, once no call of it can still be running: 5 s for Puts
	// and Gets, 15 s for a transfer (two reads and a txn), a minute for
	// a lock turn.
	started := []time.Time{kv.h.origin}
	over := func(grace time.Duration) int64 {
		last := int64(-1)
		for w := 1; w < len(started); w++ {
			if time.Since(started[w]) > grace {
				last = int64(w - 1)
			}
		}
		return last
	}
	end := time.Now().Add(*soakTime)
	for cycle := 1; time.Now().Before(end); cycle++ {
		kv.nextWindow()
		locks.window.Add(1)
		bank.nextWindow(t)
		started = append(started, time.Now())
		nem := faults[rng.IntN(len(faults))]
		target := cell.leader(ctx)
		role := "leader"
		if rng.IntN(2) == 0 {
			// One of the two nodes after the leader in the list (the
			// same as by id while the founders are all there).
			i := slices.Index(cell.nodes, target)
			target, role = cell.nodes[(i+1+rng.IntN(2))%len(cell.nodes)], "follower"
		}
		hold := time.Duration(1000+rng.IntN(4000)) * time.Millisecond
		t.Logf("cycle %d: %s latchd %d %s for %v", cycle, role, target.id, nem.name, hold)
		heal := nem.apply(t, cell, target, rng)
		time.Sleep(hold)
		heal()
		progress(fmt.Sprintf("after cycle %d (%s %s)", cycle, role, nem.name))
		for _, n := range cell.nodes {
			n.p.running(t)
		}
		if ops := kv.h.take(over(6 * time.Second)); len(ops) > 0 {
			checkLinearizable(t, kvModel, ops, "Puts and Gets of earlier cycles")
		}
		if ops := locks.take(over(65 * time.Second)); len(ops) > 0 {
			checkLinearizable(t, lockModel, ops, "lock calls of earlier cycles")
		}
		bank.check(t, ctx, over(20*time.Second))
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
	}
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
	}
	if *soakMem {
		set, want := cell.settled(ctx)
		t.Logf("%d members added (of %d spares); voters %v, retired %v", spares-len(cell.spares), spares, want, set.Retired)
	}
	kv.finish(t, ctx)
	locks.finish(t)
	bank.finish(t, ctx)
}
