package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
)

// This file holds the process-level fault scenarios of
// ../shared/notes/reliability.md §7.3 that need nothing but signals:
// replicas paused with SIGSTOP beyond their lease (S10), a lock holder
// paused beyond its session lease (S11), the whole cell killed at once
// (S4, without dropping unsynced data), and a replica whose data dir was
// deleted (S21).

// kvInput is one call on a key: a Put of value, or a Get.
type kvInput struct {
	key   string
	put   bool
	value string
}

// kvModel is a set of independent registers, one per key, each absent ("")
// until a Put; porcupine checks each key's history on its own.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		return partitionBy(history, func(op porcupine.Operation) string { return op.Input.(kvInput).key })
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put %s=%s", in.key, in.value)
		}
		return fmt.Sprintf("get %s -> %q", in.key, output)
	},
}

// partitionBy splits a history by the key of each operation, in the order
// the keys first appear.
func partitionBy(history []porcupine.Operation, key func(porcupine.Operation) string) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := key(op)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// opLog is a history of operations for porcupine, each tagged with the
// window (see kvWorkload.nextWindow) whose keys it used, so that a long run
// can check and drop the windows that are over.
type opLog struct {
	origin time.Time    // operation times are counted from here
	done   atomic.Int64 // operations recorded so far

	mu  sync.Mutex
	ops []porcupine.Operation
	win []int64 // the window of each op
}

// now is the time for an operation's Call or Return.
func (l *opLog) now() int64 { return time.Since(l.origin).Nanoseconds() }

func (l *opLog) add(op porcupine.Operation, window int64) {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.win = append(l.win, window)
	l.mu.Unlock()
	l.done.Add(1)
}

// take removes and returns the operations of windows up to upTo.
func (l *opLog) take(upTo int64) []porcupine.Operation {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out, keep []porcupine.Operation
	var keepWin []int64
	for i, op := range l.ops {
		if l.win[i] <= upTo {
			out = append(out, op)
		} else {
			keep = append(keep, op)
			keepWin = append(keepWin, l.win[i])
		}
	}
	l.ops, l.win = keep, keepWin
	return out
}

// history records the Puts and Gets of a workload.
type history struct{ opLog }

// do runs one Put (put set) or linearizable Get of key by client id and
// records it in window. A failed Put may or may not have been applied: it is
// recorded as returning at the end of time. A failed Get observed nothing
// and is left out.
func (h *history) do(ctx context.Context, c *client.Client, id int, window int64, in kvInput) {
	call := h.now()
	op := porcupine.Operation{ClientId: id, Input: in, Call: call, Output: ""}
	if in.put {
		_, err := c.Put(ctx, in.key, []byte(in.value))
		op.Return = h.now()
		if err != nil {
			op.Return = math.MaxInt64
		}
	} else {
		n, err := c.Get(ctx, in.key)
		op.Return = h.now()
		switch {
		case err == nil:
			op.Output = string(n.Data)
		case errors.Is(err, client.ErrNotFound):
		default:
			return
		}
	}
	h.add(op, window)
}

// checkTimeout bounds one porcupine check. The check shares the two cores
// with the cell and the workload (the soak checks while both run), and a
// fast day's soak cycle records over 100,000 calls.
const checkTimeout = 3 * time.Minute

// checkLinearizable fails the test unless ops are linearizable under model
// (what names them in messages). A failing history is checked again for a
// visualization (slower, so only then) and kept as HTML in the temporary
// directory, for a person to look at.
func checkLinearizable(t *testing.T, model porcupine.Model, ops []porcupine.Operation, what string) {
	t.Helper()
	start := time.Now()
	switch porcupine.CheckOperationsTimeout(model, ops, checkTimeout) {
	case porcupine.Ok:
		t.Logf("%d %s linearizable (checked in %v)", len(ops), what, time.Since(start).Round(time.Millisecond))
	case porcupine.Illegal:
		where := "not written"
		_, info := porcupine.CheckOperationsVerbose(model, ops, checkTimeout)
		if f, err := os.CreateTemp("", "latch-e2e-history-*.html"); err == nil {
			porcupine.Visualize(model, info, f)
			f.Close()
			where = "written to " + f.Name()
		}
		t.Fatalf("history of %d %s is not linearizable (visualization %s)", len(ops), what, where)
	default:
		t.Fatalf("porcupine gave up on %d %s within %v", len(ops), what, checkTimeout)
	}
}

