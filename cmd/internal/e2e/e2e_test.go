package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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

// node is one replica of the process-level cell.
type node struct {
	id                  int
	peer, client, admin string
	config              string
	p                   *proc
}

// TestKillLeaderUnderLoad runs three latchd processes from config files,
// kills the leader with SIGKILL during a bounded `latch bench put` while a
// writer records every acknowledged write, restarts it, and checks that
// every acknowledged write is readable and the restarted replica caught up.
func TestKillLeaderUnderLoad(t *testing.T) {
	latchd, latch := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	addrs := freeAddrs(t, 9)
	nodes := make([]*node, 3)
	var jsonNodes []string
	for i := range nodes {
		nodes[i] = &node{id: i + 1, peer: addrs[3*i], client: addrs[3*i+1], admin: addrs[3*i+2]}
		jsonNodes = append(jsonNodes, fmt.Sprintf(`{"id": %d, "peer": %q, "client": %q, "http": %q}`, i+1, nodes[i].peer, nodes[i].client, nodes[i].admin))
	}
	for _, n := range nodes {
		n.config = filepath.Join(dir, fmt.Sprintf("latchd-%d.json", n.id))
		cfg := fmt.Sprintf(`{"nodes": [%s], "myid": %d, "dataDir": %q, "lease": "1s", "heartbeat": "50ms"}`,
			strings.Join(jsonNodes, ",\n  "), n.id, filepath.Join(dir, fmt.Sprintf("data-%d", n.id)))
		if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startNode := func(n *node) {
		n.p = start(t, fmt.Sprintf("latchd %d", n.id), latchd, nil, "--config", n.config, "-v")
	}
	for _, n := range nodes {
		startNode(n)
	}
	endpoints := strings.Join([]string{nodes[0].client, nodes[1].client, nodes[2].client}, ",")
	env := []string{"LATCH_ENDPOINTS=" + endpoints}

	// Wait for a leader, and find it.
	var leader *node
	testutil.WaitFor(t, 30*time.Second, "a leader", func() bool {
		out, _, code := run(t, ctx, latch, env, "", "-o", "json", "--command-timeout", "2s", "status")
		if code != 0 {
			return false
		}
		var doc struct {
			Leader string `json:"leader"`
		}
		json.Unmarshal([]byte(out), &doc)
		for _, n := range nodes {
			if n.client == doc.Leader {
				leader = n
			}
		}
		return leader != nil
	})

	// The writer: unique keys, each recorded once acknowledged.
	c, err := client.Dial(ctx, client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/e2e", nil); err != nil {
		t.Fatalf("Put /e2e: %v", err)
	}
	var mu sync.Mutex
	acked := map[string]string{}
	stopWriters := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := 0; i < 100_000; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				key, val := fmt.Sprintf("/e2e/w%d-%d", w, i), fmt.Sprintf("v%d-%d", w, i)
				wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := c.Put(wctx, key, []byte(val))
				wcancel()
				if err == nil {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		})
	}

	bench := start(t, "latch bench", latch, env, "bench", "put", "--clients", "8", "--duration", "8s", "--max-ops", "1000000")
	time.Sleep(2 * time.Second)
	if code := leader.p.stop(t, syscall.SIGKILL, 10*time.Second); code != -1 {
		t.Logf("killed leader %d exit code %d", leader.id, code)
	}
	mu.Lock()
	beforeKill := len(acked)
	mu.Unlock()
	time.Sleep(1500 * time.Millisecond)
	startNode(leader)

	if code := bench.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("latch bench put exit %d:\n%s", code, bench.out.String())
	}
	close(stopWriters)
	writers.Wait()
	var res struct {
		Ops    int64 `json:"ops"`
		Errors int64 `json:"errors"`
	}
	line := strings.TrimSpace(bench.out.String())
	line = line[strings.LastIndexByte(line, '\n')+1:]
	if err := json.Unmarshal([]byte(line), &res); err != nil || res.Ops == 0 {
		t.Errorf("bench result %q (%v): want ops", line, err)
	}
	t.Logf("bench put through the kill: %s; writer: %d acknowledged (%d before the kill)", line, len(acked), beforeKill)
	if len(acked) <= beforeKill {
		t.Errorf("no write acknowledged after the leader was killed (%d before, %d in all)", beforeKill, len(acked))
	}

	// Every acknowledged write is readable (linearizable reads).
	for key, val := range acked {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		n, err := c.Get(rctx, key)
		rcancel()
		if err != nil || string(n.Data) != val {
			t.Fatalf("Get(%q) = %q, %v; want %q (acknowledged)", key, n.Data, err, val)
		}
	}
	// And through the CLI, for one.
	for key, val := range acked {
		out, errs, code := run(t, ctx, latch, env, "", "get", key)
		if code != 0 || out != val {
			t.Errorf("latch get %s = %q (exit %d, %s); want %q", key, out, code, errs, val)
		}
		break
	}

	// The restarted replica catches up with the leader's log.
	type member struct {
		Endpoint  string `json:"endpoint"`
		Applied   uint64 `json:"applied"`
		Reachable bool   `json:"reachable"`
		Leader    bool   `json:"leader"`
	}
	testutil.WaitFor(t, 60*time.Second, "the restarted replica to catch up", func() bool {
		out, _, code := run(t, ctx, latch, env, "", "-o", "json", "members")
		if code != 0 {
			return false
		}
		var ms []member
		json.Unmarshal([]byte(out), &ms)
		var lead, restarted member
		for _, m := range ms {
			if m.Leader {
				lead = m
			}
			if m.Endpoint == leader.client {
				restarted = m
			}
		}
		return lead.Reachable && restarted.Reachable && restarted.Applied > 0 && restarted.Applied >= lead.Applied
	})
	// Its admin endpoint reports the same.
	resp, err := httpGetJSON(ctx, "http://"+leader.admin+"/status")
	if err != nil || resp["leader"] == float64(0) {
		t.Errorf("restarted replica's /status: %v %v", resp, err)
	}

	// SIGTERM to the leader: it resigns, a follower takes over (confirmed
	// before the old leader exits), and the client carries on there.
	var current *node
	testutil.WaitFor(t, 30*time.Second, "the current leader", func() bool {
		out, _, code := run(t, ctx, latch, env, "", "-o", "json", "--command-timeout", "2s", "status")
		var doc struct {
			Leader string `json:"leader"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
			return false
		}
		for _, n := range nodes {
			if n.client == doc.Leader {
				current = n
			}
		}
		return current != nil
	})
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
