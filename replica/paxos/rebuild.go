package paxos

// Rebuilding a replica that lost its durable state (State.Rebuild).
//
// An acceptor that forgot its promises and accepted values must not vote
// again as if it had never voted: a value chosen with its vote may then be
// held by a minority only, and a ballot it promised may still be running
// its Phase 1 somewhere. So it votes again only after two things:
//
//  1. Fenced: a leader ran a Phase 1 of ballot B that began after the
//     replica's MsgRebuild reached it, and every other replica promised B,
//     except replicas that were rebuilding too, since before that Phase 1
//     began (their nonce had reached the leader) and still under B (they
//     answered B's Heartbeats with MsgRebuild of that nonce). MsgFenced
//     reports B. Every ballot of a replica that promised B is below B (a
//     ballot leaves its issuer only once the issuer durably promised it,
//     so the issuer promised B later); the incarnations of a replica that
//     was rebuilding since before B's Phase 1 all ended before it, so
//     their ballots completed their Phase 1 before it too, with promises
//     from a majority, which one of B's promisers remembers, so they are
//     below B as well; and a later incarnation that issues one of those
//     numbers again counts no promise made to an earlier one
//     (Config.Incarnation). From then on every replica that votes refuses
//     ballots below B, so no value is chosen below B that B's Phase 1 did
//     not see. That Phase 1 saw every replica not rebuilding, among them a
//     member of every majority, so every value chosen with the lost votes,
//     and re-proposed them below its own first instance.
//  2. Caught up: it learned (durably) every instance through B's first own
//     instance, so the values chosen with its lost votes are on its disk
//     again, as chosen values.
//
// Then it promises B and votes like any replica that restarted (it refuses
// every Prepare for a lease, since it does not know whom it granted one).
// Until then it follows the leader only as a learner: no Promise, Accepted,
// HeartbeatAck or Reject, no campaign. One ballot may fence several
// replicas rebuilding at once (at most a minority can be: the leader needs
// a majority of promises). See docs/paxos.md.

// rebuildFollow handles an Accept or Heartbeat while rebuilding: follow
// the sender as the leader to learn from, without accepting anything.
func (n *Node) rebuildFollow(m Message) {
	if n.leader != m.From && !m.Ballot.Less(n.fence) {
		n.setRole(Follower, m.From)
	}
	n.noteCommit(m.From, m.Commit)
}

// onRebuild: a rebuilding replica asks the leader for a fence. The leader
// answers at once if its ballot's Phase 1 began after the replica's rebuild
// and every other replica promised it or is rebuilding as well (see
// above); otherwise it runs such a Phase 1, when every other replica
// answered it lately and it has not done so for an election timeout (a
// replica that is down would only make it campaign again and again).
func (n *Node) onRebuild(m Message) {
	p := n.peerIndex(m.From)
	n.rebuildNonce[p], n.rebuildAt[p] = m.Lease, max(n.now, 1)
	if n.role != Leader {
		return
	}
	if x, ok := n.members.Member(m.From); ok && !x.Voter && n.vPend&(1<<uint(p)) == 0 {
		switch x.Nonce {
		case 0: // a joiner (R10): bind it instead of fencing it
			n.proposeBind(m.From, m.Lease)
			return
		case m.Lease: // bound: it learns so from the log
			return
		}
	}
	bit := uint64(1) << uint(p)
	if (n.fenceNonce[p] == m.Lease || n.bugs.fenceLateRebuild) && m.Ballot == n.ballot {
		n.p1rebuilding |= bit // rebuilding since before this Phase 1, and still
	}
	// R9: every other voter of cfg(commit) promised, and no voter change
	// lies ahead of commit (so that set governs everything the fence
	// covers).
	all := n.cfgMask(n.commit)
	settled := all == n.latestMask && all == n.cfgMask(n.commit+n.members.Alpha-1)
	if (n.fenceNonce[p] == m.Lease || n.bugs.fenceStale) && (settled || n.bugs.fenceWhilePending) &&
		((n.p1votes|n.p1rebuilding|n.selfBit|bit)&all == all || n.bugs.fenceMajority) {
		n.send(Message{Type: MsgFenced, To: m.From, Ballot: n.ballot, Instance: n.firstOwn, Lease: m.Lease, Commit: n.commit})
		return
	}
	if n.fenceCampaignAt != 0 && n.now-n.fenceCampaignAt < uint64(n.cfg.ElectionTicks) {
		return
	}
	recent := func(at uint64) bool { return at != 0 && at+uint64(2*n.cfg.HeartbeatTicks) >= n.now }
	for i := range n.peers {
		if i != n.self && i != p && all&(1<<uint(i)) != 0 && !recent(n.peerAckAt[i]) && !recent(n.rebuildAt[i]) {
			return
		}
	}
	n.fenceCampaignAt = max(n.now, 1)
	n.logger.Info("paxos fences for a rebuilding replica", "rebuilding", m.From, "ballot", n.ballot)
	n.campaign()
}

// onFenced records a fence for this replica's rebuild.
func (n *Node) onFenced(m Message) {
	if n.rebuild == 0 || m.Lease != n.rebuild || !n.fence.Less(m.Ballot) {
		return
	}
	n.fence, n.fenceAt = m.Ballot, m.Instance
	n.noteCommit(m.From, m.Commit)
}

// maybeRebuilt ends the rebuild once fenced and caught up through the
// fence's first own instance.
func (n *Node) maybeRebuilt() {
	if n.rebuild == 0 || n.fence.IsZero() || n.commit <= n.fenceAt && !n.bugs.voteBeforeCatchUp {
		return
	}
	n.logger.Info("paxos rebuild done", "fence", n.fence, "commit", n.commit)
	n.rebuild, n.rebuiltDirty = 0, true
	n.promise(n.fence)
	n.observe(n.fence)
	if n.cfg.LeaseTicks > 0 {
		n.grantTo, n.grantUntil = unknownHolder, n.now+uint64(n.cfg.LeaseTicks)+1
	}
	n.resetElectionTimer()
}
