package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/replica/logdb"
	"github.com/latchd/latch/replica/paxos"
)

// Queue sizes of a group.
const (
	inboxLen   = 4096 // decoded peer messages waiting for the loop
	propLen    = 4096 // proposals waiting for the loop
	applyLen   = 1024 // Ready.Chosen batches waiting for the apply goroutine
	drainBurst = 256  // messages the loop takes per wake-up before a Ready
)

// inbound is one decoded peer message.
type inbound struct {
	from  uint64
	kind  byte
	msg   paxos.Message
	chunk *snapChunk
	ack   *snapAck
}

func decodeInbound(from uint64, payload []byte) (inbound, error) {
	in := inbound{from: from}
	kind, body, err := decodePeer(payload)
	if err != nil {
		return in, err
	}
	in.kind = kind
	switch kind {
	case kindPaxos:
		err = decodeMessage(body, &in.msg)
		if err == nil && in.msg.From != from {
			err = fmt.Errorf("%w: message from %d claims to be from %d", ErrMalformed, from, in.msg.From)
		}
	case kindSnapChunk:
		in.chunk = new(snapChunk)
		err = decodeChunk(body, in.chunk)
	case kindSnapAck:
		in.ack = new(snapAck)
		err = decodeBody(body, in.ack)
	default:
		err = fmt.Errorf("%w: peer message kind %d", ErrMalformed, kind)
	}
	return in, err
}

// proposal is one Propose (or, with read set, one ReadBarrier that needs a
// log round) waiting for its batch to be applied.
type proposal struct {
	cmd  []byte
	read bool
	done chan result // buffered 1: the completer never blocks
}

type result struct {
	val []byte
	err error
}

// pendingBatch is a batch this replica proposed, waiting to be applied.
type pendingBatch struct {
	props []*proposal // in command order; read markers carry no command
}

// groupStats are the counters behind Stats.
type groupStats struct {
	proposals, batches, pipelined, applied, writes, syncs, dropped atomic.Uint64
	sendErrors                                                     atomic.Uint64
	snapsTook, snapsSent, snapsRecv                                atomic.Uint64
	syncNanos, applyNanos                                          atomic.Int64
	batchCmds                                                      atomic.Uint64
	batchSizes                                                     [len(BatchSizeBuckets) + 1]atomic.Uint64
	applyLatency                                                   [len(ApplyLatencyBuckets) + 1]atomic.Uint64
}

// BatchSizeBuckets are the upper bounds (inclusive) of Stats.BatchSizes, in
// commands per batch.
var BatchSizeBuckets = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

// ApplyLatencyBuckets are the upper bounds (exclusive) of
// Stats.ApplyLatency.
var ApplyLatencyBuckets = [...]time.Duration{
	10 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
}

// observeBatch counts a proposed batch of n commands.
func (s *groupStats) observeBatch(n int) {
	s.batches.Add(1)
	s.batchCmds.Add(uint64(n))
	i := 0
	for i < len(BatchSizeBuckets) && n > BatchSizeBuckets[i] {
		i++
	}
	s.batchSizes[i].Add(1)
}

// observeApply counts one chosen batch applied in d.
func (s *groupStats) observeApply(d time.Duration) {
	s.applyNanos.Add(int64(d))
	i := 0
	for i < len(ApplyLatencyBuckets) && d >= ApplyLatencyBuckets[i] {
		i++
	}
	s.applyLatency[i].Add(1)
}

func (s *groupStats) snapshot() Stats {
	st := Stats{
		Proposals: s.proposals.Load(), Batches: s.batches.Load(), Pipelined: s.pipelined.Load(), Applied: s.applied.Load(),
		Writes: s.writes.Load(), SyncedWrites: s.syncs.Load(), SyncTime: time.Duration(s.syncNanos.Load()), Dropped: s.dropped.Load(), SendErrors: s.sendErrors.Load(),
		SnapshotsTook: s.snapsTook.Load(), SnapshotsSent: s.snapsSent.Load(), SnapshotsRecv: s.snapsRecv.Load(),
		ApplyTime: time.Duration(s.applyNanos.Load()), BatchCommands: s.batchCmds.Load(),
	}
	for i := range s.batchSizes {
		st.BatchSizes = append(st.BatchSizes, s.batchSizes[i].Load())
	}
	for i := range s.applyLatency {
		st.ApplyLatency = append(st.ApplyLatency, s.applyLatency[i].Load())
	}
	return st
}

