package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memberNemeses change the cell's members (Jepsen's member nemesis), for
// TestSoak with -soak-members: each takes a spare node (drawSpares) for a
// new member under a fresh id, which takes its predecessor's place in the
// cell's node list, so that later cycles aim at it. With no spare left
// they kill the target instead.
//
// They run on a cell without link proxies: the replicated member set
// carries one peer address per member, which every lower id dials, so a
// joiner cannot be given a proxy per link the way newProcCell wires the
// founders (docs/testing.md, "Soak").
var memberNemeses = []nemesis{
	{"replaced (killed with SIGKILL, a new id added, joined, promoted, the dead id removed)", func(t *testing.T, c *procCell, dead *node, _ *rand.Rand) func() {
		ctx := context.Background()
		dead.p.stop(t, syscall.SIGKILL, 10*time.Second)
		n := c.takeSpare()
		if n == nil {
			t.Logf("no spare node left: latchd %d stays killed until the heal", dead.id)
			return func() { c.start(dead) }
		}
		t.Logf("latchd %d replaces latchd %d", n.id, dead.id)
		c.addMember(ctx, n)
		c.joinInPlaceOf(dead, n)
		return func() {
			c.promoteMember(ctx, n)
			c.removeMember(ctx, dead.id)
			c.reconfigure()
		}
	}},
	{"removed and replaced (a live member removed, its latchd exits 0; a new id added, joined, promoted)", func(t *testing.T, c *procCell, old *node, _ *rand.Rand) func() {
		ctx := context.Background()
		n := c.takeSpare()
		if n == nil {
			t.Logf("no spare node left: latchd %d killed instead", old.id)
			old.p.stop(t, syscall.SIGKILL, 10*time.Second)
			return func() { c.start(old) }
		}
		c.removeMember(ctx, old.id)
		if code := old.p.wait(t, 90*time.Second); code != 0 {
			t.Fatalf("removed latchd %d exit %d; want 0\n%s", old.id, code, tail(old.p.out.String(), 2000))
		}
		t.Logf("latchd %d removed and stopped; latchd %d takes its place", old.id, n.id)
		return func() {
			c.addMember(ctx, n)
			c.joinInPlaceOf(old, n)
			c.promoteMember(ctx, n)
			c.reconfigure()
		}
	}},
}

// drawSpares picks the addresses of k nodes that may join the cell later
// (ids after the highest of the cell), so that clients dialed now can
// know every endpoint the cell will ever have; spareEndpoints lists their
// client addresses.
func (c *procCell) drawSpares(k int) {
	c.t.Helper()
	dir := c.t.TempDir()
	next := 1
	for _, n := range c.nodes {
		next = max(next, n.id+1)
	}
	addrs := freeAddrs(c.t, 3*k)
	for i := range k {
		id := next + i
		c.spares = append(c.spares, &node{id: id, peer: addrs[3*i], client: addrs[3*i+1], admin: addrs[3*i+2],
			config: filepath.Join(dir, fmt.Sprintf("latchd-%d.json", id)), data: filepath.Join(dir, fmt.Sprintf("data-%d", id))})
	}
}

// spareEndpoints are the client addresses of the spare nodes not used yet.
func (c *procCell) spareEndpoints() []string {
	var e []string
	for _, n := range c.spares {
		e = append(e, n.client)
	}
	return e
}

// takeSpare returns the next spare node, or nil if none is left.
func (c *procCell) takeSpare() *node {
	if len(c.spares) == 0 {
		return nil
	}
	n := c.spares[0]
	c.spares = c.spares[1:]
	return n
}

// joinInPlaceOf starts n with --join (join) and puts it where old was in
// the cell's node list, which old leaves.
func (c *procCell) joinInPlaceOf(old, n *node) {
	c.t.Helper()
	i := slices.Index(c.nodes, old)
	if i < 0 {
		c.t.Fatalf("latchd %d is not a node of the cell", old.id)
	}
	c.join(n)
	c.nodes[i] = n
	c.nodes = c.nodes[:len(c.nodes)-1]
	c.setEndpoints()
}

// reconfigure, with -soak-rewrite-configs, rewrites every node's config
// file to list the cell's members as they are now, as docs/operations.md
// suggests the operator do after a change. Without it (the default) every
// node keeps the config it was first started with, as an operator who
// never touched them would: a founder's names the founders, a joiner's
// itself and the members it joined (its seeds). A replica that kept its
// data does not need more (its member set wins); one restarted on an
// empty data dir (the "wiped" fault) knows only those nodes, and a founder
// whose config names only founders removed since must be dialed back by
// the members added later, which know its address (replica/transport
// DialBackAfter, docs/transport.md "Dialing back").
func (c *procCell) reconfigure() {
	c.t.Helper()
	if !*soakRewrite {
		return
	}
	for _, n := range c.nodes {
		c.writeConfig(n, c.nodes)
	}
}

// addMember adds n as a learner (`latch members add`).
func (c *procCell) addMember(ctx context.Context, n *node) {
	c.t.Helper()
	c.change(ctx, func(s e2eMembers) bool { return s.role(n.id) != "" },
		"add", fmt.Sprint(n.id), n.peer, n.client, n.admin)
}

// promoteMember makes the learner n a voter once it caught up
// (`latch members promote --wait`).
func (c *procCell) promoteMember(ctx context.Context, n *node) {
	c.t.Helper()
	c.change(ctx, func(s e2eMembers) bool { return s.role(n.id) == "voter" && s.Pending == nil },
		"promote", fmt.Sprint(n.id), "--wait", "60s")
}

// removeMember removes the member id (`latch members remove --wait`).
func (c *procCell) removeMember(ctx context.Context, id int) {
	c.t.Helper()
	c.change(ctx, func(s e2eMembers) bool { return s.role(id) == "" && s.Pending == nil },
		"remove", fmt.Sprint(id), "--wait", "60s")
}

// change runs `latch members ARGS` until the member set satisfies done,
// for up to 3 minutes. It runs it again after exit 6 (no leader in time,
// the change may or may not have been made: done tells) and 8 (another
// voter change pending, or the learner has not caught up yet); any other
// failure fails the test.
func (c *procCell) change(ctx context.Context, done func(e2eMembers) bool, args ...string) {
	c.t.Helper()
	what := "latch members " + strings.Join(args, " ")
	var last string
	for end := time.Now().Add(3 * time.Minute); ; {
		if s, ok := c.tryMemberSet(ctx); ok && done(s) {
			return
		}
		if time.Now().After(end) {
			c.t.Fatalf("%s did not take effect within 3 minutes; last %s", what, last)
		}
		out, errs, code := run(c.t, ctx, c.latch, c.env, "", append([]string{"members", "--command-timeout", "10s"}, args...)...)
		switch code {
		case 0, 6, 8:
			last = fmt.Sprintf("exit %d: %s%s", code, out, errs)
		default:
			c.t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, code, out, errs)
		}
		if code != 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// tryMemberSet reads `latch members -o json`, reporting false if the cell
// did not answer.
func (c *procCell) tryMemberSet(ctx context.Context) (e2eMembers, bool) {
	out, _, code := run(c.t, ctx, c.latch, c.env, "", "members", "-o", "json", "--command-timeout", "5s")
	var s e2eMembers
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
		return s, false
	}
	return s, true
}

// role is id's role in the member set ("voter", "learner", "pending+",
// ...), "" if it is not a member.
func (s e2eMembers) role(id int) string {
	for _, m := range s.Members {
		if m.ID == fmt.Sprint(id) {
			return m.Role
		}
	}
	return ""
}
