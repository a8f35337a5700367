package paxos

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/bits"
)

// maxAhead bounds how far beyond its first unchosen instance a replica
// stores entries; entries further out are ignored (a peer that far ahead
// is caught up with, not mirrored). An acceptor measures it from its own
// first unchosen instance, a candidate's Phase 1 from its own (p1from):
// see docs/paxos.md for why no election is blocked by it. The bound the core
// uses is G = min(maxAhead, α−1) (Node.g; docs/membership.md, R3).
const maxAhead = 1 << 20

// entryOverhead is what the core counts for one entry, besides its value
// bytes, when it fills a Promise up to MaxMessageBytes: a Promise may carry
// many no-ops, which have no value bytes.
const entryOverhead = 48

// unknownHolder is the lease holder of the lease a restarted replica
// assumes it may have granted: it refuses every Prepare until it ends.
const unknownHolder = ^uint64(0)

// slot is the core's view of one instance.
type slot struct {
	e       Entry
	has     bool   // a record exists (accepted, or chosen value learned)
	chosen  bool   // e is the chosen value
	durable bool   // the record in e is persisted (Advance acknowledged it)
	acks    uint64 // leader: peer positions that accepted e at the leader's ballot
	sentAt  uint64 // leader: tick e was last sent in an Accept
}

// persisted names one record of an outstanding Ready.
type persisted struct {
	instance uint64
	ballot   Ballot
}

// p1slot gathers what Phase 1 promises reported for one instance.
type p1slot struct {
	e      Entry
	has    bool
	chosen bool
}

// batch holds the output of the core between two Readys; two of them
// alternate so the one handed out stays valid until Advance.
type batch struct {
	accepted []Entry
	persist  []persisted
	msgs     []Message
	chosen   []Entry
	snaps    []uint64
	arena    []Entry // backing store of message entries (never reused)
	beats    int     // Heartbeats and Accepts in msgs (Node.Heartbeats)
}

func (b *batch) reset() {
	clear(b.accepted)
	clear(b.msgs)
	clear(b.chosen)
	b.accepted, b.persist, b.msgs = b.accepted[:0], b.persist[:0], b.msgs[:0]
	b.chosen, b.snaps = b.chosen[:0], b.snaps[:0]
	b.beats = 0
	// The arena is not reused: message entries stay valid after Advance,
	// so a transport may queue messages.
	b.arena = nil
}

// carve copies es into the arena and returns the copy.
func (b *batch) carve(es ...Entry) []Entry {
	start := len(b.arena)
	b.arena = append(b.arena, es...)
	return b.arena[start:len(b.arena):len(b.arena)]
}

// bugs are deliberately planted faults, set only by tests, so the
// simulation's checkers can be shown to catch them.
type bugs struct {
	forgetPromise     bool // never persist the promised ballot
	skipPhase1Values  bool // fill every instance found in Phase 1 with a no-op
	ignoreLowerBallot bool // accept Accepts and Heartbeats below the promised ballot
	leaseNoExpiry     bool // LeaseValid ignores the lease's end
	selfAckEarly      bool // Accepts counts the leader's own acceptance before its write
	resignKeepsLease  bool // Resign sends its messages but the leader keeps leading and its lease
	partialIsFull     bool // a candidate counts a partial Promise as the promiser's whole report
	noHold            bool // an acceptor that promised a candidate promises another at once (no holdFor)
	retakeAtOnce      bool // a leader preempted while only its own acceptor grants it campaigns again at once (no maybeRetake)

	// Not a bug: every Promise carries at most one record, so that the
	// simulation exercises Promises split over many messages.
	onePerPromise bool
	// Phase 1 re-proposes a value reported as accepted below a promiser's
	// truncated commit instead of learning the instance (rule 3 before
	// rule 2, the order before 41d5952).
	reproposeBelowTruncated bool
	leadFarBehind           bool // a candidate leads however far a Promise reaches beyond its Phase 1

	// The rebuild's rules (rebuild.go), each broken on its own.
	fenceStale        bool // a Phase 1 that began before the rebuild fences it
	fenceMajority     bool // a Phase 1 fences once a majority promised it, not every other replica
	fenceLateRebuild  bool // a fence leaves out a replica rebuilding only since its Phase 1 began
	voteBeforeCatchUp bool // a fenced replica votes before it learned through the fence's first own instance

	// The member-change rules, each broken on its own.
	learnerAcksCount  bool // R5: a learner's acknowledgements count towards choosing
	changeAtOnce      bool // R1: a change governs the next instance, not the one α later
	fenceWhilePending bool // R9: a fence given while a voter change is pending
}