// group is one Paxos group on this replica. Its loop goroutine alone owns
// node, queued, the snapshot receiver and the transfers map; its apply
// goroutine alone owns sm and the apply cursor (see docs/threads.md).
type group struct {
	r    *Replica
	id   uint32
	log  *slog.Logger
	ldb  *logdb.Log
	node *paxos.Node
	sm   StateMachine

	inbox  chan inbound
	propc  chan *proposal
	reqc   chan func()
	applyc chan applyItem
	eventc chan struct{} // wakes the loop for events
	writec chan writeJob
	wrotec chan error // the writer's answer to each writec

	evMu   sync.Mutex
	events []func() // work for the loop from the group's other goroutines

	// Published by the loop for lock-free readers.
	leader   atomic.Uint64
	isLeader atomic.Bool
	// The lease read: while leaseEnd (nanoseconds since epoch, monotonic;
	// 0 for none) is in the future and the state machine has applied
	// readIndex, a local read is linearizable (see leaseRead).
	leaseEnd  atomic.Int64
	readIndex atomic.Uint64
	epoch     time.Time

	// Owned by the loop.
	role        paxos.Role
	knownLeader uint64       // leader as of the last Ready
	ballot      paxos.Ballot // ballot as of the last Ready
	queued      []*proposal
	cmds        [][]byte
	lastTick    time.Time   // monotonic time up to which ticks were delivered
	writing     bool        // rd's synced write is in flight on the writer goroutine
	rd          paxos.Ready // the outstanding Ready while writing
	writeStart  time.Time   // when rd's write began
	holding     bool        // leader: new proposals wait for acks (see hold)
	rebuilding  bool        // the disk says this replica rebuilds (State.Rebuild): until Rebuilt is durable
	holdTimer   *time.Timer
	resignSent  []chan struct{} // closed once the next Ready's early messages are sent
	recv        *snapReceiver
	transfers   map[uint64]chan snapAck
	nextBatch   uint64

	pendMu   sync.Mutex
	pending  map[uint64]*pendingBatch // by batch id; shared by loop and apply
	pendCmds int                      // proposals in pending, under pendMu
	changes  map[uint64]*changeWaiter // ChangeMembers by instance, under pendMu
	nChanges atomic.Int32             // len(changes), read by the applier without the lock

	// members is the member set as of the applied instance, published by
	// the apply goroutine (nil while a joiner has none); while the log
	// recovered at start is replayed, as of its end (newGroup).
	members     atomic.Pointer[paxos.Members]
	removed     bool          // loop: the core reported this replica removed (Ready.Removed)
	lastEffect  atomic.Uint64 // applier: the instance where the last voter change took effect or an id was retired
	nudgedFor   uint64        // loop: the lastEffect nudge proposed after
	removedSeen atomic.Bool   // removed, for Replica.groupRemoved

	applier *applier

	stats groupStats

	loopDone   chan struct{}
	applyDone  chan struct{}
	writerDone chan struct{}
	aux        sync.WaitGroup // snapshot senders
}

// newGroup recovers the group from the log database and builds its core.
func newGroup(r *Replica, id uint32, sm StateMachine) (*group, error) {
	g := &group{
		epoch:      time.Now(),
		r:          r,
		id:         id,
		log:        r.log.With("group", id),
		ldb:        r.db.Group(id),
		sm:         sm,
		inbox:      make(chan inbound, inboxLen),
		propc:      make(chan *proposal, propLen),
		reqc:       make(chan func()),
		applyc:     make(chan applyItem, applyLen),
		eventc:     make(chan struct{}, 1),
		writec:     make(chan writeJob),
		wrotec:     make(chan error, 1),
		transfers:  make(map[uint64]chan snapAck),
		pending:    make(map[uint64]*pendingBatch),
		changes:    make(map[uint64]*changeWaiter),
		loopDone:   make(chan struct{}),
		applyDone:  make(chan struct{}),
		writerDone: make(chan struct{}),
		// Batch ids only need to be unique among this process's pending
		// batches; starting from the time keeps a restarted process from
		// matching a batch of its previous life still in the log.
		nextBatch: uint64(time.Now().UnixNano()),
	}
	st, err := g.ldb.Load()
	if err != nil {
		return nil, err
	}
	if (r.cfg.RebuildEmpty || r.joining()) && st.IsEmpty() {
		// A new or wiped disk: this replica may have voted before and
		// forgotten it, so it rebuilds (paxos.State.Rebuild). The mark
		// is durable first, so a crash meanwhile restarts the rebuild.
		st.Rebuild = rand.Uint64() | 1
		if err := g.ldb.MarkRebuild(st.Rebuild); err != nil {
			return nil, err
		}
		g.log.Warn("no durable state: rebuilding it from the peers before voting " +
			"(the first start of a brand-new cell must not rebuild: latchd --new-cell)")
	} else if st.Rebuild != 0 {
		g.log.Warn("resuming a rebuild of lost state: learning from the peers, not voting")
	}
	g.rebuilding = st.Rebuild != 0
	g.applier = newApplier(g)
	if st.Snapshot.Instance > 0 {
		if err := g.applier.restoreStored(); err != nil {
			return nil, err
		}
	}
	var snapMembers *paxos.Members
	if g.applier.snapMembers {
		snapMembers = new(g.applier.members.Clone())
	} else if !r.joining() {
		// The bootstrap set, as the core takes it from Config.Peers.
		g.applier.members, g.applier.hasMembers = paxos.Bootstrap(r.cell.founders(), r.cfg.Alpha), true
	}
	ps := paxos.State{
		Promised: st.Promised,
		Chosen:   st.Chosen,
		Snapshot: st.Snapshot.Instance,
		Applied:  g.applier.applied,
		Entries:  st.Entries,
		Rebuild:  st.Rebuild,
		Members:  snapMembers,
	}
	node, err := paxos.New(r.coreConfig(), ps)
	if err != nil {
		return nil, err
	}
	g.node = node
	if g.applier.hasMembers {
		// Publish the member set as of the end of the recovered chosen
		// log, not the snapshot's: the core has applied every chosen
		// change above the snapshot, in instance order, as the applier
		// will when it replays the log. The snapshot's set is older by
		// every change chosen since it was taken (up to SnapshotEvery
		// instances), and a replica that started its network with it
		// dialled members removed since, at addresses nobody kept any
		// more (Start failed), and left out members added since, until
		// the replay came by. The replay publishes nothing up to here
		// (applier.replayTo), so the set never goes back.
		m := node.Members()
		g.members.Store(&m)
		g.applier.replayTo = max(node.Status().Commit, 1) - 1
	}
	g.log.Info("group recovered", "promised", ps.Promised, "chosen", ps.Chosen,
		"snapshot", ps.Snapshot, "entries", len(ps.Entries))
	return g, nil
}

