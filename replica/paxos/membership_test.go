package paxos

import (
	"errors"
	"testing"
)

// withLearner is the member set voters {1 2 3}, learner 4 bound with nonce
// 44, α 6; pending, if set, promotes 4 at instance 1 (in effect from 7).
func withLearner(pending bool) *Members {
	m := Members{Alpha: 6, Epoch: 2, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}, {ID: 4, Nonce: 44}}}
	if pending {
		m.Epoch, m.Pending = 3, &Pending{At: 1, Voters: []uint64{1, 2, 3, 4}}
	}
	return &m
}

// leaderWith makes replica 1 (members m) the leader with the promises of 2
// and 3.
func leaderWith(t *testing.T, m *Members) *Node {
	t.Helper()
	n, err := New(testConfig(1, 3), State{Members: m})
	if err != nil {
		t.Fatal(err)
	}
	n.Campaign()
	ready(t, n)
	for _, from := range []uint64{2, 3} {
		step(t, n, Message{Type: MsgPromise, From: from, Ballot: n.ballot, Instance: n.p1from, Commit: 1})
	}
	if n.role != Leader {
		t.Fatalf("role %v after promises of 2 and 3", n.role)
	}
	ready(t, n)
	return n
}

// R5: "Learners ... acknowledge, but their acknowledgements are never
// counted"; an instance is chosen by a majority of cfg(i).
func TestLearnerAcknowledgementsAreNotCounted(t *testing.T) {
	n := leaderWith(t, withLearner(false))
	i, err := n.Propose([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	ready(t, n) // the leader's own acceptance is durable: 1 of {1 2 3}
	step(t, n, Message{Type: MsgAccepted, From: 4, Ballot: n.ballot, Instance: 1, Last: i, Commit: 1})
	if n.commit > i {
		t.Fatalf("instance %d chosen with the leader and learner 4; want a majority of voters {1 2 3}", i)
	}
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: i, Commit: 1})
	if n.commit <= i {
		t.Fatalf("commit %d after 1 and 2 accepted %d; want it chosen", n.commit, i)
	}
}

// R5 across a change: from At+α on, instances need a majority of the new
// voter set {1 2 3 4}: three acknowledgements.
func TestInstancesAfterTheChangeNeedTheNewMajority(t *testing.T) {
	n := leaderWith(t, withLearner(true))
	for n.next < 8 {
		if _, err := n.Propose([]byte("v")); err != nil {
			break
		}
	}
	ready(t, n)
	ack := func(from uint64) {
		step(t, n, Message{Type: MsgAccepted, From: from, Ballot: n.ballot, Instance: 1, Last: n.next - 1, Commit: 1})
	}
	ack(2)
	if n.commit != 5 { // window 4: 1..4 proposed; 1..4 chosen by {1 2}
		t.Fatalf("commit %d; want 5 (1..4 chosen by a majority of {1 2 3})", n.commit)
	}
	for n.next < 9 {
		if _, err := n.Propose([]byte("w")); err != nil {
			t.Fatal(err)
		}
	}
	ready(t, n)
	ack(2)
	if n.commit != 7 {
		t.Fatalf("commit %d; want 7: instances 7 and 8 are governed by {1 2 3 4}", n.commit)
	}
	ack(4)
	if n.commit != 9 {
		t.Fatalf("commit %d after 1, 2 and 4 acknowledged; want 9", n.commit)
	}
}

// R3: the far-ahead bound is G = min(ahead, α−1): an acceptor neither
// accepts nor learns instances commit+G or beyond, and a leader keeps at
// most min(Window, G) instances in flight.
func TestFarAheadBoundIsAlphaMinusOne(t *testing.T) {
	m := Members{Alpha: 3, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}}}
	n, err := New(testConfig(2, 3), State{Members: &m})
	if err != nil {
		t.Fatal(err)
	}
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Commit: 1,
		Entries: []Entry{at(val("a"), 1, b(1, 1)), at(val("b"), 2, b(1, 1)), at(val("c"), 3, b(1, 1))}})
	acc := msgsOf(ready(t, n), MsgAccepted)
	if len(acc) != 1 || acc[0].Instance != 1 || acc[0].Last != 2 {
		t.Fatalf("Accepted %+v; want 1..2 only (G = 2)", acc)
	}
	l := leaderWith(t, &m)
	k := 0
	for ; k < 10; k++ {
		if _, err := l.Propose([]byte("x")); errors.Is(err, ErrWindowFull) {
			break
		}
	}
	if got := l.next - l.commit; got != 2 {
		t.Fatalf("%d instances in flight (%d proposed); want min(Window 4, G 2) = 2", got, k)
	}
}