// Node is one replica's Multi-Paxos state: acceptor, proposer and learner.
// It is not safe for concurrent use; the driver serialises all calls.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	peers   []uint64 // peers[i] is the replica at position i (0: a free position)
	self    int
	selfBit uint64
	bugs    bugs
	ahead   uint64 // maxAhead (tests lower it); the bound used is G = min(ahead, α−1)

	// Member set (membership.go): as of commit-1, and position masks.
	members    Members
	noMembers  bool   // a joiner that has not learned the member set yet
	vNow       uint64 // voters of members
	vPend      uint64 // the pending voter set ...
	pendFrom   uint64 // ... which governs instances from here (^0: none pending)
	memberMask uint64 // members, voters and learners
	latestMask uint64 // leader: the voter set after every change chosen or proposed by it
	padTo      uint64 // leader: propose no-ops through this instance (R6)

	now uint64 // ticks since New

	// Acceptor.
	promised        Ballot
	promisedDirty   bool   // promised changed since the last Ready
	promisedDurable Ballot // last promised ballot Advance acknowledged
	outPromised     Ballot // promised ballot in the outstanding Ready
	outHasPromise   bool
	maxRound        uint64 // highest ballot round seen
	grantTo         uint64 // lease granted to this replica (unknownHolder after restart)
	grantUntil      uint64 // ... until this tick (exclusive)

	// Rebuilding (State.Rebuild): not voting until fenced and caught up.
	rebuild      uint64 // the rebuild nonce; 0 once rebuilt (or never lost)
	fence        Ballot // highest ballot a leader reported fenced for us
	fenceAt      uint64 // ... and the first instance it proposed on its own
	rebuiltDirty bool   // the rebuild ended since the last Ready

	// Log: log[k] is instance base+k.
	log      []slot
	base     uint64
	snapshot uint64 // log truncated through this instance
	commit   uint64 // first instance not known chosen
	applied  uint64 // last instance handed out in Ready.Chosen
	mark     uint64 // last chosen mark handed out

	// Role.
	role            Role
	leader          uint64
	ballot          Ballot
	electionElapsed int
	electionTimeout int
	softChanged     bool

	// Candidate.
	p1from    uint64
	p1        []p1slot
	p1votes   uint64           // promisers (a partial Promise counts: for a fence, a promise is a promise)
	p1full    uint64           // promisers whose report is complete (only these count for leading)
	p1through [MaxPeers]uint64 // a partial promiser's report covers p1from..p1through
	p1askAt   [MaxPeers]uint64 // tick the rest of its report was last asked for
	p1commit  uint64           // highest first-unchosen instance a promiser reported
	p1ahead   uint64           // the promiser that reported it
	p1v1      uint64           // cfg(p1from): a majority of it must report (R4)
	p1v2      uint64           // cfg(p1from+α−1): ... and a majority of it
	rejoin    bool             // gave up a Phase 1 as too far behind while granted: campaign once caught up
	retakeAt  uint64           // preempted while granted: campaign then if no leader was heard from (maybeRetake)
	retakeOff uint64           // ... unless these peers, seen promised above our ballot (grant us nothing), leave no majority

	// Leader.
	next             uint64
	firstOwn         uint64 // the no-op appended after Phase 1
	ownWaits         bool   // firstOwn is not proposed yet: it would lie at or past commit+G (proposeOwn)
	leaderAt         uint64 // tick this replica last became leader
	heartbeatElapsed int
	leaseRound       uint64
	roundStart       [leaseRing]uint64
	peerRound        [MaxPeers]uint64
	peerCommit       [MaxPeers]uint64 // first unchosen instance each follower last reported
	peerAckAt        [MaxPeers]uint64 // tick of each follower's last acknowledgement
	rebuildNonce     [MaxPeers]uint64 // latest MsgRebuild nonce from each peer
	rebuildAt        [MaxPeers]uint64 // tick of each peer's latest MsgRebuild
	fenceNonce       [MaxPeers]uint64 // the nonces this ballot's Phase 1 began after
	p1rebuilding     uint64           // peers still rebuilding with their fenceNonce under this ballot
	fenceCampaignAt  uint64           // tick of the last campaign run to fence
	leaseUntil       uint64
	quorumAt         uint64 // start of the latest round a majority acknowledged
	accBuf           []Entry

	// Learner catch-up.
	knownCommit uint64 // highest first-unchosen instance a peer reported
	catchUpPeer uint64 // the peer asked last (the catch-up source)
	stepFrom    uint64 // the sender of the message being stepped: pos never gives its position away
	catchUpAt   uint64
	catchUpSent bool
	peerKnows   [MaxPeers]uint64 // first unchosen instance each peer reported last
	heardAt     [MaxPeers]uint64 // tick of the last message from each peer
	snapSentAt  [MaxPeers]uint64
	snapSent    uint64 // bitmask: snapSentAt valid

	cur, out *batch
	readyOut bool
}

// New returns a Node for cfg, recovered from the durable state st.
func New(cfg Config, st State) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, ahead: maxAhead, pendFrom: ^uint64(0)}
	n.logger = cfg.Logger
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	n.logger = n.logger.With("replica", cfg.ID)
	// Positions: the bootstrap peers in their order (as before member
	// changes existed), then this replica if it is not among them.
	for _, p := range cfg.Peers {
		n.pos(p)
	}
	n.self = n.pos(cfg.ID)
	n.selfBit = 1 << uint(n.self)
	if err := n.recoverMembers(cfg, st); err != nil {
		return nil, err
	}
	if err := n.recover(st); err != nil {
		return nil, err
	}
	n.cur, n.out = &batch{}, &batch{}
	n.resetElectionTimer()
	return n, nil
}

func (n *Node) recover(st State) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...)
	}
	// A durable snapshot implies its instances are chosen, even if the
	// chosen mark written beside it lags (the driver may apply, and
	// snapshot, before the mark is durable).
	st.Chosen = max(st.Chosen, st.Snapshot)
	applied := st.Applied
	if applied == 0 {
		applied = st.Snapshot
	}
	switch {
	case applied < st.Snapshot || applied > st.Chosen:
		return bad("applied %d outside [snapshot %d, chosen %d]", applied, st.Snapshot, st.Chosen)
	}
	n.promised, n.promisedDurable = st.Promised, st.Promised
	n.rebuild = st.Rebuild
	n.maxRound = st.Promised.Round
	n.snapshot, n.base = st.Snapshot, st.Snapshot+1
	n.applied, n.mark = applied, st.Chosen
	for _, e := range st.Entries {
		switch {
		case e.Instance == 0:
			return bad("entry for instance 0")
		case e.Instance <= st.Snapshot:
			continue // covered by the snapshot; its deletion may lag
		case e.Instance-st.Snapshot > maxAhead+uint64(len(st.Entries)):
			return bad("entry %d too far above snapshot %d", e.Instance, st.Snapshot)
		case e.Noop && e.Value != nil:
			return bad("no-op entry %d has a value", e.Instance)
		case e.Conf && (e.Noop || len(e.Value) == 0):
			return bad("member change entry %d without a value", e.Instance)
		}
		s := n.slot(e.Instance)
		if s.has {
			return bad("two entries for instance %d", e.Instance)
		}
		*s = slot{e: e, has: true, durable: true, chosen: e.Instance <= st.Chosen}
		n.maxRound = max(n.maxRound, e.Ballot.Round)
	}
	for i := st.Snapshot + 1; i <= st.Chosen; i++ {
		if s := n.get(i); s == nil || !s.has {
			return bad("chosen mark %d covers instance %d with no entry", st.Chosen, i)
		}
	}
	// The member set of the snapshot, then every chosen instance above it.
	n.commit = st.Snapshot + 1
	n.advanceCommit()
	n.knownCommit = n.commit
	if n.cfg.LeaseTicks > 0 && (!st.Promised.IsZero() || len(st.Entries) > 0 || st.Snapshot > 0) {
		// This replica may have granted a lease before it stopped and does
		// not remember to whom: refuse everyone for a full lease.
		n.grantTo, n.grantUntil = unknownHolder, uint64(n.cfg.LeaseTicks)+1
	}
	return nil
}

