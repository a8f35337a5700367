package namespace

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// applyCase is one row of the command tables. Each runs on a fresh tree with
// two open sessions (s[0] = 1, s[1] = 2) and the nodes /d (permanent, with
// child /d/f content "v") and /e (ephemeral of session 1) already created.
type applyCase struct {
	name  string
	setup func(h *harness)
	cmd   Command
	as    uint64 // the command's session (0: leader/operator)
	want  error
	check func(t *testing.T, h *harness, r Result, ev []Event)
}

const (
	s1 = uint64(1)
	s2 = uint64(2)
)

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessConfig(t, smallConfig())
			h.open()
			h.open()
			h.must(NewCreate("/d/f", []byte("v"), FlagParents), 0)
			h.must(NewCreate("/e", nil, FlagEphemeral), s1)
			if tc.setup != nil {
				tc.setup(h)
			}
			r, ev := h.apply(tc.cmd, tc.as, 0)
			wantErr(t, tc.name, r.Err, tc.want)
			if tc.want != nil {
				// Only a failed try emits events: conflicts for the holders.
				if len(ev) != 0 && (tc.want != ErrLocked || ev[0].Kind != EventLockConflict) {
					t.Errorf("failed command emitted %v", ev)
				}
				if r.Err.(*Error).Code != CodeOf(r.Err) {
					t.Errorf("error %v has inconsistent code", r.Err)
				}
			}
			if tc.check != nil {
				tc.check(t, h, r, ev)
			}
		})
	}
}

// namedOpen returns an open-session command with a client name.
func namedOpen(name string) Command {
	c := NewOpenSession(time.Second)
	c.Client = name
	return c
}

func smallConfig() Config {
	c := DefaultConfig()
	c.MaxChildren = 3
	c.MaxEphemerals = 2
	c.MaxContent = 8
	c.Results = 4
	return c
}

