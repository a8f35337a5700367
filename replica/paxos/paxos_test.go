package paxos

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Unit tests named after the sentence of the papers they check ("Paxos
// Made Simple", "Paxos Made Live") or the rule of DESIGN.md.

func testConfig(id uint64, n int) Config {
	peers := make([]uint64, n)
	for i := range peers {
		peers[i] = uint64(i + 1)
	}
	return Config{ID: id, Peers: peers, HeartbeatTicks: 2, ElectionTicks: 10, LeaseTicks: 8, DriftTicks: 1,
		Window: 4, MaxBatchBytes: 16, MaxMessageBytes: 64}
}

func newTestNode(t *testing.T, id uint64, n int, st State) *Node {
	t.Helper()
	node, err := New(testConfig(id, n), st)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return node
}

// ready takes one Ready, copies it (its slices are reused after Advance)
// and advances it.
func ready(t *testing.T, n *Node) Ready {
	t.Helper()
	rd, err := n.Ready()
	if err != nil {
		t.Fatalf("Ready: %v", err)
	}
	rd.Messages, rd.Accepted = slices.Clone(rd.Messages), slices.Clone(rd.Accepted)
	rd.Chosen, rd.Snapshots = slices.Clone(rd.Chosen), slices.Clone(rd.Snapshots)
	if err := n.Advance(); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	return rd
}

func step(t *testing.T, n *Node, m Message) {
	t.Helper()
	m.To = n.cfg.ID
	if err := n.Step(m); err != nil {
		t.Fatalf("Step(%+v): %v", m, err)
	}
}

func msgsOf(rd Ready, typ MessageType) []Message {
	var out []Message
	for _, m := range rd.Messages {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func b(round, id uint64) Ballot { return Ballot{Round: round, ID: id} }

func val(s string) Entry { return Entry{Value: []byte(s)} }

func at(e Entry, i uint64, bal Ballot) Entry { e.Instance, e.Ballot = i, bal; return e }

// "If an acceptor receives a prepare request with number n greater than
// that of any prepare request to which it has already responded, then it
// responds with a promise not to accept any more proposals numbered less
// than n" — and an accept below the promise is refused.
func TestAcceptorRejectsLowerBallot(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(2, 3), Instance: 1})
	ready(t, n)
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Entries: []Entry{at(val("x"), 1, b(1, 1))}})
	rd := ready(t, n)
	if len(rd.Accepted) != 0 || len(msgsOf(rd, MsgAccepted)) != 0 {
		t.Fatalf("accepted below its promise: %+v", rd)
	}
	rej := msgsOf(rd, MsgReject)
	if len(rej) != 1 || rej[0].Ballot != b(2, 3) || rej[0].To != 1 {
		t.Fatalf("Reject = %+v; want one Reject carrying promise 2.3 to 1", rej)
	}
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(1, 1), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 0 || len(msgsOf(rd, MsgReject)) != 1 {
		t.Fatalf("lower Prepare answered %+v; want a Reject", rd.Messages)
	}
}

// "... and with the proposal with the highest number less than n that it
// has accepted, if any." The promise is durable before it is revealed.
func TestAcceptorPromiseReportsAcceptedValues(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Entries: []Entry{at(val("x"), 5, b(1, 1))}})
	ready(t, n)
	n.now, n.grantUntil = 100, 0 // the lease granted to 1 is over
	step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(2, 3), Instance: 1})
	rd := ready(t, n)
	if rd.Promised == nil || *rd.Promised != b(2, 3) || !rd.MustSync {
		t.Fatalf("Ready.Promised = %v, MustSync %v; want 2.3 synced with the Promise", rd.Promised, rd.MustSync)
	}
	p := msgsOf(rd, MsgPromise)
	if len(p) != 1 || len(p[0].Entries) != 1 || p[0].Entries[0].Instance != 5 || string(p[0].Entries[0].Value) != "x" || p[0].Entries[0].Ballot != b(1, 1) {
		t.Fatalf("Promise = %+v; want entry 5 = x at 1.1", p)
	}
}

// "An acceptor can accept a proposal numbered n iff it has not responded to
// a prepare request having a number greater than n" — and its Accepted
// leaves only with the accepted value in the same synced batch.
func TestAcceptorPersistsAcceptedValueBeforeReplying(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(1, 1), Lease: 1,
		Entries: []Entry{at(val("x"), 1, b(1, 1)), at(val("y"), 2, b(1, 1))}})
	rd := ready(t, n)
	if !rd.MustSync || len(rd.Accepted) != 2 || rd.Promised == nil {
		t.Fatalf("Ready = %+v; want both entries and the promise 1.1 to persist with sync", rd)
	}
	a := msgsOf(rd, MsgAccepted)
	if len(a) != 1 || a[0].Instance != 1 || a[0].Last != 2 || a[0].Lease != 1 {
		t.Fatalf("Accepted = %+v; want 1..2 echoing lease round 1", a)
	}
}

// campaignWith makes node 1 of a cell of size a candidate and feeds it
// promises, which must make it leader.
func campaignWith(t *testing.T, size int, promises ...Message) (*Node, Ready) {
	t.Helper()
	n := newTestNode(t, 1, size, State{})
	n.Campaign()
	ready(t, n) // persist our promise: it now counts
	for _, p := range promises {
		p.Type, p.Ballot, p.Instance = MsgPromise, n.ballot, n.p1from
		step(t, n, p)
	}
	if n.role != Leader {
		t.Fatalf("role %v after promises", n.role)
	}
	return n, ready(t, n)
}

// "...a proposer issues a proposal with number n and value v, where v is
// the value of the highest-numbered proposal among the responses."
func TestProposerAdoptsHighestAcceptedValue(t *testing.T) {
	_, rd := campaignWith(t, 5,
		Message{From: 2, Commit: 1, Entries: []Entry{at(val("low"), 1, b(1, 2))}},
		Message{From: 3, Commit: 1, Entries: []Entry{at(val("high"), 1, b(1, 3))}},
	)
	acc := msgsOf(rd, MsgAccept)
	if len(acc) != 4 {
		t.Fatalf("Accepts = %+v", acc)
	}
	es := acc[0].Entries
	if len(es) != 2 || string(es[0].Value) != "high" || es[0].Ballot != acc[0].Ballot || !es[1].Noop {
		t.Fatalf("Accept entries = %s; want high re-proposed at the new ballot, then a no-op", fmtEntries(es))
	}
}

