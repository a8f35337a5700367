package replica

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/latchd/latch/replica/logdb"
	"github.com/latchd/latch/replica/paxos"
)

// recoveryLog is a chosen log of a cell founded by 1, 2 and 3 with α = 4:
// 4 is added, bound and promoted (chosen at 4, in effect from 8), then 3 is
// removed (chosen at 9, in effect from 13); commands in between.
func recoveryLog() []paxos.Entry {
	conf := func(c paxos.MemberChange) paxos.Entry { return paxos.Entry{Conf: true, Value: c.Encode()} }
	cmd := func(s string) paxos.Entry {
		return paxos.Entry{Value: appendBatch(nil, 1, uint64(len(s)), [][]byte{[]byte(s)})}
	}
	noop := paxos.Entry{Noop: true}
	ents := []paxos.Entry{
		cmd("a"),
		conf(paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4, Meta: MemberAddrs{Peer: "mem-4"}.Encode()}),
		conf(paxos.MemberChange{Op: paxos.OpBind, ID: 4, Nonce: 9}),
		conf(paxos.MemberChange{Op: paxos.OpPromote, ID: 4}),
		cmd("b"), noop, noop,
		cmd("c"), // 8: the promotion takes effect
		conf(paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: 3}),
		cmd("d"), noop, noop,
		noop, // 13: the removal takes effect
		cmd("e"),
	}
	for i := range ents {
		ents[i].Instance = uint64(i + 1)
		ents[i].Ballot = paxos.Ballot{Round: 1, ID: 1}
	}
	return ents
}

// membersThrough is the member set of recoveryLog as of instance i, and
// the commands applied through it.
func membersThrough(t *testing.T, ents []paxos.Entry, i uint64) (paxos.Members, [][]byte) {
	t.Helper()
	m := paxos.Bootstrap([]uint64{1, 2, 3}, 4)
	var cmds [][]byte
	for _, e := range ents[:i] {
		var err error
		if m, err = m.ApplyEntry(e); err != nil {
			t.Fatalf("instance %d: %v", e.Instance, err)
		}
		if !e.Conf && !e.Noop {
			b, err := decodeBatch(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := b.next()
			cmds = append(cmds, c)
		}
	}
	return m, cmds
}

// A restarted replica's member set is the one its recovered log gives, in
// instance order: the snapshot's set (if any) and every chosen change
// after it, with a pending voter change taking effect α instances after it
// was chosen. Right after New (Members, the peers the network starts
// with, the core) and after the state machine replayed the log.
//
// Before, the replica published the snapshot's set until the apply
// goroutine had replayed the log, and every older set on the way: a
// replica started with a member added since missing from its network, and
// with a member removed since (whose address nobody kept) in it
// (TestRestartAfterMemberChangesOverTCP).
func TestRestartRecoversMemberSetOfLog(t *testing.T) {
	ents := recoveryLog()
	last := uint64(len(ents))
	for _, tc := range []struct {
		name     string
		snapshot uint64 // 0: none
		chosen   uint64
		compact  bool // the log truncated through the snapshot
	}{
		{"no snapshot, every change in the log", 0, last, false},
		{"snapshot before the changes", 1, last, false},
		{"snapshot between a change chosen and in effect", 5, last, false},
		{"snapshot where a change takes effect", 8, last, true},
		{"snapshot with a removal pending", 10, last, true},
		{"snapshot after every change, log compacted", last, last, true},
		{"chosen mark inside a pending window", 5, 11, false},
		{"snapshot and chosen mark inside one window", 10, 11, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ID, cfg.Groups, cfg.Alpha, cfg.SnapshotEvery = 1, []uint32{1}, 4, 1000
			cfg.Members = map[uint64]string{1: "mem-1", 2: "mem-2", 3: "mem-3"}
			cfg.DataDir = filepath.Join(t.TempDir(), "r1")
			writeRecoveredState(t, cfg, ents, tc.snapshot, tc.chosen, tc.compact)
			want, wantCmds := membersThrough(t, ents, tc.chosen)

			sm := &testSM{}
			r, err := New(cfg, map[uint32]StateMachine{1: sm}, NewMemNetwork())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			checkMembers(t, "after New", r, want)
			if core := r.groups[1].node.Members(); !bytes.Equal(core.Encode(), want.Encode()) {
				t.Errorf("after New the core's member set is %+v; want %+v", core, want)
			}
			v := r.view()
			ids := slices.Sorted(maps.Keys(v.addrs))
			var wantIDs []uint64
			for _, x := range want.Members {
				wantIDs = append(wantIDs, x.ID)
			}
			if !slices.Equal(ids, wantIDs) || !slices.Equal(v.retired, want.Retired) {
				t.Errorf("after New the network's peers are %v, retired %v; want %v, retired %v", ids, v.retired, wantIDs, want.Retired)
			}

			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, memberPatience, fmt.Sprintf("instance %d applied", tc.chosen), func() bool {
				return r.groups[1].applier.appliedIndex() >= tc.chosen
			})
			checkMembers(t, "after the replay", r, want)
			g := r.groups[1]
			ch := make(chan paxos.Members, 1)
			core, err := askLoop(context.Background(), g, func() { ch <- g.node.Members() }, ch)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(core.Encode(), want.Encode()) {
				t.Errorf("after the replay the core's member set is %+v; want %+v", core, want)
			}
			if got := sm.applied(); !slices.EqualFunc(got, wantCmds, bytes.Equal) {
				t.Errorf("the state machine holds %q; want %q", got, wantCmds)
			}
		})
	}
}