// pause stops the process with SIGSTOP for d, then lets it go on with
// SIGCONT. A test that ends while it is stopped still kills it.
func (p *proc) pause(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP to %s: %v", p.name, err)
	}
	time.Sleep(d)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT to %s: %v", p.name, err)
	}
}

// running fails the test if the process has exited.
func (p *proc) running(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s exited (%v):\n%s", p.name, p.err, tail(p.out.String(), 2000))
	default:
	}
}

// kvWorkload is clients doing Puts and linearizable Gets of a few keys,
// one call at a time each, recorded in a history.
type kvWorkload struct {
	cell    *procCell
	h       *history
	window  atomic.Int64    // the keys in use are /w<window>-g<gen>-k<i>
	ctx     context.Context // ends when the workload stops
	stop    context.CancelFunc
	keys    int
	maxOps  int // per client
	clients []*client.Client
	wg      sync.WaitGroup
}

// startKVWorkload starts clients on keys k0...k<keys-1>, each client doing
// at most maxOps calls: the even ones Put and Get, the odd ones only Get.
func startKVWorkload(t *testing.T, ctx context.Context, cell *procCell, clients, keys, maxOps int) *kvWorkload {
	t.Helper()
	w := &kvWorkload{cell: cell, h: &history{opLog{origin: time.Now()}}, keys: keys, maxOps: maxOps}
	w.ctx, w.stop = context.WithCancel(ctx)
	for i := range clients {
		w.add(t, cell.endpoints, i%2 == 1)
	}
	return w
}

// add starts one more client, on the given endpoints, that only Gets if
// reader is set. (A reader is never moved to another replica by a failed
// write, so it is the one that would see a stale read.) Each call is
// bounded by 5 s: longer than the faults of these tests, so some calls are
// in flight at a faulty replica when it recovers.
func (w *kvWorkload) add(t *testing.T, endpoints []string, reader bool) {
	t.Helper()
	c := w.cell.dial(w.ctx, endpoints...)
	id := len(w.clients)
	w.clients = append(w.clients, c)
	rng := rand.New(rand.NewPCG(uint64(id), 11))
	w.wg.Go(func() {
		for n := 0; n < w.maxOps && w.ctx.Err() == nil; n++ {
			octx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
			win := w.window.Load()
			in := kvInput{key: w.key(win, w.generation(), rng.IntN(w.keys))}
			if !reader && rng.IntN(2) == 0 {
				in.put, in.value = true, fmt.Sprintf("c%d-%d", id, n)
			}
			w.h.do(octx, c, id, win, in)
			cancel()
		}
	})
}

// key returns the path of key i in window win and generation gen. A new
// window (nextWindow) or generation starts on fresh keys, so the history of
// each key, which porcupine checks on its own, stays short however long the
// workload runs and however fast the machine is.
func (w *kvWorkload) key(win, gen int64, i int) string {
	return fmt.Sprintf("/w%d-g%d-k%d", win, gen, i)
}

// opsPerGeneration is how many operations the workload records before its
// clients move to fresh keys: porcupine checks a few thousand operations
// of one key in seconds, but not a hundred thousand.
const opsPerGeneration = 2000

// generation is the key generation for the next operation.
func (w *kvWorkload) generation() int64 { return w.h.done.Load() / opsPerGeneration }

// nextWindow moves the clients to fresh keys.
func (w *kvWorkload) nextWindow() { w.window.Add(1) }

// progress waits up to a minute for 200 more operations to complete.
func (w *kvWorkload) progress(t *testing.T, what string) {
	t.Helper()
	base := w.h.done.Load()
	testutil.WaitFor(t, 60*time.Second, what, func() bool { return w.h.done.Load() >= base+200 })
}