func wantEvents(t *testing.T, ev []Event, want ...string) {
	t.Helper()
	var got []string
	for _, e := range ev {
		got = append(got, e.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantContent(t *testing.T, h *harness, p, want string) {
	t.Helper()
	n, err := h.tree.Get(p)
	if err != nil || string(n.Content) != want {
		t.Errorf("Get(%q) = %q, %v; want %q", p, n.Content, err, want)
	}
}

func wantMissing(t *testing.T, h *harness, p string) {
	t.Helper()
	if _, err := h.tree.Stat(p); err == nil {
		t.Errorf("Stat(%q) found a node; want none", p)
	}
}

func TestApplyCommon(t *testing.T) {
	bad := NewTick()
	bad.Version = 2
	runApplyCases(t, []applyCase{
		{name: "tick", cmd: NewTick()},
		{name: "unknown version", cmd: bad, want: ErrUnknownVersion},
		{name: "unknown op", cmd: Command{Version: 1, Op: 99}, want: ErrUnknownOp},
		{name: "op zero", cmd: Command{Version: 1}, want: ErrUnknownOp},
		{name: "unknown session", cmd: NewTick(), as: 99, want: ErrSessionUnknown},
		{name: "closed session", setup: func(h *harness) { h.must(NewCloseSession(), s2) },
			cmd: NewTick(), as: s2, want: ErrSessionExpired},
		{name: "flag not allowed", cmd: Command{Version: 1, Op: OpSetContent, Path: "/d", Flags: FlagWait}, want: ErrInvalidCommand},
	})
}

func TestApplySessions(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "open", cmd: NewOpenSession(time.Second), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if r.Session != 3 {
				t.Errorf("session id %d; want 3", r.Session)
			}
			wantEvents(t, ev, "session-opened session=3")
			info, err := h.tree.Session(3)
			if err != nil || info.Timeout != time.Second || info.CreatedIndex != h.index {
				t.Errorf("Session(3) = %+v, %v", info, err)
			}
		}},
		{name: "open from session", cmd: NewOpenSession(time.Second), as: s1, want: ErrInvalidCommand},
		{name: "open zero timeout", cmd: NewOpenSession(0), want: ErrInvalidCommand},
		{name: "open named", cmd: namedOpen(strings.Repeat("n", 256)), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if info, err := h.tree.Session(r.Session); err != nil || info.Client != strings.Repeat("n", 256) {
				t.Errorf("Session(%d).Client = %q, %v; want the 256-byte name", r.Session, info.Client, err)
			}
		}},
		{name: "open name too long", cmd: namedOpen(strings.Repeat("n", 257)), want: ErrInvalidCommand,
			check: func(t *testing.T, h *harness, r Result, ev []Event) {
				if !strings.Contains(r.Err.Error(), "257 bytes; the limit is 256") {
					t.Errorf("error %q does not name the length and the limit", r.Err)
				}
			}},
		{name: "open name not UTF-8", cmd: namedOpen("web\xff"), want: ErrInvalidCommand},
		{name: "close", setup: func(h *harness) {
			h.must(NewAcquire("/d", ModeExclusive, false, 0), s1)
			h.must(NewAcquire("/d/f", ModeExclusive, false, 0), s2)
			h.must(NewAcquire("/d/f", ModeShared, true, 0), s1)
		}, cmd: NewCloseSession(), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"session-closed session=1",
				"wait-canceled /d/f inst=3 session=1 reason=session-closed",
				"lock-released /d inst=2 session=1 reason=session-closed",
				"node-deleted /e inst=4",
				"child-removed / name=e inst=1")
			wantMissing(t, h, "/e")
			if _, err := h.tree.Session(s1); err == nil {
				t.Errorf("session 1 still open")
			}
			if l, _ := h.tree.Lock("/d"); l.DelayUntil != 0 || len(l.Holders) != 0 {
				t.Errorf("close left lock-delay or holders: %+v", l)
			}
		}},
		{name: "close without session", cmd: NewCloseSession(), want: ErrInvalidCommand},
		{name: "expire", setup: func(h *harness) {
			h.must(NewAcquire("/d", ModeExclusive, false, 0), s1)
		}, cmd: NewExpireSession(s1), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"session-expired session=1",
				"lock-released /d inst=2 session=1 reason=session-expired",
				"node-deleted /e inst=4",
				"child-removed / name=e inst=1")
			if l, _ := h.tree.Lock("/d"); l.DelayUntil != h.now+int64(10*time.Second) {
				t.Errorf("lock-delay until %d; want %d", l.DelayUntil, h.now+int64(10*time.Second))
			}
		}},
		{name: "expire from a session", cmd: NewExpireSession(s1), as: s2, want: ErrPermission},
		{name: "expire unknown", cmd: NewExpireSession(77), want: ErrSessionUnknown},
		{name: "expire twice", setup: func(h *harness) { h.must(NewExpireSession(s1), 0) },
			cmd: NewExpireSession(s1), want: ErrSessionExpired},
	})
}

