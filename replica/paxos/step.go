package paxos

import "fmt"

// Step feeds one received message to the core. It fails with
// ErrInvalidMessage (and changes nothing) for a message that is not for this
// replica, comes from a non-member or is malformed.
func (n *Node) Step(m Message) error {
	if err := n.validate(m); err != nil {
		return err
	}
	n.observe(m.Ballot)
	n.heardAt[n.pos(m.From)] = max(n.now, 1)
	// The handlers index the sender's position: a member set learned
	// meanwhile must not give it to another id (pos).
	n.stepFrom = m.From
	defer func() { n.stepFrom = 0 }()
	switch m.Type {
	case MsgPrepare:
		n.onPrepare(m)
	case MsgPromise:
		n.onPromise(m)
	case MsgAccept:
		n.onAccept(m)
	case MsgHeartbeat:
		n.onHeartbeat(m)
	case MsgAccepted, MsgHeartbeatAck:
		n.onAck(m)
	case MsgReject:
		n.onReject(m)
	case MsgCatchUp:
		n.onCatchUp(m)
	case MsgChosen:
		n.onChosen(m)
	case MsgResign:
		n.onResign(m)
	case MsgRebuild:
		n.onRebuild(m)
	case MsgFenced:
		n.onFenced(m)
	}
	n.maybeRebuilt()
	n.maybeRejoin()
	n.pad()
	return nil
}

func (n *Node) validate(m Message) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %v from %d: "+format, append([]any{ErrInvalidMessage, m.Type, m.From}, args...)...)
	}
	switch {
	case !m.Type.Valid():
		return bad("unknown type")
	case m.To != n.cfg.ID:
		return bad("addressed to %d, not %d", m.To, n.cfg.ID)
	case m.From == 0 || m.From == n.cfg.ID:
		return bad("sender is not a peer")
	case n.members.IsRetired(m.From):
		// Ids not known are taken: a replica that lags behind does not
		// know the members added since, and must learn from them.
		return bad("sender was removed from the cell")
	case n.peerIndex(m.From) < 0 && !n.room():
		return bad("no position left for sender")
	case (m.Type == MsgPrepare || m.Type == MsgAccept || m.Type == MsgHeartbeat || m.Type == MsgResign || m.Type == MsgFenced) &&
		m.Ballot.ID != m.From:
		return bad("ballot %v not owned by the sender", m.Ballot)
	case (m.Type == MsgRebuild || m.Type == MsgFenced) && m.Lease == 0:
		return bad("no rebuild nonce")
	case m.Type == MsgResign && m.Last == m.From:
		return bad("successor %d is the sender", m.Last)
	case m.Type == MsgAccepted && m.Last < m.Instance:
		return bad("range %d..%d", m.Instance, m.Last)
	case (m.Type == MsgPrepare || m.Type == MsgPromise) && m.Last != 0 && m.Last < m.Instance:
		return bad("reports from %d, below %d", m.Last, m.Instance)
	}
	for _, e := range m.Entries {
		switch {
		case e.Instance == 0:
			return bad("entry for instance 0")
		case e.Noop && len(e.Value) > 0:
			return bad("no-op entry %d with a value", e.Instance)
		case !e.Noop && len(e.Value) == 0:
			return bad("entry %d without a value", e.Instance)
		case e.Noop && e.Conf:
			return bad("no-op entry %d marked as a member change", e.Instance)
		case m.Type == MsgAccept && e.Ballot != m.Ballot:
			return bad("entry %d ballot %v in an Accept of %v", e.Instance, e.Ballot, m.Ballot)
		}
	}
	return nil
}

// inLease reports whether this acceptor granted a lease that forbids
// promising to from.
func (n *Node) inLease(from uint64) bool {
	return n.now < n.grantUntil && n.grantTo != from
}

func (n *Node) reject(m Message) {
	n.send(Message{Type: MsgReject, To: m.From, Ballot: n.promised, Instance: m.Instance, Commit: n.commit})
}