// finish stops the clients, reads every key of the current window once
// more (the last word on each) and checks the history with porcupine.
func (w *kvWorkload) finish(t *testing.T, ctx context.Context) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	win, gen := w.window.Load(), w.generation()
	for k := range w.keys {
		w.h.do(ctx, w.clients[0], 0, win, kvInput{key: w.key(win, gen, k)})
	}
	checkLinearizable(t, kvModel, w.h.take(math.MaxInt64), "operations")
}

// TestPausedReplicas (S10): under a workload of Puts and linearizable Gets
// on a few keys, the leader is paused with SIGSTOP for three times its
// lease and let go on; then a follower is. A resumed leader must not answer
// from its old lease, accept writes as leader, or lose anything: the whole
// history, closed by a read of every key, must be linearizable, and the
// paused replicas must catch up.
func TestPausedReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	const lease = time.Second
	w := startKVWorkload(t, ctx, cell, 4, 3, 200_000)
	w.progress(t, "progress before the pauses")

	leader := cell.leader(ctx)
	leader.p.pause(t, 3*lease)
	w.progress(t, "progress after the leader's pause")
	leader.p.running(t)
	now := cell.leader(ctx)
	t.Logf("paused leader latchd %d; leader after the pause: latchd %d", leader.id, now.id)

	follower := cell.other(now)
	follower.p.pause(t, 3*lease)
	w.progress(t, "progress after a follower's pause")
	follower.p.running(t)

	w.finish(t, ctx)
	cell.caughtUp(ctx, leader)
	cell.caughtUp(ctx, follower)
}

// TestPartitions (S6, then S5): under the same workload, the leader is cut
// off from both followers (clients still reach it, and one reader knows
// only it) for five times its lease, and the links are mended; then one
// follower is cut off. The isolated leader must stop serving reads once its
// lease ends and must not acknowledge writes; the majority side elects a
// leader and goes on. The history must be linearizable and every replica
// must catch up.
func TestPartitions(t *testing.T) {
	leaderLinkFault(t, "cut off", (*procCell).isolate, func(ctx context.Context, cell *procCell, w *kvWorkload) {
		const lease = time.Second
		follower := cell.other(cell.leader(ctx))
		cell.isolate(follower, true)
		w.progress(t, "progress while a follower is cut off")
		time.Sleep(3 * lease)
		cell.isolate(follower, false)
		w.progress(t, "progress after the follower's partition healed")
		for _, n := range cell.nodes {
			cell.caughtUp(ctx, n)
		}
	})
}

// TestBlackholedLeader: the leader's links to both followers stop moving
// bytes while staying open (packets silently dropped); afterwards new
// connections get through again, but the stalled ones stay stalled. The
// followers elect a new leader; the old one must notice its dead
// connections (the peer transport's keep-alive), dial again and catch up.
func TestBlackholedLeader(t *testing.T) {
	leaderLinkFault(t, "blackholed", func(c *procCell, n *node, on bool) {
		s := linkOpen
		if on {
			s = linkBlackhole
		}
		c.setLinks(n, s)
	}, nil)
}

// TestDeafLeader (S8): everything the followers send to the leader is lost,
// while what the leader sends still arrives. The leader cannot renew its
// lease and must stop serving, and the followers must elect another leader
// although they still hear the old one.
func TestDeafLeader(t *testing.T) {
	leaderLinkFault(t, "deaf", (*procCell).deafen, nil)
}

// leaderLinkFault runs the workload of Puts and Gets, with a reader pinned
// to the leader, and breaks the leader's links with fault for five times
// its lease; a new leader must be elected meanwhile and serve. Then the
// links are mended and the old leader must catch up; then more runs if set;
// the history must be linearizable.
func leaderLinkFault(t *testing.T, what string, fault func(c *procCell, n *node, on bool), more func(context.Context, *procCell, *kvWorkload)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{proxied: true})
	const lease = time.Second
	w := startKVWorkload(t, ctx, cell, 4, 3, 200_000)
	w.progress(t, "progress before the fault")

	old := cell.leader(ctx)
	w.add(t, []string{old.client}, true)
	fault(cell, old, true)
	w.progress(t, "progress while the leader is "+what)
	now := cell.leaderOtherThan(ctx, old)
	time.Sleep(5 * lease)
	fault(cell, old, false)
	t.Logf("%s leader latchd %d; leader elected meanwhile: latchd %d", what, old.id, now.id)
	cell.caughtUp(ctx, old)
	w.progress(t, "progress after the old leader caught up")
	if more != nil {
		more(ctx, cell, w)
	}
	w.finish(t, ctx)
}