// R8: while a change is pending the lease needs a majority of each voter
// set: {1 2 3} and {1 2 3 4}.
func TestLeaseCountsEveryVoterSet(t *testing.T) {
	n := leaderWith(t, withLearner(true))
	hb := func(from uint64) {
		step(t, n, Message{Type: MsgHeartbeatAck, From: from, Ballot: n.ballot, Lease: n.leaseRound, Commit: 1})
	}
	hb(2)
	if n.LeaseValid() {
		t.Fatal("lease valid with 1 and 2: a majority of {1 2 3}, not of {1 2 3 4}")
	}
	hb(4)
	if !n.LeaseValid() {
		t.Fatal("lease not valid with 1, 2 and 4")
	}
}

// R4 at the unit level: a candidate whose window reaches a pending change
// needs majorities of both sets.
func TestCandidateNeedsMajoritiesOfBothVoterSets(t *testing.T) {
	// Snapshot 3: commit 4, so the window 4..9 reaches the promotion's
	// effect at 7.
	n, err := New(testConfig(1, 3), State{Snapshot: 3, Members: withLearner(true)})
	if err != nil {
		t.Fatal(err)
	}
	n.Campaign()
	rd := ready(t, n)
	if got := len(msgsOf(rd, MsgPrepare)); got != 3 {
		t.Fatalf("%d Prepares; want 3 (voters 2 and 3, learner-being-promoted 4)", got)
	}
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Commit: 4})
	if n.role == Leader {
		t.Fatal("leads with 1 and 2: a majority of {1 2 3} only")
	}
	step(t, n, Message{Type: MsgPromise, From: 4, Ballot: n.ballot, Instance: n.p1from, Commit: 4})
	if n.role != Leader {
		t.Fatalf("role %v with 1, 2 and 4", n.role)
	}
}

// R7: learners never campaign; a voter being added leads only once its
// promotion is in effect.
func TestLearnerNeverCampaigns(t *testing.T) {
	n, err := New(testConfig(4, 4), State{Members: withLearner(true)})
	if err != nil {
		t.Fatal(err)
	}
	n.Campaign()
	for range 100 {
		n.Tick()
	}
	if n.role != Follower || n.promised != (Ballot{}) {
		t.Fatalf("learner 4: role %v promised %v; want a follower that never campaigned", n.role, n.promised)
	}
}

// Messages from a removed member are refused; a Prepare from an id this
// replica does not know (added since) is learned from, never promised.
func TestRemovedAndUnknownSenders(t *testing.T) {
	m := Members{Alpha: 6, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}}, Retired: []uint64{5}}
	n, err := New(testConfig(2, 3), State{Members: &m})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Step(Message{Type: MsgHeartbeat, From: 5, To: 2, Ballot: b(1, 5)}); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("Heartbeat from retired 5: %v; want ErrInvalidMessage", err)
	}
	step(t, n, Message{Type: MsgPrepare, From: 9, Ballot: b(1, 9), Instance: 1, Last: 1, Commit: 4})
	rd := ready(t, n)
	if n.promised != (Ballot{}) || len(msgsOf(rd, MsgPromise)) != 0 || len(msgsOf(rd, MsgCatchUp)) != 1 {
		t.Fatalf("Prepare from unknown 9: promised %v, messages %+v; want no promise, a CatchUp", n.promised, rd.Messages)
	}
}

func TestMembershipConfigAndStateErrors(t *testing.T) {
	cfg := testConfig(1, 3)
	cfg.Alpha = 1
	if _, err := New(cfg, State{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Alpha 1: %v; want ErrInvalidConfig", err)
	}
	cfg = testConfig(7, 3)
	cfg.Join = true
	if _, err := New(cfg, State{}); !errors.Is(err, ErrInvalidState) {
		t.Errorf("joiner not rebuilding: %v; want ErrInvalidState", err)
	}
	bad := Members{Alpha: 6}
	if _, err := New(testConfig(1, 3), State{Members: &bad}); !errors.Is(err, ErrInvalidState) || !errors.Is(err, ErrInvalidMembers) {
		t.Errorf("State.Members without voters: %v; want ErrInvalidState and ErrInvalidMembers", err)
	}
	n := newTestNode(t, 1, 3, State{})
	if err := n.RestoreSnapshotMembers(5, bad); !errors.Is(err, ErrInvalidMembers) {
		t.Errorf("RestoreSnapshotMembers without voters: %v; want ErrInvalidMembers", err)
	}
	if _, err := n.ProposeChange(MemberChange{Op: OpAddLearner, ID: 4}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ProposeChange on a follower: %v; want ErrNotLeader", err)
	}
}

// R6: a voter change waits until the leader's promisers (Phase 1 promises
// and acknowledgements of its ballot) hold a majority of the set it
// modifies and of the one it produces.
func TestVoterChangeWaitsForPromisesOfBothSets(t *testing.T) {
	m := Members{Alpha: 6, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}, {ID: 5, Voter: true}, {ID: 6, Voter: true}}}
	n := leaderWith(t, &m)
	// Promisers {1 2 3}: 3 of {1 2 3 5 6}, but removing 2 leaves 2 of {1 3 5 6}.
	if _, err := n.ProposeChange(MemberChange{Op: OpRemoveVoter, ID: 2}); !errors.Is(err, ErrPhase1Pending) {
		t.Fatalf("RemoveVoter 2 with promisers 1 2 3: %v; want ErrPhase1Pending", err)
	}
	step(t, n, Message{Type: MsgHeartbeatAck, From: 5, Ballot: n.ballot, Lease: n.leaseRound, Commit: n.commit})
	if _, err := n.ProposeChange(MemberChange{Op: OpRemoveVoter, ID: 2}); err != nil {
		t.Fatalf("RemoveVoter 2 once 5 acknowledged the ballot: %v", err)
	}
}

