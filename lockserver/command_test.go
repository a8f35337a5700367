package lockserver

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func mustEncode(t testing.TB, k kind, cmd namespace.Command) []byte {
	t.Helper()
	e, err := encodeCommand(k, &cmd)
	if err != nil {
		t.Fatalf("encodeCommand(%v): %v", cmd.Op, err)
	}
	defer e.release()
	return bytes.Clone(e.entry())
}

// goldenCommands are the log entries whose bytes are pinned in testdata:
// the log is durable forever, so version 1 must keep decoding them.
func goldenCommands() []struct {
	name string
	k    kind
	cmd  namespace.Command
} {
	put := namespace.NewCreate("/ls/prod/leader", []byte("host-1:7000"), namespace.FlagParents)
	put.Time, put.Session, put.Request = 1_700_000_000_000_000_000, 7, 42
	acq := namespace.NewAcquire("/ls/prod/leader", namespace.ModeExclusive, true, 5*time.Second)
	acq.Time, acq.Session, acq.Request = 1_700_000_000_000_000_001, 7, 43
	exp := namespace.NewExpireSession(9)
	exp.Time = 1_700_000_000_000_000_002
	return []struct {
		name string
		k    kind
		cmd  namespace.Command
	}{
		{"put", kindPut, put},
		{"acquire", kindNamespace, acq},
		{"expire", kindNamespace, exp},
	}
}

func TestCommandGolden(t *testing.T) {
	var out strings.Builder
	for _, g := range goldenCommands() {
		out.WriteString(g.name + " " + hex.EncodeToString(mustEncode(t, g.k, g.cmd)) + "\n")
	}
	path := filepath.Join("testdata", "commands_v1.golden")
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("log command encoding changed; version 1 is durable forever:\ngot:\n%swant:\n%s", out.String(), want)
	}
	// And the pinned bytes decode to the same commands.
	d := newCommandDecoder()
	for i, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		name, hexed, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(hexed)
		if err != nil {
			t.Fatal(err)
		}
		var cmd namespace.Command
		k, err := d.decode(b, &cmd)
		g := goldenCommands()[i]
		if err != nil || k != g.k || !equalCommands(cmd, g.cmd) {
			t.Fatalf("decode(%s) = %v, %+v, %v; want %v, %+v", name, k, cmd, err, g.k, g.cmd)
		}
	}
}

func equalCommands(a, b namespace.Command) bool {
	ac, bc := a.Content, b.Content
	a.Content, b.Content = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(ac, bc)
}