// coreConfig maps the replica's Config onto the core's ticks.
func (r *Replica) coreConfig() paxos.Config {
	c := r.cfg
	peers := r.cell.founders()
	if r.joining() {
		peers = c.peerIDs() // whom it may hear from first
	}
	pc := paxos.DefaultConfig(c.ID, peers)
	pc.Join = r.joining()
	pc.Alpha = c.Alpha
	pc.HeartbeatTicks = c.ticks(c.HeartbeatInterval)
	pc.ElectionTicks = c.ticks(c.ElectionTimeout)
	pc.LeaseTicks = c.ticks(c.LeaseDuration)
	// Each clock may run up to MaxClockDrift fast or slow, so the holder's
	// and a granter's can differ by about twice that: the core's lease
	// argument (docs/paxos.md) needs DriftTicks ≥ 2ε·LeaseTicks/(1+ε).
	eps := c.MaxClockDrift
	pc.DriftTicks = int(2*eps*float64(pc.LeaseTicks)/(1+eps) + 0.999999)
	if pc.DriftTicks >= pc.LeaseTicks {
		pc.DriftTicks = pc.LeaseTicks - 1
	}
	pc.Window = c.Window
	pc.MaxBatchBytes = c.MaxBatchBytes
	pc.MaxMessageBytes = max(4<<20, 2*c.MaxBatchBytes)
	pc.Rand = newRand(c.ID)
	pc.Incarnation = rand.Uint64() | 1 // this start of the replica (paxos.Config.Incarnation)
	// The core adds "replica" itself.
	pc.Logger = c.logger().With("component", "paxos")
	return pc
}

func (g *group) start() {
	go g.applier.run()
	go g.writer()
	go g.loop()
}

// writeJob is a Ready's synced write and the messages that may leave only
// once it is durable.
type writeJob struct {
	u    logdb.Update
	msgs []paxos.Message // the Ready's messages; the writer sends the late ones
}

// writer is the group's log-writing goroutine: it runs the synced writes
// the loop hands it, so the loop keeps stepping peer messages and taking
// proposals while a write is in flight. It sends the Ready's remaining
// messages (Promise, Accepted, ...) itself as soon as the write is durable,
// sparing them a wake-up of the loop. It ends when the loop closes writec.
func (g *group) writer() {
	defer close(g.writerDone)
	for j := range g.writec {
		t0 := time.Now()
		err := g.ldb.Write(j.u)
		g.stats.syncNanos.Add(int64(time.Since(t0)))
		if err == nil {
			g.sendLate(j.msgs)
		}
		g.wrotec <- err
	}
}

// wait waits for the group's goroutines after r.stop was closed, and fails
// every waiting proposal.
func (g *group) wait() {
	<-g.loopDone
	<-g.applyDone
	g.aux.Wait()
	err := g.r.stoppedErr()
	g.failPending(err)
	for {
		select {
		case p := <-g.propc:
			p.done <- result{err: err}
		default:
			return
		}
	}
}

