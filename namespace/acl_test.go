package namespace

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// aclHarness is a tree with /acl/ops listing alice, /acl/all listing
// everyone, /app (writer ops, changer ops, reader all) with child /app/x,
// and sessions of several kinds.
type aclHarness struct {
	*harness
	alice, bob, anon, super, legacy uint64
}

func openAs(h *harness, principal string, flags Flags) uint64 {
	h.t.Helper()
	c := NewOpenSession(10 * time.Second)
	c.Principal, c.Flags = principal, flags
	return h.must(c, 0).Session
}

// aclConfig is smallConfig with room for ACL files.
func aclConfig() Config {
	c := smallConfig()
	c.MaxContent = 64
	c.MaxChildren = 16
	return c
}

func newACLHarness(t *testing.T) *aclHarness {
	h := &aclHarness{harness: newHarnessConfig(t, aclConfig())}
	h.must(NewCreate("/acl/ops", []byte("# operators\n  alice \n\ncarol\n"), FlagParents), 0)
	h.must(NewCreate("/acl/all", []byte("*\n"), 0), 0)
	app := NewCreate("/app", nil, 0)
	app.ACL = ACL{Reader: "all", Writer: "ops", Changer: "ops"}
	h.must(app, 0)
	h.must(NewCreate("/app/x", []byte("v"), 0), 0)
	h.alice = openAs(h.harness, "alice", FlagRestricted)
	h.bob = openAs(h.harness, "bob", FlagRestricted)
	h.anon = openAs(h.harness, "", FlagRestricted)
	h.super = openAs(h.harness, "root", FlagSuperuser)
	h.legacy = openAs(h.harness, "", 0)
	return h
}

func TestACLWrites(t *testing.T) {
	acquire := NewAcquire("/app/x", ModeShared, false, -1)
	cmds := []struct {
		name string
		cmd  Command
	}{
		{"create child", NewCreate("/app/y", nil, 0)},
		{"create with parents", NewCreate("/app/p/q", nil, FlagParents)},
		{"set content", NewSetContent("/app/x", []byte("w"), 0)},
		{"delete", NewDelete("/app/x", false, 0)},
		{"recursive delete", NewDelete("/app", true, 0)},
		{"acquire shared", acquire},
		{"set ACL", NewSetACL("/app", ACL{Writer: "all"}, 0)},
	}
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			for _, who := range []struct {
				name string
				sid  func(h *aclHarness) uint64
				want error
			}{
				{"listed", func(h *aclHarness) uint64 { return h.alice }, nil},
				{"not listed", func(h *aclHarness) uint64 { return h.bob }, ErrPermission},
				{"anonymous", func(h *aclHarness) uint64 { return h.anon }, ErrPermission},
				{"superuser", func(h *aclHarness) uint64 { return h.super }, nil},
				{"unchecked (opened before ACLs)", func(h *aclHarness) uint64 { return h.legacy }, nil},
				{"operator", func(h *aclHarness) uint64 { return 0 }, nil},
			} {
				if who.name == "operator" && c.cmd.Op == OpAcquire {
					continue // acquire needs a session
				}
				h := newACLHarness(t)
				r, ev := h.apply(c.cmd, who.sid(h), 0)
				wantErr(t, c.name+" by "+who.name, r.Err, who.want)
				if who.want != nil && len(ev) != 0 {
					t.Errorf("%s by %s: denied command emitted %v", c.name, who.name, ev)
				}
			}
		})
	}
}

func TestACLFileDecides(t *testing.T) {
	h := newACLHarness(t)
	// Nobody but superusers passes an ACL whose file is missing.
	h.must(NewSetACL("/app/x", ACL{Writer: "gone"}, 0), 0)
	r, _ := h.apply(NewSetContent("/app/x", []byte("a"), 0), h.alice, 0)
	wantErr(t, "missing ACL file", r.Err, ErrPermission)
	h.must(NewSetContent("/app/x", []byte("s"), 0), h.super)
	// The file's content is read at apply time: listing bob lets him in.
	h.must(NewCreate("/acl/gone", []byte("bob"), 0), 0)
	h.must(NewSetContent("/app/x", []byte("b"), 0), h.bob)
	r, _ = h.apply(NewSetContent("/app/x", []byte("a"), 0), h.alice, 0)
	wantErr(t, "alice not listed", r.Err, ErrPermission)
	// Everyone admits the anonymous principal; a comment is not a name.
	h.must(NewSetContent("/acl/gone", []byte("#bob\n*"), 0), 0)
	h.must(NewSetContent("/app/x", []byte("n"), 0), h.anon)
	h.must(NewSetContent("/acl/gone", []byte("#bob"), 0), 0)
	r, _ = h.apply(NewSetContent("/app/x", []byte("b"), 0), h.bob, 0)
	wantErr(t, "commented out", r.Err, ErrPermission)
	// A child created without ACL names inherits its parent's.
	h.must(NewCreate("/app/kid", nil, 0), h.alice)
	r, _ = h.apply(NewSetContent("/app/kid", []byte("b"), 0), h.bob, 0)
	wantErr(t, "inherited writer", r.Err, ErrPermission)
}

