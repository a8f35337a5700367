package lockserver

import (
	"os"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// TestStatusReplyRebuilding: a replica restarted on a wiped data dir says
// Rebuilding in its StatusReply while it cannot be fenced (its peers are
// down), and stops saying so once a leader fenced it and it caught up.
func TestStatusReplyRebuilding(t *testing.T) {
	c := testCell(t)
	for i := range c.N() {
		if err := c.Crash(i); err != nil {
			t.Fatalf("Crash(%d): %v", i, err)
		}
	}
	// Replica 3 lost its disk, and starts as a replica of an existing cell
	// does (latchd without --new-cell): an empty data dir is lost state.
	const victim = 2
	c.cfgs[victim].Replica.RebuildEmpty = true
	if err := os.RemoveAll(c.cfgs[victim].DataDir); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(victim); err != nil {
		t.Fatalf("Restart(%d): %v", victim, err)
	}
	status := func() *wire.StatusReply {
		t.Helper()
		rc := dialRaw(t, c.Endpoints()[victim])
		defer rc.close()
		m, err := rc.call(&wire.Status{})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		return m.(*wire.StatusReply)
	}
	if sr := status(); !sr.Rebuilding || sr.IsLeader || sr.ServerID != "3" {
		t.Fatalf("Status of the wiped replica alone = %+v; want server 3, Rebuilding, not leader", sr)
	}

	for i := range victim {
		if err := c.Restart(i); err != nil {
			t.Fatalf("Restart(%d): %v", i, err)
		}
	}
	waitFor(t, 30*time.Second, "the wiped replica to be fenced and rebuilt", func() bool {
		sr := status()
		return !sr.Rebuilding && sr.Leader != ""
	})
}

// Status counts held locks and queued acquires, and carries the replica's
// histograms: the batches the leader proposed and the instances applied.
func TestStatusCountsLocksAndBatches(t *testing.T) {
	c := testCell(t)
	a, b := newClient(t, c), newClient(t, c)
	a.open(time.Minute)
	b.open(time.Minute)
	a.must(&wire.Put{Path: "/l"})
	a.must(&wire.Acquire{Path: "/l", Mode: wire.Exclusive})
	queued := async(b, &wire.Acquire{Path: "/l", Mode: wire.Exclusive, Wait: true})
	lead := c.Server(leaderIndex(t, c))
	waitFor(t, 10*time.Second, "one lock held and one acquire queued", func() bool {
		st := lead.Status()
		return st.LocksHeld == 1 && st.LockWaiters == 1
	})
	a.must(&wire.Release{Path: "/l", LockGen: lockInfo(t, a, "/l").LockGen})
	recv(t, queued, "the queued acquire")
	st := lead.Status()
	var batches, applied uint64
	for _, n := range st.BatchSizes {
		batches += n
	}
	for _, n := range st.ApplyLatency {
		applied += n
	}
	if batches == 0 || batches != st.Batches || st.BatchCommands < batches || applied == 0 || st.ApplyTime <= 0 {
		t.Errorf("leader status: %d batches (%d in the histogram, %d commands), %d applied in %v", st.Batches, batches, st.BatchCommands, applied, st.ApplyTime)
	}
	if st.SyncedWrites == 0 || st.SyncTime <= 0 {
		t.Errorf("leader status: %d synced writes in %v", st.SyncedWrites, st.SyncTime)
	}
}

// The leader's Status carries its view of every follower; a follower's
// carries none.
func TestStatusPeersOnTheLeader(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	cl.must(&wire.Put{Path: "/p"})
	lead := leaderIndex(t, c)
	waitFor(t, 10*time.Second, "both followers to acknowledge the leader", func() bool {
		ps := c.Server(lead).Status().Peers
		return len(ps) == c.N()-1 && ps[0].LastAck >= 0 && ps[1].LastAck >= 0
	})
	for _, p := range c.Server(lead).Status().Peers {
		if p.ID == c.Server(lead).ID() || p.LastAck > 10*time.Second {
			t.Errorf("leader's view of a peer: %+v", p)
		}
	}
	if ps := c.Server((lead + 1) % c.N()).Status().Peers; len(ps) != 0 {
		t.Errorf("a follower's Status has Peers %+v", ps)
	}
}