// loop is the group's protocol goroutine: it alone calls the core.
func (g *group) loop() {
	defer close(g.loopDone)
	defer func() {
		if g.writing {
			<-g.wrotec // the write must end before the DB closes
		}
		close(g.writec)
		<-g.writerDone
		for _, p := range g.queued {
			p.done <- result{err: g.r.stoppedErr()}
		}
		g.queued = nil
		if g.recv != nil {
			g.recv.w.Abort()
		}
	}()
	ticker := time.NewTicker(g.r.cfg.TickInterval)
	defer ticker.Stop()
	g.lastTick = time.Now()
	g.publish()
	for {
		// Past maxQueued proposals waiting for the window, leave the rest
		// in propc: Propose then blocks (with its ctx), which is the
		// backpressure.
		// While a write is in flight or the leader holds, proposals wait in
		// propc's buffer: they go into the next batch anyway, and taking
		// them one by one would wake the loop once per proposal. The
		// exception is a leader with few commands in flight, which
		// pipelines (see pipelining).
		propc := g.propc
		if len(g.queued) >= g.maxQueued() || g.holding || g.writing && !g.pipelining() {
			propc = nil
		}
		// Events (Compact, RestoreSnapshot) run between Advance and the
		// next Ready; wrotec is live only while a write is in flight.
		eventc, wrotec := g.eventc, g.wrotec
		if g.writing {
			eventc = nil
		} else {
			wrotec = nil
		}
		var holdc <-chan time.Time
		if g.holding {
			holdc = g.holdTimer.C
		}
		select {
		case <-g.r.stop:
			return
		case <-g.r.fatalC:
			return
		case now := <-ticker.C:
			g.tickTo(now)
		case in := <-g.inbox:
			g.handle(in)
			g.drainInbox()
		case p := <-propc:
			g.queued = append(g.queued, p)
		case f := <-g.reqc:
			f()
		case <-eventc:
			g.runEvents()
		case err := <-wrotec:
			if !g.finishReady(err) {
				return
			}
		case <-holdc:
			g.holding = false
		}
		if !g.pump() {
			return
		}
		g.publish()
	}
}

// pump hands queued proposals to the core and runs Readies until one leaves
// a write in flight or none is left; while a write is in flight it hands
// what became chosen meanwhile to the apply goroutine. It returns false
// after a fatal error or once the replica stops.
func (g *group) pump() bool {
	g.drainProposals()
	if g.writing {
		// Proposals wait in g.queued for the next Ready, which packs
		// everything that arrived during this write into one batch,
		// unless the leader pipelines them.
		if len(g.queued) > 0 && g.pipelining() {
			b := g.stats.batches.Load()
			g.proposeQueued()
			g.stats.pipelined.Add(g.stats.batches.Load() - b)
			for _, m := range g.node.Accepts() {
				g.send(&m)
			}
		}
		// A leader's heartbeats do not wait for its write: one that
		// stalls (a slow disk) would otherwise cost it its lease and its
		// leadership while its followers can still choose values
		// (TestSlowDisk).
		for _, m := range g.node.Heartbeats() {
			g.send(&m)
		}
		if ents := g.node.NewlyChosen(); len(ents) > 0 {
			return g.toApply(ents)
		}
		return true
	}
	g.proposeUnlessHeld()
	g.nudge()
	for !g.writing && g.node.HasReady() {
		select {
		case <-g.eventc: // due between Advance and Ready, not after
			g.runEvents()
		default:
		}
		if !g.startReady() {
			return false
		}
		g.drainProposals()
		if !g.writing {
			g.proposeUnlessHeld()
		}
	}
	return true
}

// pipeMax is the number of commands in flight below which a leader whose
// write is in flight proposes new commands at once (see pipelining).
const pipeMax = 8

// pipelining reports whether the leader proposes the commands that arrive
// while its write is in flight at once, sending their Accepts (paxos
// Node.Accepts) instead of holding them until the write ends: it does while
// fewer than pipeMax commands are in flight. Then the followers start
// syncing them at once (each behind its own write in flight) and, with their
// acks, can choose them without the leader's own write; a lock handoff, two
// commands arriving about together, no longer waits for a whole extra round.
// With more in flight the next batch gathers them as before: the disk is the
// bottleneck then, and a wake-up and an instance per arrival would only cost
// CPU and messages.
func (g *group) pipelining() bool {
	return g.role == paxos.Leader && g.pendingCmds() < pipeMax
}

// Bounds of the leader's hold on new proposals after its own write.
const (
	minHold = 50 * time.Microsecond
	maxHold = time.Millisecond
)

