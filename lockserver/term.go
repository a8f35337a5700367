package lockserver

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica/paxos"
	"github.com/latchd/latch/session"
)

// term is one stretch of leadership of this replica: the session manager
// (leases, KeepAlives, event queues, watches) and the goroutine that expires
// sessions and ends lock-delays. A term starts when the replica becomes the
// Paxos leader and ends when it stops being it (or the server closes).
type term struct {
	s      *Server
	mgr    *session.Manager[wire.Event]
	ballot paxos.Ballot
	// epoch is the high half of every event sequence number this term
	// hands out (termEpoch), so that numbers keep increasing across leaders
	// even though each term's manager counts from 1.
	epoch    uint64
	restored uint64 // fsm.restored when the term started

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and the proposals it started

	ticking  atomic.Bool   // a tick proposal is in flight
	expiring chan struct{} // bounds concurrent expire proposals
}

// seqBits is the width of a manager's sequence number inside a wire Seq.
const seqBits = 32

// rankBits is the width of the leader's rank inside an epoch: enough for
// paxos.MaxPeers replicas.
const rankBits = 6

// termEpoch returns the epoch of a term led with ballot b in a cell of the
// replica ids members: the round, then the rank of the leader's id among
// members in increasing order. Ballots order by round, then id, so epochs
// grow with the ballot, and two leaders of one round (5.1, then 5.2, which
// preempted it) get different epochs. With the round alone, a client's
// acknowledgement of event 100 of term 5.1 acknowledged the first 100 of
// term 5.2, its Failover event among them. The round fits in 32 - rankBits
// bits: 67 million elections.
func termEpoch(b paxos.Ballot, members []uint64) uint64 {
	rank := uint64(0)
	for _, id := range members {
		if id < b.ID {
			rank++
		}
	}
	return b.Round<<rankBits | rank&(1<<rankBits-1)
}

// memberIDs are the ids a term's epoch ranks its leader among: the
// replicated member set's, which every replica agrees on (a joiner's
// configuration names only some of the cell, and a member added by a
// change is in no founding configuration), else the configuration's.
func (s *Server) memberIDs() []uint64 {
	if ms, err := s.members.Members(group); err == nil && len(ms.Members) > 0 {
		ids := make([]uint64, len(ms.Members))
		for i, x := range ms.Members {
			ids[i] = x.ID
		}
		return ids
	}
	return slices.Collect(maps.Keys(s.cfg.Members))
}

// wireSeq maps a manager item's Seq to the wire.
func (t *term) wireSeq(seq uint64) uint64 { return t.epoch<<seqBits | seq&(1<<seqBits-1) }

// ackFor maps a client's acknowledged wire Seq to this term's manager: an
// acknowledgement from an older term acknowledges nothing here.
func (t *term) ackFor(acked uint64) (uint64, bool) {
	switch ep := acked >> seqBits; {
	case ep == t.epoch:
		return acked & (1<<seqBits - 1), true
	case ep < t.epoch:
		return 0, true
	}
	return 0, false // the client heard from a newer leader
}

// startTerm begins a term for the ballot this replica leads with: it creates
// the manager and,
// under the fsm lock (so no Apply slips in between), gives every session in
// the namespace a fresh lease and a Failover event.
func (s *Server) startTerm(ballot paxos.Ballot) *term {
	mgr, err := session.New[wire.Event](s.cfg.sessionConfig())
	if err != nil {
		s.log.Error("cannot start a session manager", "err", err)
		return nil
	}
	t := &term{s: s, mgr: mgr, ballot: ballot, epoch: termEpoch(ballot, s.memberIDs()),
		expiring: make(chan struct{}, 64)}
	t.ctx, t.cancel = context.WithCancel(s.ctx)
	f := s.fsm
	f.mu.Lock()
	t.restored = f.restored.Load()
	s.cell.reset(s.clock.Now().UnixNano(), f.tree.Now())
	infos := f.tree.Sessions()
	leases := make([]session.Lease, len(infos))
	for i, si := range infos {
		leases[i] = session.Lease{ID: si.ID, TTL: si.Timeout}
	}
	mgr.Failover(leases)
	f.term = t
	f.mu.Unlock()
	s.term.Store(t)
	s.metrics.Terms.Add(1)
	s.log.Info("leader term started", "ballot", ballot.String(), "sessions", len(leases))
	t.wg.Add(1)
	go t.run()
	return t
}

// end stops the term: new requests see no term, held KeepAlives return
// ErrClosed, the goroutines stop.
func (t *term) end() {
	s := t.s
	s.term.CompareAndSwap(t, nil)
	s.fsm.mu.Lock()
	if s.fsm.term == t {
		s.fsm.term = nil
	}
	s.fsm.mu.Unlock()
	t.cancel()
	t.mgr.Close()
	t.wg.Wait()
	s.log.Info("leader term ended", "ballot", t.ballot.String())
}

