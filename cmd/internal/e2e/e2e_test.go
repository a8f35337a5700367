package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
)

// TestQuickStart follows the README: `latchd dev` on a non-default base
// port, the CLI against it, and Ctrl-C (SIGINT) for a clean stop.
func TestQuickStart(t *testing.T) {
	latchd, latch := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := freeBase(t)
	dev := start(t, "latchd dev", latchd, nil, "dev", "--base-port", fmt.Sprint(base))
	testutil.WaitFor(t, 30*time.Second, "the export line", func() bool { return strings.Contains(dev.out.String(), "export LATCH_ENDPOINTS=") })
	m := regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(dev.out.String())
	want := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2)
	if m[1] != want {
		t.Fatalf("export line names %s; want %s", m[1], want)
	}
	dataDir := regexp.MustCompile(`data (\S+)/r1`).FindStringSubmatch(dev.out.String())[1]
	env := []string{"LATCH_ENDPOINTS=" + m[1]}

	cli := func(stdin string, args ...string) (string, string) {
		t.Helper()
		out, errs, code := run(t, ctx, latch, env, stdin, args...)
		if code != 0 {
			t.Fatalf("latch %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out, errs
	}
	cli("", "put", "-p", "/demo/hello", "world")
	cli("some config\n", "put", "/demo/config", "-")
	if out, _ := cli("", "get", "/demo/hello"); out != "world" {
		t.Errorf("latch get = %q; want world", out)
	}
	if out, _ := cli("", "tree", "/"); !strings.Contains(out, "└── demo") || !strings.Contains(out, "hello  [5 B") {
		t.Errorf("latch tree / =\n%s", out)
	}
	if out, _ := cli("", "lock", "/demo/lock", "--", "sh", "-c", `echo "$LATCH_SEQUENCER"`); !strings.HasPrefix(out, "latch-seq:v1:ex:") {
		t.Errorf("latch lock -- sh printed %q", out)
	}
	if out, _ := cli("", "status"); !strings.Contains(out, "3 of 3 endpoints answered") {
		t.Errorf("latch status =\n%s", out)
	}

	if code := dev.stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("latchd dev exit %d after SIGINT; want 0", code)
	}
	if !strings.Contains(dev.out.String(), "latchd dev: stopped") {
		t.Errorf("latchd dev output lacks the stop line")
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s still there (%v)", dataDir, err)
	}
}

// TestKillLeaderUnderLoad runs three latchd processes from config files,
// kills the leader with SIGKILL during a bounded `latch bench put` while a
// writer records every acknowledged write, restarts it, and checks that
// every acknowledged write is readable and the restarted replica caught up.
func TestKillLeaderUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	latch, nodes, env := cell.latch, cell.nodes, cell.env
	leader := cell.leader(ctx)

	// The writer: unique keys, each recorded once acknowledged.
	c, err := client.Dial(ctx, client.Config{Endpoints: cell.endpoints})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/e2e", nil); err != nil {
		t.Fatalf("Put /e2e: %v", err)
	}
	w := startWriters(ctx, c, 4, "/e2e/", 20*time.Second)

	bench := start(t, "latch bench", latch, env, "bench", "put", "--clients", "8", "--duration", "8s", "--max-ops", "1000000")
	time.Sleep(2 * time.Second)
	if code := leader.p.stop(t, syscall.SIGKILL, 10*time.Second); code != -1 {
		t.Logf("killed leader %d exit code %d", leader.id, code)
	}
	beforeKill := w.count()
	time.Sleep(1500 * time.Millisecond)
	cell.start(leader)

	if code := bench.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("latch bench put exit %d:\n%s", code, bench.out.String())
	}
	w.halt()
	var res struct {
		Ops    int64 `json:"ops"`
		Errors int64 `json:"errors"`
	}
	line := strings.TrimSpace(bench.out.String())
	line = line[strings.LastIndexByte(line, '\n')+1:]
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.Ops == 0 {
		t.Errorf("bench result %q (%v): want ops", line, err)
	}
	t.Logf("bench put through the kill: %s; writer: %d acknowledged (%d before the kill)", line, w.count(), beforeKill)
	if w.count() <= beforeKill {
		t.Errorf("no write acknowledged after the leader was killed (%d before, %d in all)", beforeKill, w.count())
	}

	// Every acknowledged write is readable (linearizable reads), and one
	// through the CLI.
	key, val := w.verify(t, ctx, c)
	if out, errs, code := run(t, ctx, latch, env, "", "get", key); code != 0 || out != val {
		t.Errorf("latch get %s = %q (exit %d, %s); want %q", key, out, code, errs, val)
	}

	// The restarted replica catches up with the leader's log.
	cell.caughtUp(ctx, leader)
	// Its admin endpoint reports the same.
	resp, err := cell.adminGetJSON(ctx, leader, "/status")
	if err != nil || resp["leader"] == float64(0) {
		t.Errorf("restarted replica's /status: %v %v", resp, err)
	}

	// SIGTERM to the leader: it resigns, a follower takes over (confirmed
	// before the old leader exits), and the client carries on there.
	current := cell.leader(ctx)
	if code := current.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("leader latchd %d exit %d after SIGTERM; want 0", current.id, code)
	}
	if out := current.p.out.String(); !strings.Contains(out, `msg="resigned leadership"`) || !strings.Contains(out, "confirmed=true") {
		t.Errorf("leader latchd %d did not log a confirmed resignation:\n%s", current.id, tail(out, 2000))
	}
	if _, err := c.Put(ctx, "/e2e/after-sigterm", []byte("x")); err != nil {
		t.Errorf("Put after the leader's SIGTERM: %v", err)
	}
	c.Close()
	// SIGTERM stops the other replicas cleanly too.
	for _, n := range nodes {
		if n == current {
			continue
		}
		if code := n.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("latchd %d exit %d after SIGTERM; want 0", n.id, code)
		}
	}
}