// TestBridgeAndRing (S7): in a cell of five, the replicas are split into
// {1, 2} and {4, 5} with 3 linked to both sides (a bridge: two majorities
// that share 3), then every replica is linked only to its two neighbours
// on a ring (each sees a different majority), each for eight seconds under
// the Put/Get workload. Either way some majority can elect a leader and
// keep it; the cell must make progress meanwhile (no leaders deposing each
// other for ever) and the history must be linearizable.
func TestBridgeAndRing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{proxied: true, replicas: 5})
	w := startKVWorkload(t, ctx, cell, 4, 3, 200_000)
	w.progress(t, "progress before the partitions")
	for _, p := range []struct {
		name      string
		connected func(a, b int) bool
	}{
		{"bridge", func(a, b int) bool { return a == 3 || b == 3 || (a <= 2) == (b <= 2) }},
		{"ring", func(a, b int) bool { return b-a == 1 || b-a == 4 }},
	} {
		cell.shape(p.connected)
		w.progress(t, "progress in the "+p.name)
		time.Sleep(8 * time.Second)
		w.progress(t, "progress late in the "+p.name)
		t.Logf("%s: leader latchd %d", p.name, cell.leader(ctx).id)
		cell.shape(func(a, b int) bool { return true })
		w.progress(t, "progress after the "+p.name+" healed")
	}
	w.finish(t, ctx)
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
	}
}

// TestPausedLockHolder (S11): a `latch lock -- CMD` process is paused with
// SIGSTOP while it holds a lock, longer than its session lease. Its CMD
// runs on, unaware (the case fencing exists for). The cell expires the
// session and grants the lock to a second `latch lock`, whose sequencer has
// a later lock generation, while the paused holder's sequencer no longer
// checks. Let go on, the first latch finds its lock lost, stops its CMD
// with SIGTERM and exits with code 5.
func TestPausedLockHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	dir := t.TempDir()
	seqA, termA, seqB := filepath.Join(dir, "seq-a"), filepath.Join(dir, "term-a"), filepath.Join(dir, "seq-b")

	// A's CMD writes its sequencer, then runs for up to a minute, noting a
	// SIGTERM if it gets one.
	scriptA := fmt.Sprintf(`trap 'echo term > %s; exit 143' TERM
echo "$LATCH_SEQUENCER" > %s
for i in $(seq 600); do sleep 0.1; done`, termA, seqA)
	a := start(t, "latch lock A", cell.latch, cell.env,
		"--session-timeout", "2s", "--grace", "5s", "lock", "--lock-delay", "1s", "/e2e-lock", "--", "sh", "-c", scriptA)
	readSeq := func(file string) client.Sequencer {
		t.Helper()
		var text string
		testutil.WaitFor(t, 30*time.Second, "a sequencer in "+filepath.Base(file), func() bool {
			b, _ := os.ReadFile(file)
			text = strings.TrimSpace(string(b))
			return text != ""
		})
		seq, err := client.ParseSequencer(text)
		if err != nil {
			t.Fatalf("sequencer %q in %s: %v", text, file, err)
		}
		return seq
	}
	sa := readSeq(seqA)

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP to latch lock A: %v", err)
	}
	// B waits in the queue until A's session has expired and the lock-delay
	// has passed; it holds the lock for two seconds.
	b := start(t, "latch lock B", cell.latch, cell.env, "lock", "--timeout", "60s", "/e2e-lock", "--",
		"sh", "-c", fmt.Sprintf(`echo "$LATCH_SEQUENCER" > %s; sleep 2`, seqB))
	sb := readSeq(seqB)
	if sb.LockGen <= sa.LockGen {
		t.Errorf("B's lock generation %d is not after A's %d", sb.LockGen, sa.LockGen)
	}

	c := cell.dial(ctx)
	for _, tc := range []struct {
		who  string
		seq  client.Sequencer
		want bool
	}{{"paused A", sa, false}, {"B", sb, true}} {
		ok, err := c.CheckSequencer(ctx, tc.seq)
		if err != nil || ok != tc.want {
			t.Errorf("CheckSequencer(%s's %v) = %v, %v while B holds the lock; want %v", tc.who, tc.seq, ok, err, tc.want)
		}
	}
	if code := b.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("latch lock B exit %d:\n%s", code, b.out.String())
	}
	select {
	case <-a.done:
		t.Fatalf("paused latch lock A exited:\n%s", a.out.String())
	default:
	}

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT to latch lock A: %v", err)
	}
	if code := a.wait(t, 60*time.Second); code != 5 {
		t.Errorf("latch lock A exit %d after it resumed; want 5 (lock lost):\n%s", code, a.out.String())
	}
	if !strings.Contains(a.out.String(), "lost") {
		t.Errorf("latch lock A did not report the lost lock:\n%s", a.out.String())
	}
	if got, _ := os.ReadFile(termA); strings.TrimSpace(string(got)) != "term" {
		t.Errorf("A's command did not get SIGTERM (term file %q)", got)
	}
}