// hold starts the leader's short hold on new proposals after it synced
// entries it proposed, which took d: until every proposed entry is chosen
// (the followers got them before our write began and are syncing them too,
// so their acks are due about now) or about one write's duration passed.
// Meanwhile proposals queue up and go out as one batch, so the cell does
// fewer, larger writes; without the hold a fast disk would see one write
// per proposal. The loop keeps stepping messages during the hold.
func (g *group) hold(d time.Duration) {
	d = min(max(d, minHold), maxHold)
	if g.holdTimer == nil {
		g.holdTimer = time.NewTimer(d)
	} else {
		g.holdTimer.Reset(d)
	}
	g.holding = true
}

// proposeUnlessHeld hands queued proposals to the core unless the leader's
// hold is on. The hold ends early once nothing it proposed awaits acks, or
// once as many proposals wait as are in flight: waiting longer would not
// grow the batch (on a slow disk the proposers of the previous batch are
// all back by the time the write ends) and would only leave the disk idle.
func (g *group) proposeUnlessHeld() {
	if g.holding && g.node.Status().InFlight > 0 && len(g.queued)+len(g.propc) < g.pendingCmds() {
		return
	}
	if g.holding {
		g.holding = false
		g.holdTimer.Stop()
	}
	g.proposeQueued()
}

// toApply hands chosen entries to the apply goroutine.
func (g *group) toApply(ents []paxos.Entry) bool {
	select {
	case g.applyc <- applyItem{entries: ents}:
		return true
	case <-g.r.stop:
		return false
	case <-g.r.fatalC:
		return false
	}
}

// tickTo delivers every tick due by now. Ticks are counted by elapsed
// monotonic time, not by ticker wake-ups, so a stalled process (GC, a
// paused VM, an overloaded machine) sees its lease and timers run out by the
// time it next looks at them.
func (g *group) tickTo(now time.Time) {
	tick := g.r.cfg.TickInterval
	n := int(now.Sub(g.lastTick) / tick)
	if n <= 0 {
		return
	}
	g.lastTick = g.lastTick.Add(time.Duration(n) * tick)
	// Past a few leases more ticks change nothing but the time spent.
	n = min(n, 4*(g.r.cfg.ticks(g.r.cfg.LeaseDuration)+g.r.cfg.ticks(g.r.cfg.ElectionTimeout)))
	for range n {
		g.node.Tick()
	}
}

// drainInbox handles up to drainBurst more waiting peer messages.
func (g *group) drainInbox() {
	for range drainBurst {
		select {
		case in := <-g.inbox:
			g.handle(in)
		default:
			return
		}
	}
}

// publish makes the core's role visible to other goroutines.
func (g *group) publish() {
	g.leader.Store(g.node.Leader())
	g.isLeader.Store(g.role == paxos.Leader)
	g.publishLease()
}

// publishLease publishes the lease read the core allows now. The core counts
// the lease in ticks from the current one, which began at g.lastTick, so the
// lease ends at lastTick + ticks·TickInterval: the same moment tickTo and
// LeaseValid would find it over. The end is cleared first and set last, so
// a reader that sees an end sees the read index published with it.
func (g *group) publishLease() {
	inst, ticks := g.node.LeaseRead()
	if ticks == 0 || g.role != paxos.Leader {
		g.leaseEnd.Store(0)
		return
	}
	end := g.lastTick.Add(time.Duration(ticks) * g.r.cfg.TickInterval)
	g.leaseEnd.Store(0)
	g.readIndex.Store(inst)
	g.leaseEnd.Store(max(int64(end.Sub(g.epoch)), 1))
}

// leaseRead reports whether a read of the local state machine, made after
// this call returns true and within the caller's request, is linearizable
// without a barrier round: the lease the loop last published still holds
// now, and the state machine has applied the read index published with it.
// Safe for concurrent use; it never waits.
//
// Why it is enough: while this replica's lease holds, no other replica can
// get a value chosen (acceptors refuse other ballots during a lease they
// granted, drift margin included), so every write acknowledged before now
// was chosen at or below the read index (writes of earlier leaders sit
// below this leader's Phase 1 no-op, which the read index covers) or was
// proposed here and acknowledged only after it was applied here.
func (g *group) leaseRead() bool {
	end := g.leaseEnd.Load()
	if end == 0 || g.applier.appliedIndex() < g.readIndex.Load() {
		return false
	}
	return int64(time.Since(g.epoch)) < end
}

func (g *group) handle(in inbound) {
	switch in.kind {
	case kindPaxos:
		if err := g.node.Step(in.msg); err != nil {
			g.stats.dropped.Add(1)
			g.log.Debug("core refused a message", "from", in.from, "type", in.msg.Type, "err", err)
		}
	case kindSnapChunk:
		g.receiveChunk(in.from, in.chunk)
	case kindSnapAck:
		if ch, ok := g.transfers[in.from]; ok {
			select {
			case ch <- *in.ack:
			default:
			}
		}
	}
}