// Paxos Made Simple, 3: the new leader "fills the gaps with no-op
// commands" so that later instances can be executed.
func TestProposerFillsGapsWithNoops(t *testing.T) {
	_, rd := campaignWith(t, 3, Message{From: 2, Commit: 1, Entries: []Entry{at(val("c"), 3, b(1, 2))}})
	es := msgsOf(rd, MsgAccept)[0].Entries
	if got := fmtEntries(es); got != "[1@1.1:noop 2@1.1:noop 3@1.1:c 4@1.1:noop]" {
		t.Fatalf("Accept entries = %s", got)
	}
}

// A value a promiser knows is chosen is re-proposed whatever ballots the
// others report, and is never overwritten by a no-op even when the
// promiser has truncated it.
func TestProposerKeepsValuesKnownChosen(t *testing.T) {
	n, rd := campaignWith(t, 5,
		Message{From: 2, Commit: 2, Entries: []Entry{at(val("chosen"), 1, b(1, 2))}},
		Message{From: 3, Commit: 1, Entries: []Entry{at(val("other"), 1, b(1, 3))}},
	)
	es := msgsOf(rd, MsgAccept)[0].Entries
	if string(es[0].Value) != "chosen" {
		t.Fatalf("Accept entries = %s; want the chosen value first", fmtEntries(es))
	}
	if len(rd.Chosen) != 1 || string(rd.Chosen[0].Value) != "chosen" || n.commit != 2 {
		t.Fatalf("leader did not learn the chosen value: Chosen %+v commit %d", rd.Chosen, n.commit)
	}
	// A promiser whose log is truncated through 6 (chosen, values unknown).
	_, rd = campaignWith(t, 3, Message{From: 2, Commit: 7, Snapshot: 6})
	es = msgsOf(rd, MsgAccept)[0].Entries
	if got := fmtEntries(es); got != "[7@1.1:noop]" {
		t.Fatalf("Accept entries = %s; want only the leader's no-op after the truncated instances", got)
	}
	if cu := msgsOf(rd, MsgCatchUp); len(cu) != 1 || cu[0].To != 2 {
		t.Fatalf("CatchUp = %+v; want one to the promiser ahead", cu)
	}
}

// Ballots are (round, id); "a replica picks the smallest round larger than
// any it has seen, so ballots never collide".
func TestProposerPicksRoundAboveAnySeen(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	step(t, n, Message{Type: MsgHeartbeat, From: 3, Ballot: b(7, 3)})
	ready(t, n)
	n.Campaign()
	if n.ballot != b(8, 1) {
		t.Fatalf("ballot = %v; want 8.1", n.ballot)
	}
	if !b(8, 1).Less(b(8, 2)) || !b(7, 9).Less(b(8, 1)) || b(8, 1).Compare(b(8, 1)) != 0 {
		t.Fatal("ballot order is not lexicographic")
	}
}

// DESIGN: the leader counts its own acceptance only once it is durable.
func TestLeaderCountsItselfOnlyAfterPersist(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1})
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: 1})
	ready(t, n)
	i, err := n.Propose([]byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := n.Ready()                                                                      // the leader's write of v is in flight
	step(t, n, Message{Type: MsgAccepted, From: 3, Ballot: n.ballot, Instance: i, Last: i}) // one follower
	if n.commit > i {
		t.Fatalf("instance %d chosen with one durable acceptance", i)
	}
	_ = rd
	if err := n.Advance(); err != nil {
		t.Fatal(err)
	}
	if n.commit != i+1 {
		t.Fatalf("commit = %d after the leader's write; want %d", n.commit, i+1)
	}
}

// Master lease: "a replica that granted a leader its lease refuses Phase 1
// from others until the lease ends".
func TestFollowerRefusesPrepareDuringGrantedLease(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	step(t, n, Message{Type: MsgHeartbeat, From: 1, Ballot: b(1, 1), Lease: 1})
	ready(t, n)
	for tick := 0; tick <= n.cfg.LeaseTicks; tick++ {
		step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(5, 3), Instance: 1})
		if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 0 {
			t.Fatalf("promised 5.3 %d ticks into a %d-tick lease", tick, n.cfg.LeaseTicks)
		}
		n.Tick()
		ready(t, n)
	}
	step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(5, 3), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 1 {
		t.Fatalf("no promise after the lease: %+v", rd.Messages)
	}
}

// A follower releases the lease it granted when that very ballot's leader
// resigns: it then promises to another proposer at once, and the named
// successor campaigns without waiting for its election timeout.
func TestFollowerReleasesGrantOnResign(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	if rd := resignedTo(t, n, 3, b(1, 1)); rd.Role != Follower || rd.Leader != 0 || len(rd.Messages) != 0 {
		t.Fatalf("after a Resign naming 3: role %v leader %d messages %+v; want a follower with no leader, silent", rd.Role, rd.Leader, rd.Messages)
	}
	step(t, n, Message{Type: MsgPrepare, From: 3, Ballot: b(2, 3), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 1 {
		t.Fatalf("no promise to 3 right after 1 resigned: %+v", rd.Messages)
	}
	s := newTestNode(t, 3, 3, State{})
	if rd := resignedTo(t, s, 3, b(1, 1)); rd.Role != Candidate || len(msgsOf(rd, MsgPrepare)) != 2 {
		t.Fatalf("the successor: role %v, messages %+v; want a candidate sending 2 Prepares", rd.Role, rd.Messages)
	}
}

// resignedTo has n follow the leaders of ballots (a heartbeat of each, in
// order), then steps a Resign of the first naming successor, and returns
// the Ready that follows.
func resignedTo(t *testing.T, n *Node, successor uint64, ballots ...Ballot) Ready {
	t.Helper()
	for _, bal := range ballots {
		step(t, n, Message{Type: MsgHeartbeat, From: bal.ID, Ballot: bal, Lease: 1})
	}
	ready(t, n)
	step(t, n, Message{Type: MsgResign, From: ballots[0].ID, Ballot: ballots[0], Last: successor})
	return ready(t, n)
}

// A Resign of a ballot other than the one promised is stale (a duplicate,
// or from a leader already superseded): it releases nothing, so the lease
// granted to the current leader still holds.
func TestFollowerIgnoresStaleResign(t *testing.T) {
	n := newTestNode(t, 2, 3, State{})
	if rd := resignedTo(t, n, 2, b(1, 1), b(2, 3)); rd.Role != Follower || rd.Leader != 3 || len(rd.Messages) != 0 {
		t.Fatalf("after a stale Resign: role %v leader %d messages %+v; want a silent follower of 3", rd.Role, rd.Leader, rd.Messages)
	}
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(3, 1), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 0 {
		t.Fatalf("promised 3.1 inside the lease granted to 3: %+v", rd.Messages)
	}
}

// Resign is for a leader only; and a leader that resigned no longer
// claims its lease, even if it is elected again before that lease would
// have run out.
func TestResignEndsTheLeaseForGood(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	if got := n.Resign(); got != 0 || n.HasReady() {
		t.Fatalf("Resign on a follower = %d, has ready %v; want a no-op", got, n.HasReady())
	}
	n, _ = campaignWith(t, 3, Message{Type: MsgPromise, From: 2, Ballot: b(1, 1), Instance: 1, Commit: 1})
	step(t, n, Message{Type: MsgAccepted, From: 3, Ballot: n.ballot, Instance: 1, Last: 1, Lease: 1, Commit: 1})
	if !n.LeaseValid() {
		t.Fatal("no lease after a majority acknowledged the first round")
	}
	if got := n.Resign(); got != 3 || n.LeaseValid() {
		t.Fatalf("Resign = %d, lease %v; want successor 3 (the only follower heard from), no lease", got, n.LeaseValid())
	}
	rd := ready(t, n)
	if rs := msgsOf(rd, MsgResign); len(rs) != 2 || rs[0].Last != 3 || rs[0].Ballot != b(1, 1) || rd.Role != Follower {
		t.Fatalf("Ready after Resign: role %v, messages %+v; want a follower sending 2 Resigns of 1.1 naming 3", rd.Role, rd.Messages)
	}
	n.Campaign()
	ready(t, n)
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Commit: 1})
	ready(t, n)
	if n.Status().Role != Leader || n.LeaseValid() {
		t.Fatalf("re-elected at once: role %v lease %v; want a leader without the resigned lease", n.Status().Role, n.LeaseValid())
	}
}

