package paxos

import "testing"

// An instance below a promiser's first unchosen one is chosen; if that
// promiser truncated it (its snapshot covers it) and so reported no value,
// the new leader must learn it by catch-up and never re-propose a value
// another promiser (or itself) accepted at a lower ballot: that value may
// not be the chosen one, and a follower that accepted the chosen value
// without knowing it chosen would take the stale one at the new ballot,
// choosing a second value.
func TestLeaderNeverReproposesBelowATruncatedCommit(t *testing.T) {
	// Replica 1 accepted "stale" for instance 1 at ballot 1.3, then promised
	// 2.2 and heard no more: 2.2 chose another value there with replicas 2
	// and 3, and replica 2 has since truncated it (snapshot 5).
	n := newTestNode(t, 1, 3, State{Promised: b(2, 2), Entries: []Entry{at(val("stale"), 1, b(1, 3))}})
	n.Campaign()
	ready(t, n)
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Commit: 6, Snapshot: 5})
	if n.role != Leader {
		t.Fatalf("role %v after a majority promised", n.role)
	}
	for _, m := range ready(t, n).Messages {
		if m.Type != MsgAccept {
			continue
		}
		for _, e := range m.Entries {
			if e.Instance < 6 && !e.Noop {
				t.Fatalf("the new leader re-proposed %s below instance 6, which promiser 2 reported chosen and truncated", fmtEntries(m.Entries))
			}
			if e.Instance < 6 {
				t.Fatalf("the new leader proposed a no-op for chosen instance %d", e.Instance)
			}
		}
	}
}

// A candidate so far behind that a promise reports values beyond what its
// Phase 1 can hold (maxAhead past its first unchosen instance) must not
// lead: it would drop those reports and later propose other values where
// one may be chosen. It gives up this Phase 1 and catches up first.
func TestFarBehindCandidateDoesNotLead(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	n.Campaign()
	ready(t, n)
	far := uint64(maxAhead) + 100
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Commit: far, Snapshot: far - 1,
		Entries: []Entry{at(val("x"), far+5, b(1, 2))}})
	if n.role == Leader {
		t.Fatalf("a candidate %d instances behind became leader", far)
	}
	rd := ready(t, n)
	if cu := msgsOf(rd, MsgCatchUp); len(cu) != 1 || cu[0].To != 2 {
		t.Fatalf("messages %+v; want a CatchUp to 2", rd.Messages)
	}
}

// A Promise that does not fit in one message covers only part of the
// acceptor's records. A candidate may not propose in an instance for which
// it has not seen every promiser's accepted value, so it counts a promiser
// for its majority only once that promiser's report is complete: it asks
// for the rest, and leads with the values of every part.
func TestCandidateLeadsOnlyOnCompleteReports(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	n.Campaign()
	p := msgsOf(ready(t, n), MsgPrepare)
	if len(p) != 2 || p[0].Last != p[0].Instance {
		t.Fatalf("Prepares %+v; want Last = Instance (the candidate takes split reports)", p)
	}
	bal := n.ballot
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: bal, Instance: 1, Last: 1, Commit: 1,
		Entries: []Entry{at(val("a"), 1, b(0, 3))}})
	if n.role != Candidate {
		t.Fatalf("role %v on a majority whose report is partial; want candidate", n.role)
	}
	rest := msgsOf(ready(t, n), MsgPrepare)
	if len(rest) != 1 || rest[0].To != 2 || rest[0].Ballot != bal || rest[0].Instance != 1 || rest[0].Last != 2 {
		t.Fatalf("Prepares %+v; want one to 2 for the rest from instance 2", rest)
	}
	// Unanswered, it asks again after a heartbeat.
	for range n.cfg.HeartbeatTicks {
		n.Tick()
	}
	if again := msgsOf(ready(t, n), MsgPrepare); len(again) != 1 || again[0].Last != 2 {
		t.Fatalf("Prepares %+v after a heartbeat; want the request for the rest again", again)
	}
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: bal, Instance: 1, Commit: 1,
		Entries: []Entry{at(val("b"), 2, b(0, 3)), at(val("c"), 4, b(0, 3))}})
	if n.role != Leader {
		t.Fatalf("role %v once the report is complete; want leader", n.role)
	}
	var got []Entry
	for _, m := range msgsOf(ready(t, n), MsgAccept) {
		if m.To == 2 {
			got = append(got, m.Entries...)
		}
	}
	want := []Entry{at(val("a"), 1, bal), at(val("b"), 2, bal), {Instance: 3, Ballot: bal, Noop: true}, at(val("c"), 4, bal),
		{Instance: 5, Ballot: bal, Noop: true}}
	if fmtEntries(got) != fmtEntries(want) {
		t.Fatalf("Accepts %s; want %s", fmtEntries(got), fmtEntries(want))
	}
}