// onPrepare is the acceptor's Phase 1b: promise never to accept a lower
// ballot, and report every entry at or above the proposer's first unchosen
// instance. A Prepare whose Last is above its Instance asks for the rest of
// a report that did not fit in one Promise.
func (n *Node) onPrepare(m Message) {
	if n.rebuild != 0 || n.members.member(m.From) == nil {
		// Rebuilding: no vote. A candidate this replica does not know
		// as a member: it lags behind (the candidate was added since);
		// it learns, and promises once it knows the candidate.
		n.noteCommit(m.From, m.Commit) // no vote; only learn
		return
	}
	if m.Last > m.Instance {
		n.onPrepareRest(m)
		return
	}
	n.promisedAbove(m.From, m.Ballot) // its own acceptor promised it
	if m.Ballot.Less(n.promised) || n.inLease(m.From) {
		n.reject(m)
		return
	}
	n.promise(m.Ballot)
	if n.role != Follower {
		n.logger.Info("paxos preempted by prepare", "ballot", n.ballot, "by", m.Ballot)
	}
	n.stepDown(0)
	n.holdFor(m.From)
	n.sendPromise(m, m.Instance)
	n.noteCommit(m.From, m.Commit)
}

// holdFor grants the candidate this acceptor just promised a lease of two
// heartbeats (time for its Phase 1 to end and its first Accept to arrive):
// Prepares from anyone else are refused until then, or until the
// candidate's first Accept or Heartbeat turns it into the leader's lease.
// Without it a new leader's promisers could promise a higher ballot before
// its first Accept reached them, and a leader deposed that way, which had
// to assume its followers still refused everyone else (onReject), took the
// leadership back at once, deposing its preemptor in turn: two replicas
// took turns leading, five ballots in 250 ms at start-up under load (the
// simulation's churn check). The price: a candidate that loses (a higher
// ballot came, a split vote) keeps its promisers from promising another
// for two heartbeats. An election timeout was too long: with candidates
// campaigning about once an election timeout, each preempting the last,
// the promisers were always held for a candidate that had given up (no
// leader for 3 s, n=5 seed 1176).
func (n *Node) holdFor(id uint64) {
	if n.cfg.LeaseTicks == 0 || n.bugs.noHold {
		return
	}
	until := n.now + uint64(2*n.cfg.HeartbeatTicks) + 1
	if n.grantTo == id {
		until = max(until, n.grantUntil)
	}
	n.grantTo, n.grantUntil = id, until
}

// onPrepareRest answers a candidate that asks for the rest of this
// acceptor's report, from m.Last on. Only while the promise is still
// exactly that ballot: then no record below it changed since the first part
// was reported (the promise forbids accepting below it, and nothing at or
// above it was accepted yet), except chosen values learned, which are
// reported as such. A candidate still collecting reports is making progress,
// so this acceptor does not campaign over it meanwhile.
func (n *Node) onPrepareRest(m Message) {
	if m.Ballot != n.promised {
		if m.Ballot.Less(n.promised) {
			n.reject(m)
		}
		return
	}
	n.electionElapsed = 0
	n.sendPromise(m, m.Last)
	n.noteCommit(m.From, m.Commit)
}

// sendPromise reports to the candidate of m every record at or above from.
// If the candidate splits reports (m.Last set) and they exceed
// MaxMessageBytes, the Promise carries the records up to that size (at
// least one) and sets Last to the last instance it covers; Last 0 says the
// report is complete.
func (n *Node) sendPromise(m Message, from uint64) {
	start := len(n.cur.arena)
	size, last := 0, uint64(0)
	for j := max(from, n.base); j < n.base+uint64(len(n.log)); j++ {
		s := n.get(j)
		if !s.has {
			continue
		}
		if m.Last != 0 && len(n.cur.arena) > start &&
			(n.bugs.onePerPromise || size+entryOverhead+len(s.e.Value) > n.cfg.MaxMessageBytes) {
			last = j - 1
			break
		}
		n.cur.arena = append(n.cur.arena, s.e)
		size += entryOverhead + len(s.e.Value)
	}
	es := n.cur.arena[start:len(n.cur.arena):len(n.cur.arena)]
	n.send(Message{Type: MsgPromise, To: m.From, Ballot: m.Ballot, Instance: m.Instance, Last: last,
		Commit: n.commit, Snapshot: n.snapshot, Entries: es, Lease: m.Lease})
}