func TestACLRecursiveDeleteChecksSubtree(t *testing.T) {
	h := newACLHarness(t)
	h.must(NewCreate("/open/deep", nil, FlagParents), 0)
	h.must(NewSetACL("/open/deep", ACL{Writer: "ops"}, 0), 0)
	r, _ := h.apply(NewDelete("/open", true, 0), h.bob, 0)
	wantErr(t, "subtree denies bob", r.Err, ErrPermission)
	if _, err := h.tree.Get("/open/deep"); err != nil {
		t.Fatalf("denied delete removed a node: %v", err)
	}
	h.must(NewDelete("/open", true, 0), h.alice)
}

func TestACLRootAndSessions(t *testing.T) {
	h := newACLHarness(t)
	acl := ACL{Writer: "ops"}
	r, _ := h.apply(NewSetACL("/", acl, 0), h.legacy, 0)
	wantErr(t, "root ACL by an unchecked session", r.Err, ErrPermission)
	r, _ = h.apply(NewSetACL("/", acl, 0), h.alice, 0)
	wantErr(t, "root ACL by a restricted session", r.Err, ErrPermission)
	h.must(NewSetACL("/", acl, 0), h.super)
	r, _ = h.apply(NewCreate("/top", nil, 0), h.bob, 0)
	wantErr(t, "create under a root bob may not write", r.Err, ErrPermission)

	both := NewOpenSession(time.Second)
	both.Flags = FlagRestricted | FlagSuperuser
	r, _ = h.apply(both, 0, 0)
	wantErr(t, "restricted superuser", r.Err, ErrInvalidCommand)
	long := NewOpenSession(time.Second)
	long.Principal = string(bytes.Repeat([]byte("p"), aclConfig().MaxClientNameLen+1))
	r, _ = h.apply(long, 0, 0)
	wantErr(t, "principal over the limit", r.Err, ErrInvalidCommand)
	bad := NewOpenSession(time.Second)
	bad.Principal = "p\xff"
	r, _ = h.apply(bad, 0, 0)
	wantErr(t, "principal not UTF-8", r.Err, ErrInvalidCommand)

	for _, c := range []struct {
		sid                   uint64
		principal             string
		restricted, superuser bool
	}{
		{h.alice, "alice", true, false},
		{h.anon, "", true, false},
		{h.super, "root", false, true},
		{h.legacy, "", false, false},
	} {
		info, err := h.tree.Session(c.sid)
		if err != nil || info.Principal != c.principal || info.Restricted != c.restricted || info.Superuser != c.superuser {
			t.Errorf("Session(%d) = %+v, %v; want principal %q restricted %v superuser %v",
				c.sid, info, err, c.principal, c.restricted, c.superuser)
		}
	}
}

func TestPermits(t *testing.T) {
	h := newACLHarness(t)
	h.must(NewSetACL("/app/x", ACL{Reader: "ops"}, 0), 0)
	for _, c := range []struct {
		path   string
		r      Right
		caller Caller
		want   error
	}{
		{"/app/x", RightRead, Caller{Principal: "alice"}, nil},
		{"/app/x", RightRead, Caller{Principal: "bob"}, ErrPermission},
		{"/app/x", RightRead, Caller{}, ErrPermission},
		{"/app/x", RightRead, Caller{Principal: "bob", Superuser: true}, nil},
		{"/app", RightRead, Caller{}, nil}, // reader "all" lists *
		{"/app", RightChange, Caller{Principal: "carol"}, nil},
		{"/", RightWrite, Caller{}, nil}, // no ACL names: everyone
		{"/nope", RightRead, Caller{Principal: "alice"}, ErrNotFound},
	} {
		err := h.tree.Permits(c.path, c.r, c.caller)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("Permits(%s, %v, %+v) = %v; want %v", c.path, c.r, c.caller, err, c.want)
		}
	}
}

// Principals and access survive a snapshot; a session written without the
// longer form (no principal, unchecked) keeps the short one.
func TestSnapshotKeepsPrincipals(t *testing.T) {
	h := newACLHarness(t)
	var buf bytes.Buffer
	if err := h.tree.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New(aclConfig())
	if err := restored.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []uint64{h.alice, h.anon, h.super, h.legacy} {
		a, _ := h.tree.Session(sid)
		b, err := restored.Session(sid)
		if err != nil || a.Principal != b.Principal || a.Restricted != b.Restricted || a.Superuser != b.Superuser {
			t.Errorf("session %d restored as %+v, %v; was %+v", sid, b, err, a)
		}
	}
	var again bytes.Buffer
	if err := restored.Snapshot(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("snapshot of the restored tree differs (%v)", err)
	}
}