// maxQueued bounds the proposals the loop holds while the window is full:
// enough for a full window of full batches.
func (g *group) maxQueued() int {
	return max(propLen, g.r.cfg.Window*g.r.cfg.MaxBatchCommands)
}

// drainProposals moves waiting proposals into g.queued, up to maxQueued.
func (g *group) drainProposals() {
	for len(g.queued) < g.maxQueued() {
		select {
		case p := <-g.propc:
			g.queued = append(g.queued, p)
		default:
			return
		}
	}
}

// proposeQueued packs queued proposals into batches and hands them to the
// core while its window has room.
func (g *group) proposeQueued() {
	for len(g.queued) > 0 {
		if g.role != paxos.Leader {
			err := g.notLeader()
			for _, p := range g.queued {
				p.done <- result{err: err}
			}
			g.queued = g.queued[:0]
			return
		}
		n, size := 0, batchHeaderMax
		g.cmds = g.cmds[:0]
		for n < len(g.queued) {
			p := g.queued[n]
			if !p.read {
				s := batchSize(p.cmd)
				if len(g.cmds) > 0 && (len(g.cmds) >= g.r.cfg.MaxBatchCommands || size+s > g.r.cfg.MaxBatchBytes) {
					break
				}
				size += s
				g.cmds = append(g.cmds, p.cmd)
			}
			n++
		}
		g.nextBatch++
		id := g.nextBatch
		value := appendBatch(make([]byte, 0, size), g.r.cfg.ID, id, g.cmds)
		props := make([]*proposal, n)
		copy(props, g.queued[:n])
		g.pendMu.Lock()
		g.pending[id] = &pendingBatch{props: props}
		g.pendCmds += len(props)
		g.pendMu.Unlock()
		if _, err := g.node.Propose(value); err != nil {
			g.pendMu.Lock()
			delete(g.pending, id)
			g.pendCmds -= len(props)
			g.pendMu.Unlock()
			if errors.Is(err, paxos.ErrWindowFull) {
				return // retry once the window moves
			}
			if !errors.Is(err, paxos.ErrNotLeader) {
				g.log.Error("core refused a proposal", "err", err)
			}
			err = g.proposeErr(err)
			for _, p := range props {
				p.done <- result{err: err}
			}
		} else {
			g.stats.observeBatch(len(g.cmds))
		}
		clear(g.queued[:n])
		g.queued = g.queued[n:]
	}
	if len(g.queued) == 0 && cap(g.queued) > 4*propLen {
		g.queued = nil // drop a buffer grown by a burst
	}
}

func (g *group) proposeErr(err error) error {
	if errors.Is(err, paxos.ErrNotLeader) {
		return g.notLeader()
	}
	return fmt.Errorf("replica: group %d: %w", g.id, err)
}

func (g *group) notLeader() error {
	l := g.node.Leader()
	if l == g.r.cfg.ID {
		l = 0 // candidate or not yet in Phase 2
	}
	return &NotLeaderError{Group: g.id, Leader: l, Addr: g.r.peerAddr(l)}
}

// startReady runs steps 1-5 of the driver loop in paxos/doc.go, or, when
// the Ready needs a synced write, steps 1 to 2 and hands the write to the
// writer goroutine: finishReady does the rest once it is durable. It
// returns false after a fatal error or once the replica stops.
func (g *group) startReady() bool {
	rd, err := g.node.Ready()
	if err != nil {
		g.r.fatal(fmt.Errorf("group %d: core Ready: %w", g.id, err))
		return false
	}
	// 3a. Messages that reveal no acceptor state go out now, before the
	// Ready's write is durable (paxos doc.go, step 3): this is how a
	// leader's Accepts reach the followers while its own write is in flight.
	for i := range rd.Messages {
		if rd.Messages[i].Type.SendBeforeSync() {
			g.send(&rd.Messages[i])
		}
	}
	// The first Ready after a Resign carries its messages: they are out.
	for _, ch := range g.resignSent {
		close(ch)
	}
	g.resignSent = nil
	// 4a. Hand the chosen entries to the apply goroutine now, before the
	// write: a chosen value is durable on a majority already (the leader
	// counts its own acceptance only after its sync), and the paxos doc
	// allows applying a chosen value before its chosen mark is durable. The
	// state machine is rebuilt from snapshot and log on restart, so
	// applying early never exposes anything a crash could take back, and it
	// saves the proposer waiting for this Ready's fsync.
	if len(rd.Chosen) > 0 && !g.toApply(slices.Clone(rd.Chosen)) {
		return false
	}
	// 2. One write, synced when it carries a promise or accepted values.
	// A synced write goes to the writer goroutine: meanwhile the loop keeps
	// stepping messages (the followers' acks among them), queues proposals
	// for the next Ready and applies what becomes chosen (pump).
	u := logdb.Update{Entries: rd.Accepted, Chosen: rd.ChosenMark, Rebuilt: rd.Rebuilt}
	if rd.Promised != nil {
		u.Promised = *rd.Promised
	}
	g.rd = rd
	if rd.MustSync {
		g.writing, g.writeStart = true, time.Now()
		if g.holding {
			// Entries proposed during the previous write go out now; what
			// arrives meanwhile joins the batch after this write anyway.
			g.holding = false
			g.holdTimer.Stop()
		}
		select {
		case g.writec <- writeJob{u: u, msgs: rd.Messages}:
			return true
		case <-g.r.stop:
		case <-g.r.fatalC:
		}
		g.writing = false
		return false
	}
	if !u.IsEmpty() {
		// A chosen mark alone: no sync, cheap enough for the loop.
		if err := g.ldb.Write(u); err != nil {
			g.r.fatal(fmt.Errorf("group %d: %w", g.id, err))
			return false
		}
		g.stats.writes.Add(1)
	}
	return g.finishReady(nil)
}

