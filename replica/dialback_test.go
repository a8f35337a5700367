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

// Two joiners lose their disks one after the other (the soak, Session 14:
// latchd 28 wiped and rebuilt, then latchd 27). The first, 5, restarts
// without Join: it learns its member set, and that it joined, only from a
// peer's snapshot after it started, so it used to go on only probing the
// lower ids. Then 4 loses its disk; its configuration names only the
// founders, removed since, so it reaches nobody and must be dialed back;
// its fence needs the promise of every voter not rebuilding, 5's too. 5
// now dials back once its member set says it joined (Transport.DialBack):
// before, 4 waited for 5 for ever.
func TestTCPWipedJoinersRebuildOneAfterTheOther(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tcp: true, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	addrs := freeAddrs(t, 3)
	c.grow(4, addrs[0], 1, 2, 3, 4)
	c.grow(5, addrs[1], 1, 2, 3, 4, 5)
	c.grow(6, addrs[2], 1, 2, 3, 4, 5, 6)
	c.shrink(1, 2, 3, 4, 5, 6)
	c.shrink(2, 3, 4, 5, 6)
	c.shrink(3, 4, 5, 6)
	c.proposeN("b", 5, 10)

	c.stop(5)
	c.rebuildWiped(5) // its Members: the founders, 4 and 5; it reaches 4
	c.proposeN("c", 5, 15)
	c.stop(4)
	c.rebuildWiped(4) // its Members: the founders and 4; 5 and 6 must dial it back
	c.proposeN("d", 5, 20)
	c.checkSame(1)
	c.waitMembers("replicas 4, 5, 6 at the members", func(_ uint64, m paxos.Members) bool {
		return settled(m, 4, 5, 6) && m.IsRetired(1) && m.IsRetired(2) && m.IsRetired(3)
	})
}