// get returns the slot of instance i, or nil if it is truncated or beyond
// the log.
func (n *Node) get(i uint64) *slot {
	if i < n.base || i-n.base >= uint64(len(n.log)) {
		return nil
	}
	return &n.log[i-n.base]
}

// slot returns the slot of instance i >= base, growing the log.
func (n *Node) slot(i uint64) *slot {
	k := i - n.base
	for uint64(len(n.log)) <= k {
		n.log = append(n.log, slot{})
	}
	return &n.log[k]
}

// truncate drops the log through instance i.
func (n *Node) truncate(i uint64) {
	if i < n.base {
		return
	}
	k := i - n.base + 1
	if k >= uint64(len(n.log)) {
		clear(n.log)
		n.log = n.log[:0]
	} else {
		m := copy(n.log, n.log[k:])
		clear(n.log[m:])
		n.log = n.log[:m]
	}
	n.base = i + 1
}

func (n *Node) send(m Message) {
	m.From = n.cfg.ID
	n.cur.msgs = append(n.cur.msgs, m)
	if isBeat(m.Type) {
		n.cur.beats++
	}
}

// isBeat reports whether a message of type t is one Heartbeats hands out.
func isBeat(t MessageType) bool { return t == MsgHeartbeat || t == MsgAccept }

func (n *Node) resetElectionTimer() {
	n.electionElapsed = 0
	off := uint64(n.self) * uint64(n.cfg.ElectionTicks) / uint64(len(n.peers))
	if n.cfg.Rand != nil {
		off = n.cfg.Rand() % uint64(n.cfg.ElectionTicks)
	}
	n.electionTimeout = n.cfg.ElectionTicks + int(off)
}

func (n *Node) setRole(r Role, leader uint64) {
	if n.role != r || n.leader != leader {
		n.softChanged = true
		if n.role != r {
			n.logger.Info("paxos role change", "from", n.role, "to", r, "ballot", n.ballot, "leader", leader)
		}
	}
	n.role, n.leader = r, leader
}

// observe records a ballot seen in a message.
func (n *Node) observe(b Ballot) { n.maxRound = max(n.maxRound, b.Round) }

// promise raises the promised ballot to b.
func (n *Node) promise(b Ballot) {
	if n.promised.Less(b) {
		n.promised = b
		n.promisedDirty = true
	}
}

// stepDown makes a candidate or leader a follower that knows leader.
func (n *Node) stepDown(leader uint64) {
	if n.role != Follower {
		n.accBuf = n.accBuf[:0]
		n.p1 = n.p1[:0]
	}
	n.setRole(Follower, leader)
	n.resetElectionTimer()
}

// record stores e as this replica's record for its instance and queues it
// for persistence.
func (n *Node) record(s *slot, e Entry) {
	s.e, s.has, s.durable, s.acks = e, true, false, 0
	n.cur.accepted = append(n.cur.accepted, e)
	n.cur.persist = append(n.cur.persist, persisted{e.Instance, e.Ballot})
}

func (n *Node) advanceCommit() {
	for {
		s := n.get(n.commit)
		if s == nil || !s.chosen || n.noMembers {
			break
		}
		n.commit++
		n.applyMembers(s.e) // the member set is as of commit-1
	}
	n.proposeOwn()
}

// Tick advances the core's clock by one tick.
func (n *Node) Tick() {
	n.now++
	switch n.role {
	case Leader:
		if !n.voterAt(n.commit) {
			// Its removal is in effect (R7): hand over. Resign, not a
			// step down, so that its followers' grants are released.
			n.logger.Info("paxos leader removed from the voters: resigns", "ballot", n.ballot, "commit", n.commit)
			n.Resign()
			return
		}
		n.heartbeatElapsed++
		if n.heartbeatElapsed >= n.cfg.HeartbeatTicks {
			n.heartbeatElapsed = 0
			// Step down once no majority answered for a lease and an
			// election timeout: before that no other replica can have
			// been elected anyway (their acceptors refuse Prepares).
			if n.now-n.quorumAt > uint64(n.cfg.LeaseTicks+n.cfg.ElectionTicks) {
				n.logger.Info("paxos leader lost its majority", "ballot", n.ballot)
				// Its heartbeats may reach followers whose
				// acknowledgements are lost: they grant it the lease
				// and refuse every other candidate. So, while its own
				// acceptor grants it too, it campaigns again at once
				// instead of falling silent (which left the cell
				// without a leader until those grants and an election
				// timeout ran out, up to 0.45 s, as a partition
				// healed).
				holding := n.selfGranted()
				n.stepDown(0)
				if holding {
					n.campaign()
				}
				return
			}
			if n.stuckOnGap() {
				// Only catch-up can fill the gap Phase 1 left (rule 2),
				// and no live peer says it can: run Phase 1 again,
				// without the promiser that knew the gap chosen.
				n.logger.Info("paxos leader runs phase 1 again: no peer answers for the chosen instances it lacks",
					"ballot", n.ballot, "commit", n.commit, "known", n.knownCommit)
				n.campaign()
				return
			}
			n.heartbeat()
		}
	default:
		if n.role == Candidate {
			n.askRestOfPromises()
		}
		n.maybeRetake()
		n.electionElapsed++
		if n.electionElapsed >= n.electionTimeout && n.now >= n.grantUntil && n.rebuild == 0 {
			n.campaign()
		}
	}
	if n.knownCommit > n.commit && n.catchUpPeer != 0 && n.now-n.catchUpAt >= uint64(n.cfg.HeartbeatTicks) {
		n.requestCatchUp(n.catchUpSource())
	}
	n.pad()
}

// alive reports whether the peer at position i was heard from within an
// election timeout.
func (n *Node) alive(i int) bool {
	return n.heardAt[i] != 0 && n.now-n.heardAt[i] < uint64(n.cfg.ElectionTicks)
}

// canServe reports whether the peer at position i can send chosen values
// this replica lacks: it is alive and last reported a higher first
// unchosen instance.
func (n *Node) canServe(i int) bool {
	return i >= 0 && i != n.self && n.alive(i) && n.peerKnows[i] > n.commit
}

