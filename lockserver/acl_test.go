package lockserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// The server enforces ACLs for the principal of each connection: reads
// itself, writes through the namespace (a session's principal, or a
// sessionless write marked restricted), and a session is usable only from
// its own principal's connections. Principals come from TLS client
// certificates; here the calls go straight to the leader's handler with
// the principal a connection would carry.
// aclCell is a test cell with superuser "root", called straight through
// the leader's handler as a connection of a given principal would be.
type aclCell struct {
	t *testing.T
	c *Cell
}

func newACLCell(t *testing.T) *aclCell {
	return &aclCell{t: t, c: testCell(t, func(cfg *Config) { cfg.Superusers = []string{"root"} })}
}

// call sends req as principal to the leader, retrying while there is none.
func (a *aclCell) call(principal string, req wire.Message) wire.Message {
	a.t.Helper()
	for range 50 {
		ls := a.c.Server(leaderIndex(a.t, a.c))
		m := ls.serve(context.Background(), ls.callerFor(principal), req)
		if e, ok := m.(*wire.Error); ok && (e.Code == wire.NotLeader || e.Code == wire.Unavailable) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return m
	}
	a.t.Fatalf("%v as %q: no leader", req.Type(), principal)
	return nil
}

// want checks that m is a success (wire.OK) or the error code.
func (a *aclCell) want(what string, m wire.Message, code wire.Code) {
	a.t.Helper()
	e, isErr := m.(*wire.Error)
	switch {
	case code == wire.OK && isErr:
		a.t.Fatalf("%s: %v; want success", what, e)
	case code != wire.OK && (!isErr || e.Code != code):
		a.t.Fatalf("%s: %v; want %v", what, m, code)
	}
}

// open opens a session as principal, with a lease that outlasts the test
// on a slow machine (the tests send no KeepAlives but to take events).
func (a *aclCell) open(principal string) uint64 {
	a.t.Helper()
	m := a.call(principal, &wire.OpenSession{Timeout: time.Minute})
	a.want("open as "+principal, m, wire.OK)
	return m.(*wire.SessionOpened).Session
}

// do calls req as principal and wants success.
func (a *aclCell) do(what, principal string, req wire.Message) wire.Message {
	a.t.Helper()
	m := a.call(principal, req)
	a.want(what, m, wire.OK)
	return m
}

