package namespace

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// applyTxn applies a txn through the harness and, when it fails, checks
// that it changed nothing (checkTxnAtomic: the snapshot bytes are those
// of a copy taken before, after a tick and the idempotence table's entry).
func applyTxn(h *harness, session, request uint64, flags Flags, principal string, ops ...TxnOp) (Result, []Event) {
	h.t.Helper()
	pre := New(h.tree.Config())
	if err := pre.Restore(bytes.NewReader(snapshotBytes(h.t, h.tree))); err != nil {
		h.t.Fatalf("Restore: %v", err)
	}
	cmd := NewTxn(ops...)
	cmd.Flags, cmd.Principal = flags, principal
	r, ev := h.apply(cmd, session, request)
	if r.Err != nil {
		cmd.Time, cmd.Session, cmd.Request = h.now, session, request
		checkTxnAtomic(h.t, "txn", pre, h.tree, h.index, cmd, r)
		if len(ev) != 0 {
			h.t.Fatalf("failed txn emitted %v", ev)
		}
	}
	return r, ev
}

// Chubby's fenced write: the content changes only while the writer still
// holds the lock its sequencer names.
func TestTxnFencedWrite(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/svc/leader", nil, FlagParents), 0)
	h.must(NewCreate("/svc/config", []byte("v1"), 0), 0)
	seq := h.must(NewAcquire("/svc/leader", ModeExclusive, false, -1), s).Sequencer

	r, ev := applyTxn(h, s, 1, 0, "", TxnCheckSequencer(seq), TxnSetContent("/svc/config", []byte("v2"), 0))
	if r.Err != nil || len(r.Txn.Ops) != 2 || r.Txn.Ops[1].Stat.ContentGen != 2 {
		t.Fatalf("fenced write while holding = %+v", r)
	}
	wantEvents(t, ev, "content-changed /svc/config inst=4")

	h.must(NewRelease("/svc/leader", 0), s)
	h.must(NewAcquire("/svc/leader", ModeExclusive, false, -1), s) // a new grant: lock generation 2
	r, _ = applyTxn(h, s, 2, 0, "", TxnCheckSequencer(seq), TxnSetContent("/svc/config", []byte("v3"), 0))
	if !errors.Is(r.Err, ErrNotHolder) || r.Txn == nil || r.Txn.Failed != 0 ||
		!strings.Contains(r.Err.Error(), "txn ops[0] (check-sequencer): sequencer /svc/leader:exclusive:1:3 is not current: the lock has been granted again since") {
		t.Fatalf("fenced write with a stale sequencer = %+v", r)
	}
	wantContent(t, h, "/svc/config", "v2")
}

// A txn that fails after some of its writes were applied leaves nothing
// of them: nodes, counters, sessions' ephemerals, the locks of deleted
// nodes (holders, waiters, their stored results, lock-delays), events.
func TestTxnFailureChangesNothing(t *testing.T) {
	// Sessions 1 and 3 expired; 2 holds /svc shared and waits for
	// /svc/web/leader, which is in lock-delay.
	h := richState(t)
	b := uint64(2)
	writes := []TxnOp{
		TxnCreate("/new/deep/node", []byte("x"), FlagParents),
		TxnCreate("/svc/web/m-", nil, FlagSequential|FlagEphemeral),
		TxnSetContent("/svc/web/leader", []byte("host:2"), 0),
		TxnSetACL("/svc/web", ACL{Writer: "w"}, 0),
		TxnDelete("/svc/web/m-0000000001", false, 0), // b's ephemeral
		TxnDelete("/svc", true, 0),                   // locks: /svc held, leader delayed with a waiter
		TxnCreate("/svc", nil, 0),
	}
	fails := []TxnOp{
		TxnCheckExists("/svc/web", 0),
		TxnCheckMissing("/new"),
		TxnCheckSequencer(Sequencer{Path: "/svc", Mode: ModeShared, LockGen: 1, Instance: 3}),
		TxnCreate("/svc/web/x", nil, FlagEphemeral), // no such parent any more
		TxnDelete("/nope", false, 0),
	}
	for i, f := range fails {
		ops := append(append([]TxnOp{}, writes...), f)
		r, _ := applyTxn(h, b, uint64(10+i), 0, "", ops...)
		if r.Err == nil || r.Txn == nil || r.Txn.Failed != len(ops)-1 {
			t.Fatalf("txn ending in %s = %+v; want it to fail at ops[%d]", f.Op, r, len(ops)-1)
		}
	}
	// The waiter's stored result, and the lock-delay's grant, are as before.
	h.advance(10 * time.Second)
	_, ev := h.apply(NewTick(), 0, 0)
	wantEvents(t, ev, "lock-acquired /svc/web/leader inst=4 session=2 req=2 seq=/svc/web/leader:exclusive:2:4")
	if r, _ := h.apply(NewAcquire("/svc/web/leader", ModeExclusive, true, 0), b, 2); r.Sequencer.LockGen != 2 {
		t.Fatalf("retried acquire after the grant = %+v", r)
	}
	// And the same writes with a condition that holds apply.
	ops := append(append([]TxnOp{}, writes...), TxnCheckMissing("/svc/x"))
	if r, _ := applyTxn(h, b, 30, 0, "", ops...); r.Err != nil {
		t.Fatalf("txn = %+v", r)
	}
}

