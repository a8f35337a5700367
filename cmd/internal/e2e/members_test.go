package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/cmd/internal/testutil"
)

// TestMembershipChanges changes the members of a running cell of latchd
// processes with the CLI, as an operator would (docs/operations.md,
// "Changing the members"): it grows the cell from 3 to 5 voters (a joiner
// promoted by hand, one by `members add --wait`), replaces a replica
// killed with SIGKILL (add a new id, promote it, remove the dead one), and
// removes the leader, whose latchd exits 0 while another takes over. A
// bounded writer runs throughout; every write it had acknowledged is read
// back at the end.
func TestMembershipChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	dir := t.TempDir()
	// The joiners' addresses are drawn now, so that the writer's client
	// knows every endpoint the cell will ever have.
	joiners := map[int]*node{}
	var all []string
	addrs := freeAddrs(t, 9)
	for k, id := range []int{4, 5, 6} {
		joiners[id] = &node{id: id, peer: addrs[3*k], client: addrs[3*k+1], admin: addrs[3*k+2],
			config: filepath.Join(dir, fmt.Sprintf("latchd-%d.json", id)), data: filepath.Join(dir, fmt.Sprintf("data-%d", id))}
		all = append(all, addrs[3*k+1])
	}
	all = append(slices.Clone(cell.endpoints), all...)

	c := cell.dial(ctx, all...)
	if _, err := c.Put(ctx, "/m", nil); err != nil {
		t.Fatalf("Put /m: %v", err)
	}
	w := startWriters(ctx, c, 2, "/m/", 20*time.Second)
	defer w.halt()
	w.progress(t, "writes before the changes")

	// Grow: 4 joins, is refused promotion until it has, and is promoted.
	n4 := joiners[4]
	cell.members(ctx, 0, "add", "4", n4.peer, n4.client, n4.admin)
	cell.members(ctx, 8, "promote", "4") // not joined yet
	cell.join(n4)
	cell.promote(ctx, n4)
	w.progress(t, "writes after 4 joined")

	// Grow: 5 by `members add --wait`, which promotes it once it caught up.
	n5 := joiners[5]
	add := start(t, "latch members add 5", cell.latch, cell.env, "members", "add", "5", n5.peer, n5.client, n5.admin, "--wait", "90s")
	time.Sleep(500 * time.Millisecond) // usually added before it starts; it may join either way
	cell.join(n5)
	if code := add.wait(t, 120*time.Second); code != 0 {
		t.Fatalf("latch members add 5 --wait: exit %d:\n%s", code, add.out.String())
	}
	if out := add.out.String(); !strings.Contains(out, "promote 5: chosen at instance") || !hasRow(out, "5", "voter") {
		t.Errorf("latch members add 5 --wait printed:\n%s\nwant the promotion and 5 a voter", out)
	}
	set := cell.memberSet(ctx)
	if got := set.voters(); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("voters after growing = %v; want 1-5 (members: %+v)", got, set)
	}
	w.progress(t, "writes with five voters")

	// Replace a replica lost for good: kill -9 a follower, add 6 in its
	// place, promote it, remove the dead one.
	leader := cell.leader(ctx)
	dead := cell.other(leader)
	dead.p.stop(t, syscall.SIGKILL, 10*time.Second)
	n6 := joiners[6]
	cell.members(ctx, 0, "add", "6", n6.peer, n6.client, n6.admin)
	cell.join(n6)
	cell.promote(ctx, n6)
	cell.members(ctx, 0, "remove", fmt.Sprint(dead.id), "--wait", "60s")
	cell.nodes = slices.DeleteFunc(cell.nodes, func(n *node) bool { return n == dead })
	cell.setEndpoints()
	w.progress(t, "writes after the replacement")

	// Remove the leader: it hands over, and its latchd exits 0 once the
	// others know.
	leader = cell.leader(ctx)
	cell.members(ctx, 0, "remove", fmt.Sprint(leader.id), "--wait", "60s")
	if code := leader.p.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("removed leader latchd %d exit %d; want 0", leader.id, code)
	}
	if out := leader.p.out.String(); !strings.Contains(out, "removed from the cell") {
		t.Errorf("removed latchd %d did not say why it stopped:\n%s", leader.id, tail(out, 2000))
	}
	cell.nodes = slices.DeleteFunc(cell.nodes, func(n *node) bool { return n == leader })
	cell.setEndpoints()
	next := cell.leaderOtherThan(ctx, leader)
	w.progress(t, "writes after the leader's removal")

	// A founder restarted with its first configuration, which names two
	// retired replicas and none of the new ones, comes back: the member
	// set in its data dir wins.
	founder := cell.nodes[0]
	if code := founder.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("latchd %d exit %d after SIGTERM; want 0", founder.id, code)
	}
	cell.start(founder)
	cell.caughtUp(ctx, founder)
	w.progress(t, "writes after a founder's restart")
	w.halt()

	set, want := cell.settled(ctx)
	if !slices.Contains(set.Retired, uint64(dead.id)) || !slices.Contains(set.Retired, uint64(leader.id)) {
		t.Errorf("retired = %v; want %d and %d", set.Retired, dead.id, leader.id)
	}
	t.Logf("%d writes acknowledged; leader now %d; members %v, retired %v", w.count(), next.id, want, set.Retired)
	// Every acknowledged write is readable, through a client of the
	// cell as it is now.
	w.verify(t, ctx, cell.dial(ctx))
}

