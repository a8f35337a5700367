package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

func followerOf(c *cell, lead *Replica) *Replica {
	for _, r := range c.reps {
		if r != lead {
			return r
		}
	}
	return nil
}

func TestReadBarrier(t *testing.T) {
	c := newCell(t, cellOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead := c.leader(1, 10*time.Second)
	if _, err := lead.Propose(ctx, 1, []byte("w1")); err != nil {
		t.Fatal(err)
	}
	// The lease needs a heartbeat round acknowledged; ReadBarrier works
	// either way (through the log without it).
	if err := lead.ReadBarrier(ctx, 1); err != nil {
		t.Fatalf("ReadBarrier(leader) = %v", err)
	}
	if n := c.sms[lead.ID()][1].count(); n != 1 {
		t.Fatalf("after ReadBarrier the leader's state has %d commands; want 1", n)
	}
	if followerOf(c, lead).LeaseRead(1) {
		t.Fatal("LeaseRead on a follower = true")
	}
	if lead.LeaseRead(99) {
		t.Fatal("LeaseRead on a group not hosted = true")
	}
	var nl *NotLeaderError
	if err := followerOf(c, lead).ReadBarrier(ctx, 1); !errors.As(err, &nl) || nl.Leader != lead.ID() {
		t.Fatalf("ReadBarrier(follower) = %v; want *NotLeaderError naming %d", err, lead.ID())
	}
	st, err := lead.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != lead.ID() || st.Applied < 1 || st.Role.String() != "leader" {
		t.Fatalf("leader Status = %+v; want itself as leader, applied >= 1", st)
	}
	// While the lease holds, barriers cost no log round (logged, not
	// asserted: a slow machine may let the lease lapse in between).
	for range 10 {
		if err := lead.ReadBarrier(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	st2, _ := lead.Status(ctx, 1)
	t.Logf("lease valid %v: 10 read barriers used %d log instances", st.LeaseValid, st2.Stats.Batches-st.Stats.Batches)
	// Once a barrier finds the lease, LeaseRead does too (until the lease
	// lapses on a stalled machine: bounded retries, no timing assertion).
	leased := false
	for range 1000 {
		if lead.LeaseRead(1) {
			leased = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !leased {
		t.Fatal("the leader never offered a lease read in 10 s")
	}
}

// TestIsolatedLeaderCannotRead checks the stale-read hazard: a leader cut
// off from the cell must not pass a read barrier once its lease ran out,
// while the majority elects a new leader that sees every acknowledged write.
func TestIsolatedLeaderCannotRead(t *testing.T) {
	c := newCell(t, cellOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := c.leader(1, 10*time.Second)
	if _, err := old.Propose(ctx, 1, []byte("before")); err != nil {
		t.Fatal(err)
	}
	c.mem.Isolate(old.ID())
	// Write through the new majority leader.
	var lead *Replica
	deadline := time.Now().Add(15 * time.Second)
	for lead == nil || lead == old {
		if time.Now().After(deadline) {
			t.Fatal("no new leader in the majority")
		}
		time.Sleep(10 * time.Millisecond)
		for _, r := range c.reps {
			if r != old && r.groups[1].isLeader.Load() {
				lead = r
			}
		}
	}
	if _, err := lead.Propose(ctx, 1, []byte("after")); err != nil {
		t.Fatal(err)
	}
	// The old leader's lease is over by now: neither a lease read nor a
	// read barrier may let a stale read through.
	if old.LeaseRead(1) {
		t.Fatalf("LeaseRead on the isolated old leader = true after the new leader's write; it has %d commands and the cell has 2", c.sms[old.ID()][1].count())
	}
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := old.ReadBarrier(rctx, 1)
	rcancel()
	if err == nil {
		t.Fatalf("ReadBarrier on the isolated old leader = nil; it has %d commands and the cell has 2", c.sms[old.ID()][1].count())
	}
	t.Logf("isolated old leader: ReadBarrier = %v", err)
	if err := lead.ReadBarrier(ctx, 1); err != nil {
		t.Fatalf("ReadBarrier(new leader) = %v", err)
	}
	if n := c.sms[lead.ID()][1].count(); n != 2 {
		t.Fatalf("new leader has %d commands after ReadBarrier; want 2", n)
	}
	c.mem.Heal()
	c.waitApplied(1, 2, 10*time.Second)
	c.waitConverged(1, 10*time.Second)
	c.checkSame(1)
}

func TestProposeContextCancelled(t *testing.T) {
	c := newCell(t, cellOpts{})
	lead := c.leader(1, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lead.Propose(ctx, 1, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose(cancelled ctx) = %v; want context.Canceled", err)
	}
	// A proposal stuck behind a partition times out; whether it is chosen
	// later or not, every replica ends with the same log.
	c.mem.Isolate(lead.ID())
	tctx, tcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := lead.Propose(tctx, 1, []byte("maybe"))
	tcancel()
	var nl *NotLeaderError
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrLeadershipLost) && !errors.As(err, &nl) {
		t.Fatalf("Propose across a partition = %v; want a deadline, lost leadership or not-leader error", err)
	}
	c.mem.Heal()
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if _, err := c.propose(wctx, 1, []byte("later")); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(1, 10*time.Second)
	c.checkSame(1)
}

// blockingSM blocks Apply while gate is held.
type blockingSM struct {
	*testSM
	gate *sync.RWMutex
}

func (s *blockingSM) Apply(index uint64, cmd []byte) []byte {
	s.gate.RLock()
	defer s.gate.RUnlock()
	return s.testSM.Apply(index, cmd)
}

func TestGroupsIndependent(t *testing.T) {
	gate := new(sync.RWMutex)
	c := newCell(t, cellOpts{groups: []uint32{1, 2}, wrap: func(g uint32, sm *testSM) StateMachine {
		if g == 1 {
			return &blockingSM{testSM: sm, gate: gate}
		}
		return sm
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, g := range []uint32{1, 2} {
		if _, err := c.propose(ctx, g, fmt.Appendf(nil, "g%d", g)); err != nil {
			t.Fatal(err)
		}
	}
	// Stall group 1's state machines on every replica.
	gate.Lock()
	stalled := make(chan error, 1)
	go func() {
		_, err := c.propose(ctx, 1, []byte("stalled"))
		stalled <- err
	}()
	// Group 2 keeps going.
	for i := range 20 {
		if _, err := c.propose(ctx, 2, fmt.Appendf(nil, "g2-%d", i)); err != nil {
			t.Fatalf("group 2 while group 1 is stalled: %v", err)
		}
	}
	select {
	case err := <-stalled:
		t.Fatalf("group 1 proposal returned while its state machine was blocked: %v", err)
	default:
	}
	gate.Unlock()
	if err := <-stalled; err != nil {
		t.Fatal(err)
	}
	c.waitApplied(2, 21, 10*time.Second)
	c.waitConverged(2, 10*time.Second)
	c.checkSame(2)
}

// failingSM fails Snapshot, to check that a state machine's snapshot error
// is not fatal and the log is kept.
type failingSM struct{ *testSM }

func (s *failingSM) Snapshot(w io.Writer) error { return errors.New("no snapshot today") }

func TestStateMachineSnapshotErrorKeepsLog(t *testing.T) {
	c := newCell(t, cellOpts{
		tune: func(cfg *Config) { cfg.SnapshotEvery = 5 },
		wrap: func(_ uint32, sm *testSM) StateMachine { return &failingSM{sm} },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 12 {
		if _, err := c.propose(ctx, 1, fmt.Appendf(nil, "c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for id, r := range c.reps {
		if r.Err() != nil {
			t.Fatalf("replica %d stopped: %v", id, r.Err())
		}
		if _, err := r.db.Group(1).Snapshot(); err == nil {
			t.Fatalf("replica %d stored a snapshot although the state machine failed", id)
		}
	}
}

func TestStorageFailureStopsReplica(t *testing.T) {
	c := newCell(t, cellOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead := c.leader(1, 10*time.Second)
	if _, err := lead.Propose(ctx, 1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	victim := followerOf(c, lead)
	// Pull the database out from under the follower: its next write
	// fails, and it must stop instead of acknowledging anything.
	victim.db.Close()
	if _, err := lead.Propose(ctx, 1, []byte("next")); err != nil {
		t.Fatal(err) // the other follower still makes a majority
	}
	select {
	case <-victim.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("replica with a failed database did not stop")
	}
	if err := victim.Err(); !errors.Is(err, ErrFatal) {
		t.Fatalf("Err() = %v; want ErrFatal", err)
	}
	if _, err := victim.Propose(ctx, 1, []byte("x")); !errors.Is(err, ErrFatal) {
		t.Fatalf("Propose on a stopped replica = %v; want ErrFatal", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	cfg := testConfig()
	cfg.ID, cfg.Groups = 1, []uint32{1}
	cfg.DataDir = t.TempDir()
	cfg.Members = map[uint64]string{1: "mem-1"}
	r, err := New(cfg, map[uint32]StateMachine{1: &testSM{}}, NewMemNetwork())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.Propose(ctx, 1, []byte("x")); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Propose before Start = %v; want ErrNotStarted", err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Propose(ctx, 7, []byte("x")); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("Propose(group 7) = %v; want ErrUnknownGroup", err)
	}
	if _, err := r.Propose(ctx, 1, make([]byte, cfg.MaxBatchBytes)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Propose(MaxBatchBytes) = %v; want ErrTooLarge", err)
	}
	// A one-replica cell elects itself and commits alone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := r.Propose(ctx, 1, []byte("solo"))
		if err == nil {
			if string(res) != "1:solo" {
				t.Fatalf("Propose(solo) = %q; want 1:solo", res)
			}
			break
		}
		var nl *NotLeaderError
		if !errors.As(err, &nl) || time.Now().After(deadline) {
			t.Fatalf("Propose on a one-replica cell = %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Propose(ctx, 1, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Propose after Close = %v; want ErrClosed", err)
	}
	if err := r.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v; want ErrClosed", err)
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func TestOnRoleChange(t *testing.T) {
	type ev struct {
		id uint64
		rc RoleChange
	}
	events := make(chan ev, 1024)
	c := newCell(t, cellOpts{tune: func(cfg *Config) {
		id := cfg.ID
		cfg.OnRoleChange = func(rc RoleChange) {
			select {
			case events <- ev{id, rc}:
			default:
			}
		}
	}})
	lead := c.leader(1, 10*time.Second)
	// Every replica hears of the leader; the leader reports its role.
	seen := map[uint64]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 3 {
		select {
		case e := <-events:
			if e.rc.Group != 1 {
				t.Fatalf("event for group %d", e.rc.Group)
			}
			if e.rc.Leader == lead.ID() {
				if (e.id == lead.ID()) != (e.rc.Role.String() == "leader") {
					t.Fatalf("replica %d reports role %v with leader %d", e.id, e.rc.Role, e.rc.Leader)
				}
				seen[e.id] = true
			}
		case <-deadline:
			t.Fatalf("only %v heard of leader %d", seen, lead.ID())
		}
	}
	// A new leader after the old one is cut off reports a higher ballot.
	old := lead.ID()
	st, _ := lead.Status(context.Background(), 1)
	c.mem.Isolate(old)
	deadline = time.After(15 * time.Second)
	for {
		select {
		case e := <-events:
			if e.id != old && e.rc.Role.String() == "leader" {
				if !st.Ballot.Less(e.rc.Ballot) {
					t.Fatalf("new leader's ballot %v is not above the old %v", e.rc.Ballot, st.Ballot)
				}
				return
			}
		case <-deadline:
			t.Fatal("no new leader reported after isolating the old one")
		}
	}
}