// TestKillWholeCell (S4, without losing unsynced data): every replica is
// killed with SIGKILL at once while writers run, and the cell is started
// again from its data dirs. Every acknowledged write is there.
func TestKillWholeCell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/", 10*time.Second)
	testutil.WaitFor(t, 30*time.Second, "writes before the kill", func() bool { return w.count() >= 500 })
	cell.killAll()
	before := w.count()
	for _, n := range cell.nodes {
		cell.start(n)
	}
	testutil.WaitFor(t, 60*time.Second, "writes after the restart", func() bool { return w.count() >= before+500 })
	w.halt()
	t.Logf("%d writes acknowledged, %d before the kill", w.count(), before)
	w.verify(t, ctx, c)
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
	}
}

// lockInput is one call on an exclusive lock of the lock workload.
type lockInput struct {
	path string
	kind string // "grant" (Lock returned), "check" (CheckSequencer) or "release" (Unlock)
	gen  uint64 // the grant's lock generation (the output of a Lock)
}

// lockState is a lock as the model sees it: the generation holding it (0 if
// free) and the last one granted.
type lockState struct{ holder, last uint64 }

// lockModel is a set of exclusive locks, one per path: a grant needs the
// lock free and has a later generation than every earlier grant, a release
// needs the releasing grant to hold it, and CheckSequencer answers true
// exactly for the holder. Two clients holding one lock at once make a
// history with no linearization.
var lockModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		return partitionBy(history, func(op porcupine.Operation) string { return op.Input.(lockInput).path })
	},
	Init: func() any { return lockState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(lockState), input.(lockInput)
		switch in.kind {
		case "grant":
			if s.holder != 0 || in.gen <= s.last {
				return false, s
			}
			return true, lockState{holder: in.gen, last: in.gen}
		case "release":
			if s.holder != in.gen {
				return false, s
			}
			return true, lockState{last: s.last}
		}
		return output.(bool) == (s.holder == in.gen), s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(lockInput)
		if in.kind == "check" {
			return fmt.Sprintf("%s check %d -> %v", in.path, in.gen, output)
		}
		return fmt.Sprintf("%s %s %d", in.path, in.kind, in.gen)
	},
}

// lockWorkload is clients taking turns on one exclusive lock (a fresh one
// per window): Lock, CheckSequencer, Unlock, each call with a minute, so
// its outcome is known; a call that fails anyway is an error of the test.
type lockWorkload struct {
	opLog
	window atomic.Int64
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	errMu sync.Mutex
	errs  []error
}