func (n *Node) onPromise(m Message) {
	if m.Lease != n.cfg.Incarnation {
		return // made to an earlier start of this replica (Config.Incarnation)
	}
	bit := uint64(1) << uint(n.peerIndex(m.From))
	if n.role == Leader && m.Ballot == n.ballot && m.Instance == n.p1from {
		// A late promise: Phase 1 is over (a majority's reports were
		// merged), but it still fences lower ballots for a rebuild.
		n.p1votes |= bit
		return
	}
	if n.role != Candidate || m.Ballot != n.ballot || m.Instance != n.p1from {
		return
	}
	if n.p1full&bit != 0 {
		return
	}
	if n.beyondPhase1(m) {
		// This Phase 1 cannot hold what the promiser reports (it would
		// drop values that may be chosen): catch up first, and let a
		// replica that is not so far behind lead meanwhile.
		n.logger.Info("paxos gives up phase 1: too far behind to lead", "ballot", n.ballot, "from", n.p1from, "promiser_commit", m.Commit)
		// If it led lately, its followers may still grant it the lease
		// and refuse everyone else: it campaigns again once caught up
		// (maybeRejoin).
		rejoin := n.selfGranted()
		n.stepDown(0)
		n.rejoin = rejoin
		n.noteCommit(m.From, m.Commit)
		return
	}
	n.p1votes |= bit
	for _, e := range m.Entries {
		chosen := e.Instance < m.Commit
		n.mergePromised(e, chosen)
		if chosen {
			n.learn(e)
		}
	}
	if m.Commit > n.p1commit {
		n.p1commit, n.p1ahead = m.Commit, m.From
	}
	// Every part answers a request for the records from p1from, or from
	// one past what the earlier parts covered: so the report now covers
	// p1from..Last (or everything, Last 0).
	i := n.peerIndex(m.From)
	switch {
	case m.Last == 0 || n.bugs.partialIsFull:
		n.p1full |= bit
	case m.Last > n.p1through[i]:
		n.p1through[i] = m.Last
		n.electionElapsed = 0 // progress: this Phase 1 is not stuck
		n.askRestOfPromise(i, m.From)
	}
	n.advanceCommit()
	n.noteCommit(m.From, m.Commit)
	n.maybeWinPhase1()
}

// beyondPhase1 reports whether a Promise reaches maxAhead or more past the
// candidate's first unchosen instance, with its first unchosen instance or
// with a reported record: a Phase 1 tracks (and a leader's log holds) only
// maxAhead instances from there, so it would drop such a record.
func (n *Node) beyondPhase1(m Message) bool {
	if n.bugs.leadFarBehind {
		return false
	}
	if m.Commit > n.p1from && m.Commit-n.p1from >= n.g() {
		return true
	}
	for _, e := range m.Entries {
		if e.Instance >= n.p1from && e.Instance-n.p1from >= n.g() {
			return true
		}
	}
	return false
}

// follow handles the part common to Accept and Heartbeat from a leader of
// ballot m.Ballot >= promised: promise it, follow it, grant it the lease.
func (n *Node) follow(m Message) {
	n.promise(m.Ballot)
	n.retakeAt = 0
	if n.role != Follower || n.leader != m.Ballot.ID {
		n.stepDown(m.Ballot.ID)
	}
	n.electionElapsed = 0
	if n.cfg.LeaseTicks > 0 {
		n.grantTo, n.grantUntil = m.From, n.now+uint64(n.cfg.LeaseTicks)+1
	}
}

// admitLeader decides whether an Accept or Heartbeat is taken: a ballot
// below the promise is refused; at or above it, the sender is followed.
func (n *Node) admitLeader(m Message) bool {
	if m.Ballot.Less(n.promised) {
		if !n.bugs.ignoreLowerBallot {
			n.reject(m)
			return false
		}
		return true
	}
	n.follow(m)
	return true
}

