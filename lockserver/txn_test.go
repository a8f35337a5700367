package lockserver

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// txnErr sends a Txn that must fail and returns its error.
func txnErr(t *testing.T, cl *client, ops ...wire.TxnOp) *wire.Error {
	t.Helper()
	_, err := cl.do(&wire.Txn{Ops: ops})
	var we *wire.Error
	if !errors.As(err, &we) {
		t.Fatalf("Txn %+v: error %v; want a wire error", ops, err)
	}
	return we
}

func TestTxn(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	sid := cl.open(time.Minute)

	// Create-or-set, create with parents, sequential and ephemeral in one.
	cl.must(&wire.Put{Path: "/cfg", Content: []byte("v1")})
	r := cl.must(&wire.Txn{Ops: []wire.TxnOp{
		{Kind: wire.TxnCheck, Path: "/cfg", IfGen: 1},
		{Kind: wire.TxnCheckMissing, Path: "/jobs"},
		{Kind: wire.TxnPut, Path: "/cfg", Content: []byte("v2")},
		{Kind: wire.TxnPut, Path: "/jobs/q-", Parents: true, Sequential: true},
		{Kind: wire.TxnPut, Path: "/me", Ephemeral: true, Create: true},
		{Kind: wire.TxnPut, Path: "/new", Content: []byte("n")},
	}}).(*wire.TxnReply)
	if len(r.Results) != 6 || r.Index == 0 {
		t.Fatalf("TxnReply = %+v; want 6 results and an index", r)
	}
	if got := r.Results[2].Stat.ContentGen; got != 2 {
		t.Fatalf("put of an existing node: content gen %d; want 2 (a set, not a create)", got)
	}
	if p := r.Results[3].Path; !strings.HasPrefix(p, "/jobs/q-") || p == "/jobs/q-" {
		t.Fatalf("sequential create in a txn: path %q", p)
	}
	if r.Results[4].Stat.EphemeralOwner != sid || r.Results[5].Stat.ContentGen != 1 {
		t.Fatalf("results %+v", r.Results)
	}

	// A failed condition after a write: nothing applies, the error names
	// the op (counting from 1) and keeps its code.
	we := txnErr(t, cl,
		wire.TxnOp{Kind: wire.TxnPut, Path: "/cfg", Content: []byte("lost")},
		wire.TxnOp{Kind: wire.TxnDelete, Path: "/new"},
		wire.TxnOp{Kind: wire.TxnCheck, Path: "/cfg", IfGen: 2},
	)
	if we.Code != wire.GenerationMismatch || we.Op != 3 {
		t.Fatalf("failed txn: %+v; want GenerationMismatch at op 3", we)
	}
	g := cl.must(&wire.Get{Path: "/cfg"}).(*wire.GetReply)
	if string(g.Content) != "v2" {
		t.Fatalf("after a failed txn /cfg = %q; want v2", g.Content)
	}
	cl.must(&wire.StatPath{Path: "/new"})

	// A write fenced by a lock: applies while the grant is current, not
	// after the lock was released.
	a := cl.must(&wire.Acquire{Path: "/cfg", Mode: wire.Exclusive}).(*wire.AcquireReply)
	seq := a.Sequencer
	fenced := []wire.TxnOp{{Kind: wire.TxnCheckSequencer, Sequencer: &seq}, {Kind: wire.TxnPut, Path: "/cfg", Content: []byte("fenced")}}
	cl.must(&wire.Txn{Ops: fenced})
	cl.must(&wire.Release{Path: "/cfg", LockGen: seq.LockGen})
	if we := txnErr(t, cl, fenced...); we.Code != wire.NotHolder || we.Op != 1 {
		t.Fatalf("fenced write after release: %+v; want NotHolder at op 1", we)
	}

	// A retry of an applied txn (same request id) applies once.
	req := &wire.Txn{Header: wire.Header{Session: sid, Request: 1 << 40}, Ops: []wire.TxnOp{{Kind: wire.TxnPut, Path: "/count", Content: []byte("x"), Create: true}}}
	cl.must(req)
	again := cl.must(req).(*wire.TxnReply)
	if len(again.Results) != 1 || again.Results[0].Path != "/count" {
		t.Fatalf("retried txn reply %+v", again)
	}
	if st := cl.must(&wire.StatPath{Path: "/count"}).(*wire.StatReply); st.Stat.ContentGen != 1 {
		t.Fatalf("retried txn applied twice: %+v", st.Stat)
	}

	// A retry of a failed txn (its reply lost) names the failed op as the
	// first answer did, although the stored outcome keeps only the error.
	failed := &wire.Txn{Header: wire.Header{Session: sid, Request: 1<<40 + 1}, Ops: []wire.TxnOp{
		{Kind: wire.TxnPut, Path: "/count", Content: []byte("y")},
		{Kind: wire.TxnCheck, Path: "/count", IfGen: 1},
	}}
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := cl.do(failed)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.GenerationMismatch || we.Op != 2 {
			t.Fatalf("failed txn, attempt %d with request id %d: %v; want GenerationMismatch at op 2", attempt, failed.Request, err)
		}
	}
}