// join starts n's latchd with --join, its config listing the cell's
// current replicas as seeds, and counts it among the cell's nodes.
func (c *procCell) join(n *node) {
	c.t.Helper()
	c.writeConfig(n, append(slices.Clone(c.nodes), n))
	c.start(n, "--join")
	c.nodes = append(c.nodes, n)
	c.setEndpoints()
}

// writeConfig writes n's config file, listing nodes (which include n) at
// their own peer addresses (no link proxies), with the cell's timings and
// extra fields.
func (c *procCell) writeConfig(n *node, nodes []*node) {
	c.t.Helper()
	var list []string
	for _, m := range nodes {
		list = append(list, fmt.Sprintf(`{"id": %d, "peer": %q, "client": %q, "http": %q}`, m.id, m.peer, m.client, m.admin))
	}
	cfg := fmt.Sprintf(`{"nodes": [%s], "myid": %d, "dataDir": %q, "lease": "1s", "heartbeat": "50ms"%s}`, strings.Join(list, ",\n  "), n.id, n.data, c.extra)
	if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// setEndpoints points the CLI at the cell's current replicas.
func (c *procCell) setEndpoints() {
	c.endpoints = nil
	for _, n := range c.nodes {
		c.endpoints = append(c.endpoints, n.client)
	}
	// The rest of the environment (a TLS cell's certificates) stays.
	c.env = slices.DeleteFunc(c.env, func(e string) bool { return strings.HasPrefix(e, "LATCH_ENDPOINTS=") })
	c.env = append(c.env, "LATCH_ENDPOINTS="+strings.Join(c.endpoints, ","))
}

// members runs `latch members ARGS` and fails the test unless it exits
// with code.
func (c *procCell) members(ctx context.Context, code int, args ...string) string {
	c.t.Helper()
	out, errs, got := run(c.t, ctx, c.latch, c.env, "", append([]string{"members"}, args...)...)
	if got != code {
		c.t.Fatalf("latch members %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errs)
	}
	return out
}

// promote promotes n once it has caught up (`latch members promote`
// exits 8 until then) and waits for the promotion to take effect.
func (c *procCell) promote(ctx context.Context, n *node) {
	c.t.Helper()
	testutil.WaitFor(c.t, 90*time.Second, fmt.Sprintf("latchd %d to be promoted", n.id), func() bool {
		out, errs, code := run(c.t, ctx, c.latch, c.env, "", "members", "promote", fmt.Sprint(n.id), "--wait", "60s")
		switch code {
		case 0:
			return true
		case 8:
			return false
		}
		c.t.Fatalf("latch members promote %d: exit %d\n%s%s", n.id, code, out, errs)
		return false
	})
}

// settled reads the member set and fails the test unless its members are
// the cell's nodes, all voters, with no change pending; it returns the set
// and the nodes' ids, sorted.
func (c *procCell) settled(ctx context.Context) (e2eMembers, []uint64) {
	c.t.Helper()
	set := c.memberSet(ctx)
	var want []uint64
	for _, n := range c.nodes {
		want = append(want, uint64(n.id))
	}
	slices.Sort(want)
	if got := set.voters(); !slices.Equal(got, want) || len(set.Members) != len(want) || set.Pending != nil {
		c.t.Fatalf("members at the end = %+v; want voters %v, nothing pending", set, want)
	}
	return set, want
}

// e2eMembers is `latch members -o json`, as far as these tests read it.
type e2eMembers struct {
	Epoch   uint64   `json:"epoch"`
	Retired []uint64 `json:"retired"`
	Pending *struct {
		At uint64 `json:"at"`
	} `json:"pending"`
	Members []struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	} `json:"members"`
}

func (s e2eMembers) voters() []uint64 {
	var v []uint64
	for _, m := range s.Members {
		if m.Role == "voter" {
			var id uint64
			fmt.Sscan(m.ID, &id)
			v = append(v, id)
		}
	}
	return v
}

// memberSet reads `latch members -o json`.
func (c *procCell) memberSet(ctx context.Context) e2eMembers {
	c.t.Helper()
	out := c.members(ctx, 0, "-o", "json")
	var s e2eMembers
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		c.t.Fatalf("latch members -o json: %v\n%s", err, out)
	}
	return s
}

// hasRow reports whether a table in out has a row whose first columns are
// cols.
func hasRow(out string, cols ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(cols) && slices.Equal(f[:len(cols)], cols) {
			return true
		}
	}
	return false
}