// catchUpSource picks the peer to ask again for the chosen instances this
// replica lacks, when the last request brought nothing for a heartbeat: the
// same peer if it was heard from since it was asked and still reports them
// (it may be sending a snapshot); else the next peer, in ring order, that
// reported them and is alive; else the next that reported them at all. So a
// source that crashed is not waited for while another peer can answer.
func (n *Node) catchUpSource() uint64 {
	cur := n.peerIndex(n.catchUpPeer)
	if n.canServe(cur) && n.heardAt[cur] >= n.catchUpAt {
		return n.catchUpPeer
	}
	next := -1
	for k := 1; k <= len(n.peers); k++ {
		i := (cur + k) % len(n.peers)
		if i == n.self || n.peerKnows[i] <= n.commit {
			continue
		}
		if n.alive(i) {
			next = i
			break
		}
		if next < 0 {
			next = i
		}
	}
	if next >= 0 {
		n.catchUpPeer = n.peers[next]
	}
	return n.catchUpPeer
}

// stuckOnGap reports whether this leader, for an election timeout since it
// took office, lacks the value of its first unchosen instance, which it did
// not propose (Phase 1's rule 2 left it to catch-up: a promiser reported it
// chosen and truncated), while no live peer reports that it has it: the
// promiser that did crashed, or restarted without its chosen mark.
func (n *Node) stuckOnGap() bool {
	if n.role != Leader || n.commit >= n.firstOwn || n.now-n.leaderAt < uint64(n.cfg.ElectionTicks) {
		return false
	}
	if s := n.get(n.commit); s != nil && s.has && s.e.Ballot == n.ballot {
		return false // ours: the followers' acknowledgements will choose it
	}
	for i := range n.peers {
		if n.canServe(i) {
			return false
		}
	}
	return true
}

// heartbeat starts a lease round: heartbeats to every follower, and
// retransmission of accepts they have not acknowledged. What each follower
// is resent is decided before anything is: resending an entry stamps its
// sentAt, which must not hold it back from the followers after (a follower
// that never acknowledges, being down or rebuilding, would otherwise starve
// the others of retransmissions).
func (n *Node) heartbeat() {
	n.newLeaseRound()
	var due [MaxPeers][2]uint64 // per peer position: the range to resend
	for i := range n.peers {
		if !n.target(i) {
			continue
		}
		bit := uint64(1) << uint(i)
		for j := n.commit; j < n.next; j++ {
			s := n.get(j)
			if s == nil || s.chosen || !s.has || s.e.Ballot != n.ballot || s.acks&bit != 0 ||
				n.now-s.sentAt < uint64(n.cfg.HeartbeatTicks) {
				continue
			}
			if due[i][0] == 0 {
				due[i][0] = j
			}
			due[i][1] = j
		}
	}
	for i, p := range n.peers {
		if !n.target(i) {
			continue
		}
		n.send(Message{Type: MsgHeartbeat, To: p, Ballot: n.ballot, Commit: n.commit, Lease: n.leaseRound})
		if lo, hi := due[i][0], due[i][1]; lo != 0 {
			n.sendAccepts(p, lo, hi)
		}
	}
}

func (n *Node) newLeaseRound() {
	n.leaseRound++
	n.roundStart[n.leaseRound%leaseRing] = n.now
	n.peerRound[n.self] = n.leaseRound
	// The leader's own acceptor grants it the lease too.
	if n.cfg.LeaseTicks > 0 {
		n.grantTo, n.grantUntil = n.cfg.ID, n.now+uint64(n.cfg.LeaseTicks)+1
	}
	n.updateLease()
}

// sendAccepts sends the leader's entries lo..hi to peer p in Accept
// messages of at most MaxMessageBytes of values each.
func (n *Node) sendAccepts(p uint64, lo, hi uint64) {
	start := len(n.cur.arena)
	size := 0
	flush := func() {
		if len(n.cur.arena) > start {
			es := n.cur.arena[start:len(n.cur.arena):len(n.cur.arena)]
			n.send(Message{Type: MsgAccept, To: p, Ballot: n.ballot, Commit: n.commit, Lease: n.leaseRound, Entries: es})
		}
		start, size = len(n.cur.arena), 0
	}
	for j := lo; j <= hi; j++ {
		s := n.get(j)
		if s == nil || !s.has || s.e.Ballot != n.ballot {
			continue
		}
		if size > 0 && size+len(s.e.Value) > n.cfg.MaxMessageBytes {
			flush()
		}
		n.cur.arena = append(n.cur.arena, s.e)
		size += len(s.e.Value)
		s.sentAt = n.now
	}
	flush()
}

// Campaign starts Phase 1 now with a new ballot (tests, leadership
// transfer). It ignores leases this replica granted; the promises of the
// others still respect theirs. A rebuilding replica does not campaign.
func (n *Node) Campaign() {
	if n.rebuild == 0 {
		n.campaign()
	}
}

// campaign starts Phase 1 with a new ballot, if this replica may lead
// (canCampaign).
func (n *Node) campaign() {
	if !n.canCampaign() {
		n.handOver()
		return
	}
	n.rejoin, n.retakeAt = false, 0
	// This Phase 1 fences for the rebuilding replicas heard from so far.
	n.fenceNonce, n.p1rebuilding = n.rebuildNonce, 0
	n.maxRound = max(n.maxRound, n.promised.Round) + 1
	n.ballot = Ballot{Round: n.maxRound, ID: n.cfg.ID}
	n.promise(n.ballot)
	n.setRole(Candidate, 0)
	n.resetElectionTimer()
	n.accBuf = n.accBuf[:0]
	n.p1from, n.p1votes, n.p1full, n.p1commit, n.p1ahead = n.commit, 0, 0, n.commit, 0
	// R4: complete reports from a majority of the voters of the first
	// unchosen instance and of the last one a Phase 1 may cover.
	n.p1v1, n.p1v2 = n.cfgMask(n.p1from), n.cfgMask(n.p1from+n.members.Alpha-1)
	clear(n.p1through[:])
	clear(n.p1)
	n.p1 = n.p1[:0]
	// Our own acceptor's entries count once our promise is durable.
	for j := n.commit; j < n.base+uint64(len(n.log)); j++ {
		if s := n.get(j); s != nil && s.has {
			n.mergePromised(s.e, s.chosen)
		}
	}
	n.logger.Info("paxos phase 1", "ballot", n.ballot, "from", n.p1from)
	for i, p := range n.peers {
		if n.target(i) {
			// Last: report from p1from on, and split the report if it
			// is larger than a message (a Prepare without Last, from an
			// older version, gets it whole).
			n.send(Message{Type: MsgPrepare, To: p, Ballot: n.ballot, Instance: n.p1from, Last: n.p1from, Commit: n.commit,
				Lease: n.cfg.Incarnation})
		}
	}
	n.maybeWinPhase1()
}