// A write without a session is the leader's or an operator's, never
// checked, unless the server marked it FlagRestricted for a principal.
func TestACLSessionlessWrites(t *testing.T) {
	h := newACLHarness(t)
	as := func(principal string, c Command) Command {
		c.Flags |= FlagRestricted
		c.Principal = principal
		return c
	}
	h.must(as("alice", NewSetContent("/app/x", []byte("a"), 0)), 0)
	r, _ := h.apply(as("bob", NewSetContent("/app/x", []byte("b"), 0)), 0, 0)
	wantErr(t, "bob without a session", r.Err, ErrPermission)
	r, _ = h.apply(as("", NewCreate("/app/y", nil, 0)), 0, 0)
	wantErr(t, "anonymous create", r.Err, ErrPermission)
	h.must(NewCreate("/app/y", nil, 0), 0) // an operator's
	r, _ = h.apply(as("alice", NewSetACL("/", ACL{}, 0)), 0, 0)
	wantErr(t, "root ACL, restricted", r.Err, ErrPermission)

	// Ephemeral nodes stay their owner's: a restricted write is not an
	// operator's.
	h.must(NewCreate("/eph", nil, FlagEphemeral), h.bob)
	r, _ = h.apply(as("bob", NewDelete("/eph", false, 0)), 0, 0)
	wantErr(t, "another's ephemeral", r.Err, ErrPermission)
	h.must(NewDelete("/eph", false, 0), 0)

	r, _ = h.apply(as("alice", NewSetContent("/app/x", nil, 0)), h.alice, 0)
	wantErr(t, "restricted flag with a session", r.Err, ErrInvalidCommand)
	r, _ = h.apply(as("p\xff", NewSetContent("/app/x", nil, 0)), 0, 0)
	wantErr(t, "principal not UTF-8", r.Err, ErrInvalidCommand)
	r, _ = h.apply(as("alice", NewAcquire("/app/x", ModeShared, false, 0)), h.alice, 0)
	wantErr(t, "restricted acquire", r.Err, ErrInvalidCommand)
}

// Every node event carries the reader ACL name of its node as it was when
// the event happened (the parent's for child events), so a server can
// show it only to those who may read that node, even when the command
// deleted it.
func TestEventReader(t *testing.T) {
	h := newACLHarness(t)
	h.must(NewCreate("/app/s", nil, 0), 0)
	h.must(NewSetACL("/app/s", ACL{Reader: "ops"}, 0), 0)
	h.must(NewCreate("/app/s/k", nil, 0), 0) // inherits reader ops
	_, ev := h.apply(NewDelete("/app/s", true, 0), h.alice, 0)
	want := []string{
		"node-deleted /app/s/k inst=8 reader=ops",
		"child-removed /app/s name=k inst=7 reader=ops",
		"node-deleted /app/s inst=7 reader=ops",
		"child-removed /app name=s inst=5 reader=all",
	}
	wantEvents(t, ev, want...)
	for _, c := range []struct {
		name   string
		caller Caller
		want   bool
	}{
		{"ops", Caller{Principal: "alice"}, true},
		{"ops", Caller{Principal: "bob"}, false},
		{"ops", Caller{Principal: "bob", Superuser: true}, true},
		{"all", Caller{}, true},
		{"", Caller{}, true},
		{"gone", Caller{Principal: "alice"}, false},
	} {
		if got := h.tree.Admits(c.name, c.caller); got != c.want {
			t.Errorf("Admits(%q, %+v) = %v; want %v", c.name, c.caller, got, c.want)
		}
	}
}

// The ACL is checked before the owner of an ephemeral node, so a refusal
// tells a caller the ACL does not admit nothing of the node: not that it
// is ephemeral, nor its owner's session.
func TestACLRefusalHidesEphemeralOwner(t *testing.T) {
	h := newACLHarness(t)
	h.must(NewCreate("/app/e", nil, FlagEphemeral), h.alice) // writer ops
	h.must(NewCreate("/app/d", nil, 0), h.alice)
	h.must(NewCreate("/app/d/e", nil, FlagEphemeral), h.alice)
	h.must(NewCreate("/open", nil, 0), 0) // no names: bob may write it
	h.must(NewCreate("/open/e", nil, FlagEphemeral), h.anon)
	h.must(NewSetACL("/open/e", ACL{Writer: "ops"}, 0), h.anon)
	for _, c := range []Command{
		NewDelete("/open", true, 0),
		NewSetContent("/app/e", []byte("b"), 0),
		NewSetACL("/app/e", ACL{}, 0),
		NewDelete("/app/e", false, 0),
		NewDelete("/app/d", true, 0),
		NewCreate("/app/e/child", nil, 0),
	} {
		r, _ := h.apply(c, h.bob, 0)
		wantErr(t, c.Op.String()+" "+c.Path, r.Err, ErrPermission)
		if msg := r.Err.Error(); strings.Contains(msg, "session") || strings.Contains(msg, "ephemeral") || !strings.Contains(msg, `"bob"`) {
			t.Errorf("%s %s by bob: %q; want the ACL's refusal", c.Op, c.Path, msg)
		}
	}
}