// The events of a txn are those of its writes applied one after another.
func TestTxnEventsAreTheWrites(t *testing.T) {
	ops := []TxnOp{
		TxnCheckMissing("/svc/new"),
		TxnCreate("/svc/new/q-", []byte("a"), FlagParents|FlagSequential),
		TxnCreate("/svc/new/q-", []byte("b"), FlagSequential|FlagEphemeral),
		TxnSetContent("/svc/web/leader", []byte("host:2"), 1),
		TxnCheckExists("/svc/new/q-0000000001", 1),
		TxnSetACL("/svc/new", ACL{Reader: "r"}, 0),
		TxnDelete("/svc/web", true, 0),
	}
	one, all := richState(t), richState(t)
	// The writes one by one, at the index the txn will have; the
	// conditions' results from queries.
	index := all.index + 1
	var want []Event
	var wantOps []Result
	for _, o := range ops {
		var r Result
		var ev []Event
		switch o.Op {
		case OpCheckExists:
			st, err := all.tree.Stat(o.Path)
			r = Result{Err: err, Stat: st}
		case OpCheckMissing:
		default:
			cmd := Command{Version: CommandVersion, Op: o.Op, Time: all.now, Session: 2, Path: o.Path,
				Content: o.Content, Flags: o.Flags, Generation: o.Generation, ACL: o.ACL}
			r, ev = all.tree.Apply(index, &cmd)
		}
		if r.Err != nil {
			t.Fatalf("standalone %s: %v", o.Op, r.Err)
		}
		want = append(want, ev...)
		wantOps = append(wantOps, r)
	}
	r, ev := applyTxn(one, 2, 0, 0, "", ops...)
	if r.Err != nil {
		t.Fatalf("txn = %v", r.Err)
	}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("txn events\n %v\nwant\n %v", ev, want)
	}
	got := r.Txn.Ops
	if !reflect.DeepEqual(got, wantOps) {
		t.Fatalf("txn results\n %+v\nwant\n %+v", got, wantOps)
	}
	if got[1].Path != "/svc/new/q-0000000000" || got[2].Path != "/svc/new/q-0000000001" || got[6].Deleted != 3 {
		t.Fatalf("txn results %+v", got)
	}
	if !bytes.Equal(snapshotBytes(t, one.tree), snapshotBytes(t, all.tree)) {
		t.Fatalf("txn and its writes one by one leave different states")
	}
}