// startLockWorkload starts lockers clients on the lock, each taking at most
// maxTurns turns.
func startLockWorkload(t *testing.T, ctx context.Context, cell *procCell, lockers, maxTurns int) *lockWorkload {
	t.Helper()
	w := &lockWorkload{opLog: opLog{origin: time.Now()}}
	w.ctx, w.stop = context.WithCancel(ctx)
	for id := range lockers {
		c := cell.dial(ctx)
		w.wg.Go(func() {
			for n := 0; n < maxTurns && w.ctx.Err() == nil; n++ {
				if err := w.turn(c, id); err != nil {
					w.errMu.Lock()
					w.errs = append(w.errs, fmt.Errorf("client %d: %w", id, err))
					w.errMu.Unlock()
					return
				}
			}
		})
	}
	return w
}

func (w *lockWorkload) record(id int, win int64, in lockInput, out any, call int64) {
	w.add(porcupine.Operation{ClientId: id, Input: in, Output: out, Call: call, Return: w.now()}, win)
}

// turn is one Lock, CheckSequencer and Unlock of client id. Once a Lock is
// called it runs to its end, even past the workload's: an abandoned grant
// would have no release.
func (w *lockWorkload) turn(c *client.Client, id int) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
	defer cancel()
	win := w.window.Load()
	path := fmt.Sprintf("/lk-w%d", win)
	call := w.now()
	l, err := c.Lock(ctx, path)
	if err != nil {
		return fmt.Errorf("Lock %s: %w", path, err)
	}
	gen := l.Sequencer().LockGen
	w.record(id, win, lockInput{path: path, kind: "grant", gen: gen}, nil, call)
	call = w.now()
	if ok, err := c.CheckSequencer(ctx, l.Sequencer()); err == nil {
		w.record(id, win, lockInput{path: path, kind: "check", gen: gen}, ok, call)
	}
	call = w.now()
	if err := l.Unlock(ctx); err != nil {
		return fmt.Errorf("Unlock %s generation %d: %w", path, gen, err)
	}
	w.record(id, win, lockInput{path: path, kind: "release", gen: gen}, nil, call)
	return nil
}

// progress waits up to a minute for 60 more lock calls to complete.
func (w *lockWorkload) progress(t *testing.T, what string) {
	t.Helper()
	base := w.done.Load()
	testutil.WaitFor(t, 60*time.Second, what, func() bool { return w.done.Load() >= base+60 })
}

// finish stops the lockers and checks the history: no failed call, and
// porcupine against one exclusive lock per path.
func (w *lockWorkload) finish(t *testing.T) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	w.errMu.Lock()
	defer w.errMu.Unlock()
	for _, err := range w.errs {
		t.Errorf("a lock call failed (each has a minute; a minority fault must not stop one): %v", err)
	}
	checkLinearizable(t, lockModel, w.take(math.MaxInt64), "lock operations")
}

// TestLockUnderFaults: clients take turns on one exclusive lock (Lock,
// CheckSequencer, Unlock) while the leader is cut off from its followers,
// then paused beyond its lease, then killed and restarted. Porcupine then
// checks the history against one exclusive lock: never two holders,
// generations increasing, a holder's sequencer valid while it holds.
func TestLockUnderFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{proxied: true})
	const lease = time.Second
	w := startLockWorkload(t, ctx, cell, 4, 100_000)
	progress := func(what string) { t.Helper(); w.progress(t, "lock handoffs "+what) }
	progress("before the faults")
	isolateLeader(t, ctx, cell, progress)

	leader := cell.leader(ctx)
	leader.p.pause(t, 3*lease)
	progress("after the leader's pause")

	killLeader(t, ctx, cell, progress)
	w.finish(t)
}

// isolateLeader cuts the leader off from both followers (clients still
// reach it) for three leases and mends the links, waiting for progress
// (what says when) while it is cut off and after.
func isolateLeader(t *testing.T, ctx context.Context, cell *procCell, progress func(what string)) {
	t.Helper()
	const lease = time.Second
	old := cell.leader(ctx)
	cell.isolate(old, true)
	progress("while the leader is cut off")
	time.Sleep(3 * lease)
	cell.isolate(old, false)
	progress("after the partition healed")
}

