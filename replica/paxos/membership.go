package paxos

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// The core's side of a changing member set (docs/membership.md §3): which
// voters govern which instance (R1), positions for ids, and the leader's
// member changes (R6, R10).

// Errors of ProposeChange.
var (
	// ErrChangePending: a voter change is chosen or proposed and not yet
	// in effect, or a voter is rebuilding: one voter change at a time (R2,
	// R9).
	ErrChangePending = errors.New("paxos: member change pending")
	// ErrPhase1Pending: the replicas that promised this leader's ballot
	// do not yet include a majority of the voter set the change modifies
	// and of the one it produces (R6); try again after a heartbeat.
	ErrPhase1Pending = errors.New("paxos: leader's promises do not cover the change yet")
	// ErrNotCaughtUp: Promote of a learner that is more than the far-ahead
	// bound behind the leader, or that has not reported its position.
	ErrNotCaughtUp = errors.New("paxos: learner not caught up")
)

// recoverMembers sets the member set New starts from: State.Members, or
// the bootstrap set of Config.Peers (all voters, Config.Alpha); a joiner
// (Config.Join) without State.Members has none until a snapshot brings it.
func (n *Node) recoverMembers(cfg Config, st State) error {
	switch {
	case st.Members != nil:
		if err := st.Members.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidState, err)
		}
		n.setMembers(st.Members.Clone())
	case cfg.Join:
		if st.Rebuild == 0 {
			return fmt.Errorf("%w: a joiner without a member set must be rebuilding", ErrInvalidState)
		}
		n.noMembers = true
		n.members = Members{Alpha: max(cfg.Alpha, 2)}
	default:
		n.setMembers(Bootstrap(cfg.Peers, cfg.Alpha))
	}
	return nil
}

// Members returns the member set as of the last instance known chosen.
func (n *Node) Members() Members { return n.members.Clone() }

// peerIndex returns the position of id, or -1.
func (n *Node) peerIndex(id uint64) int {
	if id == 0 {
		return -1
	}
	return slices.Index(n.peers, id)
}

// pos returns the position of id, assigning one if it has none: a free
// position, a new one, or (all MaxPeers taken) the position of an id that
// is not a member, whose state is cleared first; never that of the sender
// of the message being stepped (its handler indexes it: −1 there panicked).
// -1: no room.
func (n *Node) pos(id uint64) int {
	if i := n.peerIndex(id); i >= 0 {
		return i
	}
	i := slices.Index(n.peers, 0)
	if i < 0 && len(n.peers) < MaxPeers {
		n.peers = append(n.peers, id)
		return len(n.peers) - 1
	}
	if i < 0 {
		for k := range n.peers {
			if k != n.self && n.memberMask&(1<<uint(k)) == 0 && n.peers[k] != n.stepFrom {
				i = k
				break
			}
		}
		if i < 0 {
			return -1
		}
	}
	n.clearPos(i)
	n.peers[i] = id
	return i
}

// room reports whether pos can give a new id a position.
func (n *Node) room() bool {
	if len(n.peers) < MaxPeers || slices.Contains(n.peers, 0) {
		return true
	}
	for k := range n.peers {
		if k != n.self && n.memberMask&(1<<uint(k)) == 0 {
			return true
		}
	}
	return false
}

// clearPos forgets everything known of the replica at position i.
func (n *Node) clearPos(i int) {
	bit := uint64(1) << uint(i)
	n.peerRound[i], n.peerCommit[i], n.peerAckAt[i] = 0, 0, 0
	n.rebuildNonce[i], n.rebuildAt[i], n.fenceNonce[i] = 0, 0, 0
	n.p1through[i], n.p1askAt[i], n.peerKnows[i], n.heardAt[i], n.snapSentAt[i] = 0, 0, 0, 0, 0
	n.p1votes &^= bit
	n.p1full &^= bit
	n.p1rebuilding &^= bit
	n.snapSent &^= bit
	for k := range n.log {
		n.log[k].acks &^= bit
	}
}

// target reports whether position i is a member other than this replica:
// one that Prepares, Accepts, Heartbeats and Resigns go to.
func (n *Node) target(i int) bool { return i != n.self && n.memberMask&(1<<uint(i)) != 0 }

// mask returns the positions of ids.
func (n *Node) mask(ids []uint64) uint64 {
	var m uint64
	for _, id := range ids {
		if i := n.pos(id); i >= 0 {
			m |= 1 << uint(i)
		}
	}
	return m
}

// majority reports whether acks holds a majority of the voter set set.
func majority(acks, set uint64) bool {
	return set != 0 && bits.OnesCount64(acks&set) > bits.OnesCount64(set)/2
}

// cfgMask returns cfg(i) as positions, for commit ≤ i < commit + α (R1).
func (n *Node) cfgMask(i uint64) uint64 {
	if i >= n.pendFrom {
		return n.vPend
	}
	return n.vNow
}

// voterAt reports whether this replica votes at instance i.
func (n *Node) voterAt(i uint64) bool { return n.cfgMask(i)&n.selfBit != 0 }

