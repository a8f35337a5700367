package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

// Resign gives up this replica's leadership of every group it leads, so the
// cell elects a new leader at once instead of waiting out the master lease
// (a graceful shutdown: call it before Close). For each such group the core
// ends its lease and steps down, names a successor (the most up-to-date
// follower) and tells every peer; the followers release the lease they
// granted and the successor campaigns (docs/paxos.md, "Resigning").
//
// From the moment Resign has handed a group's resignation to its loop,
// LeaseRead on this replica is false for the group: the published lease is
// cleared before any Resign message leaves the process. Proposals waiting
// on this replica fail with ErrLeadershipLost (their outcome is unknown, as
// on any loss of leadership); new ones get a *NotLeaderError.
//
// Resign returns once every group it led has sent its Resign messages and
// learned of another leader; or with ctx's error if ctx ends first (the
// groups whose resignation the loop took have resigned nonetheless). It does
// nothing for groups this replica does not lead. This replica may be
// elected again later, as any follower may.
func (r *Replica) Resign(ctx context.Context) error {
	var waits []resignation
	for _, id := range r.groupIDs {
		g, err := r.group(id)
		if err != nil {
			return err
		}
		rs, err := g.resign(ctx)
		if err != nil {
			return err
		}
		if rs.sent != nil {
			waits = append(waits, rs)
		}
	}
	for _, rs := range waits {
		if err := rs.g.waitSent(ctx, rs.sent); err != nil {
			return err
		}
	}
	for _, rs := range waits {
		if err := rs.g.waitOtherLeader(ctx); err != nil {
			return err
		}
	}
	return nil
}

// resignation is one group's resignation in progress.
type resignation struct {
	g    *group
	sent chan struct{} // closed once the Resign messages are handed to the network; nil if the group was not led
}

// resign has the loop resign the group if this replica leads it.
func (g *group) resign(ctx context.Context) (resignation, error) {
	ch := make(chan resignation, 1)
	f := func() {
		if g.node.Status().Role != paxos.Leader {
			ch <- resignation{g: g}
			return
		}
		succ := g.node.Resign()
		// LeaseRead is read lock-free on other goroutines: it must say no
		// before a follower can act on a Resign and promise another.
		g.publishLease()
		sent := make(chan struct{})
		g.resignSent = append(g.resignSent, sent)
		g.log.Info("resigning leadership", "ballot", g.node.Status().Ballot, "successor", succ)
		ch <- resignation{g: g, sent: sent}
	}
	return askLoop(ctx, g, f, ch)
}

// waitSent waits until the loop handed the Ready carrying the group's
// Resign messages to the network.
func (g *group) waitSent(ctx context.Context, sent <-chan struct{}) error {
	select {
	case <-sent:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("replica: group %d: resignation not sent: %w", g.id, ctx.Err())
	case <-g.r.stop:
		return g.r.stoppedErr()
	case <-g.r.fatalC:
		return g.r.stoppedErr()
	}
}

// waitOtherLeader waits until this replica knows of another leader of the
// group: then the Resign messages (queued by the network, which a Close
// would drop) did their work. A group with no other member has none.
func (g *group) waitOtherLeader(ctx context.Context) error {
	if m := g.members.Load(); m != nil && len(m.Voters()) < 2 || m == nil && len(g.r.cfg.Members) < 2 {
		return nil
	}
	tk := time.NewTicker(g.r.cfg.TickInterval)
	defer tk.Stop()
	for {
		if l := g.leader.Load(); l != 0 && l != g.r.cfg.ID {
			return nil
		}
		select {
		case <-tk.C:
		case <-ctx.Done():
			return fmt.Errorf("replica: group %d: resigned, no new leader seen yet: %w", g.id, ctx.Err())
		case <-g.r.stop:
			return g.r.stoppedErr()
		case <-g.r.fatalC:
			return g.r.stoppedErr()
		}
	}
}