// A restarted replica does not remember to whom it granted a lease, so it
// refuses every Phase 1 for a full lease.
func TestRestartedAcceptorWaitsOutUnknownLease(t *testing.T) {
	n := newTestNode(t, 2, 3, State{Promised: b(1, 1)})
	for range n.cfg.LeaseTicks {
		n.Tick()
	}
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(2, 1), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 0 {
		t.Fatal("restarted acceptor promised inside the lease it may have granted")
	}
	n.Tick()
	step(t, n, Message{Type: MsgPrepare, From: 1, Ballot: b(2, 1), Instance: 1})
	if rd := ready(t, n); len(msgsOf(rd, MsgPromise)) != 1 {
		t.Fatal("no promise after the lease")
	}
}

// The hard part "reads after a leader change": no lease read before an
// entry of the leader's own ballot is chosen, nor after the lease.
func TestNewLeaderServesLeaseReadsOnlyAfterOwnEntryChosen(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1, Entries: []Entry{at(val("old"), 1, b(1, 2))}})
	if _, ok := n.ReadBarrier(); ok {
		t.Fatal("lease read allowed before any acknowledgement")
	}
	step(t, n, Message{Type: MsgHeartbeatAck, From: 2, Ballot: n.ballot, Lease: 1})
	if !n.LeaseValid() {
		t.Fatal("no lease after a majority acknowledged round 1")
	}
	if _, ok := n.ReadBarrier(); ok {
		t.Fatal("lease read allowed before the leader's no-op is chosen")
	}
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: 2})
	if bar, ok := n.ReadBarrier(); !ok || bar != 2 {
		t.Fatalf("ReadBarrier = %d, %v; want 2, true", bar, ok)
	}
	// LeaseRead counts down the same lease: k ticks from now a read is
	// covered exactly while ReadBarrier would still allow it then.
	inst, left := n.LeaseRead()
	if inst != 2 || left != uint64(n.cfg.LeaseTicks-n.cfg.DriftTicks)-n.now {
		t.Fatalf("LeaseRead = %d, %d; want 2, %d", inst, left, uint64(n.cfg.LeaseTicks-n.cfg.DriftTicks)-n.now)
	}
	for k := uint64(0); n.LeaseValid(); k++ {
		if k >= left {
			t.Fatalf("lease still valid %d ticks on; LeaseRead promised %d", k, left)
		}
		n.Tick()
		ready(t, n)
	}
	if inst, left := n.LeaseRead(); inst != 0 || left != 0 {
		t.Fatalf("LeaseRead after the lease = %d, %d; want 0, 0", inst, left)
	}
	if n.now != uint64(n.cfg.LeaseTicks-n.cfg.DriftTicks) {
		t.Fatalf("lease ended at tick %d; want LeaseTicks-DriftTicks = %d", n.now, n.cfg.LeaseTicks-n.cfg.DriftTicks)
	}
	if _, ok := n.ReadBarrier(); ok {
		t.Fatal("lease read allowed after the lease")
	}
}

// A follower marks chosen only what it accepted under the leader's ballot,
// and asks for the rest.
func TestFollowerLearnsCommitOnlyForMatchingBallot(t *testing.T) {
	n := newTestNode(t, 2, 3, State{Promised: b(1, 1), Entries: []Entry{at(val("old"), 1, b(1, 1))}})
	step(t, n, Message{Type: MsgAccept, From: 3, Ballot: b(2, 3), Commit: 3, Entries: []Entry{at(val("new"), 2, b(2, 3))}})
	rd := ready(t, n)
	if n.commit != 1 {
		t.Fatalf("commit = %d; instance 1 was accepted at 1.1, not 2.3", n.commit)
	}
	if cu := msgsOf(rd, MsgCatchUp); len(cu) != 1 || cu[0].Instance != 1 {
		t.Fatalf("CatchUp = %+v; want one from instance 1", cu)
	}
	step(t, n, Message{Type: MsgChosen, From: 3, Commit: 3, Entries: []Entry{at(val("x"), 1, b(2, 3)), at(val("new"), 2, b(2, 3))}})
	rd = ready(t, n)
	if n.commit != 3 || len(rd.Chosen) != 2 || string(rd.Chosen[0].Value) != "x" || rd.ChosenMark != 2 {
		t.Fatalf("after Chosen: commit %d, Chosen %s, mark %d", n.commit, fmtEntries(rd.Chosen), rd.ChosenMark)
	}
	if len(rd.Accepted) != 1 || string(rd.Accepted[0].Value) != "x" {
		t.Fatalf("the learned value must be persisted with its mark: %s", fmtEntries(rd.Accepted))
	}
}

