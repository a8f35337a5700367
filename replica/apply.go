package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/replica/logdb"
	"github.com/latchd/latch/replica/paxos"
)

// applyItem is work for the apply goroutine: chosen entries in order,
// (restore != 0) "restore the stored snapshot that covers restore", or
// (backup != nil) "snapshot the state machine for Replica.Backup".
type applyItem struct {
	entries []paxos.Entry
	restore uint64
	backup  *backupReq
	snap    chan error // "take a snapshot now" for a transfer, if none is stored
}

// applier owns the group's StateMachine: every call to it happens on the
// apply goroutine (or in New, before that goroutine starts).
type applier struct {
	g  *group
	sm StateMachine

	applied  uint64 // last instance applied
	index    uint64 // last command index handed to Apply
	lastSnap uint64 // instance of the last snapshot taken or restored

	// members is the member set as of applied (docs/membership.md §2):
	// hasMembers is false only on a joiner that has not received one yet;
	// snapMembers says the stored snapshot restored last carried it.
	// replayTo is the end of the chosen log recovered at start, whose
	// member set newGroup published: the sets of the instances through it
	// (the replay) are older, and are not published.
	members     paxos.Members
	hasMembers  bool
	snapMembers bool
	replayTo    uint64

	appliedPub atomic.Uint64 // applied, for other goroutines

	wmu     sync.Mutex
	nwait   atomic.Int32
	waiters []appliedWaiter
}

type appliedWaiter struct {
	instance uint64
	ch       chan struct{}
}

func newApplier(g *group) *applier { return &applier{g: g, sm: g.sm} }

func (a *applier) appliedIndex() uint64 { return a.appliedPub.Load() }

// run is the apply goroutine.
func (a *applier) run() {
	g := a.g
	defer close(g.applyDone)
	for {
		select {
		case it := <-g.applyc:
			var err error
			switch {
			case it.backup != nil:
				a.backup(it.backup)
			case it.restore != 0:
				err = a.restoreReceived(it.restore)
			case it.snap != nil:
				err = a.snapshotForTransfer(it.snap)
			default:
				err = a.applyEntries(it.entries)
			}
			if err != nil {
				g.r.fatal(fmt.Errorf("group %d: %w", g.id, err))
				return
			}
		case <-g.r.stop:
			return
		case <-g.r.fatalC:
			return
		}
	}
}

func (a *applier) applyEntries(ents []paxos.Entry) error {
	for i := range ents {
		e := &ents[i]
		if e.Instance <= a.applied {
			continue // covered by a snapshot restored meanwhile
		}
		if e.Instance != a.applied+1 {
			return fmt.Errorf("chosen instance %d handed out after %d: a gap in the log", e.Instance, a.applied)
		}
		t0 := time.Now()
		if e.Conf || a.g.nChanges.Load() > 0 || a.members.Pending != nil {
			a.applyMembers(e)
		}
		a.applyEntry(e)
		a.g.stats.observeApply(time.Since(t0))
		a.applied = e.Instance
	}
	a.publish()
	if a.applied-a.lastSnap >= a.g.r.cfg.SnapshotEvery {
		return a.takeSnapshot()
	}
	return nil
}

// applyEntry applies one chosen batch and completes the proposals that
// wait for it on this replica.
func (a *applier) applyEntry(e *paxos.Entry) {
	g := a.g
	if e.Noop || e.Conf || len(e.Value) == 0 {
		return
	}
	b, err := decodeBatch(e.Value)
	if err != nil {
		// Every replica holds the same bytes and skips them alike.
		g.log.Error("skipping an undecodable chosen value", "instance", e.Instance, "err", err)
		return
	}
	var pb *pendingBatch
	if b.origin == g.r.cfg.ID {
		pb = g.takePending(b.id)
	}
	next := 0 // cursor in pb.props
	for range b.count {
		cmd, err := b.next()
		if err != nil {
			g.log.Error("skipping the rest of a malformed batch", "instance", e.Instance, "err", err)
			break
		}
		a.index++
		res := a.sm.Apply(a.index, cmd)
		g.stats.applied.Add(1)
		if pb == nil {
			continue
		}
		for next < len(pb.props) && pb.props[next].read {
			pb.props[next].done <- result{}
			next++
		}
		if next < len(pb.props) {
			pb.props[next].done <- result{val: res}
			next++
		}
	}
	if pb != nil {
		for _, p := range pb.props[next:] {
			if p.read {
				p.done <- result{}
			} else {
				p.done <- result{err: fmt.Errorf("%w: command missing from its applied batch", ErrMalformed)}
			}
		}
	}
}