func TestTxnChecks(t *testing.T) {
	many := make([]TxnOp, MaxTxnOps+1)
	for i := range many {
		many[i] = TxnCheckExists("/", 0)
	}
	big := TxnSetContent("/a", []byte("12345678"), 0) // 22 bytes: six are more than 112
	tests := []struct {
		name      string
		session   bool
		flags     Flags
		principal string
		ops       []TxnOp
		want      error
		at        int  // the failed sub-op's index
		whole     bool // refused as a whole: no Txn
		msg       string
	}{
		{name: "empty", ops: nil, whole: true, want: ErrInvalidCommand, msg: "empty txn"},
		{name: "too many", ops: many, whole: true, want: ErrInvalidCommand, msg: "txn of 129 sub-ops; the limit is 128"},
		{name: "nested", ops: []TxnOp{TxnCheckExists("/", 0), {Op: OpTxn}}, want: ErrInvalidCommand, at: 1,
			msg: "namespace: invalid command: txn ops[1] (txn): a txn cannot contain a txn"},
		{name: "lock op", ops: []TxnOp{{Op: OpAcquire, Path: "/a", Mode: ModeExclusive}}, want: ErrInvalidCommand, at: 0,
			msg: "acquire cannot be part of a txn"},
		{name: "unknown op", ops: []TxnOp{{Op: 99}}, want: ErrUnknownOp, at: 0},
		{name: "op 0", ops: []TxnOp{{}}, want: ErrUnknownOp, at: 0},
		{name: "sub-op restricted", ops: []TxnOp{{Op: OpSetContent, Path: "/a", Flags: FlagRestricted}}, want: ErrInvalidCommand, at: 0},
		{name: "condition flags", ops: []TxnOp{{Op: OpCheckMissing, Path: "/b", Flags: FlagRecursive}}, want: ErrInvalidCommand, at: 0},
		{name: "sequencer mode", ops: []TxnOp{{Op: OpCheckSequencer, Path: "/a"}}, want: ErrInvalidCommand, at: 0},
		{name: "shape before semantics", ops: []TxnOp{TxnDelete("/nope", false, 0), {Op: OpCancel}}, want: ErrInvalidCommand, at: 1},
		{name: "largest", ops: []TxnOp{big, big, big, big, big}},
		{name: "too large", ops: []TxnOp{big, big, big, big, big, big}, whole: true, want: ErrTooLarge, msg: "txn sub-ops of 132 bytes > 112"},
		{name: "content size per op", ops: []TxnOp{TxnSetContent("/a", []byte("123456789"), 0)}, want: ErrTooLarge, at: 0},
		{name: "bad path", ops: []TxnOp{TxnCheckMissing("/b"), TxnCheckMissing("b")}, want: ErrBadPath, at: 1,
			msg: "namespace: bad path: txn ops[1] (check-missing): "},
		{name: "exists", ops: []TxnOp{TxnCheckMissing("/a")}, want: ErrExists, at: 0},
		{name: "missing", ops: []TxnOp{TxnCheckExists("/b", 0)}, want: ErrNotFound, at: 0},
		{name: "generation", ops: []TxnOp{TxnCheckExists("/a", 1), TxnCheckExists("/a", 2)}, want: ErrGenerationMismatch, at: 1},
		{name: "ephemeral without session", ops: []TxnOp{TxnCreate("/b", nil, FlagEphemeral)}, want: ErrInvalidCommand, at: 0},
		{name: "ephemeral", session: true, ops: []TxnOp{TxnCreate("/b", nil, FlagEphemeral)}},
		{name: "ephemerals limit", session: true, ops: []TxnOp{TxnCreate("/a/b", nil, FlagEphemeral),
			TxnCreate("/a/c", nil, FlagEphemeral), TxnCreate("/a/d", nil, FlagEphemeral)}, want: ErrTooManyEphemerals, at: 2},
		{name: "children limit", ops: []TxnOp{TxnCreate("/b", nil, 0), TxnCreate("/c", nil, 0), TxnCreate("/d", nil, 0)},
			want: ErrTooManyChildren, at: 2},
		{name: "sees earlier ops", ops: []TxnOp{TxnCreate("/b", nil, 0), TxnCheckExists("/b", 1), TxnSetContent("/b", []byte("x"), 1),
			TxnCheckExists("/b", 2), TxnDelete("/b", false, 2), TxnCheckMissing("/b"), TxnCreate("/b", nil, 0)}},
		{name: "root", ops: []TxnOp{TxnCheckExists("/", 0), TxnSetContent("/", nil, 0)}, want: ErrPermission, at: 1},
		// /p's writer is the ACL w (principal p); its reader r admits only q.
		{name: "restricted write", flags: FlagRestricted, principal: "q", ops: []TxnOp{TxnSetContent("/p", nil, 0)},
			want: ErrPermission, at: 0},
		{name: "restricted read", flags: FlagRestricted, principal: "p", ops: []TxnOp{TxnSetContent("/p", nil, 0),
			TxnCheckExists("/p", 0)}, want: ErrPermission, at: 1},
		{name: "restricted missing needs no right", flags: FlagRestricted, principal: "p",
			ops: []TxnOp{TxnCheckMissing("/p/x"), TxnCreate("/p/x", nil, 0)}},
		{name: "operator", ops: []TxnOp{TxnCheckExists("/p", 0), TxnSetContent("/p", nil, 0)}},
		{name: "restricted from a session", session: true, flags: FlagRestricted, ops: []TxnOp{TxnCheckMissing("/b")},
			whole: true, want: ErrInvalidCommand, msg: "FlagRestricted is for commands without a session"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sizes: a txn's sub-ops may take 8 + 16 + 3*8 + 64 = 112 bytes.
			cfg := smallConfig() // MaxContent 8, MaxEphemerals 2
			cfg.MaxPathLen, cfg.MaxNameLen, cfg.MaxChildren = 16, 8, 5
			h := newHarnessConfig(t, cfg)
			s := h.open()
			h.must(NewCreate("/a", nil, 0), 0)
			h.must(NewCreate("/acl/w", []byte("p"), FlagParents), 0)
			h.must(NewCreate("/acl/r", []byte("q"), 0), 0)
			p := NewCreate("/p", nil, 0)
			p.ACL = ACL{Reader: "r", Writer: "w"}
			h.must(p, 0)
			var session uint64
			if tt.session {
				session = s
			}
			r, _ := applyTxn(h, session, 1, tt.flags, tt.principal, tt.ops...)
			if tt.want == nil {
				if r.Err != nil || len(r.Txn.Ops) != len(tt.ops) {
					t.Fatalf("txn = %+v; want success", r)
				}
				return
			}
			if !errors.Is(r.Err, tt.want) || !strings.Contains(r.Err.Error(), tt.msg) {
				t.Fatalf("txn = %+v; want %v, message with %q", r, tt.want, tt.msg)
			}
			switch {
			case tt.whole && r.Txn != nil:
				t.Fatalf("txn refused as a whole has Txn %+v", r.Txn)
			case !tt.whole && (r.Txn == nil || r.Txn.Failed != tt.at || r.Txn.Ops != nil):
				t.Fatalf("txn = %+v (Txn %+v); want it failed at ops[%d]", r, r.Txn, tt.at)
			case !tt.whole && !strings.Contains(r.Err.Error(), fmt.Sprintf("txn ops[%d] (", tt.at)):
				t.Fatalf("error %q does not name ops[%d]", r.Err, tt.at)
			}
		})
	}
}

