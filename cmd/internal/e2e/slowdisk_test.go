package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// This file holds S18's slow disk at the process level: a replica's disk
// that works but syncs slowly (../shared/notes/reliability.md §7.3). Each
// replica's data dir is on a loop-mounted ext4 image of its own (disk_test.go),
// and the latchd processes run in a block I/O cgroup of the test whose
// throttle limits the writes to one replica's loop device: its fsyncs
// then take about 100 ms instead of about one, or seconds. Besides root
// and loop devices the test needs cgroup v1's blkio controller (or cgroup
// v2's io controller enabled for the children of the test's cgroup);
// without them it skips and says why.

// slowIOPS is the write IOPS a slowed disk is allowed: each synced write
// of latchd's log waits about 1/slowIOPS for its data block.
const slowIOPS = 20

// slowFor is how long a disk stays slow in each scenario.
const slowFor = 10 * time.Second

// stallBPS is the write bytes a second a stalled disk is allowed: a synced
// write of latchd's log then takes seconds.
const stallBPS = 256

// blkThrottle is a block I/O cgroup made for one test: the processes moved
// into it have their writes to the devices it limits throttled. It is
// removed at the end of the test, its processes moved back to the test's
// own cgroup.
type blkThrottle struct {
	dir  string // the cgroup's directory
	back string // cgroup.procs of the cgroup the processes came from
	v2   bool   // io.max (cgroup v2) rather than blkio.throttle (v1)
}

var throttles atomic.Int64

// newBlkThrottle makes the test's cgroup under the test process's own, or
// skips the test, saying why, where that is not possible.
func newBlkThrottle(t *testing.T) *blkThrottle {
	t.Helper()
	parent, v2, err := ownIOCgroup()
	if err != nil {
		t.Skipf("no block I/O throttle for a slow disk: %v", err)
	}
	b := &blkThrottle{
		dir:  filepath.Join(parent, fmt.Sprintf("latch-e2e-%d-%d", os.Getpid(), throttles.Add(1))),
		back: filepath.Join(parent, "cgroup.procs"),
		v2:   v2,
	}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		t.Skipf("cannot make a block I/O cgroup for a slow disk: %v", err)
	}
	t.Cleanup(func() { b.remove(t) })
	return b
}

// ownIOCgroup returns the directory of the test process's cgroup in the
// cgroup v1 blkio hierarchy or, without one, in cgroup v2's if its io
// controller is enabled there for children.
func ownIOCgroup() (dir string, v2 bool, err error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	var v2path string
	for line := range strings.Lines(string(own)) {
		// hierarchy-ID:controllers:path
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2path = f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "blkio" {
				const root = "/sys/fs/cgroup/blkio"
				if _, err := os.Stat(filepath.Join(root, "blkio.throttle.write_iops_device")); err != nil {
					return "", false, fmt.Errorf("blkio in /proc/self/cgroup but not mounted at %s: %v", root, err)
				}
				return filepath.Join(root, f[2]), false, nil
			}
		}
	}
	if v2path == "" {
		return "", false, errors.New("neither cgroup v1 blkio nor cgroup v2 in /proc/self/cgroup")
	}
	// Only where io is already delegated to the children: the test turns
	// no controller on.
	dir = filepath.Join("/sys/fs/cgroup", v2path)
	ctl, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil || !strings.Contains(" "+strings.TrimSpace(string(ctl))+" ", " io ") {
		return "", false, fmt.Errorf("no cgroup v1 blkio, and cgroup v2's io controller is not enabled for the children of %s (%q, %v)", dir, ctl, err)
	}
	return dir, true, nil
}

// add moves the process pid into the cgroup.
func (b *blkThrottle) add(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(b.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatalf("moving pid %d into %s: %v", pid, b.dir, err)
	}
}

// limit limits the writes to device dev ("MAJ:MIN") of the cgroup's
// processes to n per second, of what (iops or bytes); 0 lifts the limit.
func (b *blkThrottle) limit(t *testing.T, dev string, what throttled, n int) {
	t.Helper()
	file, val := "blkio.throttle.write_iops_device", fmt.Sprintf("%s %d", dev, n)
	if what == bytesPerSec {
		file = "blkio.throttle.write_bps_device"
	}
	if b.v2 {
		key := map[throttled]string{iops: "wiops", bytesPerSec: "wbps"}[what]
		file, val = "io.max", fmt.Sprintf("%s %s=%d", dev, key, n)
		if n == 0 {
			val = fmt.Sprintf("%s %s=max", dev, key)
		}
	}
	if err := os.WriteFile(filepath.Join(b.dir, file), []byte(val), 0o644); err != nil {
		t.Fatalf("writing %q to %s of %s: %v", val, file, b.dir, err)
	}
}