// publish makes a.applied visible and wakes the waiters it satisfies.
func (a *applier) publish() {
	a.appliedPub.Store(a.applied)
	if a.nwait.Load() == 0 {
		return
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if w.instance <= a.applied {
			close(w.ch)
			a.nwait.Add(-1)
		} else {
			kept = append(kept, w)
		}
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
}

// waitApplied returns once instance is applied, ctx ends or stop closes.
func (a *applier) waitApplied(ctx context.Context, instance uint64, stop <-chan struct{}) error {
	if a.appliedPub.Load() >= instance {
		return nil
	}
	ch := make(chan struct{})
	a.wmu.Lock()
	a.nwait.Add(1)
	if a.appliedPub.Load() >= instance {
		a.nwait.Add(-1)
		a.wmu.Unlock()
		return nil
	}
	a.waiters = append(a.waiters, appliedWaiter{instance: instance, ch: ch})
	a.wmu.Unlock()
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-stop:
		err = a.g.r.stoppedErr()
	}
	a.wmu.Lock()
	for i, w := range a.waiters {
		if w.ch == ch {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			a.nwait.Add(-1)
			break
		}
	}
	a.wmu.Unlock()
	return err
}

// takeSnapshot writes the state machine at a.applied to the log database,
// truncates the log below it (keeping SnapshotEvery/2 instances for peers
// slightly behind) and tells the core.
func (a *applier) takeSnapshot() error {
	g := a.g
	w, err := g.ldb.CreateSnapshot(a.applied)
	if errors.Is(err, logdb.ErrStaleSnapshot) {
		a.lastSnap = a.applied
		return nil
	}
	if err != nil {
		return err
	}
	var m *paxos.Members
	if a.hasMembers {
		m = &a.members
	}
	if _, err := w.Write(appendSnapHeader(nil, a.applied, a.index, m)); err != nil {
		w.Abort()
		return err
	}
	if err := a.sm.Snapshot(w); err != nil {
		w.Abort()
		if dbErr := g.r.db.Err(); dbErr != nil {
			return dbErr
		}
		// The state machine could not write a snapshot: keep the log and
		// try again after another SnapshotEvery instances.
		g.log.Error("state machine snapshot failed", "instance", a.applied, "err", err)
		a.lastSnap = a.applied
		return nil
	}
	meta, err := w.Commit()
	if errors.Is(err, logdb.ErrStaleSnapshot) {
		a.lastSnap = a.applied
		return nil
	}
	if err != nil {
		return err
	}
	a.lastSnap = meta.Instance
	g.stats.snapsTook.Add(1)
	g.log.Info("snapshot taken", "instance", meta.Instance, "bytes", meta.Size)
	retain := g.r.cfg.SnapshotEvery / 2
	if meta.Instance <= retain {
		return nil
	}
	return a.compact(meta.Instance - retain)
}

// compact deletes the log through c and tells the core.
func (a *applier) compact(c uint64) error {
	g := a.g
	if err := g.ldb.Truncate(c + 1); err != nil {
		if errors.Is(err, logdb.ErrFailed) {
			return err
		}
		g.log.Warn("log truncation failed", "below", c+1, "err", err)
		return nil
	}
	g.event(func() {
		if err := g.node.Compact(c); err != nil {
			g.log.Debug("core refused Compact", "instance", c, "err", err)
		}
	})
	return nil
}

// restoreStored replaces the state machine with the group's stored
// snapshot, once the file passed its checksum: a bit flipped on disk is
// reported as corrupt data, naming the file, and the state machine never
// sees it (its own checks may not catch it, or name it otherwise).
func (a *applier) restoreStored() error {
	r, err := a.g.ldb.OpenSnapshot()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Verify(); err != nil {
		return err
	}
	h, err := readSnapHeader(r)
	if err != nil {
		return err
	}
	inst, idx := h.instance, h.index
	if inst != r.Meta().Instance {
		return fmt.Errorf("%w: snapshot file for instance %d says %d", ErrMalformed, r.Meta().Instance, inst)
	}
	if err := a.sm.Restore(r); err != nil {
		return fmt.Errorf("state machine restore of snapshot %d: %w", inst, err)
	}
	// Read what Restore left so the checksum over the whole file is checked.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	a.applied, a.index, a.lastSnap = inst, idx, inst
	a.snapMembers = h.members != nil
	switch {
	case h.members != nil:
		a.members, a.hasMembers = *h.members, true
	case a.hasMembers:
		// A snapshot without a member set (LRS1: from a build that
		// predates member changes): the set it had, which a cell of such
		// builds never changed.
		a.members = a.members.Through(inst)
	}
	a.publish()
	a.g.failChanges(inst)
	return nil
}