// TestTxnBadInput: each malformed op is refused before anything is
// proposed, with the op's place, and the connection carries on.
func TestTxnBadInput(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.Namespace.MaxContent = 1024 })
	cl := newClient(t, c)
	big := make([]byte, 1025)
	for _, tc := range []struct {
		name string
		ops  []wire.TxnOp
		code wire.Code
		op   uint32
	}{
		{"empty", nil, wire.BadRequest, 0},
		{"too many", make([]wire.TxnOp, 129), wire.Limit, 0},
		{"unknown kind", []wire.TxnOp{{Kind: 99, Path: "/a"}}, wire.BadRequest, 1},
		{"bad path", []wire.TxnOp{{Kind: wire.TxnCheckMissing, Path: "/ok"}, {Kind: wire.TxnPut, Path: "no-slash"}}, wire.BadPath, 2},
		{"too large", []wire.TxnOp{{Kind: wire.TxnPut, Path: "/a", Content: big}}, wire.TooLarge, 1},
		{"sequencer missing", []wire.TxnOp{{Kind: wire.TxnCheckSequencer}}, wire.BadRequest, 1},
		{"acl missing", []wire.TxnOp{{Kind: wire.TxnSetACL, Path: "/a"}}, wire.BadRequest, 1},
		{"ifgen with create", []wire.TxnOp{{Kind: wire.TxnPut, Path: "/a", IfGen: 1, Create: true}}, wire.BadRequest, 1},
		{"field of another kind", []wire.TxnOp{{Kind: wire.TxnCheckMissing, Path: "/a", Content: []byte("x")}}, wire.BadRequest, 1},
		{"recursive put", []wire.TxnOp{{Kind: wire.TxnPut, Path: "/a", Recursive: true}}, wire.BadRequest, 1},
		{"ephemeral without a session", []wire.TxnOp{{Kind: wire.TxnPut, Path: "/a", Ephemeral: true}}, wire.BadRequest, 0},
		{"get with content", []wire.TxnOp{{Kind: wire.TxnGet, Path: "/a", Content: []byte("x")}}, wire.BadRequest, 1},
		{"get of a bad path", []wire.TxnOp{{Kind: wire.TxnGet, Path: "/"}, {Kind: wire.TxnGet, Path: "a"}}, wire.BadPath, 2},
		{"get in a txn that writes", []wire.TxnOp{{Kind: wire.TxnPut, Path: "/a"}, {Kind: wire.TxnGet, Path: "/a"}}, wire.BadRequest, 2},
		{"bad check in a read txn", []wire.TxnOp{{Kind: wire.TxnGet, Path: "/"}, {Kind: wire.TxnCheckMissing, Path: "b"}}, wire.BadPath, 2},
		{"sequencer mode in a read txn", []wire.TxnOp{{Kind: wire.TxnGet, Path: "/"},
			{Kind: wire.TxnCheckSequencer, Sequencer: &wire.Sequencer{Path: "/a"}}}, wire.BadRequest, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			we := txnErr(t, cl, tc.ops...)
			if we.Code != tc.code || we.Op != tc.op {
				t.Fatalf("error %+v; want code %v at op %d", we, tc.code, tc.op)
			}
		})
	}
	cl.must(&wire.Put{Path: "/still", Content: []byte("fine")})
}

// A Txn of checks and gets is answered by the leader from one state
// without a log command (Index 0), after the read barrier; its ops fail
// as a Txn's do.
func TestReadTxn(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	cl.must(&wire.Put{Path: "/a", Content: []byte("1")})
	cl.must(&wire.Put{Path: "/b", Content: []byte("2")})
	ls := c.Server(leaderIndex(t, c))
	barriers := ls.metrics.ReadBarriers.Load()
	r := cl.must(&wire.Txn{Ops: []wire.TxnOp{
		{Kind: wire.TxnGet, Path: "/a"},
		{Kind: wire.TxnCheck, Path: "/b", IfGen: 1},
		{Kind: wire.TxnCheckMissing, Path: "/c"},
		{Kind: wire.TxnGet, Path: "/b"},
	}}).(*wire.TxnReply)
	if r.Index != 0 || len(r.Results) != 4 || string(r.Results[0].Content) != "1" || string(r.Results[3].Content) != "2" ||
		r.Results[1].Stat.ContentGen != 1 || r.Results[1].Content != nil || r.Results[2].Path != "/c" {
		t.Fatalf("read TxnReply = %+v", r)
	}
	if ls.metrics.ReadBarriers.Load() == barriers && c.Server(leaderIndex(t, c)) == ls {
		t.Errorf("a read Txn passed no read barrier")
	}
	if we := txnErr(t, cl, wire.TxnOp{Kind: wire.TxnGet, Path: "/a"}, wire.TxnOp{Kind: wire.TxnGet, Path: "/none"}); we.Code != wire.NotFound || we.Op != 2 {
		t.Fatalf("read Txn of a missing node: %+v; want NotFound at op 2", we)
	}
	if we := txnErr(t, cl, wire.TxnOp{Kind: wire.TxnCheckMissing, Path: "/a"}, wire.TxnOp{Kind: wire.TxnGet, Path: "/a"}); we.Code != wire.Exists || we.Op != 1 {
		t.Fatalf("read Txn with a failing check: %+v; want Exists at op 1", we)
	}
}
