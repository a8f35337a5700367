package lockserver

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// TestRequests drives every request type through a live cell and checks
// the replies.
func TestRequests(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	sid := cl.open(time.Minute) // no KeepAlives until the end: a lease to outlast a slow machine
	if sid == 0 {
		t.Fatal("OpenSession returned session 0")
	}

	// Put: create, then set (the same unconditional Put both times).
	p1 := cl.must(&wire.Put{Path: "/app", Content: []byte("v1")}).(*wire.PutReply)
	p2 := cl.must(&wire.Put{Path: "/app", Content: []byte("v2")}).(*wire.PutReply)
	if p1.Stat.ContentGen != 1 || p2.Stat.ContentGen != 2 || p1.Stat.Instance != p2.Stat.Instance {
		t.Fatalf("Put twice: stats %+v then %+v; want content gens 1, 2 on one instance", p1.Stat, p2.Stat)
	}
	// Conditional, create-only, parents, sequential, ephemeral.
	cl.must(&wire.Put{Path: "/app", Content: []byte("v3"), IfGen: 2})
	cl.must(&wire.Put{Path: "/app/cfg/x", Content: []byte("deep"), Parents: true})
	seq := cl.must(&wire.Put{Path: "/app/job-", Sequential: true}).(*wire.PutReply)
	if !strings.HasPrefix(seq.Path, "/app/job-") || seq.Path == "/app/job-" {
		t.Fatalf("sequential Put path = %q", seq.Path)
	}
	eph := cl.must(&wire.Put{Path: "/app/me", Ephemeral: true, Create: true}).(*wire.PutReply)
	if eph.Stat.EphemeralOwner != sid {
		t.Fatalf("ephemeral owner = %d; want %d", eph.Stat.EphemeralOwner, sid)
	}

	// Reads, linearizable and stale.
	g := cl.must(&wire.Get{Path: "/app"}).(*wire.GetReply)
	if string(g.Content) != "v3" || g.Stat.ContentGen != 3 {
		t.Fatalf("Get(/app) = %q gen %d; want v3 gen 3", g.Content, g.Stat.ContentGen)
	}
	st := cl.must(&wire.StatPath{Path: "/app/cfg/x"}).(*wire.StatReply)
	if st.Stat.Size != 4 {
		t.Fatalf("StatPath size = %d; want 4", st.Stat.Size)
	}
	ls := cl.must(&wire.List{Path: "/app"}).(*wire.ListReply)
	var names []string
	for _, e := range ls.Entries {
		names = append(names, e.Name)
	}
	if want := []string{"cfg", seq.Path[len("/app/"):], "me"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("List(/app) = %v; want %v", names, want)
	}
	page := cl.must(&wire.List{Path: "/app", Limit: 1}).(*wire.ListReply)
	if len(page.Entries) != 1 || !page.More {
		t.Fatalf("List(/app, limit 1) = %d entries, more %v", len(page.Entries), page.More)
	}
	// Walk in pages of 2 visits the same paths as one big walk.
	all := cl.must(&wire.Walk{Path: "/app"}).(*wire.WalkReply)
	var paged []string
	after := ""
	for {
		w := cl.must(&wire.Walk{Path: "/app", After: after, Limit: 2}).(*wire.WalkReply)
		for _, e := range w.Entries {
			paged = append(paged, e.Name)
			after = e.Name
		}
		if !w.More {
			break
		}
	}
	var whole []string
	for _, e := range all.Entries {
		whole = append(whole, e.Name)
	}
	if strings.Join(whole, " ") != strings.Join(paged, " ") || len(whole) != 5 {
		t.Fatalf("Walk(/app) = %v; paged %v", whole, paged)
	}

	// Stale reads from every replica eventually see the write.
	for i, ep := range c.Endpoints() {
		rc := dialRaw(t, ep)
		waitFor(t, 5*time.Second, "a stale read to catch up", func() bool {
			m, err := rc.call(&wire.Get{Path: "/app", Stale: true})
			return err == nil && string(m.(*wire.GetReply).Content) == "v3"
		})
		_ = i
	}

	// ACLs (their files admit everyone; acl_test.go tests who they keep out).
	cl.must(&wire.Put{Path: "/acl/readers", Content: []byte("*"), Parents: true})
	cl.must(&wire.Put{Path: "/acl/ops", Content: []byte("*")})
	acl := cl.must(&wire.SetACL{Path: "/app", ACL: wire.ACL{Read: []string{"readers"}, Write: []string{"ops"}}}).(*wire.StatReply)
	if acl.Stat.ACLGen != 2 {
		t.Fatalf("SetACL ACL gen = %d; want 2", acl.Stat.ACLGen)
	}
	ga := cl.must(&wire.GetACL{Path: "/app"}).(*wire.ACLReply)
	if len(ga.ACL.Read) != 1 || ga.ACL.Read[0] != "readers" || ga.ACL.Write[0] != "ops" || len(ga.ACL.Admin) != 0 {
		t.Fatalf("GetACL = %+v", ga.ACL)
	}

	// Locks.
	a := cl.must(&wire.Acquire{Path: "/app", Mode: wire.Exclusive}).(*wire.AcquireReply)
	if a.Sequencer.Path != "/app" || a.Sequencer.Mode != wire.Exclusive || a.Sequencer.LockGen != 1 {
		t.Fatalf("Acquire sequencer = %+v", a.Sequencer)
	}
	chk := cl.must(&wire.CheckSequencer{Sequencer: a.Sequencer}).(*wire.CheckReply)
	if !chk.Valid {
		t.Fatal("CheckSequencer of a held lock = invalid")
	}
	locks := cl.must(&wire.ListLocks{Path: "/"}).(*wire.LocksReply)
	if len(locks.Locks) != 1 || locks.Locks[0].Path != "/app" || len(locks.Locks[0].Holders) != 1 || locks.Locks[0].Holders[0] != sid {
		t.Fatalf("ListLocks = %+v", locks.Locks)
	}
	cl.must(&wire.Release{Path: "/app", LockGen: a.Sequencer.LockGen})
	chk = cl.must(&wire.CheckSequencer{Sequencer: a.Sequencer}).(*wire.CheckReply)
	if chk.Valid {
		t.Fatal("CheckSequencer after Release = valid; want stale")
	}

	// Sessions.
	ss := cl.must(&wire.ListSessions{}).(*wire.SessionsReply)
	if len(ss.Sessions) != 1 || ss.Sessions[0].ID != sid || ss.Sessions[0].Ephemerals != 1 {
		t.Fatalf("ListSessions = %+v", ss.Sessions)
	}

	// The server's Status for the admin endpoint.
	lead := c.Server(leaderIndex(t, c))
	st0 := lead.Status()
	if !st0.IsLeader || st0.Leader != lead.ID() || st0.Sessions != 1 || st0.Tracked != 1 || st0.Nodes < 6 ||
		st0.Applied == 0 || st0.Index == 0 || len(st0.Members) != 3 || st0.Role != "leader" {
		t.Fatalf("leader Status = %+v", st0)
	}
	if m := lead.Metrics().Snapshot(); m.Requests["Put"] == 0 || m.Proposals == 0 || m.Conns == 0 {
		t.Fatalf("leader Metrics = %+v", m)
	}

	// Watches and KeepAlive.
	w := cl.must(&wire.Watch{Path: "/app", Recursive: true}).(*wire.WatchReply)
	cl.must(&wire.Put{Path: "/app/cfg/x", Content: []byte("changed")})
	ka := cl.must(&wire.KeepAlive{}).(*wire.KeepAliveReply)
	if ka.TTL <= 0 {
		t.Fatalf("KeepAlive TTL = %v", ka.TTL)
	}
	evs := eventsUntil(t, cl, ka, func(e wire.Event) bool { return e.Type == wire.ContentChanged })
	last := evs[len(evs)-1]
	if last.Path != "/app/cfg/x" || len(last.Watches) != 1 || last.Watches[0] != w.Watch || last.ContentGen != 2 {
		t.Fatalf("ContentChanged event = %+v; want /app/cfg/x gen 2 for watch %d", last, w.Watch)
	}
	cl.must(&wire.Unwatch{Watch: w.Watch})
	if _, err := cl.do(&wire.Unwatch{Watch: w.Watch}); codeOf(err) != wire.NotFound {
		t.Fatalf("second Unwatch = %v; want NotFound", err)
	}

	// Delete, recursive.
	cl.must(&wire.Delete{Path: "/app", Recursive: true})
	if _, err := cl.do(&wire.Get{Path: "/app"}); codeOf(err) != wire.NotFound {
		t.Fatalf("Get after recursive Delete = %v; want NotFound", err)
	}

	// Status.
	sr := cl.must(&wire.Status{}).(*wire.StatusReply)
	if sr.Leader == "" || len(sr.Members) != 3 || sr.Applied == 0 {
		t.Fatalf("Status = %+v", sr)
	}

	// CloseSession: the session is gone, its ephemeral node too. A retry
	// (its first reply lost) succeeds; a never-issued id does not.
	cl.must(&wire.Put{Path: "/mine", Ephemeral: true})
	closeReq := &wire.CloseSession{Header: wire.Header{Session: sid, Request: 7777}}
	cl.must(closeReq)
	cl.must(closeReq)
	if _, err := cl.do(&wire.CloseSession{Header: wire.Header{Session: 1 << 40, Request: 1}}); codeOf(err) != wire.SessionExpired {
		t.Fatalf("CloseSession of a never-issued id = %v; want SessionExpired", err)
	}
	if _, err := cl.do(&wire.StatPath{Path: "/mine"}); codeOf(err) != wire.NotFound {
		t.Fatalf("ephemeral node after CloseSession: %v; want NotFound", err)
	}
	if _, err := cl.do(&wire.Put{Path: "/x"}); codeOf(err) != wire.SessionExpired {
		t.Fatalf("Put after CloseSession = %v; want SessionExpired", err)
	}
}