// A member change found in Phase 1 is re-proposed as a member change (the
// simulation found it re-proposed as a plain value, which every replica
// then failed to decode).
func TestPhase1ReproposesMemberChangeAsMemberChange(t *testing.T) {
	c := MemberChange{Op: OpAddLearner, ID: 4}.Encode()
	_, rd := campaignWith(t, 3, Message{From: 2, Commit: 1, Entries: []Entry{{Instance: 1, Ballot: b(1, 2), Value: c, Conf: true}}})
	acc := msgsOf(rd, MsgAccept)
	if len(acc) == 0 || len(acc[0].Entries) == 0 || !acc[0].Entries[0].Conf {
		t.Fatalf("Accepts %+v; want instance 1 re-proposed as a member change", acc)
	}
}

// Promote of a learner the leader knows only from its own proposals not yet
// chosen (AddLearner and Bind in flight) is refused with ErrNotCaughtUp: the
// learner has not acknowledged this leader. It has no position yet; before,
// ProposeChange indexed position −1 and panicked (docs/membership.md §12,
// n=5 seed 2109 on branch simrecfg).
func TestPromoteOfALearnerStillBeingAddedIsNotCaughtUp(t *testing.T) {
	m := Members{Alpha: 6, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}}}
	n := leaderWith(t, &m)
	for _, c := range []MemberChange{{Op: OpAddLearner, ID: 9}, {Op: OpBind, ID: 9, Nonce: 99}} {
		if _, err := n.ProposeChange(c); err != nil {
			t.Fatalf("ProposeChange(%v 9) = %v; want it proposed", c.Op, err)
		}
	}
	ready(t, n)
	if _, ok := n.latestMembers().Member(9); !ok || n.peerIndex(9) >= 0 {
		t.Fatalf("learner 9: in the latest set %v, position %d; want a member without a position", ok, n.peerIndex(9))
	}
	if _, err := n.ProposeChange(MemberChange{Op: OpPromote, ID: 9}); !errors.Is(err, ErrNotCaughtUp) {
		t.Fatalf("ProposeChange(Promote 9) = %v; want ErrNotCaughtUp", err)
	}
	if _, err := n.ProposeChange(MemberChange{Op: OpRemoveLearner, ID: 9}); err != nil {
		t.Fatalf("ProposeChange(RemoveLearner 9) = %v; want it proposed", err)
	}
}

// recordsBeyond returns the instances at or past commit+G where n holds a
// record: R3 lets no acceptor hold one, a leader's own included.
func recordsBeyond(n *Node) []uint64 {
	var out []uint64
	for j := n.commit + n.g(); j < n.base+uint64(len(n.log)); j++ {
		if s := n.get(j); s != nil && s.has {
			out = append(out, j)
		}
	}
	return out
}