// canCampaign reports whether this replica may run Phase 1 (R7): not
// rebuilding, and a voter of both voter sets a Phase 1 from its first
// unchosen instance may meet (so that every instance it may propose at is
// one where it votes).
func (n *Node) canCampaign() bool {
	return n.rebuild == 0 && !n.noMembers && n.voterAt(n.commit) && n.voterAt(n.commit+n.members.Alpha-1)
}

// handOver is what a replica that may no longer campaign (R7: its removal
// is chosen) does where it would have campaigned to keep or take back its
// leadership: a leader resigns; one that led lately and still grants
// itself the lease releases its followers' grants with a Resign of its
// last ballot, which no campaign of its uses again. Otherwise those grants
// would keep every other voter from being elected until they ran out (the
// simulation's abandoned-lease check, n=5 seed 555: a leader being removed
// restored a snapshot, stepped down, and could not campaign again).
func (n *Node) handOver() {
	switch {
	case n.rebuild != 0:
	case n.role == Leader:
		n.Resign()
	case n.selfGranted():
		successor := n.successor()
		n.logger.Info("paxos may not campaign: releases its lease", "ballot", n.ballot, "successor", successor)
		n.grantUntil = n.now
		n.rejoin, n.retakeAt = false, 0
		for i, p := range n.peers {
			if n.target(i) {
				n.send(Message{Type: MsgResign, To: p, Ballot: n.ballot, Commit: n.commit, Last: successor})
			}
		}
	}
}

// g returns the far-ahead bound G = min(ahead, α−1) (R3).
func (n *Node) g() uint64 { return min(n.ahead, n.members.Alpha-1) }

// window returns how many instances a leader may have in flight:
// min(Window, G) (R3).
func (n *Node) window() uint64 { return min(uint64(n.cfg.Window), n.g()) }

// applyMembers applies the chosen entry e, at the first unchosen instance,
// to the member set.
func (n *Node) applyMembers(e Entry) {
	if !e.Conf && e.Instance < n.pendFrom {
		return
	}
	m, err := n.members.ApplyEntry(e)
	if err != nil {
		n.logger.Warn("paxos member change chosen, invalid", "instance", e.Instance, "err", err)
	}
	n.setMembers(m)
}

// setMembers makes m the member set as of commit-1 and derives the masks.
func (n *Node) setMembers(m Members) {
	old := n.members
	n.members = m
	// Positions for new members: not those of other members of m (pos
	// gives away positions outside memberMask), so mark theirs first.
	for _, x := range m.Members {
		if i := n.peerIndex(x.ID); i >= 0 {
			n.memberMask |= 1 << uint(i)
		}
	}
	for _, x := range m.Members {
		if i := n.pos(x.ID); i >= 0 {
			n.memberMask |= 1 << uint(i)
		}
	}
	n.memberMask, n.vNow, n.vPend, n.pendFrom = 0, 0, 0, ^uint64(0)
	for _, x := range m.Members {
		bit := uint64(1) << uint(n.peerIndex(x.ID))
		n.memberMask |= bit
		if x.Voter {
			n.vNow |= bit
		}
	}
	if p := m.Pending; p != nil {
		n.vPend, n.pendFrom = n.mask(p.Voters), p.At+m.Alpha
		if n.bugs.changeAtOnce {
			n.pendFrom = p.At + 1
		}
	}
	if old.Epoch != m.Epoch || old.Pending != m.Pending {
		n.logger.Info("paxos member set", "epoch", m.Epoch, "voters", m.Voters(), "pending", m.Pending != nil, "commit", n.commit)
	}
	if x, ok := m.Member(n.cfg.ID); ok && n.rebuild != 0 && !x.Voter && x.Nonce == n.rebuild {
		// R10: a valid Bind of this learner's id and nonce is chosen: it
		// ends its rebuild without a fence (it never voted before).
		n.logger.Info("paxos joined: bound as a learner", "nonce", n.rebuild, "commit", n.commit)
		n.rebuild, n.rebuiltDirty = 0, true
	}
	if n.role == Leader {
		n.refreshLatest()
	}
}

// latestMembers returns the member set after every change this leader
// proposed or re-proposed that is not yet known chosen.
func (n *Node) latestMembers() Members {
	m := n.members
	if n.role != Leader {
		return m
	}
	for j := n.commit; j < n.next; j++ {
		if s := n.get(j); s != nil && s.has && s.e.Conf {
			m, _ = m.ApplyEntry(s.e)
		}
	}
	return m
}

// refreshLatest recomputes the leader's latest voter set (R8) and how far
// it pads (R6).
func (n *Node) refreshLatest() {
	l := n.latestMembers()
	n.latestMask = n.mask(l.Latest())
	if l.Pending != nil {
		n.padTo = max(n.padTo, l.Pending.At+l.Alpha-1)
	}
}

// pad proposes no-ops up to padTo as window room allows (R6), so that a
// voter change takes effect after about α/window round trips.
func (n *Node) pad() {
	if n.role != Leader {
		return
	}
	for n.next <= n.padTo && n.next-n.commit < n.window() && n.voterAt(n.next) {
		n.proposeEntry(Entry{Noop: true})
	}
}