func (n *Node) onAccept(m Message) {
	if n.rebuild != 0 {
		n.rebuildFollow(m)
		return
	}
	if !n.admitLeader(m) {
		return
	}
	var lo, hi uint64 // current run of acknowledged instances
	flush := func() {
		if lo != 0 {
			n.send(Message{Type: MsgAccepted, To: m.From, Ballot: m.Ballot, Instance: lo, Last: hi, Lease: m.Lease, Commit: n.commit})
		}
		lo, hi = 0, 0
	}
	for _, e := range m.Entries {
		if !n.accept(e) {
			flush()
			continue
		}
		if lo != 0 && e.Instance != hi+1 {
			flush()
		}
		if lo == 0 {
			lo = e.Instance
		}
		hi = e.Instance
	}
	flush()
	n.learnCommit(m)
}

// accept records e (Phase 2b) and reports whether this replica may
// acknowledge it.
func (n *Node) accept(e Entry) bool {
	if e.Instance <= n.snapshot || n.tooFarAhead(e.Instance) {
		return false
	}
	s := n.slot(e.Instance)
	switch {
	case s.chosen:
		// Only an identical value may be acknowledged (a different one
		// means the sender is a stale leader), and only once it is
		// durable under the new ballot: an acknowledgement always
		// describes the disk.
		if !sameValue(s.e, e) {
			return false
		}
		if s.e.Ballot.Less(e.Ballot) {
			n.record(s, e)
		}
		return true
	case s.has && s.e.Ballot == e.Ballot:
		return true // duplicate; the reply still follows its persistence
	}
	n.record(s, e)
	return true
}

// tooFarAhead reports whether instance i is maxAhead or more past this
// replica's first unchosen instance: it neither accepts nor learns it (a
// peer that far ahead is caught up with, not mirrored). Measured from the
// first unchosen instance, not from the log's base: a replica that keeps
// many chosen instances uncompacted must still accept the next ones.
func (n *Node) tooFarAhead(i uint64) bool { return i >= n.commit && i-n.commit >= n.g() }

// learnCommit marks chosen the instances below the leader's first unchosen
// one that this replica accepted under the leader's ballot, and asks for
// the others.
func (n *Node) learnCommit(m Message) {
	if m.Ballot != n.promised {
		return
	}
	top := min(m.Commit, n.base+uint64(len(n.log)))
	for j := n.commit; j < top; j++ {
		if s := n.get(j); s != nil && s.has && s.e.Ballot == m.Ballot {
			s.chosen = true
		}
	}
	n.advanceCommit()
	n.noteCommit(m.From, m.Commit)
}

// noteCommit records that peer from knows everything below commit is
// chosen, and asks it for what this replica is missing.
func (n *Node) noteCommit(from, commit uint64) {
	n.peerKnows[n.peerIndex(from)] = commit
	if commit <= n.commit {
		return
	}
	if commit > n.knownCommit {
		n.knownCommit = commit
	}
	n.catchUpPeer = from
	if !n.catchUpSent || n.now-n.catchUpAt >= uint64(n.cfg.HeartbeatTicks) {
		n.requestCatchUp(from)
	}
}

func (n *Node) requestCatchUp(from uint64) {
	n.catchUpSent, n.catchUpAt = true, n.now
	inst := n.commit
	if n.noMembers {
		inst = 0 // a joiner: only a snapshot brings the member set
	}
	n.send(Message{Type: MsgCatchUp, To: from, Instance: inst, Commit: n.commit})
}

func (n *Node) onHeartbeat(m Message) {
	if n.rebuild != 0 {
		n.rebuildFollow(m)
		n.send(Message{Type: MsgRebuild, To: m.From, Ballot: m.Ballot, Lease: n.rebuild, Commit: n.commit})
		return
	}
	if !n.admitLeader(m) {
		return
	}
	n.send(Message{Type: MsgHeartbeatAck, To: m.From, Ballot: m.Ballot, Lease: m.Lease, Commit: n.commit})
	n.learnCommit(m)
}