func TestCompactedInstancesAreServedBySnapshot(t *testing.T) {
	var es []Entry
	for i := uint64(1); i <= 5; i++ {
		es = append(es, at(val(fmt.Sprint(i)), i, b(1, 1)))
	}
	n := newTestNode(t, 1, 3, State{Promised: b(1, 1), Entries: es, Chosen: 5, Applied: 5})
	if err := n.Compact(3); err != nil {
		t.Fatal(err)
	}
	if err := n.Compact(9); !errors.Is(err, ErrBadInstance) {
		t.Fatalf("Compact beyond applied: %v; want ErrBadInstance", err)
	}
	step(t, n, Message{Type: MsgCatchUp, From: 2, Instance: 2})
	rd := ready(t, n)
	if !slices.Equal(rd.Snapshots, []uint64{2}) {
		t.Fatalf("Snapshots = %v; want [2]", rd.Snapshots)
	}
	step(t, n, Message{Type: MsgCatchUp, From: 3, Instance: 4})
	rd = ready(t, n)
	if c := msgsOf(rd, MsgChosen); len(c) != 1 || fmtEntries(c[0].Entries) != "[4@1.1:4 5@1.1:5]" {
		t.Fatalf("Chosen reply = %+v", c)
	}
}

func TestRestoreSnapshotMovesPastIt(t *testing.T) {
	n := newTestNode(t, 3, 3, State{})
	if err := n.RestoreSnapshot(10); err != nil {
		t.Fatal(err)
	}
	rd := ready(t, n)
	if n.commit != 11 || n.applied != 10 || rd.ChosenMark != 10 || len(rd.Chosen) != 0 {
		t.Fatalf("after restore: commit %d applied %d mark %d chosen %d", n.commit, n.applied, rd.ChosenMark, len(rd.Chosen))
	}
	n.Campaign()
	if _, err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := n.RestoreSnapshot(20); !errors.Is(err, ErrReadyPending) {
		t.Fatalf("RestoreSnapshot with a Ready out: %v; want ErrReadyPending", err)
	}
}

func TestRecoveredStateIsReplayed(t *testing.T) {
	st := State{Promised: b(3, 2), Snapshot: 2, Chosen: 4, Applied: 3,
		Entries: []Entry{at(val("c"), 3, b(1, 1)), at(val("d"), 4, b(1, 1)), at(val("e"), 5, b(3, 2))}}
	n := newTestNode(t, 1, 3, st)
	rd := ready(t, n)
	if fmtEntries(rd.Chosen) != "[4@1.1:d]" || n.commit != 5 || n.maxRound != 3 {
		t.Fatalf("Chosen %s commit %d maxRound %d", fmtEntries(rd.Chosen), n.commit, n.maxRound)
	}
}

// A snapshot ahead of the chosen mark, and records it covers that are not
// deleted yet, are normal after a crash: New takes the snapshot's word.
func TestNewToleratesSnapshotAheadOfMark(t *testing.T) {
	n := newTestNode(t, 1, 3, State{Snapshot: 5, Chosen: 3, Entries: []Entry{at(val("old"), 4, b(1, 1)), at(val("x"), 6, b(1, 1))}})
	if n.commit != 6 || n.applied != 5 || n.base != 6 {
		t.Fatalf("commit %d applied %d base %d; want 6, 5, 6", n.commit, n.applied, n.base)
	}
}

func TestNewRejectsInconsistentState(t *testing.T) {
	for _, st := range []State{
		{Snapshot: 5, Chosen: 4, Applied: 6},
		{Chosen: 3},
		{Entries: []Entry{at(val("x"), 0, b(1, 1))}},
		{Entries: []Entry{at(val("x"), 1, b(1, 1)), at(val("y"), 1, b(1, 1))}},
		{Chosen: 1, Applied: 2, Entries: []Entry{at(val("x"), 1, b(1, 1))}},
	} {
		if _, err := New(testConfig(1, 3), st); !errors.Is(err, ErrInvalidState) {
			t.Errorf("New(%+v) = %v; want ErrInvalidState", st, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig(1, 3)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"zero id":              func(c *Config) { c.ID = 0 },
		"id not a peer":        func(c *Config) { c.ID = 9 },
		"duplicate peer":       func(c *Config) { c.Peers = []uint64{1, 2, 2} },
		"heartbeat zero":       func(c *Config) { c.HeartbeatTicks = 0 },
		"election <= hb":       func(c *Config) { c.ElectionTicks = c.HeartbeatTicks },
		"lease <= heartbeat":   func(c *Config) { c.LeaseTicks = 1 },
		"drift >= lease":       func(c *Config) { c.DriftTicks = c.LeaseTicks },
		"window zero":          func(c *Config) { c.Window = 0 },
		"message below batch":  func(c *Config) { c.MaxMessageBytes = c.MaxBatchBytes - 1 },
		"lease beyond ring":    func(c *Config) { c.LeaseTicks = leaseRing * c.HeartbeatTicks },
		"batch bytes negative": func(c *Config) { c.MaxBatchBytes = -1 },
	} {
		c := good
		c.Peers = slices.Clone(good.Peers)
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v; want ErrInvalidConfig", name, err)
		}
	}
}

func TestProposeErrors(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	if _, err := n.Propose([]byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower Propose: %v", err)
	}
	n, _ = campaignWith(t, 3, Message{From: 2, Commit: 1})
	if _, err := n.Propose(nil); !errors.Is(err, ErrEmptyValue) {
		t.Errorf("empty: %v", err)
	}
	if _, err := n.Propose(make([]byte, 17)); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("too large: %v", err)
	}
	var err error
	for range 5 {
		_, err = n.Propose([]byte("v"))
	}
	if !errors.Is(err, ErrWindowFull) {
		t.Errorf("window of 4 with the no-op in flight: %v", err)
	}
}

func TestReadyAdvanceMisuse(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	if err := n.Advance(); !errors.Is(err, ErrNoReady) {
		t.Errorf("Advance first: %v", err)
	}
	n.Campaign()
	if _, err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	if n.HasReady() {
		t.Error("HasReady with a Ready outstanding")
	}
	if _, err := n.Ready(); !errors.Is(err, ErrReadyPending) {
		t.Errorf("second Ready: %v", err)
	}
}