func TestApplyCreate(t *testing.T) {
	withACL := NewCreate("/d/g", nil, 0)
	withACL.ACL = ACL{Reader: "readers", Writer: "writers"}
	badACL := NewCreate("/d/g", nil, 0)
	badACL.ACL = ACL{Writer: "a/b"}
	runApplyCases(t, []applyCase{
		{name: "create", cmd: NewCreate("/d/g", []byte("xy"), 0), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "node-created /d/g inst=5", "child-added /d name=g inst=2")
			if r.Path != "/d/g" || r.Stat.Instance != 5 || r.Stat.ContentGen != 1 || r.Stat.Size != 2 ||
				r.Stat.Checksum == 0 || r.Stat.CreatedIndex != h.index || r.Stat.CreatedTime != h.now {
				t.Errorf("result %+v", r)
			}
			if st, _ := h.tree.Stat("/d"); st.Children != 2 {
				t.Errorf("/d has %d children; want 2", st.Children)
			}
		}},
		{name: "parents", cmd: NewCreate("/x/y/z", nil, FlagParents|FlagEphemeral), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"node-created /x inst=5", "child-added / name=x inst=1",
				"node-created /x/y inst=6", "child-added /x name=y inst=5",
				"node-created /x/y/z inst=7", "child-added /x/y name=z inst=6")
			if st, _ := h.tree.Stat("/x/y"); st.EphemeralOwner != 0 {
				t.Errorf("created parent is ephemeral")
			}
			if st, _ := h.tree.Stat("/x/y/z"); st.EphemeralOwner != s2 {
				t.Errorf("leaf owner %d; want %d", st.EphemeralOwner, s2)
			}
		}},
		{name: "sequential", setup: func(h *harness) {
			h.must(NewCreate("/d/q-", nil, FlagSequential), 0)
		}, cmd: NewCreate("/d/q-", nil, FlagSequential), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if r.Path != "/d/q-0000000001" {
				t.Errorf("path %q; want /d/q-0000000001", r.Path)
			}
		}},
		{name: "sequential under new parent", cmd: NewCreate("/n/", nil, FlagSequential|FlagParents), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if r.Path != "/n/0000000000" {
				t.Errorf("path %q; want /n/0000000000", r.Path)
			}
		}},
		{name: "sequence exhausted", setup: func(h *harness) {
			h.tree.lookup("/d").seq = math.MaxUint32
		}, cmd: NewCreate("/d/q-", nil, FlagSequential), want: ErrSequenceExhausted},
		{name: "own ACL", cmd: withACL, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if n, _ := h.tree.Get("/d/g"); n.ACL != withACL.ACL {
				t.Errorf("ACL %+v; want %+v", n.ACL, withACL.ACL)
			}
		}},
		{name: "inherited ACL", setup: func(h *harness) {
			h.must(NewSetACL("/d", ACL{Reader: "r"}, 0), 0)
		}, cmd: NewCreate("/d/g/h", nil, FlagParents), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if n, _ := h.tree.Get("/d/g/h"); n.ACL.Reader != "r" {
				t.Errorf("ACL %+v not inherited", n.ACL)
			}
		}},
		{name: "exists", cmd: NewCreate("/d/f", nil, 0), want: ErrExists},
		{name: "root exists", cmd: NewCreate("/", nil, 0), want: ErrExists},
		{name: "no parent", cmd: NewCreate("/x/y", nil, 0), want: ErrNotFound},
		{name: "bad path", cmd: NewCreate("/d/", nil, 0), want: ErrBadPath},
		{name: "name too long", cmd: NewCreate("/"+strings.Repeat("n", 250), nil, FlagSequential), want: ErrNameTooLong},
		{name: "too large", cmd: NewCreate("/d/g", []byte("123456789"), 0), want: ErrTooLarge},
		{name: "bad ACL name", cmd: badACL, want: ErrInvalidCommand},
		{name: "ephemeral without session", cmd: NewCreate("/d/g", nil, FlagEphemeral), want: ErrInvalidCommand},
		{name: "child of ephemeral", cmd: NewCreate("/e/g", nil, 0), as: s1, want: ErrPermission},
		{name: "too many children", setup: func(h *harness) {
			h.must(NewCreate("/d/g", nil, 0), 0)
			h.must(NewCreate("/d/h", nil, 0), 0)
		}, cmd: NewCreate("/d/i/j", nil, FlagParents), want: ErrTooManyChildren},
		{name: "too many ephemerals", setup: func(h *harness) {
			h.must(NewCreate("/d/g", nil, FlagEphemeral), s1)
		}, cmd: NewCreate("/d/h", nil, FlagEphemeral), as: s1, want: ErrTooManyEphemerals},
	})
}

func TestApplySetContent(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "set", cmd: NewSetContent("/d/f", []byte("new"), 0), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "content-changed /d/f inst=3")
			wantContent(t, h, "/d/f", "new")
			if r.Stat.ContentGen != 2 || r.Stat.ModifiedIndex != h.index || r.Stat.Checksum != checksum("new") {
				t.Errorf("stat %+v", r.Stat)
			}
		}},
		{name: "generation matches", cmd: NewSetContent("/d/f", []byte("new"), 1)},
		{name: "generation mismatch", cmd: NewSetContent("/d/f", []byte("new"), 2), want: ErrGenerationMismatch},
		{name: "not found", cmd: NewSetContent("/d/x", nil, 0), want: ErrNotFound},
		{name: "bad path", cmd: NewSetContent("d", nil, 0), want: ErrBadPath},
		{name: "too large", cmd: NewSetContent("/d/f", make([]byte, 9), 0), want: ErrTooLarge},
		{name: "root", cmd: NewSetContent("/", []byte("x"), 0), want: ErrPermission},
		{name: "other's ephemeral", cmd: NewSetContent("/e", []byte("x"), 0), as: s2, want: ErrPermission},
		{name: "own ephemeral", cmd: NewSetContent("/e", []byte("x"), 0), as: s1},
		{name: "operator on ephemeral", cmd: NewSetContent("/e", []byte("x"), 0)},
	})
}