func TestACLEnforcedPerPrincipal(t *testing.T) {
	a := newACLCell(t)
	call, want, open := a.call, a.want, a.open

	// The superuser sets up: ops lists alice; /app is read and written by ops.
	want("root writes an ACL file", call("root", &wire.Put{Path: "/acl/ops", Content: []byte("alice\n"), Parents: true}), wire.OK)
	want("root creates /app", call("root", &wire.Put{Path: "/app/x", Content: []byte("v"), Parents: true}), wire.OK)
	want("root sets /app's ACL", call("root", &wire.SetACL{Path: "/app", ACL: wire.ACL{Read: []string{"ops"}, Write: []string{"ops"}, Admin: []string{"ops"}}}), wire.OK)
	alice, bob := open("alice"), open("bob")

	// Reads.
	want("alice reads", call("alice", &wire.Get{Path: "/app"}), wire.OK)
	want("bob reads", call("bob", &wire.Get{Path: "/app"}), wire.Permission)
	want("anonymous stats", call("", &wire.StatPath{Path: "/app"}), wire.Permission)
	want("bob lists", call("bob", &wire.List{Path: "/app"}), wire.Permission)
	want("bob reads the ACL", call("bob", &wire.GetACL{Path: "/app"}), wire.Permission)
	want("bob reads a stale copy", call("bob", &wire.Get{Path: "/app", Stale: true}), wire.Permission)
	want("root reads", call("root", &wire.Get{Path: "/app"}), wire.OK)
	readTxn := &wire.Txn{Ops: []wire.TxnOp{{Kind: wire.TxnCheckMissing, Path: "/app/none"}, {Kind: wire.TxnGet, Path: "/app"}}}
	want("alice reads in a Txn", call("alice", readTxn), wire.OK)
	want("bob reads in a Txn", call("bob", readTxn), wire.Permission)
	want("bob checks in a Txn", call("bob", &wire.Txn{Ops: []wire.TxnOp{{Kind: wire.TxnCheck, Path: "/app"}}}), wire.Permission)
	walk := func(principal string) []string {
		m := call(principal, &wire.Walk{Path: "/"})
		want("walk as "+principal, m, wire.OK)
		var names []string
		for _, e := range m.(*wire.WalkReply).Entries {
			names = append(names, e.Name)
		}
		return names
	}
	if names := walk("bob"); slices.Contains(names, "/app") || !slices.Contains(names, "/app/x") {
		t.Errorf("bob's walk = %v; want /app left out (its own ACL decides, so /app/x, inherited before the change, stays)", names)
	}
	if names := walk("alice"); !slices.Contains(names, "/app") {
		t.Errorf("alice's walk = %v; want /app", names)
	}

	// Writes, with and without a session.
	put := func(sid uint64, p string) *wire.Put {
		return &wire.Put{Header: wire.Header{Session: sid}, Path: p, Content: []byte("w")}
	}
	want("alice writes", call("alice", put(alice, "/app")), wire.OK)
	want("bob writes", call("bob", put(bob, "/app")), wire.Permission)
	want("bob writes without a session", call("bob", put(0, "/app")), wire.Permission)
	want("bob creates under /app", call("bob", put(0, "/app/new")), wire.Permission)
	want("anonymous deletes", call("", &wire.Delete{Path: "/app", Recursive: true}), wire.Permission)
	want("bob locks", call("bob", &wire.Acquire{Header: wire.Header{Session: bob}, Path: "/app", Mode: wire.Shared}), wire.Permission)
	want("alice locks", call("alice", &wire.Acquire{Header: wire.Header{Session: alice}, Path: "/app", Mode: wire.Exclusive}), wire.OK)
	want("bob changes the ACL", call("bob", &wire.SetACL{Path: "/app", ACL: wire.ACL{}}), wire.Permission)
	want("bob watches", call("bob", &wire.Watch{Header: wire.Header{Session: bob}, Path: "/app"}), wire.Permission)
	want("bob watches a missing node", call("bob", &wire.Watch{Header: wire.Header{Session: bob}, Path: "/later"}), wire.OK)

	// A session belongs to its principal.
	want("bob uses alice's session", call("bob", put(alice, "/free")), wire.Permission)
	want("bob keeps alice's session alive", call("bob", &wire.KeepAlive{Header: wire.Header{Session: alice}}), wire.Permission)
	want("bob releases alice's lock", call("bob", &wire.Release{Header: wire.Header{Session: alice}, Path: "/app"}), wire.Permission)
	want("bob closes alice's session", call("bob", &wire.CloseSession{Header: wire.Header{Session: alice}}), wire.Permission)
	want("alice releases", call("alice", &wire.Release{Header: wire.Header{Session: alice}, Path: "/app"}), wire.OK)

	// Listing bob's ACL file as a reader lets him in at once.
	want("root adds bob", call("root", &wire.Put{Path: "/acl/ops", Content: []byte("alice\nbob\n")}), wire.OK)
	want("bob reads now", call("bob", &wire.Get{Path: "/app"}), wire.OK)
	want("bob writes now", call("bob", put(bob, "/app")), wire.OK)
}

func TestSuperusersConfig(t *testing.T) {
	for _, users := range [][]string{{""}, {"ok", "bad\xff"}, {string(make([]byte, 300))}} {
		cfg := DefaultConfig()
		cfg.ID, cfg.DataDir = 1, t.TempDir()
		cfg.Members = map[uint64]Member{1: {Peer: "127.0.0.1:1", Client: "127.0.0.1:2"}}
		cfg.Superusers = users
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("Superusers %q: Validate = %v; want ErrConfig", users, err)
		}
	}
}

// events collects the watch events of session sid, opened by principal,
// rendered as "Type path" or "Type path/child", until stop arrives
// (acknowledging as it goes).
func (a *aclCell) events(principal string, sid uint64, stop string) []string {
	a.t.Helper()
	var got []string
	var acked uint64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ka := a.do("KeepAlive as "+principal, principal, &wire.KeepAlive{Header: wire.Header{Session: sid}, Acked: acked}).(*wire.KeepAliveReply)
		for _, e := range ka.Events {
			acked = max(acked, e.Seq)
			name := e.Type.String() + " " + e.Path
			if e.Child != "" {
				name += "/" + e.Child
			}
			got = append(got, name)
			if name == stop {
				return got
			}
		}
	}
	a.t.Fatalf("%s's session %d: no %s; got %q", principal, sid, stop, got)
	return nil
}