func TestStepRejectsMalformedMessages(t *testing.T) {
	n := newTestNode(t, 1, 3, State{})
	for name, m := range map[string]Message{
		"unknown type":        {Type: 99, From: 2, To: 1},
		"wrong recipient":     {Type: MsgPrepare, From: 2, To: 3, Ballot: b(1, 2)},
		"from self":           {Type: MsgPrepare, From: 1, To: 1, Ballot: b(1, 1)},
		"foreign ballot":      {Type: MsgAccept, From: 2, To: 1, Ballot: b(1, 3)},
		"instance zero":       {Type: MsgAccept, From: 2, To: 1, Ballot: b(1, 2), Entries: []Entry{at(val("x"), 0, b(1, 2))}},
		"empty value":         {Type: MsgAccept, From: 2, To: 1, Ballot: b(1, 2), Entries: []Entry{{Instance: 1, Ballot: b(1, 2)}}},
		"entry ballot":        {Type: MsgAccept, From: 2, To: 1, Ballot: b(2, 2), Entries: []Entry{at(val("x"), 1, b(1, 2))}},
		"inverted range":      {Type: MsgAccepted, From: 2, To: 1, Ballot: b(1, 1), Instance: 5, Last: 4},
		"noop with values":    {Type: MsgChosen, From: 2, To: 1, Entries: []Entry{{Instance: 1, Noop: true, Value: []byte("x")}}},
		"resign of other":     {Type: MsgResign, From: 2, To: 1, Ballot: b(1, 3)},
		"resign to self":      {Type: MsgResign, From: 2, To: 1, Ballot: b(1, 2), Last: 2},
		"from nobody":         {Type: MsgHeartbeat, From: 0, To: 1},
		"member change no-op": {Type: MsgChosen, From: 2, To: 1, Entries: []Entry{{Instance: 1, Noop: true, Conf: true}}},
		"rebuild no nonce":    {Type: MsgRebuild, From: 2, To: 1, Commit: 1},
		"fenced no nonce":     {Type: MsgFenced, From: 2, To: 1, Ballot: b(1, 2), Instance: 1},
		"fenced of other":     {Type: MsgFenced, From: 2, To: 1, Ballot: b(1, 3), Instance: 1, Lease: 7},
	} {
		if err := n.Step(m); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: Step = %v; want ErrInvalidMessage", name, err)
		}
	}
	if n.promised != (Ballot{}) || n.HasReady() {
		t.Error("a rejected message changed the node")
	}
}

// DESIGN: "a stable leader runs Phase 1 once ... then only Phase 2 for each
// new instance". With no heartbeat tick in the window, each instance costs
// exactly one Accept and one Accepted per follower: 2·(n−1) peer messages,
// and the commit rides on the next Accept.
func TestStableLeaderSendsTwoMessagesPerFollowerPerInstance(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("n=%d", size), func(t *testing.T) {
			c := &scriptCell{t: t}
			c.run(fmt.Sprintf("cell n=%d", size))
			c.run("campaign 1")
			c.run("deliver")
			c.sent = nil
			const instances = 50
			for i := range instances {
				c.run(fmt.Sprintf("propose 1 v%d", i))
				c.run("deliver")
			}
			total := 0
			for _, k := range c.sent {
				total += k
			}
			want := 2 * (size - 1) * instances
			if total != want || c.sent[MsgAccept] != want/2 || c.sent[MsgAccepted] != want/2 {
				t.Fatalf("%d peer messages for %d instances (%v); want exactly %d", total, instances, c.sent, want)
			}
			// Every follower learned every instance but the last from the
			// commits piggybacked on later Accepts.
			for _, r := range c.rs[1:] {
				if got := len(r.sm); got != instances {
					t.Errorf("replica %d applied %d entries; want %d (the no-op and all but the last value)", r.id, got, instances)
				}
			}
			// With the window full, proposals batch: fewer messages, never more.
			c.sent = nil
			c.run("propose 1 a b c")
			c.run("deliver")
			if got := c.sent[MsgAccept] + c.sent[MsgAccepted]; got > 2*(size-1)*3 || got != 2*(size-1) {
				t.Fatalf("batched proposals cost %d messages (%v); want %d", got, c.sent, 2*(size-1))
			}
		})
	}
}

// A candidate never leads before its own promise is durable, even when the
// other promises alone are a majority: otherwise a crash before the sync
// lets it reuse the ballot after restart (Paxos Made Simple: a proposer
// must remember the highest-numbered proposal it has tried to issue).
func TestCandidateLeadsOnlyAfterOwnPromiseIsDurable(t *testing.T) {
	n := newTestNode(t, 1, 5, State{})
	n.Campaign()
	rd, err := n.Ready() // the promise to ourselves is being written
	if err != nil {
		t.Fatal(err)
	}
	if rd.Promised == nil || !rd.MustSync {
		t.Fatal("the candidate's promise is not in its Ready")
	}
	for _, p := range []uint64{2, 3, 4} {
		step(t, n, Message{Type: MsgPromise, From: p, Ballot: n.ballot, Instance: n.p1from, Commit: 1})
	}
	if n.role != Candidate {
		t.Fatalf("role = %v with three remote promises but our own not durable; want candidate", n.role)
	}
	if err := n.Advance(); err != nil {
		t.Fatal(err)
	}
	if n.role != Leader {
		t.Fatalf("role = %v after our promise is durable; want leader", n.role)
	}
	for _, typ := range []MessageType{MsgPromise, MsgAccepted, MsgHeartbeatAck, MsgReject} {
		if typ.SendBeforeSync() {
			t.Errorf("%v.SendBeforeSync() = true; it reveals acceptor state", typ)
		}
	}
}

// NewlyChosen hands out, while the leader's own write is in flight, what
// the followers' acknowledgements made chosen, and the next Ready's Chosen
// continues after it (no entry twice, none skipped).
func TestNewlyChosenWhileReadyOutstanding(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1})
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: 1})
	first := ready(t, n) // the no-op is chosen
	i, err := n.Propose([]byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ready(); err != nil { // the leader's write of v is in flight
		t.Fatal(err)
	}
	if got := n.NewlyChosen(); len(got) != 0 {
		t.Fatalf("NewlyChosen() = %v before any acknowledgement; want none", got)
	}
	// Both followers: a majority without the leader's own acceptance.
	for _, from := range []uint64{2, 3} {
		step(t, n, Message{Type: MsgAccepted, From: from, Ballot: n.ballot, Instance: i, Last: i})
	}
	got := n.NewlyChosen()
	if len(got) != 1 || got[0].Instance != i || string(got[0].Value) != "v" {
		t.Fatalf("NewlyChosen() = %v; want instance %d = v", got, i)
	}
	if err := n.Advance(); err != nil {
		t.Fatal(err)
	}
	if rd := ready(t, n); len(rd.Chosen) != 0 || rd.ChosenMark != i {
		t.Fatalf("next Ready: Chosen %v, mark %d; want none, mark %d (first Ready chose %v)", rd.Chosen, rd.ChosenMark, i, first.Chosen)
	}
}

