package lockserver

import (
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// ServeQuick answers the small reads the leader can serve from its lease
// (a short read-only Txn too), and stale reads anywhere; a follower's
// linearizable read, a Walk, a long or writing Txn and a malformed read go
// to ServeWire, which answers or redirects them.
func TestServeQuick(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	cl.must(&wire.Put{Path: "/q", Content: []byte("v")})
	leader := leaderIndex(t, c)
	ls := c.Server(leader)
	// The leader's lease may still be starting after the election.
	var reply wire.Message
	waitFor(t, 10*time.Second, "a lease read on the leader", func() bool {
		var ok bool
		reply, ok = ls.ServeQuick(&wire.Get{Path: "/q"})
		return ok
	})
	if g, ok := reply.(*wire.GetReply); !ok || string(g.Content) != "v" {
		t.Fatalf("the leader's quick Get = %v; want the content v", reply)
	}
	if m, ok := ls.ServeQuick(&wire.StatPath{Path: "/nope"}); !ok || codeOf(m.(*wire.Error)) != wire.NotFound {
		t.Errorf("quick Stat of a missing node = %v, %v; want NotFound", m, ok)
	}
	get := wire.TxnOp{Kind: wire.TxnGet, Path: "/q"}
	if m, ok := ls.ServeQuick(&wire.Txn{Ops: []wire.TxnOp{get, {Kind: wire.TxnCheckMissing, Path: "/r"}}}); !ok {
		t.Errorf("a short read-only Txn was left to ServeWire")
	} else if r, isTxn := m.(*wire.TxnReply); !isTxn || string(r.Results[0].Content) != "v" {
		t.Errorf("the leader's quick read-only Txn = %v; want the content v", m)
	}
	long := make([]wire.TxnOp, quickTxnOps+1)
	for i := range long {
		long[i] = get
	}
	for _, req := range []wire.Message{
		&wire.Txn{Ops: long},
		&wire.Txn{Ops: []wire.TxnOp{get, {Kind: wire.TxnPut, Path: "/q"}}},
		&wire.Txn{Ops: []wire.TxnOp{{Kind: wire.TxnGet, Path: "no-slash"}}},
		&wire.Txn{},
		&wire.Walk{Path: "/"},
		&wire.Get{Path: "no-slash"},
		&wire.CheckSequencer{Sequencer: wire.Sequencer{Path: "/q", Mode: 99}},
		&wire.Put{Path: "/q"},
	} {
		if m, ok := ls.ServeQuick(req); ok {
			t.Errorf("ServeQuick(%v) answered %v; want it left to ServeWire", req.Type(), m)
		}
	}
	f := c.Server((leader + 1) % c.N())
	if m, ok := f.ServeQuick(&wire.Get{Path: "/q"}); ok {
		t.Errorf("a follower answered a linearizable Get at once: %v", m)
	}
	waitFor(t, 10*time.Second, "the follower to apply the Put", func() bool {
		m, ok := f.ServeQuick(&wire.Get{Path: "/q", Stale: true})
		g, isGet := m.(*wire.GetReply)
		return ok && isGet && string(g.Content) == "v"
	})
}
