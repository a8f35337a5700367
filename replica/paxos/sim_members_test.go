package paxos

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

// Member changes in the simulation (simParams.reconf; docs/membership.md
// §8): the reconfigurer adds learners (new ids on empty disks, started a
// little after their AddLearner, sometimes before), promotes them once
// bound, removes voters (the leader half the time) and learners, and
// changes metadata, with 3 to 5 voters and at most 7 members; removed
// replicas keep running until every remaining voter knows the removal in
// effect, and are sometimes started again on their old disk. The checkers
// count majorities of cfg(i) from the agreed chosen log.

// simMembers is the simulation's view of the member set.
type simMembers struct {
	eps      float64
	ref      Members      // the agreed member set, as of instance refAt
	refAt    uint64       // ... applied by the first replica to apply each instance
	segs     []cfgSeg     // the voter sets of the agreed log, by first instance
	deferred []instBallot // votes whose cfg(i) is not known yet
	hash     map[uint64]uint64
	// lowVoters is the size of the smallest voter set a voter change
	// proposed and not yet applied produces (0: none), and promoted the
	// learner such a change promotes: wipeMember counts a proposed change
	// as done (docs/membership.md §5).
	lowVoters int
	promoted  uint64
	retiredAt map[uint64]uint64 // removed id → instance its removal took effect
	spare     *simReplica       // a replica created for an AddLearner not (yet) chosen
	metas     int
}

type cfgSeg struct {
	from   uint64
	voters []uint64
}

func (s *sim) initMembers() {
	s.mem.ref = Bootstrap(s.peers, s.p.alpha)
	s.mem.segs = []cfgSeg{{from: 1, voters: s.mem.ref.Voters()}}
	s.mem.hash = map[uint64]uint64{}
	s.mem.retiredAt = map[uint64]uint64{}
}

func membersHash(m Members) uint64 {
	h := fnv.New64a()
	h.Write(m.Encode())
	return h.Sum64()
}

// cfgOf returns cfg(i) of the agreed log, once it is known there.
func (s *sim) cfgOf(i uint64) ([]uint64, bool) {
	if !s.p.reconf {
		return s.peers, true
	}
	if i > s.mem.refAt+s.mem.ref.Alpha {
		return nil, false
	}
	k := len(s.mem.segs) - 1
	for k > 0 && s.mem.segs[k].from > i {
		k--
	}
	return s.mem.segs[k].voters, true
}

// votersHold reports whether the replicas in by (positions) include a
// majority of voters.
func (s *sim) votersHold(by uint64, voters []uint64) bool {
	k := 0
	for _, id := range voters {
		if by&(1<<uint(id-1)) != 0 {
			k++
		}
	}
	return k > len(voters)/2
}

// applyMembers keeps r's driver copy of the member set in lockstep with
// what it applies, advances the agreed set, and checks that every replica
// (driver and core) has the same member set after each instance.
func (s *sim) applyMembers(r *simReplica, e Entry) {
	if !s.p.reconf {
		return
	}
	if r.members == nil {
		s.fail("replica %d applied instance %d without a member set", r.id, e.Instance)
		return
	}
	m, _ := r.members.ApplyEntry(e)
	r.members = &m
	if e.Instance == s.mem.refAt+1 {
		s.advanceRef(e)
	}
	h := membersHash(m)
	if prev, ok := s.mem.hash[e.Instance]; !ok {
		s.mem.hash[e.Instance] = h
	} else if prev != h {
		s.fail("replica %d's member set after instance %d differs from another's: %+v", r.id, e.Instance, m)
		return
	}
	if r.node.commit-1 == e.Instance && membersHash(r.node.members) != h {
		s.fail("replica %d: the core's member set after %d differs from its driver's: %+v vs %+v", r.id, e.Instance, r.node.members, m)
	}
}

// advanceRef applies instance refAt+1 to the agreed member set.
func (s *sim) advanceRef(e Entry) {
	old := s.mem.ref
	m, err := old.ApplyEntry(e)
	s.mem.ref, s.mem.refAt = m, e.Instance
	if old.Pending != nil && m.Pending == nil {
		for _, x := range old.Members {
			if x.Voter && !slices.Contains(old.Pending.Voters, x.ID) {
				s.mem.retiredAt[x.ID] = e.Instance
			}
		}
	}
	if e.Conf && err == nil {
		s.res.confApplied++
		c, _ := DecodeMemberChange(e.Value)
		switch {
		case c.Op.VoterChange():
			s.res.voterChanges++
			s.mem.segs = append(s.mem.segs, cfgSeg{from: m.Pending.At + m.Alpha, voters: slices.Clone(m.Pending.Voters)})
			s.mem.lowVoters, s.mem.promoted = 0, 0
		case c.Op == OpBind:
			s.res.joins++
		case c.Op == OpRemoveLearner:
			s.mem.retiredAt[c.ID] = e.Instance
		}
	}
	// Votes whose voter set is known now.
	keep := s.mem.deferred[:0]
	for _, k := range s.mem.deferred {
		voters, ok := s.cfgOf(k.instance)
		if !ok {
			keep = append(keep, k)
			continue
		}
		if v := s.votes[k]; v != nil && s.votersHold(v.by, voters) {
			s.decide(k, v.value)
		}
	}
	s.mem.deferred = keep
}