func (n *Node) mergePromised(e Entry, chosen bool) {
	if e.Instance < n.p1from || e.Instance-n.p1from >= n.g() {
		return
	}
	k := e.Instance - n.p1from
	for uint64(len(n.p1)) <= k {
		n.p1 = append(n.p1, p1slot{})
	}
	p := &n.p1[k]
	switch {
	case p.chosen:
	case chosen:
		*p = p1slot{e: e, has: true, chosen: true}
	case !p.has || p.e.Ballot.Less(e.Ballot):
		*p = p1slot{e: e, has: true}
	}
}

func (n *Node) maybeWinPhase1() {
	if n.role != Candidate {
		return
	}
	// Never lead before our own promise is durable. (Prepares leave only
	// after that sync anyway, Type.SendBeforeSync, so no ballot is ever
	// issued twice; this also covers a driver that sends them early.)
	if n.promisedDurable != n.ballot {
		return
	}
	// Only complete reports count: the candidate must have seen every
	// accepted record of a majority (docs/paxos.md, "Promises larger than
	// a message").
	full := n.p1full | n.selfBit
	if majority(full, n.p1v1) && majority(full, n.p1v2) {
		n.becomeLeader()
	}
}

// askRestOfPromises asks each promiser whose report is partial for the
// rest, again after a heartbeat without an answer.
func (n *Node) askRestOfPromises() {
	for i, p := range n.peers {
		bit := uint64(1) << uint(i)
		if i == n.self || n.p1votes&bit == 0 || n.p1full&bit != 0 || n.now-n.p1askAt[i] < uint64(n.cfg.HeartbeatTicks) {
			continue
		}
		n.askRestOfPromise(i, p)
	}
}

// askRestOfPromise sends the promiser at position i a Prepare of the same
// ballot for the records above what its report covered so far.
func (n *Node) askRestOfPromise(i int, p uint64) {
	n.p1askAt[i] = n.now
	n.send(Message{Type: MsgPrepare, To: p, Ballot: n.ballot, Instance: n.p1from, Last: n.p1through[i] + 1, Commit: n.commit,
		Lease: n.cfg.Incarnation})
}

func (n *Node) becomeLeader() {
	n.setRole(Leader, n.cfg.ID)
	n.leaderAt = n.now
	// One past the highest instance reported or known locally (a chosen
	// value learned during Phase 1 must not be overwritten later).
	top := max(n.p1from+uint64(len(n.p1)), n.base+uint64(len(n.log)))
	n.firstOwn = max(top, n.p1commit, n.commit, n.p1from)
	needCatchUp := false
	for j := n.p1from; j < n.firstOwn; j++ {
		if j <= n.snapshot {
			continue
		}
		s := n.slot(j)
		e := Entry{Instance: j, Ballot: n.ballot, Noop: true}
		var p p1slot
		if k := j - n.p1from; k < uint64(len(n.p1)) {
			p = n.p1[k]
		}
		switch {
		case s.chosen:
			e.Value, e.Noop, e.Conf = s.e.Value, s.e.Noop, s.e.Conf
		case j < n.p1commit && !(n.bugs.reproposeBelowTruncated && p.has):
			// Chosen, but the promiser that knows it chosen has truncated
			// it (a snapshot covers it), and nobody reported its value as
			// chosen (that would have been learned: s.chosen). A value
			// reported as merely accepted may be an older one: the
			// chosen value's acceptors in this Phase 1's quorum may all
			// have truncated it. So learn it by catch-up (a snapshot),
			// never overwrite it, with a no-op or with such a value.
			needCatchUp = true
			continue
		case p.has && !n.bugs.skipPhase1Values:
			e.Value, e.Noop, e.Conf = p.e.Value, p.e.Noop, p.e.Conf
		}
		n.record(s, e)
		if p.chosen && !s.chosen {
			s.chosen = true
		}
		n.accBuf = append(n.accBuf, e)
		s.sentAt = n.now
	}
	n.next, n.ownWaits = n.firstOwn, true
	clear(n.p1)
	n.p1 = n.p1[:0]
	n.advanceCommit() // proposes firstOwn if it lies below commit+G
	clear(n.peerRound[:])
	clear(n.peerCommit[:])
	clear(n.peerAckAt[:])
	n.leaseRound, n.heartbeatElapsed, n.quorumAt = 0, 0, n.now
	n.padTo = 0
	n.refreshLatest()
	n.newLeaseRound()
	n.logger.Info("paxos leader", "ballot", n.ballot, "from", n.p1from, "first_own", n.firstOwn)
	if needCatchUp && n.p1ahead != 0 {
		n.noteCommit(n.p1ahead, n.p1commit)
	}
}

// proposeOwn proposes this leader's no-op firstOwn once it lies below
// commit+G, the bound R3 sets every acceptor, this leader's own included.
// Phase 1 re-proposes up to p1from+G−1 (a record further makes the
// candidate give up), so firstOwn may be p1from+G; it then waits until
// p1from is chosen. Written at once (as before), it was a record past the
// bound: every candidate at that commit gave up on this replica's promise,
// nobody led where this replica could not campaign (R7), and each new
// Phase 1 from the same commit put firstOwn one further, past p1from+α−1
// (docs/membership.md §12). Meanwhile next is firstOwn, a window or more
// past commit, so Propose, ProposeChange and pad find the window full; a
// value a later leader chose there deposes this one (learn).
func (n *Node) proposeOwn() {
	if n.role != Leader || !n.ownWaits || n.firstOwn >= n.commit+n.g() && !n.bugs.leadFarBehind {
		// The planted bug leads far behind and proposes firstOwn at once,
		// as leaders did before: waiting here, the leader catches up
		// first and mostly learns the value it would overwrite (the
		// simulation caught it in 2 of 400 seeds, not 53 of 200).
		return
	}
	n.ownWaits = false
	n.proposeEntry(Entry{Noop: true}) // at next, which is firstOwn
}