// finishReady runs steps 3b to 5 of the driver loop once the Ready's write
// returned err. It returns false after a fatal error.
func (g *group) finishReady(err error) bool {
	rd := g.rd
	g.rd = paxos.Ready{}
	if g.writing {
		// The writer sent the rest of the messages (3b).
		g.writing = false
		if err != nil {
			g.r.fatal(fmt.Errorf("group %d: %w", g.id, err))
			return false
		}
		g.stats.writes.Add(1)
		g.stats.syncs.Add(1)
		if rd.Role == paxos.Leader && len(rd.Accepted) > 0 {
			g.hold(time.Since(g.writeStart))
		}
	} else {
		// 3b. The rest, now that the state they reveal is durable.
		g.sendLate(rd.Messages)
	}
	// Role changes: a replica that stops leading fails what it was waiting
	// for; the outcome of batches already handed to the core is unknown.
	if rd.Role != g.role || rd.Leader != g.knownLeader || (rd.Role == paxos.Leader && rd.Ballot != g.ballot) {
		g.log.Info("role changed", "role", rd.Role, "leader", rd.Leader, "ballot", rd.Ballot)
		if g.role == paxos.Leader && (rd.Role != paxos.Leader || rd.Ballot != g.ballot) {
			g.failPending(fmt.Errorf("%w (group %d)", ErrLeadershipLost, g.id))
		}
		g.role, g.knownLeader, g.ballot = rd.Role, rd.Leader, rd.Ballot
		g.publish()
		if f := g.r.cfg.OnRoleChange; f != nil {
			f(RoleChange{Group: g.id, Role: rd.Role, Leader: rd.Leader, Ballot: rd.Ballot})
		}
	}
	if rd.Removed && !g.removed {
		g.removed = true
		g.log.Warn("removed from the cell: no longer a voter or learner of this group")
		g.r.groupRemoved(g)
	}
	if rd.Rebuilt {
		g.rebuilding = false // durable now: the write above carried it
		g.log.Info("rebuilt: the lost state is fenced and learned again; voting")
	}
	// 4. Start snapshot transfers (applying was handed off above).
	for _, peer := range rd.Snapshots {
		g.startTransfer(peer)
	}
	// 5.
	if err := g.node.Advance(); err != nil {
		g.r.fatal(fmt.Errorf("group %d: core Advance: %w", g.id, err))
		return false
	}
	return true
}

// sendLate sends the messages of msgs that reveal acceptor state (step 3b:
// only once the Ready's write is durable).
func (g *group) sendLate(msgs []paxos.Message) {
	for i := range msgs {
		if !msgs[i].Type.SendBeforeSync() {
			g.send(&msgs[i])
		}
	}
}

func (g *group) send(m *paxos.Message) {
	payload, err := encodeMessage(m)
	if err != nil {
		g.log.Error("cannot encode a peer message", "type", m.Type, "err", err)
		return
	}
	g.sendPayload(m.To, payload)
}

func (g *group) sendPayload(to uint64, payload []byte) {
	if err := g.r.link.Send(to, g.id, payload); err != nil {
		g.stats.sendErrors.Add(1)
	}
}

// failPending fails every batch this replica is waiting on.
func (g *group) failPending(err error) {
	g.pendMu.Lock()
	pend := g.pending
	g.pending = make(map[uint64]*pendingBatch)
	g.pendCmds = 0
	g.pendMu.Unlock()
	for _, pb := range pend {
		for _, p := range pb.props {
			p.done <- result{err: err}
		}
	}
}

// pendingCmds is the number of proposals in this replica's pending batches.
func (g *group) pendingCmds() int {
	g.pendMu.Lock()
	defer g.pendMu.Unlock()
	return g.pendCmds
}