// voterSets returns the voter sets that may govern the instances around the
// agreed log's end: the current one, the pending one, and (as a size) the
// smallest one a proposed voter change produces.
func (s *sim) voterSets() [][]uint64 {
	sets := [][]uint64{s.mem.ref.Voters()}
	if s.mem.ref.Pending != nil {
		sets = append(sets, s.mem.ref.Pending.Voters)
	}
	return sets
}

// majorityUp reports whether every voter set has a majority up and voting.
func (s *sim) majorityUp() bool {
	for _, v := range s.voterSets() {
		k := 0
		for _, id := range v {
			if r := s.rs[id-1]; r.up && r.node.rebuild == 0 {
				k++
			}
		}
		if k <= len(v)/2 {
			return false
		}
	}
	return true
}

// crashable reports whether a crash leaves a majority of every voter set
// up (fault's crash).
func (s *sim) crashable() bool {
	if !s.p.reconf {
		return s.down() < (s.p.n-1)/2
	}
	for _, v := range s.voterSets() {
		d := 0
		for _, id := range v {
			if !s.rs[id-1].up {
				d++
			}
		}
		if d >= (len(v)-1)/2 {
			return false
		}
	}
	return true
}

// wipeMember is wipeOne for a changing member set: it wipes a random member
// (the leader a third of the time), keeping the voters that lost their
// votes a minority of the smallest voter set, a proposed removal counted as
// done.
func (s *sim) wipeMember() bool {
	all := s.mem.ref.Members
	id := all[s.rng.IntN(len(all))].ID
	if l := s.leaderIdx(); l >= 0 && s.rng.IntN(3) == 0 && s.mem.ref.member(s.rs[l].id) != nil {
		id = s.rs[l].id
	}
	return s.wipeMemberOf(id, 50*ms, 500*ms)
}

// wipeMemberOf wipes member id under wipeMember's limit, and starts it
// again, rebuilding, lo to hi later.
func (s *sim) wipeMemberOf(id uint64, lo, hi int64) bool {
	low := len(s.mem.ref.Voters())
	for _, v := range s.voterSets() {
		low = min(low, len(v))
	}
	if s.mem.lowVoters > 0 {
		low = min(low, s.mem.lowVoters)
	}
	isVoter := func(id uint64) bool {
		return id == s.mem.promoted || slices.ContainsFunc(s.voterSets(), func(v []uint64) bool { return slices.Contains(v, id) })
	}
	lost := 0
	for _, r := range s.rs {
		if r.disk.rebuild != 0 && isVoter(r.id) {
			lost++
		}
	}
	r := s.rs[id-1]
	if r.disk.rebuild != 0 || isVoter(id) && lost+1 > (low-1)/2 {
		return false
	}
	if r.up {
		r.crash()
	}
	s.res.wipes++
	r.disk = simDisk{log: map[uint64]Entry{}, rebuild: s.rng.Uint64() | 1}
	r.revealed, r.acked = Ballot{}, map[uint64]Ballot{}
	s.after(s.uniform(lo, hi), func() {
		if !r.up {
			r.start()
		}
	})
	return true
}