func TestCommandDecodeErrors(t *testing.T) {
	good := mustEncode(t, kindNamespace, namespace.NewTick())
	set := mustEncode(t, kindNamespace, namespace.NewSetContent("/a", nil, 0))
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrBadCommand},
		{"one byte", []byte{1}, ErrBadCommand},
		{"unknown version", append([]byte{2}, good[1:]...), ErrCommandVersion},
		{"version zero", append([]byte{0}, good[1:]...), ErrCommandVersion},
		{"unknown kind", append([]byte{1, 9}, good[2:]...), ErrBadCommand},
		{"kind zero", append([]byte{1, 0}, good[2:]...), ErrBadCommand},
		{"trailing bytes", append(append([]byte{}, good...), 0), ErrBadCommand},
		{"truncated", good[:len(good)-1], ErrBadCommand},
		{"garbage body", []byte{1, 1, 0xc1}, ErrBadCommand},
		{"put of a set", append([]byte{1, byte(kindPut)}, set[2:]...), ErrBadCommand},
	}
	d := newCommandDecoder()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cmd namespace.Command
			if _, err := d.decode(tc.b, &cmd); !errors.Is(err, tc.want) {
				t.Fatalf("decode = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestResultRoundTrip(t *testing.T) {
	rs := []namespace.Result{
		{},
		{Err: &namespace.Error{Code: namespace.CodeLocked, Msg: "namespace: lock is held: x"}},
		{Path: "/a/b-0000000001", Stat: namespace.Stat{Instance: 3, ContentGen: 1, Size: 5, CreatedTime: -5, Children: 2, EphemeralOwner: 9}},
		{Session: 12},
		{Sequencer: namespace.Sequencer{Path: "/l", Mode: namespace.ModeShared, LockGen: 4, Instance: 2}},
		{Queued: true, Deleted: 17},
		{Txn: &namespace.TxnResult{Ops: []namespace.Result{{Path: "/a/0000000007", Stat: namespace.Stat{Instance: 9, ContentGen: 1}}, {}, {Deleted: 3}}}},
		{Err: &namespace.Error{Code: namespace.CodeExists, Msg: "txn ops[1] (check-missing): \"/b\""}, Txn: &namespace.TxnResult{Failed: 1}},
	}
	for i, r := range rs {
		o, err := decodeResult(appendResult(nil, uint64(i+100), &r))
		if err != nil || o.index != uint64(i+100) {
			t.Fatalf("decodeResult #%d = %+v, %v", i, o, err)
		}
		if errString(o.res.Err) != errString(r.Err) || namespace.CodeOf(o.res.Err) != namespace.CodeOf(r.Err) {
			t.Fatalf("result #%d error = %v; want %v", i, o.res.Err, r.Err)
		}
		o.res.Err, r.Err = nil, nil
		if !reflect.DeepEqual(o.res, r) {
			t.Fatalf("result #%d = %+v; want %+v", i, o.res, r)
		}
	}
	if _, err := decodeResult([]byte{1, 0, 0xff}); err == nil {
		t.Fatal("decodeResult of garbage succeeded")
	}
}

// applyTo applies entries to f at consecutive indexes and returns the
// decoded outcomes.
func applyTo(t testing.TB, f *fsm, from uint64, entries ...[]byte) []outcome {
	t.Helper()
	var out []outcome
	for i, b := range entries {
		o, err := decodeResult(f.Apply(from+uint64(i), b))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

func snapshotBytes(t testing.TB, f *fsm) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func withIDs(cmd namespace.Command, sid, rid uint64) namespace.Command {
	cmd.Session, cmd.Request, cmd.Time = sid, rid, int64(rid)
	return cmd
}

// TestFSMPut checks the create-or-set resolution in apply, its idempotence,
// and that a bad entry changes nothing.
func TestFSMPut(t *testing.T) {
	f := newFSM(namespace.DefaultConfig())
	open := applyTo(t, f, 1, mustEncode(t, kindNamespace, namespace.NewOpenSession(time.Second)))[0]
	sid := open.res.Session
	put := func(rid uint64, content string) []byte {
		return mustEncode(t, kindPut, withIDs(namespace.NewCreate("/p", []byte(content), 0), sid, rid))
	}
	rs := applyTo(t, f, 2, put(1, "a"), put(2, "b"), put(1, "a"))
	if rs[0].res.Err != nil || rs[0].res.Stat.ContentGen != 1 || rs[1].res.Stat.ContentGen != 2 {
		t.Fatalf("create-or-set results %+v, %+v", rs[0].res, rs[1].res)
	}
	if rs[2].res.Stat != rs[0].res.Stat {
		t.Fatalf("retried put = %+v; want the first result %+v", rs[2].res, rs[0].res)
	}
	f.read(func(tr *namespace.Tree) {
		n, err := tr.Get("/p")
		if err != nil || string(n.Content) != "b" {
			t.Fatalf("/p = %q, %v; want b", n.Content, err)
		}
	})
	before := snapshotBytes(t, f)
	bad := append([]byte{9}, put(3, "c")[1:]...)
	o := applyTo(t, f, 5, bad)[0]
	if namespace.CodeOf(o.res.Err) != namespace.CodeUnknownVersion {
		t.Fatalf("unknown-version entry = %v; want unknown-version", o.res.Err)
	}
	if !bytes.Equal(before, snapshotBytes(t, f)) {
		t.Fatal("a rejected entry changed the state")
	}
}

// TestFSMSnapshotRestore checks that restore(snapshot(s)) is exact: the
// same bytes, and the same results for later commands.
func TestFSMSnapshotRestore(t *testing.T) {
	cfg := namespace.DefaultConfig()
	a := newFSM(cfg)
	sid := applyTo(t, a, 1, mustEncode(t, kindNamespace, namespace.NewOpenSession(time.Second)))[0].res.Session
	applyTo(t, a, 2,
		mustEncode(t, kindPut, withIDs(namespace.NewCreate("/s", []byte("x"), 0), sid, 1)),
		mustEncode(t, kindNamespace, withIDs(namespace.NewAcquire("/s", namespace.ModeExclusive, false, 0), sid, 2)),
	)
	nonce := namespace.NewOpenSession(time.Second)
	nonce.Request = 0xfeed
	opened := applyTo(t, a, 10, mustEncode(t, kindNamespace, nonce))[0].res.Session
	snap := snapshotBytes(t, a)
	b := newFSM(cfg)
	if err := b.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, snapshotBytes(t, b)) {
		t.Fatal("snapshot of the restored state differs")
	}
	if again := applyTo(t, b, 11, mustEncode(t, kindNamespace, nonce))[0].res.Session; again != opened {
		t.Fatalf("OpenSession retried after a restore opened %d; want %d", again, opened)
	}
	applyTo(t, a, 11, mustEncode(t, kindNamespace, nonce))
	next := mustEncode(t, kindPut, withIDs(namespace.NewCreate("/s", []byte("y"), 0), sid, 3))
	ra, rb := applyTo(t, a, 12, next)[0], applyTo(t, b, 12, next)[0]
	if errString(ra.res.Err) != errString(rb.res.Err) || ra.res.Stat != rb.res.Stat {
		t.Fatalf("after restore results differ: %+v vs %+v", ra.res, rb.res)
	}
	for _, bad := range [][]byte{nil, []byte("not a snapshot at all"), append([]byte(snapshotMagic), 9),
		append([]byte(snapshotMagic), 1, 0xff, 0, 0, 0, 0, 0, 0, 0)} {
		if err := newFSM(cfg).Restore(bytes.NewReader(bad)); err == nil {
			t.Fatalf("Restore(%q) succeeded", bad)
		}
	}
}

// TestFSMApplyAllocs bounds the allocations of applying one set-content
// entry: the decoded path and content, the tree's own bookkeeping, and the
// result handed to the proposer.
func TestFSMApplyAllocs(t *testing.T) {
	f := newFSM(namespace.DefaultConfig())
	applyTo(t, f, 1, mustEncode(t, kindNamespace, namespace.NewCreate("/a", nil, 0)))
	entry := mustEncode(t, kindNamespace, namespace.NewSetContent("/a", []byte("0123456789abcdef"), 0))
	idx := uint64(2)
	allocs := testing.AllocsPerRun(1000, func() {
		f.Apply(idx, entry)
		idx++
	})
	t.Logf("allocations per applied set-content: %.1f", allocs)
	if allocs > 8 {
		t.Fatalf("Apply allocates %.1f times per set-content; want at most 8", allocs)
	}
}

// nsError: where the wire code says what the namespace root code says, the
// message carries only the rest (the client prefixes its own sentinel);
// where the wire code is coarser (a session never issued answered as
// expired), the whole namespace message stays.
func TestNsErrorMessage(t *testing.T) {
	pathErr := namespace.Config{MaxPathLen: 8, MaxNameLen: 4, MaxDepth: 4}.ValidatePath("/abcdefg")
	for _, c := range []struct {
		err  error
		code wire.Code
		want string
	}{
		{&namespace.Error{Code: namespace.CodeNotFound, Msg: `namespace: node not found: "/x"`}, wire.NotFound, `"/x"`},
		{&namespace.Error{Code: namespace.CodeNotFound, Msg: "namespace: node not found"}, wire.NotFound, ""},
		{pathErr, wire.BadPath, "name too long: 7 bytes > 4 in \"/abcdefg\""},
		{&namespace.Error{Code: namespace.CodeSessionUnknown, Msg: "namespace: unknown session: 7"}, wire.SessionExpired, "namespace: unknown session: 7"},
		{&namespace.Error{Code: namespace.CodeNotWaiting, Msg: "namespace: session is not waiting for the lock"}, wire.NotHolder, "namespace: session is not waiting for the lock"},
		{errors.New("plain"), wire.BadRequest, "plain"},
	} {
		we := nsError(c.err)
		if we.Code != c.code || we.Message != c.want {
			t.Errorf("nsError(%q) = %v %q; want %v %q", c.err, we.Code, we.Message, c.code, c.want)
		}
	}
}