// An acceptor answers a request for the rest of its report only while its
// promise is still that ballot: after promising a higher one it may have
// accepted values the first part did not show, so it refuses.
func TestRestOfPromiseOnlyUnderTheSamePromise(t *testing.T) {
	var es []Entry
	for i := uint64(1); i <= 6; i++ {
		es = append(es, at(val("vvvvvvvvvvvvvvvv"), i, b(1, 3)))
	}
	n := newTestNode(t, 2, 3, State{Promised: b(1, 3), Entries: es})
	for range n.cfg.LeaseTicks + 1 {
		n.Tick() // the lease a restarted acceptor assumes it granted
	}
	ready(t, n)
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(2, 1), Instance: 1, Last: 1})
	pr := msgsOf(ready(t, n), MsgPromise)
	if len(pr) != 1 || pr[0].Last == 0 || len(pr[0].Entries) == len(es) {
		t.Fatalf("Promise %+v; want a partial one (MaxMessageBytes %d)", pr, n.cfg.MaxMessageBytes)
	}
	through := pr[0].Last
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(2, 1), Instance: 1, Last: through + 1})
	pr = msgsOf(ready(t, n), MsgPromise)
	if len(pr) != 1 || pr[0].Entries[0].Instance != through+1 {
		t.Fatalf("Promise %+v; want the records from %d", pr, through+1)
	}
	for range 2*n.cfg.HeartbeatTicks + 1 {
		n.Tick() // the hold for 1 (holdFor): no Accept of 2.1 came
	}
	step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(3, 3), Instance: 1, Last: 1})
	if msgsOf(ready(t, n), MsgPromise) == nil {
		t.Fatal("no Promise of 3.3 once the hold for 1 ran out")
	}
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(2, 1), Instance: 1, Last: through + 1})
	rd := ready(t, n)
	if len(msgsOf(rd, MsgPromise)) != 0 || len(msgsOf(rd, MsgReject)) != 1 {
		t.Fatalf("messages %+v after promising 3.3; want a Reject and no Promise", rd.Messages)
	}
}

// maxAhead is measured from an acceptor's first unchosen instance, not from
// its log's base: a replica that keeps many chosen instances uncompacted (a
// long SnapshotEvery, or snapshots that keep failing) still accepts and
// learns the next instances. Before, one with maxAhead instances
// uncompacted refused every Accept: with a majority like it, the cell
// stopped.
func TestUncompactedAcceptorAcceptsTheNextInstances(t *testing.T) {
	var es []Entry
	for i := uint64(1); i <= 20; i++ {
		es = append(es, at(val("x"), i, b(1, 1)))
	}
	n := newTestNode(t, 2, 3, State{Promised: b(1, 1), Entries: es, Chosen: 20})
	n.ahead = 16 // stands for 2^20: base 1, commit 21
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Commit: 21, Entries: []Entry{at(val("y"), 21, b(1, 1))}})
	if acc := msgsOf(ready(t, n), MsgAccepted); len(acc) != 1 || acc[0].Instance != 21 {
		t.Fatalf("Accepted %+v; want instance 21 acknowledged", acc)
	}
	step(t, n, Message{Type: MsgChosen, From: 3, Instance: 21, Commit: 23,
		Entries: []Entry{at(val("y"), 21, b(1, 1)), at(val("z"), 22, b(1, 1))}})
	ready(t, n)
	if n.commit != 23 {
		t.Fatalf("commit %d after learning 21 and 22; want 23", n.commit)
	}
	// Still bounded ahead of the first unchosen instance.
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Commit: 23, Entries: []Entry{at(val("far"), 23+16, b(1, 1))}})
	if acc := msgsOf(ready(t, n), MsgAccepted); len(acc) != 0 {
		t.Fatalf("Accepted %+v for an instance maxAhead past the first unchosen; want none", acc)
	}
}