// reconfigurer proposes a member change at the leader now and then
// (simParams.reconf), starts joiners, and stops removed replicas once every
// remaining voter knows their removal in effect.
func (s *sim) reconfigurer() {
	if !s.faulting || s.failed != nil {
		return
	}
	s.after(s.uniform(200*ms, 1500*ms), s.reconfigurer)
	s.stopRemoved()
	l := s.leaderIdx()
	if l < 0 || s.episode != nil {
		return
	}
	L := s.rs[l]
	m := L.node.latestMembers()
	voters := m.Latest()
	var bound, learners []uint64
	for _, x := range m.Members {
		if !x.Voter && !slices.Contains(voters, x.ID) {
			learners = append(learners, x.ID)
			// The operator promotes a learner that is up and caught up
			// (the CLI checks), never one that lost its disk.
			if q := s.rs[x.ID-1]; x.Nonce != 0 && q.up && q.node.rebuild == 0 {
				bound = append(bound, x.ID)
			}
		}
	}
	// The operator changes no voter while a member's disk is lost (the
	// trap of docs/membership.md §5: a change in flight when disks are
	// lost can leave a voter set without a majority that can vote).
	failing := slices.ContainsFunc(s.rs, func(r *simReplica) bool { return r.disk.rebuild != 0 && s.mem.ref.member(r.id) != nil })
	if failing {
		bound = nil
	}
	if s.p.aim && s.rng.IntN(2) == 0 {
		s.aimedChange(L, m, bound, failing)
		return
	}
	var c MemberChange
	switch k := s.rng.IntN(10); {
	case k < 3 && len(voters) < 5 && len(bound) > 0:
		c = MemberChange{Op: OpPromote, ID: bound[s.rng.IntN(len(bound))]}
	case k < 5 && len(voters) > 3 && !failing:
		c = MemberChange{Op: OpRemoveVoter, ID: voters[s.rng.IntN(len(voters))]}
		if s.rng.IntN(2) == 0 {
			c.ID = L.id
		}
	case k < 7 && len(learners) == 0 && len(m.Members) < 7 && len(s.rs) < 20:
		r := s.mem.spare
		if r == nil || m.member(r.id) != nil || m.IsRetired(r.id) {
			r = s.addReplica()
			s.mem.spare = r
		}
		c = MemberChange{Op: OpAddLearner, ID: r.id, Meta: []byte(fmt.Sprintf("addr-%d", r.id))}
		// Started a little after its AddLearner, sometimes before: a
		// joiner that nobody knows yet just waits.
		d := s.uniform(0, second)
		if s.rng.IntN(4) == 0 {
			d = 0
		}
		s.after(d, func() {
			if !r.up && s.faulting {
				r.start()
			}
		})
	case k < 8 && len(learners) > 0:
		c = MemberChange{Op: OpRemoveLearner, ID: learners[s.rng.IntN(len(learners))]}
	case k < 9:
		s.mem.metas++
		c = MemberChange{Op: OpSetMeta, ID: m.Members[s.rng.IntN(len(m.Members))].ID, Meta: []byte(fmt.Sprintf("m%d", s.mem.metas))}
	default:
		return
	}
	s.propose(L, m, c)
	L.pump()
}

// propose asks leader L, whose latest member set is m, for change c, and
// keeps the books of a voter change it takes. It reports whether L took it.
func (s *sim) propose(L *simReplica, m Members, c MemberChange) bool {
	_, err := L.node.ProposeChange(c)
	switch {
	case err == nil:
		if c.Op.VoterChange() {
			after, _ := m.Apply(L.node.next-1, c)
			s.mem.lowVoters = len(after.Latest())
			if c.Op == OpPromote {
				s.mem.promoted = c.ID
			}
			if c.Op == OpRemoveVoter && c.ID == L.id {
				s.res.leadersGone++
			}
		}
		s.disturb()
		return true
	case errors.Is(err, ErrPhase1Pending):
		s.res.refreshes++
	}
	return false
}

