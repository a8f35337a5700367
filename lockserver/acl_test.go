package lockserver

import (
	"context"
	"errors"
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
func TestACLEnforcedPerPrincipal(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.Superusers = []string{"root"} })
	ctx := context.Background()
	call := func(principal string, req wire.Message) wire.Message {
		t.Helper()
		for range 50 {
			ls := c.Server(c.Leader())
			m := ls.serve(ctx, ls.callerFor(principal), req)
			if e, ok := m.(*wire.Error); ok && (e.Code == wire.NotLeader || e.Code == wire.Unavailable) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return m
		}
		t.Fatalf("%v as %q: no leader", req.Type(), principal)
		return nil
	}
	want := func(what string, m wire.Message, code wire.Code) {
		t.Helper()
		e, isErr := m.(*wire.Error)
		switch {
		case code == wire.OK && isErr:
			t.Fatalf("%s: %v; want success", what, e)
		case code != wire.OK && (!isErr || e.Code != code):
			t.Fatalf("%s: %v; want %v", what, m, code)
		}
	}
	open := func(principal string) uint64 {
		t.Helper()
		m := call(principal, &wire.OpenSession{})
		want("open as "+principal, m, wire.OK)
		return m.(*wire.SessionOpened).Session
	}

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