func TestTxnMaxOps(t *testing.T) {
	h := newHarness(t)
	ops := make([]TxnOp, MaxTxnOps)
	for i := range ops {
		ops[i] = TxnCreate("/n", nil, FlagSequential)
	}
	if r, _ := applyTxn(h, 0, 0, 0, "", ops...); r.Err != nil || r.Txn.Ops[MaxTxnOps-1].Path != "/n0000000127" {
		t.Fatalf("txn of MaxTxnOps creates = %v", r.Err)
	}
}

// A condition op is not a command of its own.
func TestTxnConditionAlone(t *testing.T) {
	h := newHarness(t)
	for _, op := range []Op{OpCheckExists, OpCheckMissing, OpCheckSequencer} {
		r, _ := h.apply(Command{Version: CommandVersion, Op: op, Path: "/"}, 0, 0)
		if !errors.Is(r.Err, ErrInvalidCommand) {
			t.Errorf("%s alone = %v; want ErrInvalidCommand", op, r.Err)
		}
	}
}

// A retried txn applies once and returns its outcome without the
// sub-ops' results, also after a snapshot round trip.
func TestTxnRetry(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	ops := []TxnOp{TxnCreate("/q-", nil, FlagSequential), TxnCreate("/m", nil, 0)}
	first, _ := applyTxn(h, s, 7, 0, "", ops...)
	if first.Err != nil || first.Txn.Ops[0].Path != "/q-0000000000" {
		t.Fatalf("txn = %+v", first)
	}
	failed, _ := applyTxn(h, s, 8, 0, "", ops...)
	if !errors.Is(failed.Err, ErrExists) || failed.Txn.Failed != 1 {
		t.Fatalf("second txn = %+v; want ErrExists at ops[1]", failed)
	}
	for _, tree := range []*Tree{h.tree, snapshotRestoreTB(t, h.tree)} {
		h.tree = tree
		again, ev := h.apply(NewTxn(ops...), s, 7)
		if again.Err != nil || again.Txn != nil || len(ev) != 0 {
			t.Fatalf("retry = %+v, %v; want the stored success, no results, no events", again, ev)
		}
		again, _ = h.apply(NewTxn(ops...), s, 8)
		if !reflect.DeepEqual(again.Err, failed.Err) || again.Txn != nil {
			t.Fatalf("retry of the failure = %+v; want %v without Txn", again, failed.Err)
		}
		if i, ok := FailedTxnOp(again.Err); !ok || i != 1 {
			t.Fatalf("FailedTxnOp(%v) = %d, %v; want 1 (the message names ops[1])", again.Err, i, ok)
		}
	}
	// The failed txn's sequential create was undone with its counter.
	if r := h.must(NewCreate("/q-", nil, FlagSequential), 0); r.Path != "/q-0000000001" {
		t.Fatalf("next sequential create = %s", r.Path)
	}
}