// acked returns the positions that acknowledged this leader's ballot (an
// Accepted or HeartbeatAck leaves an acceptor only once its promise of the
// ballot is durable).
func (n *Node) acked() uint64 {
	var m uint64
	for i := range n.peers {
		if n.peerAckAt[i] != 0 {
			m |= 1 << uint(i)
		}
	}
	return m
}

// rebuildingRecently reports whether the replica at position i answered a
// heartbeat with Rebuild within an election timeout (never, for i −1: an id
// without a position was never heard from).
func (n *Node) rebuildingRecently(i int) bool {
	return i >= 0 && n.rebuildAt[i] != 0 && n.now-n.rebuildAt[i] < uint64(n.cfg.ElectionTicks)
}

// ProposeChange proposes the member change c at the next free instance and
// returns the instance (docs/membership.md). Only a leader in Phase 2
// proposes. It refuses (and proposes nothing) a change that would be
// invalid after the changes already chosen or proposed (ErrInvalidChange,
// from Members.Apply); a voter change while another is pending or a voter
// is rebuilding (ErrChangePending; RemoveVoter of the rebuilding voter
// itself is allowed); Promote of a learner that is rebuilding
// (ErrChangePending), or that has not acknowledged this leader within an
// election timeout or is more than the far-ahead bound behind
// (ErrNotCaughtUp); and a voter change before the replicas that promised
// this ballot include a majority of the current latest voter set and of the
// one the change produces (ErrPhase1Pending, R6). After a voter change it
// pads with no-ops until the change takes effect.
func (n *Node) ProposeChange(c MemberChange) (uint64, error) {
	if n.role != Leader {
		return 0, ErrNotLeader
	}
	latest := n.latestMembers()
	after, err := latest.Apply(n.next, c)
	if err != nil && !(c.Op.VoterChange() && latest.Pending != nil) {
		return 0, err
	}
	if c.Op.VoterChange() {
		if latest.Pending != nil {
			return 0, fmt.Errorf("%w: a voter change chosen or proposed at %d", ErrChangePending, latest.Pending.At)
		}
		for i := range n.peers {
			if n.vNow&(1<<uint(i)) != 0 && n.rebuildingRecently(i) && !(c.Op == OpRemoveVoter && n.peers[i] == c.ID) {
				return 0, fmt.Errorf("%w: voter %d is rebuilding", ErrChangePending, n.peers[i])
			}
		}
		if x, ok := latest.Member(c.ID); ok && c.Op == OpPromote && !x.Voter {
			i := n.peerIndex(c.ID)
			switch {
			case i < 0:
				// Known only from this leader's own proposals not yet
				// chosen (its AddLearner and Bind re-proposed after a
				// Phase 1): it has never been heard from, so it has not
				// acknowledged this leader either.
				return 0, fmt.Errorf("%w: learner %d not heard from", ErrNotCaughtUp, c.ID)
			case n.rebuildingRecently(i):
				return 0, fmt.Errorf("%w: learner %d is rebuilding", ErrChangePending, c.ID)
			case n.peerAckAt[i] == 0 || n.now-n.peerAckAt[i] >= uint64(n.cfg.ElectionTicks) || n.peerCommit[i]+n.g() < n.commit:
				return 0, fmt.Errorf("%w: learner %d at %d, leader at %d", ErrNotCaughtUp, c.ID, n.peerCommit[i], n.commit)
			}
		}
	}
	switch {
	case n.next-n.commit >= n.window():
		return 0, ErrWindowFull
	case !n.voterAt(n.next):
		return 0, fmt.Errorf("%w: removed from the voters at instance %d", ErrNotLeader, n.next)
	}
	if c.Op.VoterChange() {
		promised := n.p1votes | n.acked() | n.selfBit
		if !majority(promised, n.mask(latest.Latest())) || !majority(promised, n.mask(after.Latest())) {
			return 0, fmt.Errorf("%w: promised by %d of voters %v, changing to %v",
				ErrPhase1Pending, bits.OnesCount64(promised), latest.Latest(), after.Latest())
		}
	}
	i := n.proposeEntry(Entry{Conf: true, Value: c.Encode()})
	n.logger.Info("paxos proposes member change", "instance", i, "op", c.Op, "id", c.ID)
	n.refreshLatest()
	n.pad()
	return i, nil
}

// proposeBind proposes Bind{id, nonce} for a learner that answered a
// heartbeat with Rebuild and is not bound (R10), unless one is in flight.
func (n *Node) proposeBind(id, nonce uint64) {
	for j := n.commit; j < n.next; j++ {
		if s := n.get(j); s != nil && s.has && s.e.Conf {
			if c, err := DecodeMemberChange(s.e.Value); err == nil && c.Op == OpBind && c.ID == id {
				return
			}
		}
	}
	if _, err := n.ProposeChange(MemberChange{Op: OpBind, ID: id, Nonce: nonce}); err != nil {
		n.logger.Debug("paxos bind not proposed", "id", id, "err", err)
	}
}