// onAck handles Accepted and HeartbeatAck at the leader.
func (n *Node) onAck(m Message) {
	n.noteCommit(m.From, m.Commit)
	if n.role != Leader || m.Ballot != n.ballot {
		return
	}
	p := n.peerIndex(m.From)
	n.peerCommit[p] = max(n.peerCommit[p], m.Commit)
	n.peerAckAt[p] = max(n.now, 1)
	n.rebuildAt[p] = 0 // it votes (or, a learner, acknowledges) again
	if m.Lease <= n.leaseRound && m.Lease > n.peerRound[p] {
		n.peerRound[p] = m.Lease
		n.updateLease()
	}
	if m.Type != MsgAccepted {
		return
	}
	bit := uint64(1) << uint(p)
	for j := max(m.Instance, n.commit); j <= m.Last && j < n.next; j++ {
		if s := n.get(j); s != nil && s.has && s.e.Ballot == n.ballot {
			s.acks |= bit
			n.checkChosen(s)
		}
	}
	n.advanceCommit()
}

func (n *Node) onReject(m Message) {
	n.noteCommit(m.From, m.Commit)
	if n.role == Follower || !n.ballot.Less(m.Ballot) {
		n.promisedAbove(m.From, m.Ballot)
		return // stale, or a lease refusal: keep waiting for others
	}
	n.logger.Info("paxos preempted", "ballot", n.ballot, "by", m.Ballot)
	// Followers that took our Accepts or Heartbeats of the last lease
	// round may refuse every other candidate for a lease even when our
	// lease is not valid (yet): then nobody else can be elected before
	// those grants run out, and we take the leadership back with a higher
	// ballot. At once if a majority surely refuses the preemptor: our
	// lease holds, or we were elected within a heartbeat, so our Phase 1
	// promisers hold for us (holdFor) until our first Accepts make that
	// a lease. Otherwise only our own acceptor's grant to us says they
	// may (selfGranted), and the preemptor may well have won: then its
	// first Accept reaches us soon and we follow it, where taking the
	// leadership back at once would depose it, and it us in turn (the
	// simulation's churn check). So we wait (maybeRetake).
	sure := n.LeaseValid() || n.role == Leader && n.selfGranted() && n.now-n.leaderAt <= uint64(n.cfg.HeartbeatTicks)
	maybe := !sure && n.selfGranted()
	n.stepDown(0)
	switch {
	case sure || maybe && n.bugs.retakeAtOnce:
		n.campaign()
	case maybe:
		n.retakeAt, n.retakeOff = n.now+uint64(2*n.cfg.HeartbeatTicks)-1, 0
		n.promisedAbove(m.From, m.Ballot)
	}
}

// promisedAbove notes, while a retake is pending (maybeRetake), that peer
// from has promised ballot b (it sent a Reject of b, or a Prepare of b).
// Above our ballot, that peer grants us nothing: an acceptor promised above
// the ballot we led with takes none of its Accepts or Heartbeats, and it
// promised only once any grant to us had run out (or replaced it with the
// grant to a leader of a higher ballot). The retake rests on the followers'
// grants alone, so once the peers that may still grant us are fewer than a
// majority, it is dropped: the preemptor, or whoever campaigns next, can
// win, and we follow it or campaign on our election timer, as any follower
// does. Retaking anyway deposed a leader elected meanwhile, which took the
// leadership back at once: the old leader 1 of three, returning from a
// partition as it lost its majority, was refused by both followers for a
// candidate that had given up; a third candidate won 4 ms before the
// retake (the churn check, n=3 seed 2386 at 20 s, α 8).
func (n *Node) promisedAbove(from uint64, b Ballot) {
	if n.retakeAt == 0 || !n.ballot.Less(b) {
		return
	}
	i := n.peerIndex(from)
	if i < 0 {
		return
	}
	n.retakeOff |= 1 << uint(i)
	if may := ^n.retakeOff; !majority(may, n.vNow) && !majority(may, n.vPend) {
		n.logger.Info("paxos preempted: a majority promised higher ballots, so no retake", "ballot", n.ballot, "by", b)
		n.retakeAt = 0
	}
}

// maybeRetake campaigns again for a leader preempted while its own acceptor
// still granted it the lease (onReject), a tick short of two heartbeats
// later, unless it heard from a leader meanwhile: its followers may still
// refuse everyone else. Two heartbeats is what the simulation's
// abandoned-lease check allows such a wait; one was too short for a
// preemptor that was itself preempted by a third replica, which won:
// taking the leadership back just before that one's first Accept arrived
// made it run Phase 1 again (n=3 seed 2890).
func (n *Node) maybeRetake() {
	if n.retakeAt == 0 || n.now < n.retakeAt {
		return
	}
	n.retakeAt = 0
	if n.role == Follower && n.leader == 0 && n.selfGranted() && n.rebuild == 0 {
		n.logger.Info("paxos no leader two heartbeats after being preempted: campaigns again", "ballot", n.ballot)
		n.campaign()
	}
}

