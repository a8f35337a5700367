package replica

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

// A replica that joined the cell and later lost its disk is restarted the
// way a service manager restarts it: with its configuration, without Join
// (a flag for its first start only). Its configuration names the members
// it was given as seeds, not the cell's founders, so it must not take them
// for the bootstrap set: it learns the member set from its peers.
func TestWipedJoinerRestartedWithoutJoin(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	c.grow(4, "", 1, 2, 3, 4)
	c.shrink(1, 2, 3, 4)
	c.proposeN("b", 5, 10)

	c.stop(4)
	logs := c.rebuildWiped(4) // its Members: 1, 2, 3 (its seeds) and 4
	c.proposeN("c", 5, 15)
	c.checkSame(1)
	want, err := c.leader(1, memberPatience).Members(1)
	if err != nil {
		t.Fatal(err)
	}
	// The same set, epoch included: replaying the log from a bootstrap set
	// of its configured members (1, 2, 3 and itself) gave the same voters
	// at another epoch, skipping its own AddLearner, Bind and Promote as
	// invalid.
	c.waitMembers("every replica at the leader's member set", func(_ uint64, m paxos.Members) bool {
		return settled(m, 2, 3, 4) && m.IsRetired(1) && m.Epoch == want.Epoch
	})
	if !logs.has("receiving snapshot") {
		t.Fatalf("the wiped joiner did not learn the member set from a snapshot:\n%s", logs)
	}
}

// rebuildWiped restarts stopped replica id on an empty data dir with its
// configuration, as a service manager restarts a replica that lost its
// disk (RebuildEmpty; Join is for a first start only), and waits until it
// has rebuilt. It returns the replica's log.
func (c *cell) rebuildWiped(id uint64) *logLines {
	c.t.Helper()
	cfg := c.cfgs[id]
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		c.t.Fatal(err)
	}
	logs := &logLines{}
	cfg.Join = false
	cfg.RebuildEmpty = true
	cfg.Logger = slog.New(logs)
	c.cfgs[id] = cfg
	c.start(id)
	deadline := time.Now().Add(memberPatience)
	for {
		st, err := c.reps[id].Status(context.Background(), 1)
		if err == nil && !st.Rebuilding && logs.has("rebuilt:") {
			return logs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d did not rebuild within %v", id, memberPatience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