func checkMembers(t *testing.T, when string, r *Replica, want paxos.Members) {
	t.Helper()
	got, err := r.Members(1)
	if err != nil || !bytes.Equal(got.Encode(), want.Encode()) {
		t.Errorf("%s Members(1) = %+v (voters %v), %v; want %+v (voters %v)", when, got, got.Voters(), err, want, want.Voters())
	}
	if r.state.Load() != stateRunning {
		return // Status asks the loop
	}
	st, err := r.Status(context.Background(), 1)
	if err != nil || !bytes.Equal(st.Members.Encode(), want.Encode()) {
		t.Errorf("%s Status.Members = %+v, %v; want %+v", when, st.Members, err, want)
	}
}

// writeRecoveredState leaves in cfg.DataDir what replica 1 of a cell
// founded by 1, 2 and 3 would have stored after choosing ents through
// chosen (the entries above it accepted, not known chosen): a snapshot at
// snapshot (none if 0), with the member set as of it, and the log, through
// the snapshot too unless compact.
func writeRecoveredState(t *testing.T, cfg Config, ents []paxos.Entry, snapshot, chosen uint64, compact bool) {
	t.Helper()
	// A first start writes the cell record (founders 1, 2, 3).
	r, err := New(cfg, map[uint32]StateMachine{1: &testSM{}}, NewMemNetwork())
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	db, err := logdb.Open(cfg.DataDir, logdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := db.Group(1)
	from := uint64(1)
	if compact {
		from = snapshot + 1
	}
	if from <= uint64(len(ents)) {
		if err := l.Write(logdb.Update{Promised: paxos.Ballot{Round: 1, ID: 1}, Entries: ents[from-1:], Chosen: chosen}); err != nil {
			t.Fatal(err)
		}
	}
	if snapshot == 0 {
		return
	}
	m, cmds := membersThrough(t, ents, snapshot)
	sm := &testSM{}
	for i, c := range cmds {
		sm.Apply(uint64(i+1), c)
	}
	var b bytes.Buffer
	b.Write(appendSnapHeader(nil, snapshot, uint64(len(cmds)), &m))
	if err := sm.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SaveSnapshot(snapshot, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(logdb.Update{Chosen: max(chosen, snapshot)}); err != nil {
		t.Fatal(err)
	}
}

// A founder restarted after a member was added and another removed since
// its snapshot, over TCP, with the configuration an operator writes after
// the changes (the removed member left out): it starts, runs with the
// replicated set, follows a further change and learns its own removal.
// Before, it started its network with the snapshot's set, which dials the
// removed member 3 at an address nobody kept: Start failed (the member
// soak's "configured, not members" replica, docs/testing.md).
func TestRestartAfterMemberChangesOverTCP(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tcp: true, tune: func(cfg *Config) { smallAlpha(cfg); cfg.SnapshotEvery = 1 << 20 }})
	c.proposeN("a", 5, 5)
	// Replica 1's only snapshot: before every change.
	if err := c.reps[1].groups[1].snapshotNow(); err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 2)
	c.grow(4, addrs[0], 1, 2, 3, 4)
	c.shrink(3, 1, 2, 4)
	c.proposeN("b", 5, 10)
	want, err := c.reps[2].Members(1)
	if err != nil {
		t.Fatal(err)
	}

	c.stop(1)
	cfg := c.cfgs[1]
	cfg.Members = map[uint64]string{1: cfg.Members[1], 2: cfg.Members[2], 4: addrs[0]}
	c.cfgs[1] = cfg
	sms := map[uint32]StateMachine{1: &testSM{}}
	r, err := New(cfg, sms, c.net)
	if err != nil {
		t.Fatal(err)
	}
	checkMembers(t, "after New", r, want)
	if err := r.Start(); err != nil {
		r.Close()
		t.Fatalf("Start of the restarted replica 1 = %v", err)
	}
	c.mu.Lock()
	c.reps[1], c.sms[1] = r, map[uint32]*testSM{1: sms[1].(*testSM)}
	c.mu.Unlock()
	c.proposeN("c", 5, 15)
	c.checkSame(1)

	// A change after the restart, then the restarted replica's removal
	// (shrink waits for its Removed).
	c.grow(5, addrs[1], 1, 2, 4, 5)
	c.shrink(1, 2, 4, 5)
	c.proposeN("d", 5, 20)
	c.checkSame(1)
}