// Resign gives up this replica's leadership at once, for a shutdown or a
// hand-off, instead of leaving the others to wait out its lease. It names a
// successor: the follower that acknowledged the most chosen instances (its
// log is the most complete, so its Phase 1 is the shortest; ties go to the
// one heard from last, then to the lowest position), or 0 if no follower
// acknowledged this ballot. Then, in this one step, the leader stops
// claiming its lease (LeaseValid is false from now on, whatever role it
// takes later), releases its own acceptor's grant to itself, steps down to
// a follower that knows no leader (its election timer restarts, so it does
// not rush back), and sends every peer a Resign naming the successor. A
// follower that granted this ballot the lease releases it; the successor
// campaigns at once. Values in flight are neither lost nor completed: the
// next leader's Phase 1 finds them. On a replica that is not the leader in
// Phase 2 Resign does nothing and returns 0.
//
// Why it is safe (docs/paxos.md, "Resigning"): no lease read on this
// replica can start after any follower released its grant, since the
// release needs a Resign and the lease ends in the step that creates them;
// and a follower releases only a grant made to this ballot, which no
// leader uses again (every campaign takes a new round).
func (n *Node) Resign() (successor uint64) {
	if n.role != Leader {
		return 0
	}
	successor = n.successor()
	n.logger.Info("paxos leader resigns", "ballot", n.ballot, "successor", successor)
	if !n.bugs.resignKeepsLease {
		n.leaseUntil = n.now
		if n.grantTo == n.cfg.ID {
			n.grantUntil = n.now
		}
		n.stepDown(0)
	}
	for i, p := range n.peers {
		if n.target(i) {
			n.send(Message{Type: MsgResign, To: p, Ballot: n.ballot, Commit: n.commit, Last: successor})
		}
	}
	return successor
}