// R3 for a new leader's own no-op: a Phase 1 that re-proposes up to
// p1from+G−1 leaves firstOwn at p1from+G, and the leader proposes it only
// once p1from is chosen. Before, it wrote it at once, past the bound, and
// each new Phase 1 from the same commit (a fence, a retake) put it one
// further: with α 3 the second was at p1from+α, past where its Phase 1
// counted the voter sets (docs/membership.md §12: no leader with α below
// about 12).
func TestFirstOwnWaitsForRoomBelowTheFarAheadBound(t *testing.T) {
	members := func() *Members {
		return &Members{Alpha: 3, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true}}}
	}
	n, err := New(testConfig(1, 3), State{Members: members()})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 { // three Phase 1s from commit 1, nothing chosen in between
		n.Campaign()
		ready(t, n)
		step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Commit: 1,
			Entries: []Entry{at(val("v"), 2, b(1, 2))}})
		if n.role != Leader {
			t.Fatalf("Phase 1 %d: role %v after 2's promise", round+1, n.role)
		}
		rd := ready(t, n)
		if n.firstOwn != 3 || len(recordsBeyond(n)) != 0 {
			t.Fatalf("Phase 1 %d from 1 (G 2): firstOwn %d, records at %v; want firstOwn 3 and no record at 3 or beyond",
				round+1, n.firstOwn, recordsBeyond(n))
		}
		for _, a := range msgsOf(rd, MsgAccept) {
			if last := a.Entries[len(a.Entries)-1].Instance; last != 2 {
				t.Fatalf("Phase 1 %d: Accept to %d ends at %d; want the re-proposals 1..2 only", round+1, a.To, last)
			}
		}
	}
	// Replica 2, at the same commit, campaigns once 1 resigned: it gets
	// 1's promise and must not give up on it (it did, on the records at 3
	// to 5).
	n.Resign()
	ready(t, n)
	c, err := New(testConfig(2, 3), State{Members: members()})
	if err != nil {
		t.Fatal(err)
	}
	c.observe(n.ballot)
	c.Campaign()
	// The Promise comes in parts (MaxMessageBytes 64): deliver the
	// Prepares to 1 and its Promises back until 2 leads or gives up.
	var got []Entry
	for k := 0; k < 10 && c.role == Candidate; k++ {
		for _, prep := range msgsOf(ready(t, c), MsgPrepare) {
			if prep.To == 1 {
				step(t, n, prep)
			}
		}
		for _, prom := range msgsOf(ready(t, n), MsgPromise) {
			got = append(got, prom.Entries...)
			step(t, c, prom)
		}
	}
	if c.role != Leader {
		t.Fatalf("2 with 1's promise (records %s): role %v; want leader", fmtEntries(got), c.role)
	}
	// Once 1..2 are chosen the leader proposes its no-op at 3.
	step(t, c, Message{Type: MsgAccepted, From: 1, Ballot: c.ballot, Instance: 1, Last: 2, Commit: 1})
	ready(t, c)
	if c.commit != 3 || c.next != 4 || c.get(3) == nil || !c.get(3).e.Noop || c.get(3).e.Ballot != c.ballot {
		t.Fatalf("commit %d, next %d after 1..2 chosen; want the no-op firstOwn proposed at 3", c.commit, c.next)
	}
}

// Positions: with all MaxPeers taken, a new id gets the position of one
// that is not a member, but never that of the sender of the message being
// stepped nor that of another member of the set being installed. Before,
// a Chosen from a member this replica did not know yet, carrying the
// AddLearner of another, gave the learner the sender's position, and
// noting the sender's commit then indexed position −1.
func TestPositionOfTheSenderIsNotReusedWhileStepping(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	for id := uint64(100); len(n.peers) < MaxPeers; id++ {
		step(t, n, Message{Type: MsgHeartbeatAck, From: id, Commit: 1}) // strangers fill every position
	}
	add := MemberChange{Op: OpAddLearner, ID: 300}.Encode()
	step(t, n, Message{Type: MsgChosen, From: 200, Instance: 1, Commit: 2,
		Entries: []Entry{{Instance: 1, Ballot: b(1, 1), Value: add, Conf: true}}})
	if n.commit != 2 || n.peerIndex(200) < 0 || n.peerIndex(300) < 0 {
		t.Fatalf("commit %d, positions of 200 and 300: %d, %d; want 2 and both placed", n.commit, n.peerIndex(200), n.peerIndex(300))
	}
}

// With all MaxPeers positions taken, two members new to this replica in
// one member set (a snapshot) get a position each. Before, the second took
// the first's (it was outside the old member mask) and the first was left
// without one: outside every mask, never sent to, never counted.
func TestNewMembersOfOneSetGetAPositionEach(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	for id := uint64(100); len(n.peers) < MaxPeers; id++ {
		step(t, n, Message{Type: MsgHeartbeatAck, From: id, Commit: 1})
	}
	m := Members{Alpha: 6, Epoch: 4, Members: []Member{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3, Voter: true},
		{ID: 400, Nonce: 4}, {ID: 401, Nonce: 5}}}
	if err := n.RestoreSnapshotMembers(5, m); err != nil {
		t.Fatal(err)
	}
	a, c := n.peerIndex(400), n.peerIndex(401)
	if a < 0 || c < 0 || !n.target(a) || !n.target(c) {
		t.Fatalf("positions of learners 400 and 401: %d, %d; want each its own, both members", a, c)
	}
}
