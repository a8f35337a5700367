package cli

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/lockserver"
)

// memberRows counts the member rows of members' table (lines that start
// with an id).
func memberRows(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l != "" && l[0] >= '0' && l[0] <= '9' {
			n++
		}
	}
	return n
}

func TestMembersUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"members", "bogus"}, "a subcommand"},
		{[]string{"members", "add", "0", "127.0.0.1:1", "127.0.0.1:2"}, `member id "0"`},
		{[]string{"members", "add", "x", "127.0.0.1:1", "127.0.0.1:2"}, `member id "x"`},
		{[]string{"members", "add", "4", "127.0.0.1:1"}, "want ID PEER CLIENT [HTTP]"},
		{[]string{"members", "add", "4", "nohost", "127.0.0.1:2"}, `PEER address "nohost"`},
		{[]string{"members", "add", "4", "127.0.0.1:1", "127.0.0.1:0"}, `CLIENT address "127.0.0.1:0"`},
		{[]string{"members", "add", "4", "127.0.0.1:1", "127.0.0.1:2", ":3"}, `HTTP address ":3"`},
		{[]string{"members", "add", "4", "127.0.0.1:1", "127.0.0.1:2", "--wait", "-1s"}, "--wait"},
		{[]string{"members", "promote"}, "want ID"},
		{[]string{"members", "promote", "4", "--if-epoch", "0"}, "--if-epoch"},
		{[]string{"members", "remove", "4", "5"}, "want ID"},
		{[]string{"members", "update", "4", "127.0.0.1:1", "127.0.0.1:x"}, `CLIENT address "127.0.0.1:x"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			latch(t, tt.args...).failed(t, ExitUsage, tt.want)
		})
	}
}

// freeLoopback returns n loopback addresses whose ports were free a moment
// ago.
func freeLoopback(t *testing.T, n int) []string {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		defer ln.Close()
	}
	return out
}

// startJoiner starts replica id with an empty data dir, joining cell c as
// the learner added at addrs (peer, client, http).
func startJoiner(t *testing.T, c *lockserver.Cell, id uint64, addrs []string) *lockserver.Server {
	t.Helper()
	cfg := c.Config(0)
	cfg.ID = id
	cfg.Members = maps.Clone(cfg.Members)
	cfg.Members[id] = lockserver.Member{Peer: addrs[0], Client: addrs[1], HTTP: addrs[2]}
	cfg.ClientListen, cfg.PeerListen = "", ""
	cfg.DataDir = t.TempDir()
	cfg.Join = true
	s, err := lockserver.New(cfg)
	if err != nil {
		t.Fatalf("joiner %d: %v", id, err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("joiner %d: %v", id, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMembersChanges runs every subcommand against a cell of its own: a
// learner is added, refused promotion until its replica joined, promoted,
// its HTTP address updated, and removed, after which its replica stops.
func TestMembersChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := lockserver.StartCell(ctx, lockserver.CellConfig{DataDir: t.TempDir(), Tune: lockserver.FastTimings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	inv := invocation{ctx: ctx, endpoints: c.Endpoints()}

	before := decode[MembersJSON](t, inv.run(t, "-o", "json", "members").ok(t))
	if len(before.Members) != 3 || before.Alpha == 0 || before.Members[0].Role != "voter" || before.Leader == "" {
		t.Fatalf("members -o json = %+v; want 3 voters, α, a leader", before)
	}
	r := inv.run(t, "members").ok(t)
	if !strings.Contains(r.out, "ROLE") || !strings.Contains(r.out, " voter ") || !strings.Contains(r.out, fmt.Sprintf("epoch %d, α %d", before.Epoch, before.Alpha)) {
		t.Fatalf("members =\n%s\nwant ROLE voter and the epoch and α", r.out)
	}

	a4 := freeLoopback(t, 3)
	r = inv.run(t, append([]string{"members", "add", "4"}, a4...)...).ok(t)
	if !strings.Contains(r.out, "add 4: chosen at instance ") || !strings.Contains(r.out, "in effect at once") || !strings.Contains(r.out, "learner") {
		t.Fatalf("members add =\n%s", r.out)
	}
	r = inv.run(t, "members").ok(t)
	for line := range strings.Lines(r.out) {
		if f := strings.Fields(line); len(f) > 5 && f[0] == "4" && (f[3] != "learner" || f[4] != "-" || !strings.Contains(line, "unreachable")) {
			t.Fatalf("members, row of the learner not started yet: %q; want ROLE learner, STATE -, unreachable", line)
		}
	}
	inv.run(t, append([]string{"members", "add", "4"}, a4...)...).failed(t, ExitConflict, "already a member")
	inv.run(t, "members", "promote", "4").failed(t, ExitRetry, "not joined")
	inv.run(t, "members", "remove", "40").failed(t, ExitNotFound, "not a member")
	inv.run(t, "members", "add", "5", a4[0], "127.0.0.1:9").failed(t, ExitRejected, "is member 4's")

	j := startJoiner(t, c, 4, a4)
	var doc MemberChangeJSON
	waitFor(t, 60*time.Second, "member 4 to be promoted", func() bool {
		r := inv.run(t, "-o", "json", "members", "promote", "4", "--wait", "30s")
		if r.code == ExitRetry {
			return false
		}
		doc = decode[MemberChangeJSON](t, r.ok(t))
		return true
	})
	if doc.Op != "promote" || doc.ID != 4 || doc.Effective != doc.Instance+doc.Alpha || doc.Pending != nil {
		t.Fatalf("promote --wait -o json = %+v; want effective α after it was chosen, in effect", doc)
	}
	for _, m := range doc.Members {
		if m.ID == 4 && (m.Role != "voter" || !m.Joined) {
			t.Fatalf("member 4 after promote --wait = %+v; want a joined voter", m)
		}
	}

	newHTTP := freeLoopback(t, 1)[0]
	doc = decode[MemberChangeJSON](t, inv.run(t, "-o", "json", "members", "update", "4", a4[0], a4[1], newHTTP, "--if-epoch", fmt.Sprint(doc.Epoch)).ok(t))
	if doc.Op != "update" || doc.Effective != doc.Instance || doc.Members[3].HTTP != newHTTP {
		t.Fatalf("update -o json = %+v; want 4's new HTTP at once", doc)
	}
	inv.run(t, "members", "update", "4", a4[0], a4[1], "--if-epoch", "1").failed(t, ExitConflict, "epoch")

	ms := decode[MembersJSON](t, inv.run(t, "-o", "json", "members").ok(t))
	if len(ms.Members) != 4 || ms.Members[3].Role != "voter" || !ms.Members[3].Reachable || ms.Members[3].HTTP != newHTTP {
		t.Fatalf("members -o json after promote = %+v; want 4 a reachable voter", ms)
	}

	r = inv.run(t, "members", "remove", "4", "--wait", "30s").ok(t)
	if !strings.Contains(r.out, "remove 4: chosen at instance ") || !strings.Contains(r.out, "in effect at instance ") || strings.Contains(r.out, "pending") {
		t.Fatalf("members remove --wait =\n%s", r.out)
	}
	select {
	case <-j.Removed():
	case <-time.After(60 * time.Second):
		t.Fatal("the removed replica 4 did not learn of its removal within 60 s")
	}
	inv.run(t, "members", "remove", "4").failed(t, ExitNotFound, "was removed")
	ms = decode[MembersJSON](t, inv.run(t, "-o", "json", "members").ok(t))
	if len(ms.Members) != 3 || len(ms.Retired) != 1 || ms.Retired[0] != 4 || ms.Epoch <= before.Epoch {
		t.Fatalf("members -o json after remove = %+v; want 3 members, 4 retired", ms)
	}
	// Down to two voters: a warning on stderr.
	r = inv.run(t, "members", "remove", "3", "--wait", "30s").ok(t)
	if !strings.Contains(r.err, "latch: warning: the cell will have 2 voters") {
		t.Fatalf("members remove 3 (to two voters): stderr %q; want the warning", r.err)
	}

	// add and remove in JSON: a learner comes and goes at once.
	a7 := freeLoopback(t, 2)
	doc = decode[MemberChangeJSON](t, inv.run(t, "-o", "json", "members", "add", "7", a7[0], a7[1]).ok(t))
	if doc.Op != "add" || doc.ID != 7 || doc.Effective != doc.Instance || doc.Members[len(doc.Members)-1].Role != "learner" || doc.Members[len(doc.Members)-1].Joined {
		t.Fatalf("add -o json = %+v; want 7 a learner, not joined, at once", doc)
	}
	doc = decode[MemberChangeJSON](t, inv.run(t, "-o", "json", "members", "remove", "7").ok(t))
	if doc.Op != "remove" || doc.Effective != doc.Instance || !slices.Contains(doc.Retired, 7) || len(doc.Members) != 2 {
		t.Fatalf("remove -o json = %+v; want 7 retired at once, 2 members left", doc)
	}
}