// throttled is what a blkThrottle limits.
type throttled int

const (
	iops throttled = iota
	bytesPerSec
)

// remove moves the cgroup's processes back and removes it. A process that
// exits meanwhile leaves the cgroup by itself, hence the few tries.
func (b *blkThrottle) remove(t *testing.T) {
	t.Helper()
	var err error
	for range 10 {
		procs, _ := os.ReadFile(filepath.Join(b.dir, "cgroup.procs"))
		for _, pid := range strings.Fields(string(procs)) {
			os.WriteFile(b.back, []byte(pid), 0o644)
		}
		if err = os.Remove(b.dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("removing the cgroup %s: %v", b.dir, err)
}

// device returns the "MAJ:MIN" numbers of the loop device the disk is
// mounted from.
func (d *smallDisk) device(t *testing.T) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(d.dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	return fmt.Sprintf("%d:%d", major, minor)
}

// metrics returns the values of the named unlabelled metrics of latchd n,
// from its /metrics; each must be there.
func metrics(ctx context.Context, n *node, names ...string) (map[string]float64, error) {
	body, _, err := httpGet(ctx, "http://"+n.admin+"/metrics")
	if err != nil {
		return nil, err
	}
	vals := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			vals[name] = v
		}
	}
	if len(vals) != len(names) {
		return nil, fmt.Errorf("latchd %d's /metrics lacks some of %q: %v", n.id, names, vals)
	}
	return vals, nil
}

// watcher watches the cell while disks are slow: whether some replica
// leads and holds its master lease (polling every replica's /metrics), and
// how long a linearizable read through the client takes.
type watcher struct {
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu              sync.Mutex
	polls, noLease  int // polls, and those in which no replica led with its lease
	reads, readErrs int
	slowestRead     time.Duration
}

// watch starts a watcher of the cell, which reads through the client if
// reads; end stops it.
func (s *slowCell) watch(ctx context.Context, reads bool) *watcher {
	ctx, stop := context.WithCancel(ctx)
	w := &watcher{stop: stop}
	w.wg.Go(func() {
		for i := 0; i < 10_000 && ctx.Err() == nil; i++ {
			leased := false
			for _, n := range s.nodes {
				m, err := metrics(ctx, n, "latch_is_leader", "latch_leader_lease_valid")
				leased = leased || err == nil && m["latch_is_leader"] == 1 && m["latch_leader_lease_valid"] == 1
			}
			w.mu.Lock()
			w.polls++
			if !leased {
				w.noLease++
			}
			w.mu.Unlock()
			sleep(ctx, 100*time.Millisecond)
		}
	})
	w.wg.Go(func() {
		for i := 0; i < 10_000 && reads && ctx.Err() == nil; i++ {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			begin := time.Now()
			_, err := s.c.Get(rctx, "/")
			took := time.Since(begin)
			cancel()
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.reads++
			if err != nil {
				w.readErrs++
			}
			w.slowestRead = max(w.slowestRead, took)
			w.mu.Unlock()
			sleep(ctx, 20*time.Millisecond)
		}
	})
	return w
}

// sleep sleeps for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// end stops the watcher and says what it saw.
func (w *watcher) end() string {
	w.stop()
	w.wg.Wait()
	return fmt.Sprintf("no replica led with its lease in %d of %d polls; %d linearizable reads, %d failed, the slowest took %v",
		w.noLease, w.polls, w.reads, w.readErrs, w.slowestRead.Round(time.Millisecond))
}

// slowCell is the cell of TestSlowDisk and what it watches.
type slowCell struct {
	*procCell
	disks []*smallDisk
	blk   *blkThrottle
	c     *client.Client
	w     *writers
	// events is every session event of c, as "phase: event".
	mu     sync.Mutex
	phase  string
	events []string
}

// watchSession records c's session events under the current phase until
// the session ends.
func (s *slowCell) watchSession() {
	ch := s.c.SessionEvents()
	go func() {
		for ev := range ch {
			s.mu.Lock()
			s.events = append(s.events, s.phase+": "+ev.String())
			s.mu.Unlock()
		}
	}()
}