// restoreReceived installs a snapshot the loop received and stored, unless
// the state machine is already at or past it.
func (a *applier) restoreReceived(instance uint64) error {
	g := a.g
	if a.applied >= instance {
		return nil
	}
	if err := a.restoreStored(); err != nil {
		return err
	}
	g.stats.snapsRecv.Add(1)
	g.log.Info("snapshot restored", "instance", a.applied)
	s := a.applied
	if err := g.ldb.Truncate(s + 1); err != nil && errors.Is(err, logdb.ErrFailed) {
		return err
	}
	var m *paxos.Members
	if a.snapMembers {
		m = new(a.members.Clone())
	}
	a.publishMembers(s)
	g.event(func() {
		var err error
		if m != nil {
			err = g.node.RestoreSnapshotMembers(s, *m)
		} else {
			err = g.node.RestoreSnapshot(s)
		}
		if err != nil {
			g.log.Debug("core refused RestoreSnapshot", "instance", s, "err", err)
		}
	})
	return nil
}

// applyMembers applies the chosen entry e to the member set: a member
// change (which the state machine never sees), or, for any entry, a
// pending voter change taking effect. It completes the ChangeMembers
// waiting for e's instance.
func (a *applier) applyMembers(e *paxos.Entry) {
	if !a.hasMembers {
		return
	}
	m, err := a.members.ApplyEntry(*e)
	if err != nil {
		a.g.log.Warn("member change chosen, invalid: it changes nothing", "instance", e.Instance, "err", err)
	}
	changed := m.Epoch != a.members.Epoch || (m.Pending == nil) != (a.members.Pending == nil)
	// A voter change took effect, or an id was retired at once (a
	// RemoveLearner): the leader nudges past it (group.nudge), so that the
	// removed replica hears of a commit past it while it still sends to it.
	if a.members.Pending != nil && m.Pending == nil || len(m.Retired) > len(a.members.Retired) {
		a.g.lastEffect.Store(e.Instance)
	}
	a.members = m
	if a.g.nChanges.Load() > 0 {
		a.g.completeChange(e, m, err)
	}
	if changed {
		a.g.log.Info("member set", "instance", e.Instance, "epoch", m.Epoch, "voters", m.Voters(),
			"members", len(m.Members), "pending", m.Pending != nil)
		a.publishMembers(e.Instance)
	}
}

// publishMembers publishes the member set, as of instance at, and has the
// replica bring its peers up to date; not during the replay of the
// recovered log, whose end's set is published already.
func (a *applier) publishMembers(at uint64) {
	if !a.hasMembers || at <= a.replayTo {
		return
	}
	a.g.members.Store(new(a.members.Clone()))
	a.g.r.membersChanged()
}

// snapshotForTransfer takes a snapshot for a transfer to a peer when none
// is stored (a joiner asks for one before this replica took any;
// docs/membership.md §6), and answers on done.
func (a *applier) snapshotForTransfer(done chan error) error {
	if _, err := a.g.ldb.Snapshot(); err == nil {
		done <- nil
		return nil
	}
	if a.applied == 0 {
		done <- errors.New("nothing applied yet")
		return nil
	}
	err := a.takeSnapshot()
	done <- err
	return err
}

// event queues f to run on the loop goroutine, between two Readies. It
// never blocks, so the apply goroutine cannot deadlock with a loop that
// waits for it.
func (g *group) event(f func()) {
	g.evMu.Lock()
	g.events = append(g.events, f)
	g.evMu.Unlock()
	select {
	case g.eventc <- struct{}{}:
	default:
	}
}

// runEvents runs the queued events (loop goroutine).
func (g *group) runEvents() {
	g.evMu.Lock()
	evs := g.events
	g.events = nil
	g.evMu.Unlock()
	for _, f := range evs {
		f()
	}
}

// newRand returns the core's source of election jitter.
func newRand(id uint64) func() uint64 {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), id))
	return r.Uint64
}