// FailedTxnOp reads the failed sub-op from txnOpError's message only.
func TestFailedTxnOp(t *testing.T) {
	ops := []TxnOp{TxnCheckMissing("/a"), TxnSetContent("/b", nil, 3)}
	for _, tc := range []struct {
		name string
		err  error
		i    int
		ok   bool
	}{
		{"sub-op 1", txnOpError(1, ops, errorf(CodeGenerationMismatch, "content generation 4, not 3")), 1, true},
		{"sub-op 0 without detail", txnOpError(0, ops, errorf(CodeExists, "")), 0, true},
		{"wrapped", fmt.Errorf("apply: %w", txnOpError(1, ops, errorf(CodeNotFound, "/b"))), 1, true},
		{"txn refused as a whole", errorf(CodeInvalidCommand, "empty txn"), 0, false},
		{"another code's sentinel", &Error{Code: CodeNotFound, Msg: "namespace: node exists: txn ops[1] (create)"}, 0, false},
		{"not an index", &Error{Code: CodeExists, Msg: "namespace: node exists: txn ops[+1] (create)"}, 0, false},
		{"beyond MaxTxnOps", &Error{Code: CodeExists, Msg: "namespace: node exists: txn ops[128] (create)"}, 0, false},
		{"not an *Error", errors.New("txn ops[1] (create)"), 0, false},
		{"nil", nil, 0, false},
	} {
		if i, ok := FailedTxnOp(tc.err); i != tc.i || ok != tc.ok {
			t.Errorf("%s: FailedTxnOp(%v) = %d, %v; want %d, %v", tc.name, tc.err, i, ok, tc.i, tc.ok)
		}
	}
}

func snapshotRestoreTB(t *testing.T, tr *Tree) *Tree {
	t.Helper()
	r := New(tr.Config())
	if err := r.Restore(bytes.NewReader(snapshotBytes(t, tr))); err != nil {
		t.Fatal(err)
	}
	return r
}