// successor picks the follower Resign names: highest reported first
// unchosen instance, then latest acknowledgement, then lowest position.
func (n *Node) successor() uint64 {
	best := -1
	ok := n.cfgMask(n.commit) & n.latestMask // votes now and after every known change
	for i := range n.peers {
		if i == n.self || n.peerAckAt[i] == 0 || ok&(1<<uint(i)) == 0 {
			continue
		}
		if best < 0 || n.peerCommit[i] > n.peerCommit[best] ||
			n.peerCommit[i] == n.peerCommit[best] && n.peerAckAt[i] > n.peerAckAt[best] {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	return n.peers[best]
}

// Propose assigns value to the next free instance and starts Phase 2 for it.
// It returns the instance. Only a leader in Phase 2 accepts proposals.
func (n *Node) Propose(value []byte) (uint64, error) {
	switch {
	case n.role != Leader:
		return 0, ErrNotLeader
	case len(value) == 0:
		return 0, ErrEmptyValue
	case len(value) > n.cfg.MaxBatchBytes:
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrValueTooLarge, len(value), n.cfg.MaxBatchBytes)
	case n.next-n.commit >= n.window():
		return 0, ErrWindowFull
	case !n.voterAt(n.next):
		return 0, fmt.Errorf("%w: removed from the voters at instance %d", ErrNotLeader, n.next)
	}
	return n.proposeEntry(Entry{Value: value}), nil
}

// proposeEntry assigns e to the next free instance under this leader's
// ballot and queues its Accepts.
func (n *Node) proposeEntry(e Entry) uint64 {
	i := n.next
	n.next++
	e.Instance, e.Ballot = i, n.ballot
	s := n.slot(i)
	n.record(s, e)
	s.sentAt = n.now
	n.accBuf = append(n.accBuf, e)
	return i
}

// Leader returns the ID of the leader this replica knows, or 0.
func (n *Node) Leader() uint64 { return n.leader }

// LeaseValid reports whether this replica is the leader and holds a master
// lease now.
func (n *Node) LeaseValid() bool {
	if n.role != Leader || n.cfg.LeaseTicks == 0 {
		return false
	}
	if n.bugs.leaseNoExpiry {
		return n.leaseUntil > 0
	}
	return n.now < n.leaseUntil
}

// ReadBarrier returns the instance the local state machine must have applied
// before a linearizable local read is served, and whether lease reads are
// allowed now: the lease holds and the no-op this leader appended after
// Phase 1 is chosen. See the package doc for the read protocol.
func (n *Node) ReadBarrier() (uint64, bool) {
	if !n.LeaseValid() || n.commit <= n.firstOwn {
		return 0, false
	}
	return n.commit - 1, true
}

// LeaseRead is ReadBarrier for a driver that serves reads without asking the
// core each time: it returns the barrier instance and for how many more
// ticks the lease holds, counted from the current tick (0: no lease reads
// now). A read at a moment that falls k whole ticks after the current tick
// is covered by the lease if k < ticks. The lease never grows shorter
// between calls except by Tick, so the answer stays true until then.
func (n *Node) LeaseRead() (instance, ticks uint64) {
	inst, ok := n.ReadBarrier()
	if !ok || n.now >= n.leaseUntil {
		return 0, 0
	}
	return inst, n.leaseUntil - n.now
}

// roundQuorum returns the highest lease round acknowledged by a majority
// of the voter set (positions) set, the leader's own round counted if it is
// in set.
func (n *Node) roundQuorum(set uint64) uint64 {
	var top [MaxPeers]uint64
	m := 0
	for i := range n.peers {
		if set&(1<<uint(i)) != 0 {
			top[m] = n.peerRound[i]
			m++
		}
	}
	if m == 0 {
		return 0
	}
	for i := 1; i < m; i++ { // insertion sort, descending; m is small
		for j := i; j > 0 && top[j] > top[j-1]; j-- {
			top[j], top[j-1] = top[j-1], top[j]
		}
	}
	return top[m/2]
}

func (n *Node) updateLease() {
	// q = the highest round acknowledged by a majority of every voter set
	// that may govern an instance this lease covers (R8): cfg(commit) and
	// the set after every change chosen or proposed.
	q := n.roundQuorum(n.cfgMask(n.commit))
	if l := n.latestMask; l != n.cfgMask(n.commit) {
		q = min(q, n.roundQuorum(l))
	}
	if q == 0 || n.leaseRound-q >= leaseRing-1 {
		return
	}
	start := n.roundStart[q%leaseRing]
	n.quorumAt = max(n.quorumAt, start)
	if n.cfg.LeaseTicks == 0 {
		return
	}
	if until := start + uint64(n.cfg.LeaseTicks-n.cfg.DriftTicks); until > n.leaseUntil {
		n.leaseUntil = until
	}
}

// HasReady reports whether Ready would return anything to do.
func (n *Node) HasReady() bool {
	if n.readyOut {
		return false
	}
	c := n.cur
	return n.promisedDirty || n.rebuiltDirty || len(c.accepted) > 0 || len(c.msgs) > 0 || len(n.accBuf) > 0 ||
		len(c.snaps) > 0 || n.applied+1 < n.commit || n.mark+1 < n.commit || n.softChanged
}

// Ready returns the pending batch of work; see the package doc for the loop
// the driver must follow. It fails with ErrReadyPending until the previous
// Ready was advanced.
func (n *Node) Ready() (Ready, error) {
	if n.readyOut {
		return Ready{}, ErrReadyPending
	}
	n.cur.msgs = n.appendAccepts(n.cur.msgs)
	c := n.cur
	rd := Ready{Accepted: c.accepted, Messages: c.msgs, Snapshots: c.snaps, Role: n.role, Leader: n.leader, Ballot: n.ballot}
	if n.promisedDirty {
		n.outPromised, n.outHasPromise = n.promised, true
		n.promisedDirty = false
		if !n.bugs.forgetPromise {
			rd.Promised = &n.outPromised
		}
	}
	if n.rebuiltDirty {
		rd.Rebuilt, n.rebuiltDirty = true, false
	}
	rd.MustSync = rd.Promised != nil || len(rd.Accepted) > 0 || rd.Rebuilt
	rd.Removed = n.members.IsRetired(n.cfg.ID)
	if n.commit-1 > n.mark {
		n.mark = n.commit - 1
		rd.ChosenMark = n.mark
	}
	for j := n.applied + 1; j < n.commit; j++ {
		c.chosen = append(c.chosen, n.get(j).e)
	}
	n.applied = max(n.applied, n.commit-1)
	rd.Chosen = c.chosen
	n.softChanged = false
	n.cur, n.out = n.out, n.cur
	n.readyOut = true
	return rd, nil
}

// NewlyChosen returns the entries chosen since the last Ready (or
// NewlyChosen) handed them out, in instance order, and hands them out: they
// will not appear in a later Ready.Chosen, which continues after them. The
// slice is the caller's. Unlike Ready it may be called while a Ready is
// outstanding: a driver whose write is in flight keeps stepping messages, and
// applies what they made chosen without waiting for its own sync (a chosen
// value is durable on a majority; applying it before the local chosen mark
// is durable is allowed, step 4 of the driver loop). Apply these after the
// outstanding Ready's Chosen.
func (n *Node) NewlyChosen() []Entry {
	if n.applied+1 >= n.commit {
		return nil
	}
	out := make([]Entry, 0, n.commit-n.applied-1)
	for j := n.applied + 1; j < n.commit; j++ {
		out = append(out, n.get(j).e)
	}
	n.applied = n.commit - 1
	return out
}

// Accepts hands out now the Accept messages for the values proposed since
// the last Ready (or Accepts), which the next Ready would otherwise carry.
// Unlike Ready it may be called while a Ready is outstanding: a leader whose
// write is in flight takes new proposals and sends their Accepts at once
// instead of holding them until its write ends. The slice is the caller's;
// the messages' entries stay valid (as a Ready's do).
//
// Why it is safe: an Accept reveals no acceptor state (Type.SendBeforeSync).
// The proposals are recorded in the core and persisted by the next Ready's
// write, and the leader counts its own acceptance only at that Ready's
// Advance; until then only the followers' acknowledgements can choose them
// (a majority without the leader), which is a choice as any other: the value
// is durable on that majority. The next Ready persists the record together
// with (or before) any chosen mark that covers it.
func (n *Node) Accepts() []Message {
	if len(n.accBuf) == 0 {
		return nil
	}
	if n.bugs.selfAckEarly {
		for _, e := range n.accBuf {
			if s := n.get(e.Instance); s != nil && s.e.Ballot == n.ballot {
				s.acks |= n.selfBit
				n.checkChosen(s)
			}
		}
		n.advanceCommit()
	}
	return n.appendAccepts(nil)
}

// Heartbeats hands out now the Heartbeats queued since the last Ready (or
// Heartbeats), with the Accepts queued beside them (a heartbeat resends
// the Accepts a follower has not acknowledged), which the next Ready would
// otherwise carry. Like Accepts it may be called while a Ready is
// outstanding: a leader whose write is in flight keeps heartbeating, so a
// write that stalls for longer than an election timeout (a slow disk) does
// not cost it its lease and its leadership while its followers, answering
// its heartbeats and Accepts, can still choose values without it. The
// slice is the caller's.
//
// Why it is safe: Heartbeat and Accept reveal no acceptor state
// (Type.SendBeforeSync); they only leave sooner than the Ready they were
// queued for. A follower grants the lease from when a heartbeat arrives,
// the leader counts it from when it started the round (before it queued
// the heartbeat), so an earlier departure only narrows the gap between
// the two.
func (n *Node) Heartbeats() []Message {
	c := n.cur
	if c.beats == 0 {
		return nil
	}
	out := make([]Message, 0, c.beats)
	k := 0
	for _, m := range c.msgs {
		if isBeat(m.Type) {
			out = append(out, m)
			continue
		}
		c.msgs[k] = m
		k++
	}
	clear(c.msgs[k:])
	c.msgs, c.beats = c.msgs[:k], 0
	return out
}

// appendAccepts appends to msgs the Accepts of the entries proposed since the
// last Ready or Accepts, for every follower, and empties accBuf.
func (n *Node) appendAccepts(msgs []Message) []Message {
	if len(n.accBuf) == 0 {
		return msgs
	}
	for i, p := range n.peers {
		if i != n.self {
			msgs = n.appendAcceptBuf(msgs, p)
		}
	}
	n.accBuf = n.accBuf[:0]
	return msgs
}

// appendAcceptBuf appends to msgs the Accepts of accBuf's entries for p, in
// messages of at most MaxMessageBytes of values each.
func (n *Node) appendAcceptBuf(msgs []Message, p uint64) []Message {
	accept := func(es []Entry) Message {
		return Message{Type: MsgAccept, From: n.cfg.ID, To: p, Ballot: n.ballot, Commit: n.commit,
			Lease: n.leaseRound, Entries: n.cur.carve(es...)}
	}
	size, start := 0, 0
	for k, e := range n.accBuf {
		if size > 0 && size+len(e.Value) > n.cfg.MaxMessageBytes {
			msgs = append(msgs, accept(n.accBuf[start:k]))
			start, size = k, 0
		}
		size += len(e.Value)
	}
	return append(msgs, accept(n.accBuf[start:]))
}

// Advance tells the core that the last Ready was fully handled: its batch is
// durable, its messages sent and its chosen entries applied.
func (n *Node) Advance() error {
	if !n.readyOut {
		return ErrNoReady
	}
	o := n.out
	for _, p := range o.persist {
		s := n.get(p.instance)
		if s == nil || !s.has || s.e.Ballot != p.ballot {
			continue
		}
		s.durable = true
		if n.role == Leader && p.ballot == n.ballot {
			s.acks |= n.selfBit
			n.checkChosen(s)
		}
	}
	if n.outHasPromise {
		n.promisedDurable, n.outHasPromise = n.outPromised, false
		n.maybeWinPhase1()
	}
	n.advanceCommit()
	o.reset()
	n.readyOut = false
	n.pad()
	return nil
}

// checkChosen marks s chosen once a majority of cfg(s) acknowledged it
// (R5): learners' acknowledgements never count, nor the leader's own where
// it does not vote.
func (n *Node) checkChosen(s *slot) {
	set := n.cfgMask(s.e.Instance)
	acks := s.acks & set
	if n.bugs.learnerAcksCount {
		acks = s.acks & (set | n.memberMask)
	}
	if !s.chosen && set != 0 && bits.OnesCount64(acks) > bits.OnesCount64(set)/2 {
		s.chosen = true
	}
}

// Compact tells the core that the driver truncated the log through instance
// (it holds a durable snapshot covering it): catch-up requests below it are
// answered with Ready.Snapshots. instance must not exceed the last applied
// instance.
func (n *Node) Compact(instance uint64) error {
	if instance > n.applied {
		return fmt.Errorf("%w: compact through %d beyond applied %d", ErrBadInstance, instance, n.applied)
	}
	if instance <= n.snapshot {
		return nil
	}
	n.truncate(instance)
	n.snapshot = instance
	return nil
}

// RestoreSnapshot tells the core the state machine was restored from a
// durable snapshot covering instances through instance, received from a
// peer. Call it between Advance and the next Ready. A snapshot at or below
// the applied instance is ignored.
//
// The core's member set becomes the one the chosen log gives at instance
// from what it knows: correct for a cell whose members never change. A
// driver of a cell that may change them restores with
// RestoreSnapshotMembers.
func (n *Node) RestoreSnapshot(instance uint64) error {
	return n.restoreSnapshot(instance, nil)
}

// RestoreSnapshotMembers is RestoreSnapshot for a snapshot that carries the
// member set as of its instance (docs/membership.md §2). A joiner that has
// no member set yet takes one from any snapshot, even at instance 0.
func (n *Node) RestoreSnapshotMembers(instance uint64, m Members) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return n.restoreSnapshot(instance, &m)
}