// run expires sessions whose lease ran out and ends lock-delays, both by
// proposing commands, every SessionTick.
func (t *term) run() {
	defer t.wg.Done()
	tk := time.NewTicker(t.s.cfg.SessionTick)
	defer tk.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tk.C:
		}
		for _, id := range t.mgr.Tick() {
			t.expire(id)
		}
		t.maybeTick()
	}
}

// expire proposes the expiry of session id. The namespace ends the session
// only if it is still live, so a late or repeated expiry does no harm.
func (t *term) expire(id uint64) {
	select {
	case t.expiring <- struct{}{}:
	case <-t.ctx.Done():
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.expiring }()
		cmd := namespace.NewExpireSession(id)
		o, err := t.s.propose(t.ctx, kindNamespace, &cmd)
		if err != nil {
			t.s.log.Debug("expire proposal failed", "session", id, "err", err)
			return
		}
		t.s.metrics.SessionsExpired.Add(1)
		t.s.log.Info("session expired", "session", id, "index", o.index, "result", errString(o.res.Err))
	}()
}

// maybeTick proposes a tick when a lock-delay with waiters has ended in
// command time (cellClock), so the grant happens in the log.
func (t *term) maybeTick() {
	var d int64
	var ok bool
	t.s.fsm.read(func(tr *namespace.Tree) { d, ok = tr.NextDeadline() })
	if !ok || t.s.cell.now() < d || !t.ticking.CompareAndSwap(false, true) {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer t.ticking.Store(false)
		cmd := namespace.NewTick()
		if _, err := t.s.propose(t.ctx, kindNamespace, &cmd); err != nil {
			t.s.log.Debug("tick proposal failed", "err", err)
		}
	}()
}

// route hands one applied event to the manager: session bookkeeping, and
// the watch events for the sessions watching its path. Called by Apply
// under the fsm lock; it never blocks.
func (t *term) route(tree *namespace.Tree, index uint64, cmd *namespace.Command, e *namespace.Event) {
	m := t.mgr
	switch e.Kind {
	case namespace.EventSessionOpened:
		if err := m.Open(e.Session, cmd.Timeout); err != nil && !errors.Is(err, session.ErrExists) {
			// Untracked, the session could never be kept alive nor expire:
			// end it now (openSession refuses new ones at the limit, but
			// two may race past that check).
			t.s.log.Warn("session manager refused an opened session; expiring it", "session", e.Session, "err", err)
			id := e.Session
			t.wg.Add(1) // safe: end() waits only after removing t from the fsm, under its lock
			go func() {
				defer t.wg.Done()
				t.expire(id)
			}()
		}
		return
	case namespace.EventSessionClosed, namespace.EventSessionExpired:
		m.Remove(e.Session)
		return
	case namespace.EventLockConflict:
		m.Deliver(e.Session, wire.Event{Type: wire.LockConflict, Index: index, Path: e.Path,
			Instance: e.Instance, Session: e.By})
		return
	case namespace.EventACLChanged, namespace.EventWaitCanceled:
		return
	}
	targets := m.Route(e.Path)
	if len(targets) == 0 {
		return
	}
	ev := wire.Event{Index: index, Path: e.Path, Instance: e.Instance}
	switch e.Kind {
	case namespace.EventNodeCreated, namespace.EventContentChanged:
		ev.Type = wire.ContentChanged
		if e.Kind == namespace.EventNodeCreated {
			ev.Type = wire.NodeCreated
		}
		if st, err := tree.Stat(e.Path); err == nil {
			ev.ContentGen = st.ContentGen
		}
	case namespace.EventNodeDeleted:
		ev.Type = wire.NodeDeleted
	case namespace.EventChildAdded:
		ev.Type, ev.Child = wire.ChildAdded, e.Name
	case namespace.EventChildRemoved:
		ev.Type, ev.Child = wire.ChildRemoved, e.Name
	case namespace.EventLockAcquired:
		ev.Type, ev.Session = wire.LockAcquired, e.Session
		ev.LockGen, ev.Mode = e.Sequencer.LockGen, wireMode(e.Sequencer.Mode)
	case namespace.EventLockReleased:
		ev.Type, ev.Session = wire.LockReleased, e.Session
	default:
		return
	}
	var delivered uint64
	for _, tg := range targets {
		if !t.s.sessionReads(tree, tg.Session, e.Reader) {
			continue
		}
		one := ev
		one.Watches = tg.Watches
		m.Deliver(tg.Session, one)
		delivered++
	}
	t.s.metrics.EventsDelivered.Add(delivered)
}

// sessionReads reports whether session sid may see an event about a node
// whose reader ACL name was reader (namespace.Event.Reader): whether its
// principal, as the server counts it (callerFor), may read that node, the
// ACL files as they stand. A watch was checked when it was set, but the
// nodes under a recursive watch, or created later at a watched path, have
// ACLs of their own.
func (s *Server) sessionReads(tree *namespace.Tree, sid uint64, reader string) bool {
	if reader == "" {
		return true
	}
	p, err := tree.SessionPrincipal(sid)
	return err == nil && tree.Admits(reader, s.callerFor(p))
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