// size is the msgpack size of a sub-op as a command encodes it.
func TestTxnOpSize(t *testing.T) {
	long := strings.Repeat("n", 300)
	ops := []TxnOp{
		TxnCheckExists("/a", 0),
		TxnCheckMissing("/" + long),
		TxnCheckSequencer(Sequencer{Path: "/a", Mode: ModeShared, LockGen: 1 << 40, Instance: 300}),
		{Op: OpCreate, Path: "/a", Content: []byte{}, Flags: FlagEphemeral | FlagSequential, ACL: ACL{Reader: long, Writer: "w", Changer: strings.Repeat("c", 40)}},
		{Op: OpSetContent, Path: "/a", Content: make([]byte, 70000), Generation: 1<<32 - 1},
		{Op: OpSetContent, Path: "/a", Content: make([]byte, 300), Generation: 1 << 16},
		{Op: OpDelete, Path: "/" + strings.Repeat("d", 70000), Flags: FlagRecursive, Generation: 200},
	}
	for _, o := range ops {
		if o.Content == nil {
			o.Content = []byte{} // nil encodes one byte shorter; size counts a bin
		}
		c := NewTxn(o)
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		// base has the same 18 fields, Principal one byte longer than
		// the empty one of b, which has the ops' one-byte array header.
		c.Ops = nil
		c.Principal = "p"
		base, _ := c.Encode()
		if got, want := o.size(), len(b)-len(base); got != want {
			t.Errorf("size of %s = %d; encoded %d", o.Op, got, want)
		}
	}
	if got := (&TxnOp{Op: OpDelete, Path: "/a"}).size(); got != 1+1+3+2+1+1+1+3+1 {
		t.Errorf("size of a nil-content delete = %d", got)
	}
}

// Tree.Check, the read-only evaluation of a condition a server uses for a
// txn without writes, fails and succeeds exactly as the condition does in
// a txn applied by the same caller, with the same stat.
func TestCheckAgreesWithTxn(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/a", []byte("x"), 0), 0)
	h.must(NewSetContent("/a", []byte("y"), 0), 0)
	h.must(NewCreate("/acl/w", []byte("p"), FlagParents), 0)
	h.must(NewCreate("/acl/r", []byte("q"), 0), 0)
	p := NewCreate("/p", nil, 0)
	p.ACL = ACL{Reader: "r", Writer: "w"}
	h.must(p, 0)
	h.must(NewCreate("/l", nil, 0), 0)
	seq := h.must(NewAcquire("/l", ModeExclusive, false, -1), s).Sequencer
	stale := seq
	stale.LockGen++
	conds := []TxnOp{
		TxnCheckExists("/a", 0), TxnCheckExists("/a", 2), TxnCheckExists("/a", 1), TxnCheckExists("/b", 0),
		TxnCheckExists("/p", 0), TxnCheckExists("bad", 0), TxnCheckMissing("/b"), TxnCheckMissing("/a"),
		TxnCheckMissing("/p/x"), TxnCheckSequencer(seq), TxnCheckSequencer(stale),
		{Op: OpCheckSequencer, Path: "/l"}, // no mode
		TxnSetContent("/a", nil, 0),        // not a condition
	}
	callers := []struct {
		flags     Flags
		principal string
		c         Caller
	}{{0, "", Caller{Superuser: true}}, {FlagRestricted, "p", Caller{Principal: "p"}}, {FlagRestricted, "q", Caller{Principal: "q"}}}
	for _, cl := range callers {
		for _, o := range conds {
			st, err := h.tree.Check(o, cl.c)
			if !isCondition(o.Op) {
				if !errors.Is(err, ErrInvalidCommand) {
					t.Errorf("Check(%s) = %v; want ErrInvalidCommand", o.Op, err)
				}
				continue
			}
			cmd := NewTxn(o)
			cmd.Flags, cmd.Principal = cl.flags, cl.principal
			copyTree := snapshotRestoreTB(t, h.tree)
			cmd.Time = h.now
			r, _ := copyTree.Apply(h.index+1, &cmd)
			var want Stat
			if r.Err == nil {
				want = r.Txn.Ops[0].Stat
			}
			if code(err) != code(r.Err) || st != want {
				t.Errorf("caller %+v, %s %s: Check = %v, %+v; the txn = %v, %+v", cl.c, o.Op, o.Path, err, st, r.Err, want)
			}
		}
	}
}

// code returns the namespace error code of err, or -1 for nil.
func code(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return int(e.Code)
	}
	if err == nil {
		return -1
	}
	return -2
}