func TestApplyDelete(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "delete", cmd: NewDelete("/d/f", false, 0), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "node-deleted /d/f inst=3", "child-removed /d name=f inst=2")
			wantMissing(t, h, "/d/f")
			if r.Deleted != 1 {
				t.Errorf("deleted %d", r.Deleted)
			}
		}},
		{name: "recursive", setup: func(h *harness) {
			h.must(NewCreate("/d/a/b", nil, FlagParents), 0)
			h.must(NewCreate("/d/a/c", nil, FlagEphemeral), s2)
			h.must(NewAcquire("/d/a/b", ModeExclusive, false, 0), s1)
			h.must(NewAcquire("/d/a/b", ModeExclusive, true, 0), s2)
		}, cmd: NewDelete("/d", true, 0), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"lock-released /d/a/b inst=6 session=1 reason=node-deleted",
				"wait-canceled /d/a/b inst=6 session=2 reason=node-deleted",
				"node-deleted /d/a/b inst=6", "child-removed /d/a name=b inst=5",
				"node-deleted /d/a/c inst=7", "child-removed /d/a name=c inst=5",
				"node-deleted /d/a inst=5", "child-removed /d name=a inst=2",
				"node-deleted /d/f inst=3", "child-removed /d name=f inst=2",
				"node-deleted /d inst=2", "child-removed / name=d inst=1")
			if r.Deleted != 5 || h.tree.Len() != 2 {
				t.Errorf("deleted %d, %d nodes left", r.Deleted, h.tree.Len())
			}
			if info, _ := h.tree.Session(s2); len(info.Ephemerals)+len(info.Waiting) != 0 {
				t.Errorf("session 2 keeps %+v", info)
			}
		}},
		{name: "recursive with other's ephemeral", setup: func(h *harness) {
			h.must(NewCreate("/d/g", nil, FlagEphemeral), s2)
		}, cmd: NewDelete("/d", true, 0), as: s1, want: ErrPermission},
		{name: "not empty", cmd: NewDelete("/d", false, 0), want: ErrNotEmpty},
		{name: "not found", cmd: NewDelete("/x", false, 0), want: ErrNotFound},
		{name: "bad path", cmd: NewDelete("/x/", false, 0), want: ErrBadPath},
		{name: "root", cmd: NewDelete("/", true, 0), want: ErrPermission},
		{name: "generation matches", cmd: NewDelete("/d/f", false, 1)},
		{name: "generation mismatch", cmd: NewDelete("/d/f", false, 5), want: ErrGenerationMismatch},
		{name: "other's ephemeral", cmd: NewDelete("/e", false, 0), as: s2, want: ErrPermission},
		{name: "own ephemeral", cmd: NewDelete("/e", false, 0), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if info, _ := h.tree.Session(s1); len(info.Ephemerals) != 0 {
				t.Errorf("session still records %v", info.Ephemerals)
			}
		}},
		{name: "instance is new on re-create", setup: func(h *harness) {
			h.must(NewDelete("/d/f", false, 0), 0)
		}, cmd: NewCreate("/d/f", nil, 0), check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if r.Stat.Instance != 5 {
				t.Errorf("instance %d; want 5", r.Stat.Instance)
			}
		}},
	})
}

