package replica

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// A voter removed while it is down never hears the Accept that would tell
// it: once the removal is in effect the members' cores drop its messages,
// and two election timeouts later their transports forget it. When it
// comes back, a member it dials refuses it as removed
// (transport.Config.OnRetired) and it reports Removed.
func TestTCPRemovedWhileDownLearnsItOnReturn(t *testing.T) { removedWhileDown(t, 2) }

// Replica 4, removed while down, has a higher id than every remaining
// member: nobody dials it any more, and as a founder it does not dial
// back. It learns it was removed by probing the lower ids
// (transport.Config.ProbeAfter).
func TestTCPRemovedHighestIDLearnsItOnReturn(t *testing.T) { removedWhileDown(t, 4) }

// removedWhileDown stops replica gone of a four-replica TCP cell, removes
// it, waits until the others forgot it, restarts it, and checks that it
// reports Removed and logs who told it.
func removedWhileDown(t *testing.T, gone uint64) {
	c := newCell(t, cellOpts{n: 4, tcp: true, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	rest := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == gone })
	c.stop(gone)
	c.shrink(gone, rest...)
	waitFor(t, memberPatience, fmt.Sprintf("the members to forget replica %d", gone), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, id := range rest {
			if _, ok := c.reps[id].link.(tcpLink).t.Stats().Peers[gone]; ok {
				return false
			}
		}
		return true
	})

	logs := &logLines{}
	cfg := c.cfgs[gone]
	cfg.Logger = slog.New(logs)
	c.cfgs[gone] = cfg
	c.start(gone)
	c.mu.Lock()
	r := c.reps[gone]
	c.mu.Unlock()
	select {
	case <-r.Removed():
	case <-time.After(memberPatience):
		t.Fatalf("replica %d, removed while down, never reported Removed", gone)
	}
	if !logs.has("a member reports this replica removed from the cell") {
		t.Errorf("replica %d did not log who reported its removal", gone)
	}
	c.stop(gone)
	c.proposeN("b", 5, 10)
}