// eventsUntil collects events from KeepAlive replies (acknowledging them)
// until one matches, starting with the reply ka.
func eventsUntil(t testing.TB, cl *client, ka *wire.KeepAliveReply, match func(wire.Event) bool) []wire.Event {
	t.Helper()
	var got []wire.Event
	var acked uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range ka.Events {
			if e.Seq <= acked {
				t.Fatalf("event %+v delivered again after ack %d", e, acked)
			}
			acked = e.Seq
			got = append(got, e)
			if match(e) {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching event; got %+v", got)
		}
		ka = cl.must(&wire.KeepAlive{Acked: acked}).(*wire.KeepAliveReply)
	}
}

// TestErrorCodes provokes every error code a client can cause and checks
// that the cell carries on. (Internal is a server bug and cannot be
// provoked; NotLeader and Unavailable are covered by TestRedirects.)
func TestErrorCodes(t *testing.T) {
	c := testCell(t, func(cfg *Config) {
		cfg.Namespace.MaxChildren = 3
		cfg.Namespace.MaxContent = 1024
	})
	cl := newClient(t, c)
	cl.open(time.Minute)
	other := newClient(t, c)
	other.open(time.Minute)
	cl.must(&wire.Put{Path: "/d", Content: []byte("x")})
	cl.must(&wire.Put{Path: "/d/child"})
	cl.must(&wire.Acquire{Path: "/d", Mode: wire.Exclusive})

	cases := []struct {
		name string
		cl   *client
		req  wire.Message
		want wire.Code
	}{
		{"NotFound", cl, &wire.Get{Path: "/missing"}, wire.NotFound},
		{"NotFound parent", cl, &wire.Put{Path: "/missing/x"}, wire.NotFound},
		{"Exists", cl, &wire.Put{Path: "/d", Create: true}, wire.Exists},
		{"NotEmpty", cl, &wire.Delete{Path: "/d"}, wire.NotEmpty},
		{"BadPath relative", cl, &wire.Get{Path: "d"}, wire.BadPath},
		{"BadPath trailing slash", cl, &wire.Put{Path: "/d/"}, wire.BadPath},
		{"BadPath empty name", cl, &wire.Acquire{Path: "//x", Mode: wire.Exclusive}, wire.BadPath},
		{"BadPath NUL", cl, &wire.Watch{Path: "/a\x00b"}, wire.BadPath},
		{"BadPath too long", cl, &wire.StatPath{Path: "/" + strings.Repeat("n", 5000)}, wire.BadPath},
		{"TooLarge", cl, &wire.Put{Path: "/big", Content: bytes.Repeat([]byte("b"), 1025)}, wire.TooLarge},
		{"Locked", other, &wire.Acquire{Path: "/d", Mode: wire.Shared}, wire.Locked},
		{"NotHolder", other, &wire.Release{Path: "/d"}, wire.NotHolder},
		{"SessionExpired unknown", cl, &wire.Put{Header: wire.Header{Session: 999, Request: 1}, Path: "/x"}, wire.SessionExpired},
		{"SessionExpired KeepAlive", cl, &wire.KeepAlive{Header: wire.Header{Session: 999, Request: 1}}, wire.SessionExpired},
		{"GenerationMismatch", cl, &wire.Put{Path: "/d", IfGen: 7}, wire.GenerationMismatch},
		{"GenerationMismatch release", cl, &wire.Release{Path: "/d", LockGen: 9}, wire.GenerationMismatch},
		{"Permission root delete", cl, &wire.Delete{Path: "/"}, wire.Permission},
		{"BadRequest mode", cl, &wire.Acquire{Path: "/d", Mode: 0}, wire.BadRequest},
		{"BadRequest no session", cl, &wire.Acquire{Header: wire.Header{Request: 1}, Path: "/d", Mode: wire.Exclusive}, wire.BadRequest},
		{"BadRequest ifgen+create", cl, &wire.Put{Path: "/d", IfGen: 1, Create: true}, wire.BadRequest},
		{"BadRequest ACL names", cl, &wire.SetACL{Path: "/d", ACL: wire.ACL{Read: []string{"a", "b"}}}, wire.BadRequest},
		{"BadRequest reply type", cl, &wire.Ack{}, wire.BadRequest},
		{"BadRequest negative timeout", cl, &wire.OpenSession{Timeout: -time.Second}, wire.BadRequest},
		{"BadRequest negative lock-delay", cl, &wire.Acquire{Path: "/d", Mode: wire.Exclusive, LockDelay: -1}, wire.BadRequest},
		{"Limit children", cl, &wire.Put{Path: "/d/c2"}, wire.OK},
		{"Limit children 3", cl, &wire.Put{Path: "/d/c3"}, wire.OK},
		{"Limit children 4", cl, &wire.Put{Path: "/d/c4"}, wire.Limit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if r, ok := tc.req.(wire.Request); ok && r.Head().Request != 0 {
				_, err = tc.cl.retry(tc.req) // the header is the test's
			} else {
				_, err = tc.cl.do(tc.req)
			}
			if got := codeOf(err); got != tc.want {
				t.Fatalf("%v = %v; want %v", tc.req.Type(), err, tc.want)
			}
		})
	}
	// Ephemeral nodes of another session cannot be written.
	cl.must(&wire.Put{Path: "/mine", Ephemeral: true})
	if _, err := other.do(&wire.Put{Path: "/mine", Content: []byte("x")}); codeOf(err) != wire.Permission {
		t.Fatalf("Put on another session's ephemeral node = %v; want Permission", err)
	}
	// After all that, the cell still serves both clients.
	if g := cl.must(&wire.Get{Path: "/d"}).(*wire.GetReply); string(g.Content) != "x" {
		t.Fatalf("Get(/d) = %q", g.Content)
	}
	other.must(&wire.StatPath{Path: "/d/child"})
}