func (n *Node) restoreSnapshot(instance uint64, m *Members) error {
	if n.readyOut {
		return ErrReadyPending
	}
	if m != nil && n.noMembers {
		n.noMembers = false
		n.setMembers(m.Clone())
		n.knownCommit = max(n.knownCommit, instance+1)
		n.catchUpSent = false
		if instance <= n.applied {
			n.advanceCommit()
			return nil
		}
	}
	if instance <= n.applied {
		return nil
	}
	if m == nil {
		m = new(n.members.Through(instance))
	} else {
		*m = m.Clone()
	}
	// A leader steps down: its commit may now cover instances where it
	// proposed a value that was not the one chosen (if a higher ballot
	// exists), and followers mark chosen what carries its ballot below its
	// commit. Its followers granted it the lease, so nobody else may lead
	// before that runs out: it campaigns again at once, from past the
	// snapshot (a new leader that needed the snapshot to fill a truncated
	// gap, becomeLeader, gets its leadership back at once). So does a
	// candidate that led lately (re-campaigning after a preemption): its
	// followers' grants may still run.
	wasLeader := n.role == Leader || n.role == Candidate && n.selfGranted()
	if n.role != Follower {
		n.stepDown(0)
	}
	n.truncate(instance)
	n.snapshot, n.applied = instance, instance
	if instance+1 > n.commit {
		n.commit = instance + 1
		n.setMembers(*m)
	}
	n.advanceCommit()
	n.knownCommit = max(n.knownCommit, n.commit)
	n.logger.Info("paxos restored snapshot", "instance", instance)
	n.maybeRebuilt()
	if wasLeader {
		n.campaign()
	}
	n.maybeRejoin()
	return nil
}

// maybeRejoin campaigns again for a replica that gave up its Phase 1 as too
// far behind (beyondPhase1) while its own acceptor still granted it the
// lease, once it has caught up with every chosen instance a peer reported:
// the followers that took its last lease round may still refuse every other
// candidate, so nobody else could lead before those grants run out. Once
// its own grant ran out (and so had theirs), or it follows a leader, the
// election timer decides as for any follower.
func (n *Node) maybeRejoin() {
	if !n.rejoin {
		return
	}
	if n.role != Follower || n.leader != 0 || !n.selfGranted() {
		n.rejoin = false
		return
	}
	if n.commit < n.knownCommit {
		return
	}
	n.rejoin = false
	n.logger.Info("paxos caught up after giving up phase 1: campaigns again", "commit", n.commit)
	n.campaign()
}

// selfGranted reports whether this replica's own acceptor still grants it
// the lease it took at its last lease round as leader: the followers that
// took that round's Accepts or Heartbeats may still refuse every other
// candidate, whether or not their acknowledgements arrived.
func (n *Node) selfGranted() bool {
	return n.grantTo == n.cfg.ID && n.now < n.grantUntil
}

// Status returns the core's state.
func (n *Node) Status() Status {
	st := Status{
		ID: n.cfg.ID, Role: n.role, Leader: n.leader, Ballot: n.ballot, Promised: n.promised,
		Commit: n.commit, Applied: n.applied, Snapshot: n.snapshot, LeaseValid: n.LeaseValid(), Now: n.now,
		Rebuilding: n.rebuild != 0, Members: n.members.Clone(),
	}
	if n.role == Leader {
		st.Next = n.next
		st.InFlight = int(n.next - n.commit)
		for i, p := range n.peers {
			if !n.target(i) {
				continue
			}
			ps := PeerStatus{ID: p, Commit: n.peerCommit[i], Acked: n.peerAckAt[i] != 0}
			if ps.Acked {
				ps.AckAgo = n.now - n.peerAckAt[i]
			}
			st.Peers = append(st.Peers, ps)
		}
	}
	return st
}

// bytesEqual reports whether two entries carry the same value.
func sameValue(a, b Entry) bool {
	return a.Noop == b.Noop && a.Conf == b.Conf && bytes.Equal(a.Value, b.Value)
}
