package paxos

import "testing"

// A new leader below a promiser's truncated commit learns the gap by a
// snapshot (TestLeaderNeverReproposesBelowATruncatedCommit). Restoring it
// ends that leadership, but its followers granted it the lease: nobody else
// may lead until that runs out. So it takes the leadership back at once with
// a higher ballot instead of leaving the cell without a leader for a lease
// and an election timeout.
func TestLeaderRestoringASnapshotLeadsAgainAtOnce(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	n.Campaign()
	ready(t, n)
	first := n.ballot
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: first, Instance: n.p1from, Commit: 6, Snapshot: 5})
	if n.role != Leader {
		t.Fatalf("role %v after a majority promised", n.role)
	}
	rd := ready(t, n)
	if cu := msgsOf(rd, MsgCatchUp); len(cu) != 1 || cu[0].To != 2 {
		t.Fatalf("messages %+v; want a CatchUp to 2", rd.Messages)
	}
	step(t, n, Message{Type: MsgHeartbeatAck, From: 2, Ballot: first, Lease: n.leaseRound, Commit: 6})
	ready(t, n)
	if !n.LeaseValid() {
		t.Fatal("no lease after a majority acknowledged the round")
	}
	if err := n.RestoreSnapshot(5); err != nil {
		t.Fatal(err)
	}
	rd = ready(t, n)
	if n.commit != 6 {
		t.Fatalf("commit %d after restoring snapshot 5; want 6", n.commit)
	}
	p := msgsOf(rd, MsgPrepare)
	if n.role != Candidate || len(p) != 2 || !first.Less(p[0].Ballot) || p[0].Instance != 6 {
		t.Fatalf("after the snapshot: role %v, Prepares %+v; want a campaign above %v from instance 6", n.role, p, first)
	}
}