// A watch is checked when it is set, but each event it matches is shown
// only to sessions that may read the node it is about, as it was when the
// event happened: a recursive watch on a readable directory sees nothing of
// a child it may not read (but the child's name, the directory's, in
// ChildAdded and ChildRemoved), nor does a watch set on a missing path that
// is then created with an ACL that keeps the watcher out.
func TestWatchEventsFollowACLs(t *testing.T) {
	a := newACLCell(t)
	a.do("ops file", "root", &wire.Put{Path: "/acl/ops", Content: []byte("alice\n"), Parents: true})
	a.do("/acl's ACL", "root", &wire.SetACL{Path: "/acl", ACL: wire.ACL{Read: []string{"ops"}, Write: []string{"ops"}, Admin: []string{"ops"}}})
	a.do("/pub/secret", "root", &wire.Put{Path: "/pub/secret", Parents: true})
	a.do("/vault", "root", &wire.Put{Path: "/vault"})
	for _, p := range []string{"/pub/secret", "/vault"} {
		a.do("ACL of "+p, "root", &wire.SetACL{Path: p, ACL: wire.ACL{Read: []string{"ops"}, Write: []string{"ops"}, Admin: []string{"ops"}}})
	}
	a.do("/pub/secret/k", "root", &wire.Put{Path: "/pub/secret/k", Content: []byte("1")}) // reader ops, inherited

	watchers := map[string]uint64{"mallory": a.open("mallory"), "alice": a.open("alice")}
	for who, sid := range watchers {
		a.do(who+" watches /pub", who, &wire.Watch{Header: wire.Header{Session: sid}, Path: "/pub", Recursive: true})
		a.do(who+" watches /vault/later", who, &wire.Watch{Header: wire.Header{Session: sid}, Path: "/vault/later"})
	}
	a.want("mallory watches /vault", a.call("mallory", &wire.Watch{Header: wire.Header{Session: watchers["mallory"]}, Path: "/vault"}), wire.Permission)

	a.do("write k", "root", &wire.Put{Path: "/pub/secret/k", Content: []byte("2")})
	a.do("lock k", "alice", &wire.Acquire{Header: wire.Header{Session: watchers["alice"]}, Path: "/pub/secret/k", Mode: wire.Exclusive})
	a.do("create /vault/later", "root", &wire.Put{Path: "/vault/later", Content: []byte("s")})
	a.do("delete /pub/secret", "root", &wire.Delete{Path: "/pub/secret", Recursive: true})
	a.do("create /pub/end", "root", &wire.Put{Path: "/pub/end"})

	want := map[string][]string{
		"mallory": {"ChildRemoved /pub/secret", "NodeCreated /pub/end", "ChildAdded /pub/end"},
		"alice": {"ContentChanged /pub/secret/k", "LockAcquired /pub/secret/k", "NodeCreated /vault/later",
			"LockReleased /pub/secret/k", "NodeDeleted /pub/secret/k", "ChildRemoved /pub/secret/k",
			"NodeDeleted /pub/secret", "ChildRemoved /pub/secret", "NodeCreated /pub/end", "ChildAdded /pub/end"},
	}
	for who, sid := range watchers {
		if got := a.events(who, sid, "ChildAdded /pub/end"); !slices.Equal(got, want[who]) {
			t.Errorf("%s's events = %q; want %q", who, got, want[who])
		}
	}
}