// killLeader kills the leader with SIGKILL and starts it again, waiting
// for progress after each.
func killLeader(t *testing.T, ctx context.Context, cell *procCell, progress func(what string)) {
	t.Helper()
	leader := cell.leader(ctx)
	leader.p.stop(t, syscall.SIGKILL, 10*time.Second)
	progress("after the leader was killed")
	cell.start(leader)
	progress("after the restart")
}

// TestCorruptLogRefused (S20): one byte in the middle of a stopped
// follower's Paxos journal is flipped. Started again, the replica must
// refuse to run on it, with an error that says so (LevelDB's journal
// checksums in strict mode), rather than drop records it may have
// acknowledged; the other two replicas carry on. The way back is the one
// for a lost disk: delete the data dir and start the replica, which
// rebuilds its state from the others and catches up.
func TestCorruptLogRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/", 10*time.Second)
	victim := cell.other(cell.leader(ctx))
	journal := func() (string, int64) {
		files, _ := filepath.Glob(filepath.Join(victim.data, "paxos", "leveldb", "*.log"))
		var name string
		var size int64
		for _, f := range files {
			if st, err := os.Stat(f); err == nil && st.Size() > size {
				name, size = f, st.Size()
			}
		}
		return name, size
	}
	// Enough journal that its middle is far from the tail (a torn tail of
	// never-synced records is repaired, not refused).
	testutil.WaitFor(t, 60*time.Second, "a journal of 512 KiB on the follower", func() bool {
		_, size := journal()
		return size >= 512<<10
	})
	w.halt()
	if code := victim.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("latchd %d exit %d after SIGTERM", victim.id, code)
	}
	name, size := journal()
	flipBit(t, name, size/2)

	cell.start(victim)
	if code := victim.p.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("latchd %d ran on a corrupt journal (exit 0):\n%s", victim.id, tail(victim.p.out.String(), 2000))
	}
	if out := victim.p.out.String(); !strings.Contains(out, "corrupt") {
		t.Errorf("latchd %d's error does not say the data is corrupt:\n%s", victim.id, tail(out, 2000))
	}
	if _, err := c.Put(ctx, "/after-corruption", []byte("x")); err != nil {
		t.Errorf("Put on the two healthy replicas: %v", err)
	}
	// The way back: delete the corrupt data dir; the replica rebuilds its
	// state from the other two and catches up.
	if err := os.RemoveAll(victim.data); err != nil {
		t.Fatal(err)
	}
	cell.start(victim)
	cell.rebuilt(ctx, victim)
	cell.caughtUp(ctx, victim)
	w.verify(t, ctx, c)
}

// TestWipedReplicaRebuilds (S21): under the Put/Get workload a follower is
// killed with SIGKILL, its data dir deleted (a lost disk), and it is
// started again without --new-cell. It must say it rebuilds, let the cell
// go on meanwhile, and report on /status once it rebuilt and votes again.
// Then the other follower is killed: the cell can only go on with the
// rebuilt replica's vote. The history must be linearizable.
func TestWipedReplicaRebuilds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	w := startKVWorkload(t, ctx, cell, 4, 3, 200_000)
	w.progress(t, "progress before the wipe")

	wiped := cell.other(cell.leader(ctx))
	cell.wipe(wiped)
	cell.start(wiped)
	w.progress(t, "progress while the wiped replica rebuilds")
	cell.rebuilt(ctx, wiped)
	cell.caughtUp(ctx, wiped)

	leader := cell.leader(ctx)
	other := cell.other(wiped, leader)
	other.p.stop(t, syscall.SIGKILL, 10*time.Second)
	w.progress(t, fmt.Sprintf("progress with latchd %d down (needs the rebuilt replica's vote)", other.id))
	cell.start(other)
	t.Logf("wiped latchd %d; then killed latchd %d under leader latchd %d", wiped.id, other.id, leader.id)
	w.finish(t, ctx)
}