func TestApplySetACL(t *testing.T) {
	acl := ACL{Reader: "r", Writer: "w", Changer: "c"}
	runApplyCases(t, []applyCase{
		{name: "set", cmd: NewSetACL("/d", acl, 0), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "acl-changed /d inst=2 reader=r")
			if n, _ := h.tree.Get("/d"); n.ACL != acl || n.Stat.ACLGen != 2 {
				t.Errorf("node %+v", n)
			}
		}},
		{name: "clear", setup: func(h *harness) { h.must(NewSetACL("/d", acl, 0), 0) },
			cmd: NewSetACL("/d", ACL{}, 2), check: func(t *testing.T, h *harness, r Result, ev []Event) {
				if n, _ := h.tree.Get("/d"); !n.ACL.IsZero() || n.Stat.ACLGen != 3 {
					t.Errorf("node %+v", n)
				}
			}},
		{name: "root by operator", cmd: NewSetACL("/", acl, 0)},
		{name: "root by session", cmd: NewSetACL("/", acl, 0), as: s1, want: ErrPermission},
		{name: "generation mismatch", cmd: NewSetACL("/d", acl, 2), want: ErrGenerationMismatch},
		{name: "not found", cmd: NewSetACL("/x", acl, 0), want: ErrNotFound},
		{name: "bad path", cmd: NewSetACL("", acl, 0), want: ErrBadPath},
		{name: "bad name", cmd: NewSetACL("/d", ACL{Changer: ".."}, 0), want: ErrInvalidCommand},
		{name: "other's ephemeral", cmd: NewSetACL("/e", acl, 0), as: s2, want: ErrPermission},
	})
}