// A KeepAlive takes the session's events and extends its lease, so only
// the session's principal may send it, even for a session this replica
// has not applied yet: ids are sequential, and the next one may be opened
// by someone else between the server's look at its state and its call to
// the manager. Here the manager knows a session the state does not (as it
// does once that OpenSession is applied in between).
func TestKeepAliveOfUnappliedSessionChecksOwner(t *testing.T) {
	a := newACLCell(t)
	a.open("alice") // a leader term with a manager
	const next = 1000
	ls := a.c.Server(leaderIndex(t, a.c))
	tm := ls.term.Load()
	if tm == nil {
		t.Fatal("the leader has no term")
	}
	if err := tm.mgr.Open(next, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a.want("mallory's KeepAlive of a session unknown to the state",
		a.call("mallory", &wire.KeepAlive{Header: wire.Header{Session: next}}), wire.SessionExpired)
}

// List names every child (the names are the directory's), but gives the
// stat only of those the caller may read: a checksum and size say much of
// a short content.
func TestListHidesUnreadableStats(t *testing.T) {
	a := newACLCell(t)
	a.do("ops file", "root", &wire.Put{Path: "/acl/ops", Content: []byte("alice\n"), Parents: true})
	a.do("/d/pin", "root", &wire.Put{Path: "/d/pin", Content: []byte("4711"), Parents: true})
	a.do("/d/pub", "root", &wire.Put{Path: "/d/pub", Content: []byte("hello")})
	a.do("ACL of /d/pin", "root", &wire.SetACL{Path: "/d/pin", ACL: wire.ACL{Read: []string{"ops"}, Write: []string{"ops"}, Admin: []string{"ops"}}})
	for who, want := range map[string][]uint64{"mallory": {0, 5}, "alice": {4, 5}, "root": {4, 5}} {
		ents := a.do("list as "+who, who, &wire.List{Path: "/d"}).(*wire.ListReply).Entries
		var names []string
		var sizes []uint64
		for _, e := range ents {
			names = append(names, e.Name)
			sizes = append(sizes, e.Stat.Size)
			if e.Name == "pin" && (e.Stat.Checksum == 0) != (who == "mallory") {
				t.Errorf("%s lists pin with checksum %#x", who, e.Stat.Checksum)
			}
		}
		if !slices.Equal(names, []string{"pin", "pub"}) || !slices.Equal(sizes, want) {
			t.Errorf("%s lists /d as %q, sizes %v; want [pin pub], %v", who, names, sizes, want)
		}
	}
}

// The lock-down steps of docs/operations.md ("Access control"), in their
// order: ACL names are copied to a child only when it is created, so /acl
// and /app get theirs before the files and nodes under them are created,
// and the first file, created before /acl had names, gets its own. Then
// neither mallory nor an anonymous client can touch an ACL file or /app.
func TestLockDownAsDocumented(t *testing.T) {
	a := newACLCell(t)
	acl := func(read, write, change string) wire.ACL {
		return wire.ACL{Read: []string{read}, Write: []string{write}, Admin: []string{change}}
	}
	a.do("operators file", "root", &wire.Put{Path: "/acl/operators", Content: []byte("operator\n"), Parents: true})
	a.do("ACL of /acl/operators", "root", &wire.SetACL{Path: "/acl/operators", ACL: acl("operators", "operators", "operators")})
	a.do("ACL of /acl", "root", &wire.SetACL{Path: "/acl", ACL: acl("operators", "operators", "operators")})
	a.do("ops file", "root", &wire.Put{Path: "/acl/ops", Content: []byte("alice\nbob\n")})
	a.do("/app", "root", &wire.Put{Path: "/app"})
	a.do("ACL of /app", "root", &wire.SetACL{Path: "/app", ACL: acl("ops", "ops", "operators")})
	a.do("/app/config", "root", &wire.Put{Path: "/app/config", Content: []byte("c")})

	for _, who := range []string{"mallory", ""} {
		for _, c := range []struct {
			what string
			req  wire.Message
		}{
			{"write an ACL file", &wire.Put{Path: "/acl/ops", Content: []byte("mallory\n")}},
			{"write the first ACL file", &wire.Put{Path: "/acl/operators", Content: []byte("mallory\n")}},
			{"create an ACL file", &wire.Put{Path: "/acl/new", Content: []byte("mallory\n")}},
			{"delete the ACL files", &wire.Delete{Path: "/acl", Recursive: true}},
			{"rename an ACL", &wire.SetACL{Path: "/acl/ops", ACL: wire.ACL{}}},
			{"read an ACL file", &wire.Get{Path: "/acl/ops"}},
			{"read /app/config", &wire.Get{Path: "/app/config"}},
			{"write /app/config", &wire.Put{Path: "/app/config", Content: []byte("m")}},
			{"create under /app", &wire.Put{Path: "/app/m"}},
			{"change /app's ACL", &wire.SetACL{Path: "/app", ACL: wire.ACL{}}},
		} {
			a.want(fmt.Sprintf("%q may not %s", who, c.what), a.call(who, c.req), wire.Permission)
		}
	}
	a.do("alice reads /app/config", "alice", &wire.Get{Path: "/app/config"})
	a.do("alice writes /app/config", "alice", &wire.Put{Path: "/app/config", Content: []byte("a")})
}

// The ACL tests call the leader's handler directly: across an election
// (here the leader crashes; at start-up a duel of candidates does it for
// a few milliseconds) there is no leader to call, and the call waits for
// the next one rather than indexing the cell's replicas with -1.
func TestACLCallAcrossAnElection(t *testing.T) {
	a := newACLCell(t)
	if err := a.c.Crash(leaderIndex(t, a.c)); err != nil {
		t.Fatal(err)
	}
	a.do("root writes during the election", "root", &wire.Put{Path: "/x", Content: []byte("v")})
}