// Heartbeats hands out, while the leader's write is in flight, the
// Heartbeats its ticks queued: answered, they keep its lease and its
// leadership through a write that stalls for many election timeouts (a
// slow disk); the next Ready does not carry them again, and what must wait
// for the write (the record to persist) still waits for it.
func TestHeartbeatsWhileReadyOutstanding(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1})
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: 1})
	ready(t, n) // the no-op is chosen
	if _, err := n.Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	rd, err := n.Ready() // the leader's write of a is in flight, and stalls
	if err != nil {
		t.Fatal(err)
	}
	if len(rd.Accepted) != 1 {
		t.Fatalf("Ready persists %d entries; want a", len(rd.Accepted))
	}
	ballot := n.ballot
	stall := 3 * (n.cfg.LeaseTicks + n.cfg.ElectionTicks)
	beats, leased := 0, false
	for range stall {
		n.Tick()
		for _, m := range n.Heartbeats() {
			if m.Type != MsgHeartbeat {
				continue
			}
			beats++
			step(t, n, Message{Type: MsgHeartbeatAck, From: m.To, Ballot: m.Ballot, Lease: m.Lease, Commit: m.Commit})
		}
		leased = leased || n.LeaseValid() // from the first round answered on
		if n.role != Leader || n.ballot != ballot || leased && !n.LeaseValid() {
			t.Fatalf("after %d ticks of a stalled write: role %v, ballot %v (was %v), lease valid %v; want the leader with its lease",
				n.now, n.role, n.ballot, ballot, n.LeaseValid())
		}
	}
	if !leased {
		t.Fatalf("no lease in %d ticks of answered heartbeats", stall)
	}
	if want := 2 * stall / n.cfg.HeartbeatTicks; beats != want {
		t.Fatalf("%d heartbeats handed out over %d ticks; want %d (two followers, one every %d ticks)", beats, stall, want, n.cfg.HeartbeatTicks)
	}
	if got := n.Heartbeats(); len(got) != 0 {
		t.Fatalf("Heartbeats() = %v with none queued since; want none", got)
	}
	if err := n.Advance(); err != nil { // the write ends
		t.Fatal(err)
	}
	if rd := ready(t, n); len(msgsOf(rd, MsgHeartbeat)) != 0 {
		t.Fatalf("the next Ready carries %d Heartbeats already sent", len(msgsOf(rd, MsgHeartbeat)))
	}
}

