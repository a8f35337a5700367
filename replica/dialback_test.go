package replica

import (
	"testing"

	"github.com/latchd/latch/replica/paxos"
)

// A founder that lost its disk rebuilds even when its configuration names
// only founders that were removed since: it knows no current member's
// address, so it cannot dial one, and every current member has a higher id
// than it. The members know its address (their configurations name it)
// and dial it back (transport.Config.DialBackAfter).
func TestTCPWipedFounderRebuildsAmongLaterMembers(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tcp: true, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	addrs := freeAddrs(t, 2)
	c.grow(4, addrs[0], 1, 2, 3, 4)
	c.grow(5, addrs[1], 1, 2, 3, 4, 5)
	c.shrink(2, 1, 3, 4, 5)
	c.shrink(3, 1, 4, 5)

	// Replica 1 loses its disk; 4 and 5, a majority of 1, 4, 5, go on, and
	// one of them leads.
	c.stop(1)
	c.proposeN("b", 5, 10)
	if lead := c.leader(1, memberPatience).ID(); lead != 4 && lead != 5 {
		t.Fatalf("leader = %d; want 4 or 5", lead)
	}
	c.rebuildWiped(1) // its Members still names only the founders 1, 2, 3
	c.proposeN("c", 5, 15)
	c.checkSame(1)
	c.waitMembers("replica 1 knows the members", func(_ uint64, m paxos.Members) bool {
		return settled(m, 1, 4, 5) && m.IsRetired(2) && m.IsRetired(3)
	})
}