// slow throttles the disks of victims for slowFor under the writers,
// then lifts the throttle, and logs what happened meanwhile. Each
// throttled replica's synced writes must have become slow (else the
// throttle did not take effect and the test proves nothing), and, when
// writesGoOn, the cell must acknowledge writes while they are slow.
func (s *slowCell) slow(t *testing.T, ctx context.Context, what string, writesGoOn bool, victims ...*node) {
	t.Helper()
	s.mu.Lock()
	s.phase = what
	s.mu.Unlock()
	marks := s.logMarks()
	before := make([]syncSample, len(victims))
	for i, v := range victims {
		before[i] = sample(t, ctx, v)
	}
	watch := s.watch(ctx, true)
	count, begin := s.w.count(), time.Now()
	for _, v := range victims {
		s.blk.limit(t, s.disks[v.id-1].device(t), iops, slowIOPS)
	}
	if writesGoOn {
		s.w.progress(t, "writes while "+what)
	}
	time.Sleep(time.Until(begin.Add(slowFor)))
	for i, v := range victims {
		after := sample(t, ctx, v)
		n, took := after.writes-before[i].writes, after.took-before[i].took
		if n <= 0 {
			t.Logf("latchd %d did no synced write while its disk was slow", v.id)
			continue
		}
		mean := took / time.Duration(n)
		t.Logf("latchd %d, disk throttled to %d write IOPS: %d synced writes, %v each on average (%v before)", v.id, slowIOPS, n, mean.Round(10*time.Microsecond), before[i].mean().Round(10*time.Microsecond))
		// A lower bound, which load only raises: the throttle lets the
		// data block of a synced write out about every 1/slowIOPS.
		if floor := time.Second / (4 * slowIOPS); mean < floor {
			t.Errorf("latchd %d's synced writes took %v each while its disk was throttled to %d IOPS; want ≥ %v: the throttle did not take effect", v.id, mean, slowIOPS, floor)
		}
	}
	for _, v := range victims {
		s.blk.limit(t, s.disks[v.id-1].device(t), iops, 0)
	}
	t.Logf("%s: %d writes acknowledged in %v; %s; %s", what, s.w.count()-count, time.Since(begin).Round(time.Millisecond), watch.end(), s.logSince(marks))
}

// stall holds one synced write of an idle leader for seconds (a write
// limit of stallBPS bytes a second on its disk), with no other traffic
// for slowFor, then lifts the limit; the cell must then acknowledge a
// write. A write made as the stall begins is acknowledged by the
// followers' syncs (the leader's Accepts leave before its own write).
//
// What happens meanwhile is logged, not asserted. The leader's heartbeats
// wait behind its own write (replica/group.go, pump: while g.writing only
// the core's Accepts are sent; the heartbeats Tick queues leave with the
// next Ready, after the write): under load the pipelined Accepts carry
// the lease round and keep the followers and the lease (the scenarios
// above saw no leader change), but an idle leader whose one write takes
// longer than the election timeout loses its lease and, to a follower
// that campaigns, its leadership.
func (s *slowCell) stall(t *testing.T, ctx context.Context, leader *node) {
	t.Helper()
	what := fmt.Sprintf("one write of the idle leader latchd %d stalls", leader.id)
	s.mu.Lock()
	s.phase = what
	s.mu.Unlock()
	marks, before := s.logMarks(), sample(t, ctx, leader)
	watch := s.watch(ctx, false)
	dev := s.disks[leader.id-1].device(t)
	s.blk.limit(t, dev, bytesPerSec, stallBPS)
	begin := time.Now()
	s.put(t, ctx, "/slow-stalled")
	t.Logf("%s: a write acknowledged in %v", what, time.Since(begin).Round(time.Millisecond))
	time.Sleep(time.Until(begin.Add(slowFor)))
	after := sample(t, ctx, leader)
	s.blk.limit(t, dev, bytesPerSec, 0)
	n, took := after.writes-before.writes, after.took-before.took
	t.Logf("%s: %d synced writes in %v; %s; %s", what, n, took.Round(time.Millisecond), watch.end(), s.logSince(marks))
	// A lower bound again: a synced write's data block alone is 512
	// bytes, two seconds at stallBPS.
	if n == 0 || took/time.Duration(n) < time.Second {
		t.Errorf("latchd %d did %d synced writes in %v while its disk was throttled to %d bytes a second: the throttle did not take effect", leader.id, n, took, stallBPS)
	}
	s.put(t, ctx, "/slow-after-stall")
}