func TestApplyLocks(t *testing.T) {
	holdExclusive := func(h *harness) { h.must(NewAcquire("/d", ModeExclusive, false, 0), s1) }
	runApplyCases(t, []applyCase{
		{name: "acquire", cmd: NewAcquire("/d", ModeExclusive, false, 0), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			want := Sequencer{Path: "/d", Mode: ModeExclusive, LockGen: 1, Instance: 2}
			if r.Sequencer != want || !h.tree.CheckSequencer(want) {
				t.Errorf("sequencer %v; want current %v", r.Sequencer, want)
			}
			wantEvents(t, ev, "lock-acquired /d inst=2 session=1 seq=/d:exclusive:1:2")
		}},
		{name: "shared twice", setup: func(h *harness) { h.must(NewAcquire("/d", ModeShared, false, 0), s1) },
			cmd: NewAcquire("/d", ModeShared, false, 0), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
				if r.Sequencer.LockGen != 1 {
					t.Errorf("second shared holder got generation %d; want 1", r.Sequencer.LockGen)
				}
				if l, _ := h.tree.Lock("/d"); !slices.Equal(l.Holders, []uint64{s1, s2}) {
					t.Errorf("holders %v", l.Holders)
				}
			}},
		{name: "try conflict", setup: holdExclusive, cmd: NewAcquire("/d", ModeShared, false, 0), as: s2, want: ErrLocked,
			check: func(t *testing.T, h *harness, r Result, ev []Event) {
				wantEvents(t, ev, "lock-conflict /d inst=2 session=1 by=2")
			}},
		{name: "queue", setup: holdExclusive, cmd: NewAcquire("/d", ModeExclusive, true, 0), as: s2,
			check: func(t *testing.T, h *harness, r Result, ev []Event) {
				if !r.Queued {
					t.Errorf("not queued: %+v", r)
				}
				wantEvents(t, ev, "lock-conflict /d inst=2 session=1 by=2")
			}},
		{name: "holder again", setup: holdExclusive, cmd: NewAcquire("/d", ModeExclusive, false, 0), as: s1,
			check: func(t *testing.T, h *harness, r Result, ev []Event) {
				if r.Sequencer.LockGen != 1 || len(ev) != 0 {
					t.Errorf("re-acquire = %+v, %v", r, ev)
				}
			}},
		{name: "holder other mode", setup: holdExclusive, cmd: NewAcquire("/d", ModeShared, true, 0), as: s1, want: ErrLocked},
		{name: "waiter again", setup: func(h *harness) {
			holdExclusive(h)
			h.must(NewAcquire("/d", ModeExclusive, true, 0), s2)
		}, cmd: NewAcquire("/d", ModeShared, true, 0), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			if !r.Queued || len(ev) != 0 {
				t.Errorf("re-queue = %+v, %v", r, ev)
			}
		}},
		{name: "shared behind exclusive waiter", setup: func(h *harness) {
			h.must(NewAcquire("/d", ModeShared, false, 0), s1)
			h.open()
			h.must(NewAcquire("/d", ModeExclusive, true, 0), 3)
		}, cmd: NewAcquire("/d", ModeShared, false, 0), as: s2, want: ErrLocked},
		{name: "in lock-delay", setup: func(h *harness) {
			holdExclusive(h)
			h.must(NewExpireSession(s1), 0)
		}, cmd: NewAcquire("/d", ModeExclusive, false, 0), as: s2, want: ErrLocked},
		{name: "no session", cmd: NewAcquire("/d", ModeExclusive, false, 0), want: ErrInvalidCommand},
		{name: "bad mode", cmd: NewAcquire("/d", ModeNone, false, 0), as: s1, want: ErrInvalidCommand},
		{name: "not found", cmd: NewAcquire("/x", ModeExclusive, false, 0), as: s1, want: ErrNotFound},
		{name: "bad path", cmd: NewAcquire("x", ModeExclusive, false, 0), as: s1, want: ErrBadPath},

		{name: "release", setup: holdExclusive, cmd: NewRelease("/d", 1), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "lock-released /d inst=2 session=1 reason=released")
			if h.tree.CheckSequencer(Sequencer{Path: "/d", Mode: ModeExclusive, LockGen: 1, Instance: 2}) {
				t.Errorf("sequencer still current after release")
			}
			if len(h.tree.Locks()) != 0 {
				t.Errorf("lock state kept: %+v", h.tree.Locks())
			}
		}},
		{name: "release grants head", setup: func(h *harness) {
			holdExclusive(h)
			h.open()
			h.must(NewAcquire("/d", ModeShared, true, 0), s2)
			h.must(NewAcquire("/d", ModeShared, true, 0), 3)
		}, cmd: NewRelease("/d", 0), as: s1, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"lock-released /d inst=2 session=1 reason=released",
				"lock-acquired /d inst=2 session=2 seq=/d:shared:2:2",
				"lock-acquired /d inst=2 session=3 seq=/d:shared:2:2")
		}},
		{name: "release not holder", setup: holdExclusive, cmd: NewRelease("/d", 0), as: s2, want: ErrNotHolder},
		{name: "release free", cmd: NewRelease("/d", 0), as: s2, want: ErrNotHolder},
		{name: "release generation", setup: holdExclusive, cmd: NewRelease("/d", 7), as: s1, want: ErrGenerationMismatch},
		{name: "release not found", cmd: NewRelease("/x", 0), as: s1, want: ErrNotFound},
		{name: "release no session", cmd: NewRelease("/d", 0), want: ErrInvalidCommand},

		{name: "cancel", setup: func(h *harness) {
			holdExclusive(h)
			h.must(NewAcquire("/d", ModeExclusive, true, 0), s2)
		}, cmd: NewCancel("/d"), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev, "wait-canceled /d inst=2 session=2 reason=canceled")
			if l, _ := h.tree.Lock("/d"); len(l.Waiters) != 0 {
				t.Errorf("waiters %v", l.Waiters)
			}
		}},
		{name: "cancel unblocks shared", setup: func(h *harness) {
			h.must(NewAcquire("/d", ModeShared, false, 0), s1)
			h.open()
			h.must(NewAcquire("/d", ModeExclusive, true, 0), s2)
			h.must(NewAcquire("/d", ModeShared, true, 0), 3)
		}, cmd: NewCancel("/d"), as: s2, check: func(t *testing.T, h *harness, r Result, ev []Event) {
			wantEvents(t, ev,
				"wait-canceled /d inst=2 session=2 reason=canceled",
				"lock-acquired /d inst=2 session=3 seq=/d:shared:1:2")
		}},
		{name: "cancel not waiting", setup: holdExclusive, cmd: NewCancel("/d"), as: s1, want: ErrNotWaiting},
		{name: "cancel not found", cmd: NewCancel("/x"), as: s1, want: ErrNotFound},
		{name: "cancel no session", cmd: NewCancel("/d"), want: ErrInvalidCommand},
	})
}
