package lockserver

import (
	"testing"

	"github.com/latchd/latch/internal/wire"
)

func TestSmoke(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	cl.open(0)
	m := cl.must(&wire.Put{Path: "/a", Content: []byte("x")})
	t.Logf("put: %+v", m)
	g := cl.must(&wire.Get{Path: "/a"}).(*wire.GetReply)
	if string(g.Content) != "x" {
		t.Fatalf("Get = %q", g.Content)
	}
	a := cl.must(&wire.Acquire{Path: "/a", Mode: wire.Exclusive}).(*wire.AcquireReply)
	t.Logf("seq %v", a.Sequencer)
}