// takePending removes and returns this replica's pending batch id, if any.
func (g *group) takePending(id uint64) *pendingBatch {
	g.pendMu.Lock()
	defer g.pendMu.Unlock()
	pb := g.pending[id]
	if pb != nil {
		delete(g.pending, id)
		g.pendCmds -= len(pb.props)
	}
	return pb
}

// propose hands cmd (or a read marker) to the loop and waits for the result.
func (g *group) propose(ctx context.Context, cmd []byte, read bool) ([]byte, error) {
	if !g.isLeader.Load() {
		l := g.leader.Load()
		if l == g.r.cfg.ID {
			l = 0
		}
		return nil, &NotLeaderError{Group: g.id, Leader: l, Addr: g.r.peerAddr(l)}
	}
	p := &proposal{cmd: cmd, read: read, done: make(chan result, 1)}
	select {
	case g.propc <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.r.stop:
		return nil, g.r.stoppedErr()
	case <-g.r.fatalC:
		return nil, g.r.stoppedErr()
	}
	if !read {
		g.stats.proposals.Add(1)
	}
	select {
	case res := <-p.done:
		return res.val, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.r.done:
		return nil, g.r.stoppedErr()
	}
}

// readBarrier implements Replica.ReadBarrier.
func (g *group) readBarrier(ctx context.Context) error {
	if g.leaseRead() {
		return nil
	}
	type answer struct {
		instance uint64
		lease    bool
		err      error
	}
	ch := make(chan answer, 1)
	ask := func() {
		g.tickTo(time.Now()) // the lease is judged on the time now
		if g.role != paxos.Leader {
			ch <- answer{err: g.notLeader()}
			return
		}
		inst, ok := g.node.ReadBarrier()
		ch <- answer{instance: inst, lease: ok}
	}
	a, err := askLoop(ctx, g, ask, ch)
	if err != nil {
		return err
	}
	if a.err != nil {
		return a.err
	}
	if a.lease {
		if err := g.applier.waitApplied(ctx, a.instance, g.r.done); err != nil {
			return err
		}
		// The lease must still hold now that the state caught up.
		check := func() {
			g.tickTo(time.Now())
			ch <- answer{lease: g.node.LeaseValid()}
		}
		a, err := askLoop(ctx, g, check, ch)
		if err != nil {
			return err
		}
		if a.lease {
			return nil
		}
	}
	// No lease (or it ran out while we waited): go through the log.
	_, err = g.propose(ctx, nil, true)
	return err
}

// askLoop runs f on the loop goroutine and waits for the answer it sends.
func askLoop[T any](ctx context.Context, g *group, f func(), ch <-chan T) (T, error) {
	var zero T
	if err := g.onLoop(ctx, f); err != nil {
		return zero, err
	}
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// onLoop runs f on the loop goroutine.
func (g *group) onLoop(ctx context.Context, f func()) error {
	select {
	case g.reqc <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.r.stop:
		return g.r.stoppedErr()
	case <-g.r.fatalC:
		return g.r.stoppedErr()
	}
}

// peerStatus converts the core's view of the followers.
func (g *group) peerStatus(ps []paxos.PeerStatus) []PeerStatus {
	var out []PeerStatus
	for _, p := range ps {
		st := PeerStatus{ID: p.ID, Chosen: max(p.Commit, 1) - 1, LastAck: -1}
		if p.Acked {
			st.LastAck = time.Duration(p.AckAgo) * g.r.cfg.TickInterval
		}
		out = append(out, st)
	}
	return out
}

// status implements Replica.Status.
func (g *group) status(ctx context.Context) (Status, error) {
	type loopStatus struct {
		paxos.Status
		rebuilding bool
	}
	ch := make(chan loopStatus, 1)
	ps, err := askLoop(ctx, g, func() { ch <- loopStatus{g.node.Status(), g.rebuilding} }, ch)
	if err != nil {
		return Status{}, err
	}
	snap, _ := g.ldb.Snapshot() // zero if none
	var members paxos.Members
	if m := g.members.Load(); m != nil {
		members = m.Clone()
	}
	return Status{
		Group: g.id, ID: ps.ID, Role: ps.Role, Leader: ps.Leader, Ballot: ps.Ballot,
		Promised: ps.Promised, LeaseValid: ps.LeaseValid,
		Chosen:  max(ps.Commit, 1) - 1,
		Applied: g.applier.appliedIndex(), Snapshot: snap.Instance, SnapshotBytes: snap.Size,
		InFlight: ps.InFlight, Rebuilding: ps.rebuilding, Stats: g.stats.snapshot(),
		Peers: g.peerStatus(ps.Peers), Members: members,
	}, nil
}