// TestTwoWipedReplicasOfFiveRebuild (S21, two disks lost at once): in a
// cell of five, two followers are killed with SIGKILL, their data dirs
// deleted, and both started again without --new-cell while writers go on.
// Neither can promise while it rebuilds, so they must be fenced together;
// before 4d15338 they stayed rebuilding for ever. Once both rebuilt, the
// other two followers are killed: the cell can only go on with both
// rebuilt replicas' votes, and every acknowledged write must be readable.
func TestTwoWipedReplicasOfFiveRebuild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{replicas: 5})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 4, "/two-", 20*time.Second)
	w.progress(t, "writes before the wipes")

	leader := cell.leader(ctx)
	a := cell.other(leader)
	b := cell.other(leader, a)
	cell.wipe(a)
	cell.wipe(b)
	cell.start(a)
	cell.start(b)
	w.progress(t, fmt.Sprintf("writes while latchd %d and %d rebuild", a.id, b.id))
	cell.rebuilt(ctx, a)
	cell.rebuilt(ctx, b)

	// Whoever leads now, the three replicas left up include both rebuilt
	// ones: a majority of five only with their votes.
	leader = cell.leader(ctx)
	stopped := []*node{cell.other(a, b, leader)}
	stopped = append(stopped, cell.other(a, b, leader, stopped[0]))
	for _, n := range stopped {
		n.p.stop(t, syscall.SIGKILL, 10*time.Second)
	}
	w.progress(t, fmt.Sprintf("writes with latchd %d and %d down (needs the rebuilt replicas' votes)", stopped[0].id, stopped[1].id))
	w.halt()
	w.verify(t, ctx, c)
	for _, n := range stopped {
		cell.start(n)
	}
	for _, n := range stopped {
		cell.caughtUp(ctx, n)
	}
	t.Logf("wiped latchd %d and %d; then killed latchd %d and %d under leader latchd %d; %d acknowledged writes",
		a.id, b.id, stopped[0].id, stopped[1].id, leader.id, w.count())
}

// TestRollingRestart (S13): each replica in turn, the leader last, is
// stopped and started again on its data dir while writers run and a client
// holds a lock and an ephemeral node: first with SIGTERM (the leader hands
// off), then with SIGKILL. The holder's session must never expire, its
// lock and ephemeral node must survive, every acknowledged write must be
// readable, and every replica must catch up after its restart.
func TestRollingRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})

	holder := cell.dial(ctx)
	events := holder.SessionEvents()
	l, err := holder.Lock(ctx, "/held")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if _, err := holder.Put(ctx, "/svc-holder", []byte("here"), client.Ephemeral()); err != nil {
		t.Fatalf("Put ephemeral: %v", err)
	}
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 4, "/roll-", 20*time.Second)
	w.progress(t, "writes before the restarts")

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		leader := cell.leader(ctx)
		order := []*node{}
		for _, n := range cell.nodes {
			if n != leader {
				order = append(order, n)
			}
		}
		for _, n := range append(order, leader) {
			code := n.p.stop(t, sig, 30*time.Second)
			if sig == syscall.SIGTERM && code != 0 {
				t.Errorf("latchd %d exit %d after SIGTERM; want 0", n.id, code)
			}
			cell.start(n)
			cell.caughtUp(ctx, n)
			w.progress(t, fmt.Sprintf("writes after latchd %d's restart (%v)", n.id, sig))
		}
	}
	w.halt()
	w.verify(t, ctx, c)

	select {
	case <-l.Lost():
		t.Fatal("the holder's lock was lost during the rolling restart")
	default:
	}
	if err := holder.Err(); err != nil {
		t.Fatalf("the holder's session ended: %v", err)
	}
	for drained := false; !drained; {
		select {
		case ev := <-events:
			if ev.State == client.StateExpired {
				t.Fatalf("the holder's session expired at %v", ev.At)
			}
		default:
			drained = true
		}
	}
	if ok, err := c.CheckSequencer(ctx, l.Sequencer()); err != nil || !ok {
		t.Errorf("CheckSequencer(holder's grant) = %v, %v; want true", ok, err)
	}
	if n, err := c.Get(ctx, "/svc-holder"); err != nil || string(n.Data) != "here" {
		t.Errorf("the holder's ephemeral node: %q, %v", n.Data, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Errorf("Unlock after the rolling restart: %v", err)
	}
}
