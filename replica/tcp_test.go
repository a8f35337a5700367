package replica

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/replica/logdb"
)

// proposeMany proposes n commands named prefix-i from workers goroutines
// through whichever replica leads, and returns the commands acknowledged.
func (c *cell) proposeMany(ctx context.Context, g uint32, prefix string, workers, n int) []string {
	c.t.Helper()
	var mu sync.Mutex
	var acked []string
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				cmd := fmt.Sprintf("%s-%d", prefix, i)
				if _, err := c.propose(ctx, g, []byte(cmd)); err != nil {
					c.t.Errorf("propose(%s) = %v", cmd, err)
					return
				}
				mu.Lock()
				acked = append(acked, cmd)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return acked
}

// checkContains fails unless every replica applied every command in acked.
func (c *cell) checkContains(g uint32, acked []string) {
	c.t.Helper()
	ref := c.checkSame(g)
	have := make(map[string]bool, len(ref))
	for _, cmd := range ref {
		have[string(cmd)] = true
	}
	for _, cmd := range acked {
		if !have[cmd] {
			c.t.Fatalf("acknowledged command %q is not applied", cmd)
		}
	}
}

func TestTCPLeaderRestartKeepsAcknowledged(t *testing.T) {
	c := newCell(t, cellOpts{tcp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := c.proposeMany(ctx, 1, "a", 16, 300)

	old := c.leader(1, 10*time.Second).ID()
	c.stop(old)
	acked = append(acked, c.proposeMany(ctx, 1, "b", 16, 300)...)

	c.start(old)
	acked = append(acked, c.proposeMany(ctx, 1, "c", 8, 100)...)
	c.waitApplied(1, len(acked), 30*time.Second)
	c.waitConverged(1, 30*time.Second)
	c.checkContains(1, acked)
}

func TestTCPFailoverTime(t *testing.T) {
	c := newCell(t, cellOpts{tcp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.propose(ctx, 1, []byte("before")); err != nil {
		t.Fatal(err)
	}
	old := c.leader(1, 10*time.Second).ID()
	killed := time.Now()
	c.stop(old)
	if _, err := c.propose(ctx, 1, []byte("after")); err != nil {
		t.Fatal(err)
	}
	newLeader := c.leader(1, time.Second).ID()
	cfg := c.cfgs[newLeader]
	t.Logf("leader %d closed; leader %d committed a new command %v later (lease %v, election timeout %v)",
		old, newLeader, time.Since(killed).Round(time.Millisecond), cfg.LeaseDuration, cfg.ElectionTimeout)
	if newLeader == old {
		t.Fatalf("leader after failover = %d, the closed replica", newLeader)
	}
	c.waitApplied(1, 2, 10*time.Second)
	c.waitConverged(1, 10*time.Second)
	c.checkSame(1)
}

// TestTCPWipedFollowerRebuilds: a follower loses its data dir and restarts
// with RebuildEmpty. It learns what it missed by snapshot, rebuilds (a
// fence by the leader), and votes again: with the other follower stopped,
// the cell still commits, which needs its vote.
func TestTCPWipedFollowerRebuilds(t *testing.T) {
	logs := &logLines{}
	c := newCell(t, cellOpts{tcp: true, tune: func(cfg *Config) {
		cfg.SnapshotEvery = 40
		cfg.SnapshotChunk = 1024 // several chunks
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := c.proposeMany(ctx, 1, "a", 4, 100)
	lead := c.leader(1, 10*time.Second).ID()
	var victim, other uint64
	for _, id := range c.ids() {
		switch {
		case id == lead:
		case victim == 0:
			victim = id
		default:
			other = id
		}
	}
	c.stop(victim)
	acked = append(acked, c.proposeMany(ctx, 1, "b", 4, 300)...)
	if err := os.RemoveAll(c.cfgs[victim].DataDir); err != nil {
		t.Fatal(err)
	}
	cfg := c.cfgs[victim]
	cfg.RebuildEmpty = true
	cfg.Logger = slog.New(logs)
	c.cfgs[victim] = cfg
	c.start(victim)
	waitFor(t, 30*time.Second, "the wiped replica to rebuild", func() bool {
		st, err := c.reps[victim].Status(ctx, 1)
		return err == nil && !st.Rebuilding && logs.has("rebuilt:")
	})
	if !logs.has("no durable state: rebuilding") {
		t.Fatalf("the wiped replica did not say it rebuilds; its log:\n%s", logs)
	}
	c.stop(other)
	acked = append(acked, c.proposeMany(ctx, 1, "c", 4, 20)...)
	c.start(other)
	c.waitApplied(1, len(acked), 30*time.Second)
	c.waitConverged(1, 30*time.Second)
	c.checkContains(1, acked)
	st, err := c.reps[victim].Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.SnapshotsRecv == 0 {
		t.Fatalf("wiped replica %d caught up without a snapshot: %+v", victim, st.Stats)
	}
	t.Logf("wiped replica %d: %+v", victim, st.Stats)
}

// Two replicas of five that lost their disks at the same time rebuild
// together (one fence serves both), and then vote: with the other two
// followers stopped, the leader and the two rebuilt replicas commit.
func TestTCPTwoWipedReplicasRebuildTogether(t *testing.T) {
	c := newCell(t, cellOpts{n: 5, tcp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	acked := c.proposeMany(ctx, 1, "a", 4, 50)
	lead := c.leader(1, 10*time.Second).ID()
	var victims, others []uint64
	for _, id := range c.ids() {
		switch {
		case id == lead:
		case len(victims) < 2:
			victims = append(victims, id)
		default:
			others = append(others, id)
		}
	}
	logs := map[uint64]*logLines{}
	for _, v := range victims {
		c.stop(v)
	}
	acked = append(acked, c.proposeMany(ctx, 1, "b", 4, 50)...)
	for _, v := range victims {
		if err := os.RemoveAll(c.cfgs[v].DataDir); err != nil {
			t.Fatal(err)
		}
		logs[v] = &logLines{}
		cfg := c.cfgs[v]
		cfg.RebuildEmpty = true
		cfg.Logger = slog.New(logs[v])
		c.cfgs[v] = cfg
		c.start(v)
	}
	for _, v := range victims {
		waitFor(t, 45*time.Second, fmt.Sprintf("wiped replica %d to rebuild", v), func() bool {
			st, err := c.reps[v].Status(ctx, 1)
			return err == nil && !st.Rebuilding && logs[v].has("rebuilt:")
		})
	}
	for _, o := range others {
		c.stop(o)
	}
	acked = append(acked, c.proposeMany(ctx, 1, "c", 4, 20)...)
	for _, o := range others {
		c.start(o)
	}
	c.waitApplied(1, len(acked), 30*time.Second)
	c.waitConverged(1, 30*time.Second)
	c.checkContains(1, acked)
}

// logLines is a slog.Handler that keeps the messages it gets, each with
// its attributes appended (key=value).
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

// hasWith reports whether a line starts with prefix and contains text.
func (l *logLines) hasWith(prefix, text string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(s string) bool { return strings.HasPrefix(s, prefix) && strings.Contains(s, text) })
}

func (l *logLines) has(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HasState: none for a missing dir or one a replica opened without voting;
// some once the replica has voted; a rebuild mark counts too.
func TestHasState(t *testing.T) {
	dir := t.TempDir()
	check := func(path string, want bool) {
		t.Helper()
		got, err := HasState(path, []uint32{1})
		if err != nil || got != want {
			t.Fatalf("HasState(%s) = %v, %v; want %v", path, got, err, want)
		}
	}
	check(filepath.Join(dir, "missing"), false)
	opened := filepath.Join(dir, "opened")
	db, err := logdb.Open(opened, logdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	check(opened, false)

	c := newCell(t, cellOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.propose(ctx, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.stop(1)
	check(c.cfgs[1].DataDir, true)

	marked := filepath.Join(dir, "marked")
	if db, err = logdb.Open(marked, logdb.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Group(1).MarkRebuild(5); err != nil {
		t.Fatal(err)
	}
	db.Close()
	check(marked, true)
	if _, err := HasState(filepath.Join(dir, "missing", "x"), []uint32{1}); err != nil {
		t.Fatalf("HasState under a missing dir: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, err := HasState(file, []uint32{1}); err == nil {
		t.Fatal("HasState of a file: no error")
	}
}