// put writes key and records it as acknowledged, for verify; the write
// must be acknowledged within 30 s.
func (s *slowCell) put(t *testing.T, ctx context.Context, key string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.c.Put(pctx, key, []byte(key)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	s.w.mu.Lock()
	s.w.acked[key] = key
	s.w.mu.Unlock()
}

// syncSample is a replica's sync counters at one moment.
type syncSample struct {
	writes int64
	took   time.Duration
}

func (s syncSample) mean() time.Duration {
	if s.writes == 0 {
		return 0
	}
	return s.took / time.Duration(s.writes)
}

// sample reads n's sync counters; the replica must answer.
func sample(t *testing.T, ctx context.Context, n *node) syncSample {
	t.Helper()
	m, err := metrics(ctx, n, "latch_paxos_synced_writes_total", "latch_paxos_sync_seconds_total")
	if err != nil {
		t.Fatalf("latchd %d's sync counters: %v", n.id, err)
	}
	return syncSample{int64(m["latch_paxos_synced_writes_total"]), time.Duration(m["latch_paxos_sync_seconds_total"] * float64(time.Second))}
}

// logMarks returns how much each replica has printed so far.
func (s *slowCell) logMarks() []int {
	marks := make([]int, len(s.nodes))
	for i, n := range s.nodes {
		marks[i] = len(n.p.out.String())
	}
	return marks
}

// logSince summarizes what the replicas logged since marks: role changes,
// leader terms started, sessions expired.
func (s *slowCell) logSince(marks []int) string {
	var b strings.Builder
	for i, n := range s.nodes {
		out := n.p.out.String()[marks[i]:]
		fmt.Fprintf(&b, "latchd %d: %d role changes, %d leader terms started, %d sessions expired; ", n.id,
			strings.Count(out, `msg="role changed"`), strings.Count(out, `msg="leader term started"`),
			strings.Count(out, `msg="session: lease expired"`))
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// TestSlowDisk (S18, slow rather than failing): under writers, a
// follower's disk is throttled to slowIOPS write IOPS for slowFor, then
// the leader's, then two replicas' (a majority), each time lifted
// afterwards. Asserted: the throttled replicas' synced writes do become
// slow (their /metrics; else the throttle did not take effect); the cell
// acknowledges writes while a follower's or the leader's disk is slow (a
// majority syncs fast) and after each throttle is lifted; no latchd exits
// or panics; the client's session lives on; every replica catches up and
// holds every acknowledged write (also read alone, with stale reads).
// Leader changes, session events and write counts per phase are logged,
// not asserted: how long the leader's slow syncs may hold its heartbeats
// is a matter of timing.
func TestSlowDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cell, disks := startDiskCell(t, ctx)
	blk := newBlkThrottle(t)
	for _, n := range cell.nodes {
		blk.add(t, n.p.cmd.Process.Pid)
	}
	s := &slowCell{procCell: cell, disks: disks, blk: blk, c: cell.dial(ctx), phase: "before"}
	s.watchSession()
	s.w = startWriters(ctx, s.c, 8, "/slow-", 10*time.Second)
	s.w.progress(t, "writes before the disks are slowed")

	leader := cell.leader(ctx)
	follower := cell.other(leader)
	s.slow(t, ctx, fmt.Sprintf("the follower latchd %d's disk is slow", follower.id), true, follower)
	cell.caughtUp(ctx, follower)
	s.w.progress(t, "writes after the follower's disk is fast again")

	leader = cell.leader(ctx)
	s.slow(t, ctx, fmt.Sprintf("the leader latchd %d's disk is slow", leader.id), true, leader)
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
	}
	s.w.progress(t, "writes after the leader's disk is fast again")

	// Two slow disks: a majority syncs slowly, so every write waits for a
	// slow sync; writes slow down but need not stop, and are not
	// asserted while slow.
	leader = cell.leader(ctx)
	s.slow(t, ctx, fmt.Sprintf("the disks of latchd %d (leader) and %d are slow", leader.id, cell.other(leader).id), false, leader, cell.other(leader))
	s.w.progress(t, "writes after both disks are fast again")

	s.w.halt()
	s.stall(t, ctx, cell.leader(ctx))
	s.mu.Lock()
	t.Logf("session events: %q", s.events)
	s.mu.Unlock()
	for _, n := range cell.nodes {
		select {
		case <-n.p.done:
			t.Errorf("latchd %d exited under a slow disk: %v\n%s", n.id, n.p.err, tail(n.p.out.String(), 4000))
		default:
		}
		if out := n.p.out.String(); strings.Contains(out, "panic:") {
			t.Errorf("latchd %d panicked:\n%s", n.id, tail(out, 4000))
		}
	}
	if err := s.c.Err(); err != nil {
		t.Errorf("the writers' session ended: %v", err)
	}
	s.w.verifyEverywhere(t, ctx, cell, s.c)
}