// Accepts sends, while the leader's write is in flight, the Accepts of what
// was proposed after the outstanding Ready; the followers' acks alone choose
// it, the leader's own acceptance does not count at the outstanding Advance,
// and the next Ready persists the record (with the mark that covers it)
// without sending the Accepts again.
func TestAcceptsWhileReadyOutstanding(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1})
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: 1, Last: 1})
	ready(t, n) // the no-op is chosen
	a, err := n.Propose([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ready(); err != nil { // the leader's write of a is in flight
		t.Fatal(err)
	}
	if got := n.Accepts(); len(got) != 0 {
		t.Fatalf("Accepts() = %v with nothing proposed since the Ready; want none", got)
	}
	b, err := n.Propose([]byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := n.Accepts()
	if len(msgs) != 2 {
		t.Fatalf("Accepts() = %v; want one Accept per follower", msgs)
	}
	for _, m := range msgs {
		if m.Type != MsgAccept || m.From != 1 || m.Ballot != n.ballot || len(m.Entries) != 1 ||
			m.Entries[0].Instance != b || string(m.Entries[0].Value) != "b" {
			t.Fatalf("Accepts() sent %+v; want an Accept of instance %d = b", m, b)
		}
	}
	if got := n.Accepts(); len(got) != 0 {
		t.Fatalf("second Accepts() = %v; want none", got)
	}
	// One follower acknowledges b: with the leader's write of b not even
	// begun, b must not be chosen.
	step(t, n, Message{Type: MsgAccepted, From: 2, Ballot: n.ballot, Instance: a, Last: b})
	if err := n.Advance(); err != nil { // a is durable here; b is not
		t.Fatal(err)
	}
	if n.commit != b {
		t.Fatalf("commit %d after a's Advance; want %d (b needs the leader's write or another ack)", n.commit, b)
	}
	rd, err := n.Ready() // the leader's write of b
	if err != nil {
		t.Fatal(err)
	}
	if got := msgsOf(rd, MsgAccept); len(got) != 0 {
		t.Fatalf("next Ready sends Accepts %v again", got)
	}
	if len(rd.Accepted) != 1 || rd.Accepted[0].Instance != b {
		t.Fatalf("next Ready persists %v; want instance %d", rd.Accepted, b)
	}
	// The other follower's ack makes a majority without the leader.
	step(t, n, Message{Type: MsgAccepted, From: 3, Ballot: n.ballot, Instance: b, Last: b})
	if got := n.NewlyChosen(); len(got) != 1 || got[0].Instance != b {
		t.Fatalf("NewlyChosen() = %v; want instance %d", got, b)
	}
	if err := n.Advance(); err != nil {
		t.Fatal(err)
	}
	if rd := ready(t, n); len(rd.Chosen) != 0 || rd.ChosenMark != b {
		t.Fatalf("Ready after b: Chosen %v, mark %d; want none, mark %d", rd.Chosen, rd.ChosenMark, b)
	}
}

// A replica that lost its state (State.Rebuild) learns but does not vote:
// no Promise, no Accepted, no HeartbeatAck, no campaign; it votes again
// only after a Fenced with its own nonce and once it learned through the
// fence's first own instance, and then it promises the fence's ballot.
func TestRebuildingReplicaVotesOnlyWhenFencedAndCaughtUp(t *testing.T) {
	n := newTestNode(t, 3, 3, State{Rebuild: 42})
	if !n.Status().Rebuilding {
		t.Fatal("Status().Rebuilding = false for State.Rebuild = 42")
	}
	step(t, n, Message{Type: MsgPrepare, From: 2, Ballot: b(5, 2), Instance: 1, Commit: 1})
	step(t, n, Message{Type: MsgAccept, From: 1, Ballot: b(4, 1), Commit: 1, Entries: []Entry{at(val("x"), 1, b(4, 1))}})
	step(t, n, Message{Type: MsgHeartbeat, From: 1, Ballot: b(4, 1), Commit: 3})
	for range 50 {
		n.Tick()
	}
	rd := ready(t, n)
	for _, typ := range []MessageType{MsgPromise, MsgAccepted, MsgHeartbeatAck, MsgReject, MsgPrepare} {
		if ms := msgsOf(rd, typ); len(ms) > 0 {
			t.Errorf("a rebuilding replica sent %v: %+v", typ, ms)
		}
	}
	if rd.Promised != nil || len(rd.Accepted) > 0 {
		t.Errorf("a rebuilding replica persisted a promise %v or accepted %v", rd.Promised, rd.Accepted)
	}
	if ms := msgsOf(rd, MsgRebuild); len(ms) == 0 || ms[0].To != 1 || ms[0].Lease != 42 {
		t.Errorf("Rebuild to the leader with nonce 42 missing: %+v", ms)
	}

	// A Fenced for another nonce (an earlier rebuild) is ignored; ours
	// counts, but only once instances 1..2 (the fence's first own is 2)
	// are learned.
	step(t, n, Message{Type: MsgFenced, From: 1, Ballot: b(4, 1), Instance: 2, Lease: 41, Commit: 3})
	step(t, n, Message{Type: MsgFenced, From: 1, Ballot: b(4, 1), Instance: 2, Lease: 42, Commit: 3})
	if !n.Status().Rebuilding {
		t.Fatal("rebuild ended before the replica caught up through the fence")
	}
	step(t, n, Message{Type: MsgChosen, From: 1, Instance: 1, Commit: 3,
		Entries: []Entry{at(val("x"), 1, b(4, 1)), {Instance: 2, Ballot: b(4, 1), Noop: true}}})
	if n.Status().Rebuilding {
		t.Fatal("still rebuilding after the fence and the catch-up")
	}
	rd = ready(t, n)
	if !rd.Rebuilt || !rd.MustSync || rd.Promised == nil || *rd.Promised != b(4, 1) {
		t.Fatalf("Ready ending the rebuild: Rebuilt=%v MustSync=%v Promised=%v; want true, true, 4.1", rd.Rebuilt, rd.MustSync, rd.Promised)
	}
	// Like any restarted replica it refuses Prepares for a lease, since it
	// does not know whom it granted one; then it votes.
	step(t, n, Message{Type: MsgPrepare, From: 2, Ballot: b(5, 2), Instance: 3, Commit: 3})
	if ms := msgsOf(ready(t, n), MsgReject); len(ms) != 1 {
		t.Fatalf("Prepare inside the assumed lease: want a Reject, got %+v", ms)
	}
	for range testConfig(3, 3).LeaseTicks + 1 {
		n.Tick()
	}
	step(t, n, Message{Type: MsgPrepare, From: 2, Ballot: b(6, 2), Instance: 3, Commit: 3})
	if ms := msgsOf(ready(t, n), MsgPromise); len(ms) != 1 {
		t.Fatalf("Prepare after the rebuild and the lease: want a Promise, got %+v", ms)
	}
}

// A leader fences for a rebuilding replica only with a Phase 1 that began
// after its Rebuild and that every other replica promised, and only while
// every other replica answers: with one of them silent it does not
// campaign (it would only depose itself again and again).
func TestLeaderFencesOnlyWithEveryOtherReplica(t *testing.T) {
	n, _ := campaignWith(t, 5, Message{From: 2, Commit: 1}, Message{From: 3, Commit: 1})
	ballot := n.ballot
	for _, p := range []uint64{2, 3} {
		step(t, n, Message{Type: MsgHeartbeatAck, From: p, Ballot: ballot, Commit: 1})
	}
	// 4 has never answered this leader: no fence, no campaign.
	step(t, n, Message{Type: MsgRebuild, From: 5, Lease: 9, Commit: 1})
	rd := ready(t, n)
	if n.role != Leader || len(msgsOf(rd, MsgFenced)) > 0 || len(msgsOf(rd, MsgPrepare)) > 0 {
		t.Fatalf("with 4 silent: role %v, messages %+v; want leader, no Fenced, no Prepare", n.role, rd.Messages)
	}
	step(t, n, Message{Type: MsgHeartbeatAck, From: 4, Ballot: ballot, Commit: 1})
	step(t, n, Message{Type: MsgRebuild, From: 5, Lease: 9, Commit: 1})
	rd = ready(t, n)
	if n.role != Candidate || len(msgsOf(rd, MsgPrepare)) != 4 {
		t.Fatalf("with every other replica answering: role %v, %d Prepares; want a new Phase 1", n.role, len(msgsOf(rd, MsgPrepare)))
	}
	fence := n.ballot
	for _, p := range []uint64{2, 3} {
		step(t, n, Message{Type: MsgPromise, From: p, Ballot: fence, Instance: n.p1from, Commit: 1})
	}
	ready(t, n)
	if n.role != Leader {
		t.Fatalf("role %v after a majority promised; want leader", n.role)
	}
	// A majority is not enough for the fence: 4 must promise too (late).
	step(t, n, Message{Type: MsgRebuild, From: 5, Ballot: fence, Lease: 9, Commit: 1})
	if ms := msgsOf(ready(t, n), MsgFenced); len(ms) > 0 {
		t.Fatalf("Fenced before every other replica promised: %+v", ms)
	}
	step(t, n, Message{Type: MsgPromise, From: 4, Ballot: fence, Instance: n.p1from, Commit: 1})
	step(t, n, Message{Type: MsgRebuild, From: 5, Ballot: fence, Lease: 9, Commit: 1})
	ms := msgsOf(ready(t, n), MsgFenced)
	if len(ms) != 1 || ms[0].Ballot != fence || ms[0].Lease != 9 || ms[0].Instance != n.firstOwn {
		t.Fatalf("Fenced = %+v; want ballot %v, nonce 9, first own %d", ms, fence, n.firstOwn)
	}
	// A Rebuild with a new nonce (the replica lost its disk again) needs a
	// Phase 1 that began after it.
	step(t, n, Message{Type: MsgRebuild, From: 5, Ballot: fence, Lease: 10, Commit: 1})
	if ms := msgsOf(ready(t, n), MsgFenced); len(ms) > 0 {
		t.Fatalf("Fenced for a nonce the Phase 1 did not begin after: %+v", ms)
	}
}

// promiseFrom has each of from promise the node's current ballot.
func promiseFrom(t *testing.T, n *Node, from ...uint64) {
	t.Helper()
	for _, p := range from {
		step(t, n, Message{Type: MsgPromise, From: p, Ballot: n.ballot, Instance: n.p1from, Commit: 1})
	}
	ready(t, n)
}

// rebuildFenced steps a Rebuild from a rebuilding replica that answers a
// heartbeat of ballot bal, and returns the Fenced messages it brings.
func rebuildFenced(t *testing.T, n *Node, from uint64, bal Ballot, nonce uint64) []Message {
	t.Helper()
	step(t, n, Message{Type: MsgRebuild, From: from, Ballot: bal, Lease: nonce, Commit: 1})
	return msgsOf(ready(t, n), MsgFenced)
}

// Two replicas of five that lost their disks are fenced by one ballot,
// which every replica that votes promised: neither needs the other's
// promise, which a rebuilding replica never gives. Each must have been
// rebuilding since before that ballot's Phase 1 began (its nonce reached the
// leader first) and still be rebuilding under it (a Rebuild that answers
// that ballot's Heartbeat).
func TestOneFenceForTwoRebuildingReplicas(t *testing.T) {
	n, _ := campaignWith(t, 5, Message{From: 2, Commit: 1}, Message{From: 3, Commit: 1})
	ballot := n.ballot
	for _, p := range []uint64{2, 3} {
		step(t, n, Message{Type: MsgHeartbeatAck, From: p, Ballot: ballot, Commit: 1})
	}
	rebuildFenced(t, n, 4, ballot, 7)
	if n.role != Leader {
		t.Fatalf("with 5 silent: role %v; want no new Phase 1", n.role)
	}
	// 5 answers too (rebuilding): every other replica is heard from.
	rebuildFenced(t, n, 5, ballot, 9)
	if n.role != Candidate {
		t.Fatalf("with every other replica heard from: role %v; want a new Phase 1", n.role)
	}
	fence := n.ballot
	promiseFrom(t, n, 2, 3)
	// 4 still rebuilding, but its Rebuild answers the old ballot: it does
	// not show that 4 is still rebuilding under the fence, so 5 waits.
	rebuildFenced(t, n, 4, ballot, 7)
	if ms := rebuildFenced(t, n, 5, fence, 9); len(ms) > 0 {
		t.Fatalf("Fenced 5 before 4 answered the fence ballot: %+v", ms)
	}
	if ms := rebuildFenced(t, n, 4, fence, 7); len(ms) != 1 || ms[0].To != 4 || ms[0].Ballot != fence || ms[0].Lease != 7 {
		t.Fatalf("Fenced = %+v; want 4 fenced by %v with nonce 7", ms, fence)
	}
	if ms := rebuildFenced(t, n, 5, fence, 9); len(ms) != 1 || ms[0].To != 5 || ms[0].Ballot != fence || ms[0].Lease != 9 {
		t.Fatalf("Fenced = %+v; want 5 fenced by %v with nonce 9", ms, fence)
	}
}

// A replica whose Rebuild reached the leader only after the Phase 1 began
// is not left out of the fence: its earlier life may have run ballots that
// nobody fenced yet, so the other rebuilding replica waits for a later
// Phase 1.
func TestFenceNeedsRebuildingSinceBeforePhase1(t *testing.T) {
	n, _ := campaignWith(t, 5, Message{From: 2, Commit: 1}, Message{From: 3, Commit: 1})
	for _, p := range []uint64{2, 3, 4} {
		step(t, n, Message{Type: MsgHeartbeatAck, From: p, Ballot: n.ballot, Commit: 1})
	}
	rebuildFenced(t, n, 5, n.ballot, 9)
	if n.role != Candidate {
		t.Fatalf("role %v after a Rebuild with every other replica answering; want a new Phase 1", n.role)
	}
	fence := n.ballot
	promiseFrom(t, n, 2, 3)
	// 4 lost its disk after the Phase 1 began: it never promised, and its
	// nonce is new to this Phase 1.
	rebuildFenced(t, n, 4, fence, 7)
	if ms := rebuildFenced(t, n, 5, fence, 9); len(ms) > 0 {
		t.Fatalf("Fenced with 4 rebuilding only since the Phase 1 began: %+v", ms)
	}
}

// A Promise counts only if it answers a Prepare of this start of the
// replica (Config.Incarnation): one made to an earlier start that issued
// the same ballot says nothing about what the acceptor holds now.
func TestPromiseToAnEarlierIncarnationIgnored(t *testing.T) {
	cfg := testConfig(1, 3)
	cfg.Incarnation = 5
	n, err := New(cfg, State{})
	if err != nil {
		t.Fatal(err)
	}
	n.Campaign()
	rd := ready(t, n)
	for _, m := range msgsOf(rd, MsgPrepare) {
		if m.Lease != 5 {
			t.Fatalf("Prepare %+v; want it to carry incarnation 5", m)
		}
	}
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Lease: 4, Commit: 1})
	if n.role != Candidate {
		t.Fatalf("role %v after a Promise to incarnation 4; want candidate", n.role)
	}
	step(t, n, Message{Type: MsgPromise, From: 2, Ballot: n.ballot, Instance: n.p1from, Lease: 5, Commit: 1})
	if n.role != Leader {
		t.Fatalf("role %v after a Promise to incarnation 5; want leader", n.role)
	}
	// The acceptor side echoes the Prepare's incarnation.
	a := newTestNode(t, 2, 3, State{})
	step(t, a, Message{Type: MsgPrepare, From: 1, Ballot: b(3, 1), Instance: 1, Lease: 5})
	if ms := msgsOf(ready(t, a), MsgPromise); len(ms) != 1 || ms[0].Lease != 5 {
		t.Fatalf("Promise = %+v; want incarnation 5 echoed", ms)
	}
}

// The leader's Status reports what each follower last acknowledged.
func TestLeaderStatusPeers(t *testing.T) {
	n, _ := campaignWith(t, 3, Message{From: 2, Commit: 1})
	n.Tick()
	step(t, n, Message{Type: MsgHeartbeatAck, From: 2, Ballot: n.ballot, Commit: 2})
	n.Tick()
	n.Tick()
	st := n.Status()
	if len(st.Peers) != 2 {
		t.Fatalf("Peers = %+v; want the two followers", st.Peers)
	}
	for _, p := range st.Peers {
		switch p.ID {
		case 2:
			if !p.Acked || p.Commit != 2 || p.AckAgo != 2 {
				t.Errorf("peer 2 = %+v; want acked 2 ticks ago with commit 2", p)
			}
		case 3:
			if p.Acked {
				t.Errorf("peer 3 = %+v; want not acked", p)
			}
		default:
			t.Errorf("unexpected peer %+v", p)
		}
	}
	if f := newTestNode(t, 2, 3, State{}); len(f.Status().Peers) != 0 {
		t.Errorf("a follower's Status has Peers %+v", f.Status().Peers)
	}
}