// aimedChange is the reconfigurer's targeted mode (simParams.aim): the
// interleavings R1/R4 and R9 are about, which random faults seldom line
// up with a change. It proposes a voter change (a promotion while fewer
// than five vote, else a removal, of the leader a quarter of the time)
// with one other voter lagging (its links from the leader cut for 20 to
// 300 ms), then either
//   - crashes the leader (or cuts it off, if a crash would leave a voter
//     set without a majority) 0 to 3 ms later, inside the change's window
//     when α is small, so that the next leader's Phase 1 runs across it
//     with a voter that has not heard of it; or
//   - wipes another voter 0 to 5 ms later and starts it again at once,
//     over a slower network, so that its Rebuild reaches the leader while
//     the change is pending and the fence must wait (R9).
func (s *sim) aimedChange(L *simReplica, m Members, bound []uint64, failing bool) {
	voters := m.Latest()
	if failing || m.Pending != nil || !slices.Equal(voters, m.Voters()) {
		return
	}
	var c MemberChange
	switch {
	case len(voters) < 5 && len(bound) > 0 && (len(voters) == 3 || s.rng.IntN(2) == 0):
		c = MemberChange{Op: OpPromote, ID: bound[s.rng.IntN(len(bound))]}
	case len(voters) > 3:
		c = MemberChange{Op: OpRemoveVoter, ID: voters[s.rng.IntN(len(voters))]}
		if s.rng.IntN(4) == 0 {
			c.ID = L.id
		}
	default:
		return
	}
	others := slices.DeleteFunc(slices.Clone(voters), func(id uint64) bool { return id == L.id })
	lag := s.rs[others[s.rng.IntN(len(others))]-1]
	if lag.up {
		s.cut[L.idx][lag.idx] = true
		s.cutGen++
		s.after(s.uniform(20*ms, 300*ms), func() {
			s.cut[L.idx][lag.idx] = false
			s.cutGen++
		})
	}
	if !s.propose(L, m, c) {
		L.pump()
		return
	}
	L.pump()
	if s.rng.IntN(2) == 0 {
		s.after(s.uniform(0, 3*ms), func() {
			if !L.up || s.failed != nil {
				return
			}
			s.res.aimedGone++
			if s.crashable() {
				L.crash()
				s.after(s.uniform(100*ms, second), func() {
					if !L.up && s.faulting {
						L.start()
					}
				})
				return
			}
			side := make([]bool, len(s.rs))
			side[L.idx] = true
			s.partition(side)
		})
		return
	}
	s.loss, s.dup, s.delayMin, s.delayMax = 0.05, 0.02, ms, 30*ms
	w := others[s.rng.IntN(len(others))]
	s.after(s.uniform(0, 5*ms), func() {
		if s.failed == nil && s.faulting && s.wipeMemberOf(w, ms, 20*ms) {
			s.res.aimedWipes++
		}
	})
}

// pendingAt reports whether a voter change chosen below instance c takes
// effect after c (docs/membership.md §11: R9's "pending"), by the agreed
// log; known reports whether the agreed log reaches c − 1.
func (s *sim) pendingAt(c uint64) (pending, known bool) {
	if s.mem.refAt+1 < c {
		return false, false
	}
	for _, g := range s.mem.segs[1:] {
		if g.from > c && g.from < c+s.mem.ref.Alpha {
			return true, true
		}
	}
	return false, true
}

// checkFence audits R9 where a fence is given: a leader fences a
// rebuilding voter only while no voter change chosen below its commit is
// still to take effect, so that every replica removed before the fence
// has had its last instance chosen (docs/membership.md §4, the rebuild
// argument's case (c)). The commit is the one the leader sent with the
// fence, so a change proposed since does not count.
func (s *sim) checkFence(L *simReplica, m Message) {
	if !s.p.reconf || s.p.onlyEndToEnd {
		return
	}
	if pending, _ := s.pendingAt(m.Commit); pending {
		s.fail("replica %d fenced %d at ballot %v with commit %d, while a voter change is pending%s",
			L.id, m.To, m.Ballot, m.Commit, s.dumpMembers())
	}
}

// stopRemoved crashes a removed replica once every remaining voter knows
// its removal in effect, and now and then starts one again on its old
// disk.
func (s *sim) stopRemoved() {
	for _, id := range slices.Sorted(maps.Keys(s.mem.retiredAt)) {
		at, r := s.mem.retiredAt[id], s.rs[id-1]
		if !r.up {
			continue
		}
		known := true
		for _, v := range s.mem.ref.Voters() {
			q := s.rs[v-1]
			if !(q.up && q.node.commit > at || q.disk.chosen >= at) {
				known = false
			}
		}
		if !known {
			continue
		}
		r.crash()
		if s.rng.IntN(3) == 0 {
			s.after(s.uniform(100*ms, 2*second), func() {
				if !r.up && s.faulting {
					r.start()
				}
			})
		}
	}
}

// isMember reports whether replica r is a member of the agreed set (every
// replica is, without reconfiguration).
func (s *sim) isMember(r *simReplica) bool {
	return !s.p.reconf || s.mem.ref.member(r.id) != nil
}

// dumpMembers describes each replica's view, for a failure message
// (reconfiguration runs only).
func (s *sim) dumpMembers() string {
	if !s.p.reconf {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nagreed through %d: %+v", s.mem.refAt, s.mem.ref)
	for _, r := range s.rs {
		if !r.up {
			fmt.Fprintf(&b, "\n  %d: down", r.id)
			continue
		}
		st := r.node.Status()
		fmt.Fprintf(&b, "\n  %d: %v rebuilding=%v leader=%d ballot=%v promised=%v commit=%d voters=%v latest=%v",
			r.id, st.Role, st.Rebuilding, st.Leader, st.Ballot, st.Promised, st.Commit, st.Members.Voters(), st.Members.Latest())
	}
	return b.String()
}
