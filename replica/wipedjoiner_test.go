package replica

import (
	"context"
	"log/slog"
	"os"
	"testing"

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
	cfg := c.cfgs[4]
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	cfg.Join = false
	cfg.RebuildEmpty = true
	cfg.Logger = slog.New(logs)
	c.cfgs[4] = cfg // Members: 1, 2, 3 (its seeds) and 4
	c.start(4)

	waitFor(t, memberPatience, "the wiped joiner to rebuild", func() bool {
		st, err := c.reps[4].Status(context.Background(), 1)
		return err == nil && !st.Rebuilding && logs.has("rebuilt:")
	})
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