// onResign: the leader of m.Ballot gave up its leadership and its lease.
// Only a Resign of the ballot this replica is promised to counts (an older
// or duplicate one is ignored); then a grant made to that leader is
// released, since it will never claim the lease again, and the named
// successor campaigns at once. Everyone else keeps its election timer: if
// the successor fails, they campaign in turn, and their released grants let
// them promise to whoever does.
func (n *Node) onResign(m Message) {
	if m.Ballot != n.promised || n.rebuild != 0 {
		n.noteCommit(m.From, m.Commit)
		return
	}
	if n.grantTo == m.From {
		n.grantUntil = min(n.grantUntil, n.now)
	}
	if n.role == Follower && n.leader == m.From {
		n.setRole(Follower, 0)
	}
	n.learnCommit(m)
	if m.Last == n.cfg.ID && n.now >= n.grantUntil {
		n.logger.Info("paxos successor campaigns", "resigned", m.Ballot)
		n.campaign()
	}
}

// onCatchUp answers with chosen entries from m.Instance on, or asks the
// driver to send a snapshot when they are truncated.
func (n *Node) onCatchUp(m Message) {
	if m.Instance <= n.snapshot {
		p := n.peerIndex(m.From)
		bit := uint64(1) << uint(p)
		if n.snapSent&bit == 0 || n.now-n.snapSentAt[p] >= uint64(n.cfg.ElectionTicks) {
			n.snapSent |= bit
			n.snapSentAt[p] = n.now
			n.cur.snaps = append(n.cur.snaps, m.From)
		}
		n.send(Message{Type: MsgChosen, To: m.From, Commit: n.commit, Snapshot: n.snapshot})
		return
	}
	start := len(n.cur.arena)
	size := 0
	for j := m.Instance; j < n.commit; j++ {
		s := n.get(j)
		if s == nil || (size > 0 && size+len(s.e.Value) > n.cfg.MaxMessageBytes) {
			break
		}
		n.cur.arena = append(n.cur.arena, s.e)
		size += len(s.e.Value)
	}
	es := n.cur.arena[start:len(n.cur.arena):len(n.cur.arena)]
	n.send(Message{Type: MsgChosen, To: m.From, Instance: m.Instance, Commit: n.commit, Snapshot: n.snapshot, Entries: es})
}

func (n *Node) onChosen(m Message) {
	before := n.commit
	for _, e := range m.Entries {
		if e.Instance < m.Commit && !n.noMembers {
			n.learn(e)
		}
	}
	n.advanceCommit()
	if n.commit > before {
		n.catchUpSent = false // progress: ask for the next chunk at once
	}
	n.noteCommit(m.From, m.Commit)
}

// learn records that e's value is chosen for its instance.
func (n *Node) learn(e Entry) {
	if e.Instance < n.commit || e.Instance <= n.snapshot || n.tooFarAhead(e.Instance) {
		return
	}
	s := n.slot(e.Instance)
	if s.chosen {
		return
	}
	if s.has && sameValue(s.e, e) {
		s.chosen = true
		return
	}
	if n.role == Leader && (e.Instance >= n.next || s.has && s.e.Ballot == n.ballot) {
		// A value other than ours was chosen where we proposed: a higher
		// ballot exists and this leader is stale.
		n.logger.Warn("paxos leader learned a foreign chosen value", "instance", e.Instance, "ballot", n.ballot)
		n.stepDown(0)
	}
	// Keep the record's ballot if it is higher: this acceptor may have
	// acknowledged it, and the value written is the chosen one, which every
	// proposal at or above the chosen ballot carries anyway.
	if s.has && e.Ballot.Less(s.e.Ballot) {
		e.Ballot = s.e.Ballot
	}
	n.record(s, e)
	s.chosen = true
}