// TestKeepAliveCycles runs the KeepAlive loop a client runs: each reply
// reports its hold, so the client counts the next lease from its send plus
// the hold, and the session stays alive across many leases without
// anything else.
func TestKeepAliveCycles(t *testing.T) {
	// A 2 s lease with a 1 s margin: each KeepAlive is held 1 s, and the
	// next must reach the leader within the second left (with a 1 s lease
	// and 0.5 s margin, a stall under -race and load missed it once).
	c := testCell(t, func(cfg *Config) { cfg.Session.Margin = time.Second })
	cl := newClient(t, c)
	sid := cl.open(2 * time.Second)
	var acked uint64
	for range 6 {
		ka := cl.must(&wire.KeepAlive{Acked: acked}).(*wire.KeepAliveReply)
		if ka.TTL <= 0 || ka.TTL > 2*time.Second || ka.Held < 0 {
			t.Fatalf("KeepAlive TTL = %v, held %v; want a TTL within the 2s lease and a hold >= 0", ka.TTL, ka.Held)
		}
		for _, e := range ka.Events {
			acked = e.Seq
		}
	}
	// Three lease lengths later the session is alive.
	cl.must(&wire.Put{Header: wire.Header{Session: sid}, Path: "/alive"})
}

// TestOpenSessionRetry checks that OpenSession retried with the same nonce
// (its request id) gets the first session, and another nonce a new one.
func TestOpenSessionRetry(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	open := &wire.OpenSession{Header: wire.Header{Request: 0x5eed1234}}
	a := cl.must(open).(*wire.SessionOpened)
	b := cl.must(open).(*wire.SessionOpened)
	if a.Session != b.Session {
		t.Fatalf("OpenSession retried with nonce %#x opened %d and %d", open.Request, a.Session, b.Session)
	}
	d := cl.must(&wire.OpenSession{Header: wire.Header{Request: 0x5eed1235}}).(*wire.SessionOpened)
	if d.Session == a.Session {
		t.Fatalf("a new nonce got the old session %d", a.Session)
	}
	if ss := cl.must(&wire.ListSessions{}).(*wire.SessionsReply); len(ss.Sessions) != 2 {
		t.Fatalf("ListSessions = %d sessions; want 2", len(ss.Sessions))
	}
}

// TestCellPorts checks that a cell on free ports gives every replica its
// own addresses (a port drawn twice would stop a replica from starting).
func TestCellPorts(t *testing.T) {
	for range 20 {
		addrs, err := freeAddrs(3 * 5)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			if seen[a] {
				t.Fatalf("freeAddrs drew %s twice: %v", a, addrs)
			}
			seen[a] = true
		}
	}
}
