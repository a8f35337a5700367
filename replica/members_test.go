package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

// memberPatience bounds every wait of these tests: a deadlock guard, not a
// performance assertion.
const memberPatience = 60 * time.Second

// smallAlpha makes voter changes take effect after a few padding rounds.
func smallAlpha(cfg *Config) { cfg.Alpha = 16 }

// addrsOf returns the MemberAddrs a test replica id announces.
func (c *cell) addrsOf(id uint64) MemberAddrs {
	return MemberAddrs{Peer: c.cfgs[id].Members[id], Client: fmt.Sprintf("client-%d", id)}
}

// prepareJoiner configures replica id (not started) to join the cell: a
// fresh data dir, the running replicas' addresses as seeds. addr is its
// peer address ("" for the in-memory one).
func (c *cell) prepareJoiner(id uint64, addr string) {
	c.t.Helper()
	var base Config
	for _, cfg := range c.cfgs {
		base = cfg
		break
	}
	cfg := base
	cfg.ID = id
	cfg.Join = true
	cfg.Members = maps.Clone(base.Members)
	if addr == "" {
		addr = fmt.Sprintf("mem-%d", id)
	}
	cfg.Members[id] = addr
	cfg.Listen = ""
	cfg.DataDir = filepath.Join(filepath.Dir(base.DataDir), fmt.Sprint("r", id))
	c.cfgs[id] = cfg
}

// change runs ChangeMembers on the leader of group 1 until it succeeds,
// retrying what a leader change or a pending refresh explains, and returns
// the member set after it. Any other error fails the test.
func (c *cell) change(ch paxos.MemberChange, retry ...error) paxos.Members {
	c.t.Helper()
	m, err := c.tryChange(ch, retry...)
	if err != nil {
		c.t.Fatalf("ChangeMembers(%v %d) = %v", ch.Op, ch.ID, err)
	}
	return m
}

// tryChange is change that returns the first error it does not retry.
func (c *cell) tryChange(ch paxos.MemberChange, retry ...error) (paxos.Members, error) {
	c.t.Helper()
	retry = append(retry, paxos.ErrPhase1Pending, ErrLeadershipLost, ErrClosed)
	deadline := time.Now().Add(memberPatience)
	var last error
	for time.Now().Before(deadline) {
		lead := c.leaderOf(1)
		if lead == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, _, err := lead.ChangeMembers(ctx, 1, ch)
		cancel()
		var nl *NotLeaderError
		switch {
		case err == nil:
			return m, nil
		case errors.As(err, &nl) || errors.Is(err, context.DeadlineExceeded) || slices.ContainsFunc(retry, func(e error) bool { return errors.Is(err, e) }):
			last = err
			time.Sleep(20 * time.Millisecond)
		default:
			return m, err
		}
	}
	c.t.Fatalf("ChangeMembers(%v %d) did not succeed within %v; last error %v", ch.Op, ch.ID, memberPatience, last)
	return paxos.Members{}, nil
}

// waitMembers waits until every running replica's member set of group 1
// satisfies ok.
func (c *cell) waitMembers(what string, ok func(id uint64, m paxos.Members) bool) {
	c.t.Helper()
	deadline := time.Now().Add(memberPatience)
	for {
		bad := ""
		c.mu.Lock()
		for id, r := range c.reps {
			m, err := r.Members(1)
			if err != nil || !ok(id, m) {
				bad = fmt.Sprintf("replica %d: %+v (%v)", id, m, err)
				break
			}
		}
		c.mu.Unlock()
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: %s", what, bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func voters(m paxos.Members) []uint64 { return m.Voters() }

// settled reports whether m has no pending voter change and the voters want.
func settled(m paxos.Members, want ...uint64) bool {
	return m.Pending == nil && slices.Equal(m.Voters(), want)
}

// bound reports whether id is a bound learner or a voter in m.
func bound(m paxos.Members, id uint64) bool {
	x, ok := m.Member(id)
	return ok && (x.Voter || x.Nonce != 0)
}

// grow adds replica id as a learner, starts it as a joiner, waits until it
// is bound and has applied as much as the others, and promotes it.
func (c *cell) grow(id uint64, addr string, want ...uint64) {
	c.t.Helper()
	c.prepareJoiner(id, addr)
	c.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: id, Meta: c.addrsOf(id).Encode()})
	c.start(id)
	c.waitMembers(fmt.Sprintf("replica %d bound", id), func(_ uint64, m paxos.Members) bool { return bound(m, id) })
	c.change(paxos.MemberChange{Op: paxos.OpPromote, ID: id}, paxos.ErrNotCaughtUp, paxos.ErrChangePending)
	c.waitMembers(fmt.Sprintf("voters %v", want), func(_ uint64, m paxos.Members) bool { return settled(m, want...) })
}

// shrink removes voter id and waits until every other replica has it out,
// and it reports Removed.
func (c *cell) shrink(id uint64, want ...uint64) {
	c.t.Helper()
	c.mu.Lock()
	removed := c.reps[id]
	c.mu.Unlock()
	c.change(paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: id}, paxos.ErrChangePending)
	c.mu.Lock()
	delete(c.reps, id) // no longer checked with the others
	c.mu.Unlock()
	c.waitMembers(fmt.Sprintf("voters %v", want), func(_ uint64, m paxos.Members) bool { return settled(m, want...) && m.IsRetired(id) })
	if removed != nil {
		select {
		case <-removed.Removed():
		case <-time.After(memberPatience):
			c.t.Fatalf("replica %d never reported Removed", id)
		}
		removed.Close()
	}
}

// proposeN proposes n commands named prefix-i and waits until every running
// replica applied total commands.
func (c *cell) proposeN(prefix string, n, total int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), memberPatience)
	defer cancel()
	for i := range n {
		if _, err := c.propose(ctx, 1, fmt.Appendf(nil, "%s-%d", prefix, i)); err != nil {
			c.t.Fatalf("propose %s-%d: %v", prefix, i, err)
		}
	}
	// Exactly the commands, distinct ones (c.propose retries a command
	// whose leader was deposed, ErrLeadershipLost, which may have been
	// chosen all the same): the state machine never sees a member change.
	deadline := time.Now().Add(memberPatience)
	for bad := c.distinctApplied(total); bad != ""; bad = c.distinctApplied(total) {
		if time.Now().After(deadline) {
			c.t.Fatal(bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// distinctApplied says which replica has not applied exactly total
// distinct commands of group 1 ("" if none), and fails the test on a
// command proposeN did not propose.
func (c *cell) distinctApplied(total int) (bad string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.reps {
		distinct := map[string]bool{}
		for _, cmd := range c.sms[id][1].applied() {
			if !isCommand(string(cmd)) {
				c.t.Fatalf("replica %d applied %q, not a command of the test", id, cmd)
			}
			distinct[string(cmd)] = true
		}
		if len(distinct) != total {
			bad = fmt.Sprintf("replica %d applied %d distinct commands; want %d", id, len(distinct), total)
		}
	}
	return bad
}

// isCommand reports whether cmd has proposeN's shape: prefix-i.
func isCommand(cmd string) bool {
	k := strings.LastIndexByte(cmd, '-')
	if k <= 0 {
		return false
	}
	_, err := strconv.Atoi(cmd[k+1:])
	return err == nil
}

// Grow 3 -> 5 (each new replica a learner first, caught up, promoted), then
// shrink 5 -> 3; every replica applies the same commands throughout.
func TestMembersGrowAndShrink(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: smallAlpha})
	c.proposeN("a", 10, 10)
	c.grow(4, "", 1, 2, 3, 4)
	c.proposeN("b", 10, 20)
	c.grow(5, "", 1, 2, 3, 4, 5)
	c.proposeN("c", 10, 30)
	c.checkSame(1)
	st, err := c.reps[5].Status(context.Background(), 1)
	if err != nil || !settled(st.Members, 1, 2, 3, 4, 5) {
		t.Fatalf("Status(5).Members = %+v, %v; want voters 1-5", st.Members, err)
	}
	if st.Stats.SnapshotsRecv == 0 {
		t.Errorf("joiner 5 received no snapshot (it learns the member set from one)")
	}
	c.shrink(5, 1, 2, 3, 4)
	c.shrink(4, 1, 2, 3)
	c.proposeN("d", 10, 40)
	c.checkSame(1)
}

// Over TCP a new member is reached without restarting anyone: the others
// learn its address from its AddLearner and dial it (it has the highest id).
func TestMembersGrowOverTCP(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tcp: true, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	c.grow(4, freeAddrs(t, 1)[0], 1, 2, 3, 4)
	c.stop(1) // 2, 3 and 4 are a majority of four
	c.proposeN("b", 5, 10)
	c.checkSame(1)
}

// The leader removes itself: it hands over, another replica leads, and the
// removed one reports Removed.
func TestMembersRemoveLeader(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	lead := c.leader(1, memberPatience)
	rest := slices.DeleteFunc([]uint64{1, 2, 3}, func(id uint64) bool { return id == lead.ID() })
	c.shrink(lead.ID(), rest...)
	if l := c.leader(1, memberPatience); l.ID() == lead.ID() {
		t.Fatalf("the removed replica %d still leads", lead.ID())
	}
	c.proposeN("b", 5, 10)
	c.checkSame(1)
}

// A removed learner learns it, on an idle cell too: RemoveLearner retires
// it at once, and the leader stops sending it heartbeats as it applies the
// change, so it hears of a commit past it only from the Accept of the empty
// batch the leader proposes after it (found by TestChaosMembers: the
// learner never reported Removed).
func TestMembersRemovedLearnerLearnsIt(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	c.prepareJoiner(4, "")
	c.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4, Meta: c.addrsOf(4).Encode()})
	c.start(4)
	c.waitMembers("replica 4 bound", func(_ uint64, m paxos.Members) bool { return bound(m, 4) })
	c.mu.Lock()
	learner := c.reps[4]
	delete(c.reps, 4) // no longer checked with the others
	c.mu.Unlock()
	defer learner.Close()
	c.change(paxos.MemberChange{Op: paxos.OpRemoveLearner, ID: 4})
	select {
	case <-learner.Removed():
	case <-time.After(memberPatience):
		t.Fatalf("the removed learner 4 never reported Removed")
	}
	c.waitMembers("replica 4 retired", func(_ uint64, m paxos.Members) bool { return m.IsRetired(4) && settled(m, 1, 2, 3) })
}

// A dead replica is replaced: add a new one, promote it, remove the dead
// id; the cell runs on the new voter set.
func TestMembersReplaceDeadReplica(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	c.stop(3)
	c.grow(4, "", 1, 2, 3, 4)
	c.change(paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: 3}, paxos.ErrChangePending)
	c.waitMembers("voters 1 2 4", func(_ uint64, m paxos.Members) bool { return settled(m, 1, 2, 4) && m.IsRetired(3) })
	// Replica 1 or 2 alone with 4 is a majority now: stop one of them.
	c.stop(2)
	c.proposeN("b", 5, 10)
	c.checkSame(1)
}

// Every replica restarts after changes (with its original configuration,
// which lists the founding members): the member set is the replicated one,
// from the snapshot or replayed from the log.
func TestMembersSurviveRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every uint64
	}{{"from the log", 100_000}, {"from snapshots", 8}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCell(t, cellOpts{n: 3, tune: func(cfg *Config) { smallAlpha(cfg); cfg.SnapshotEvery = tc.every }})
			c.proposeN("a", 10, 10)
			c.grow(4, "", 1, 2, 3, 4)
			c.shrink(1, 2, 3, 4)
			c.proposeN("b", 10, 20)
			want, err := c.reps[2].Members(1)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []uint64{2, 3, 4} {
				c.stop(id)
			}
			logs := &logLines{}
			cfg2 := c.cfgs[2]
			cfg2.Logger = slog.New(logs)
			c.cfgs[2] = cfg2
			for _, id := range []uint64{2, 3, 4} {
				c.start(id)
			}
			// Replica 2's configuration still lists the founders 1, 2, 3.
			if !logs.has("the configured members differ from the replicated member set") {
				t.Errorf("no warning that the configured members differ from the replicated set:\n%s", logs)
			}
			c.waitMembers("the member set back", func(_ uint64, m paxos.Members) bool {
				return slices.Equal(m.Encode(), want.Encode()) || m.Epoch > want.Epoch && settled(m, 2, 3, 4)
			})
			c.proposeN("c", 5, 25)
			c.checkSame(1)
			// The core's own member set agrees with the applier's.
			for _, id := range []uint64{2, 3, 4} {
				g := c.reps[id].groups[1]
				ch := make(chan paxos.Members, 1)
				core, err := askLoop(context.Background(), g, func() { ch <- g.node.Members() }, ch)
				if err != nil {
					t.Fatal(err)
				}
				app, _ := c.reps[id].Members(1)
				if !slices.Equal(core.Voters(), app.Voters()) || !slices.Equal(core.Retired, app.Retired) {
					t.Errorf("replica %d: core's member set %+v, applied %+v", id, core, app)
				}
			}
		})
	}
}

// A joiner catches up from a snapshot of a compacted log.
func TestMembersJoinerFromCompactedLog(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tune: func(cfg *Config) { smallAlpha(cfg); cfg.SnapshotEvery = 10 }})
	c.proposeN("a", 60, 60)
	waitFor(t, memberPatience, "a compacted log", func() bool {
		st, err := c.leader(1, memberPatience).Status(context.Background(), 1)
		return err == nil && st.Snapshot > 5
	})
	c.prepareJoiner(4, "")
	c.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4, Meta: c.addrsOf(4).Encode()})
	c.start(4)
	c.waitMembers("replica 4 bound", func(_ uint64, m paxos.Members) bool { return bound(m, 4) })
	c.proposeN("b", 5, 65)
	c.checkSame(1)
	st, err := c.reps[4].Status(context.Background(), 1)
	if err != nil || st.Stats.SnapshotsRecv == 0 || st.Rebuilding {
		t.Fatalf("joiner status = %+v, %v; want a snapshot received, not rebuilding", st, err)
	}
}

// A member moves to a new address (SetMeta): the others dial it there
// without a restart.
func TestMembersSetMetaMovesAReplica(t *testing.T) {
	c := newCell(t, cellOpts{n: 3, tcp: true, tune: smallAlpha})
	c.proposeN("a", 5, 5)
	c.stop(3)
	cfg := c.cfgs[3]
	cfg.Members = maps.Clone(cfg.Members)
	cfg.Members[3] = freeAddrs(t, 1)[0]
	c.cfgs[3] = cfg
	c.change(paxos.MemberChange{Op: paxos.OpSetMeta, ID: 3, Meta: c.addrsOf(3).Encode()})
	c.start(3)
	c.proposeN("b", 5, 10) // waits until replica 3 applied them too
	c.checkSame(1)
	if id, addr, ok := c.reps[1].Leader(1); ok && id == 3 && addr != cfg.Members[3] {
		t.Errorf("Leader = 3 at %s; want the new address %s", addr, cfg.Members[3])
	}
	if got := c.reps[1].peerAddr(3); got != cfg.Members[3] {
		t.Errorf("replica 1 knows replica 3 at %s; want %s", got, cfg.Members[3])
	}
}

// Changes a leader must refuse, and the errors they get.
func TestMembersBadChanges(t *testing.T) {
	// α this large keeps a promotion pending for the whole test.
	c := newCell(t, cellOpts{n: 3, tune: func(cfg *Config) { cfg.Alpha = 1 << 16 }})
	c.proposeN("a", 3, 3)
	lead := c.leader(1, memberPatience)
	for _, tc := range []struct {
		name string
		ch   paxos.MemberChange
	}{
		{"remove an unknown id", paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: 9}},
		{"promote an unknown id", paxos.MemberChange{Op: paxos.OpPromote, ID: 9}},
		{"add id 0", paxos.MemberChange{Op: paxos.OpAddLearner, ID: 0}},
		{"add a member", paxos.MemberChange{Op: paxos.OpAddLearner, ID: 2}},
		{"unknown op", paxos.MemberChange{Op: 99, ID: 9}},
		{"stale epoch", paxos.MemberChange{Op: paxos.OpAddLearner, ID: 9, Epoch: 77}},
	} {
		if _, err := c.tryChange(tc.ch); !errors.Is(err, paxos.ErrInvalidChange) {
			t.Errorf("%s: ChangeMembers = %v; want ErrInvalidChange", tc.name, err)
		}
	}
	// Not the leader.
	f := followerOf(c, lead)
	var nl *NotLeaderError
	if _, _, err := f.ChangeMembers(context.Background(), 1, paxos.MemberChange{Op: paxos.OpAddLearner, ID: 9}); !errors.As(err, &nl) {
		t.Errorf("ChangeMembers on a follower = %v; want *NotLeaderError", err)
	}
	if _, _, err := lead.ChangeMembers(context.Background(), 7, paxos.MemberChange{}); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("ChangeMembers(group 7) = %v; want ErrUnknownGroup", err)
	}

	// An unbound learner (never started) cannot be promoted.
	c.prepareJoiner(7, "")
	c.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: 7, Meta: c.addrsOf(7).Encode()})
	if _, err := c.tryChange(paxos.MemberChange{Op: paxos.OpPromote, ID: 7}); !errors.Is(err, paxos.ErrInvalidChange) {
		t.Errorf("Promote of an unbound learner = %v; want ErrInvalidChange (not bound)", err)
	}

	// A learner that stopped after it bound is not caught up.
	c.prepareJoiner(4, "")
	c.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4, Meta: c.addrsOf(4).Encode()})
	c.start(4)
	c.waitMembers("replica 4 bound", func(_ uint64, m paxos.Members) bool { return bound(m, 4) })
	c.stop(4)
	time.Sleep(3 * c.cfgs[1].ElectionTimeout) // its last acknowledgement ages past an election timeout
	if _, err := c.tryChange(paxos.MemberChange{Op: paxos.OpPromote, ID: 4}); !errors.Is(err, paxos.ErrNotCaughtUp) {
		t.Fatalf("Promote of a stopped learner = %v; want ErrNotCaughtUp", err)
	}

	// Back up, promoted: the promotion is pending (α is huge), so a second
	// voter change is refused.
	c.start(4)
	c.change(paxos.MemberChange{Op: paxos.OpPromote, ID: 4}, paxos.ErrNotCaughtUp, paxos.ErrChangePending)
	if _, err := c.tryChange(paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: 2}); !errors.Is(err, paxos.ErrChangePending) {
		t.Errorf("a second voter change while one is pending = %v; want ErrChangePending", err)
	}
	c.waitMembers("the promotion of 4 pending", func(_ uint64, m paxos.Members) bool {
		return m.Pending != nil && slices.Equal(m.Pending.Voters, []uint64{1, 2, 3, 4})
	})
}

func TestMemberAddrsEncoding(t *testing.T) {
	a := MemberAddrs{Peer: "10.0.0.1:7001", Client: "10.0.0.1:7000", HTTP: ""}
	got, err := DecodeMemberAddrs(a.Encode())
	if err != nil || got != a {
		t.Fatalf("DecodeMemberAddrs(Encode(%+v)) = %+v, %v", a, got, err)
	}
	enc := a.Encode()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{2}, enc[1:]...)},
		{"cut short", enc[:len(enc)-3]},
		{"length beyond the end", []byte{1, 200, 1}},
		{"trailing bytes", append(enc[:len(enc):len(enc)], 0)},
		{"garbage", []byte("garbage")},
	} {
		if _, err := DecodeMemberAddrs(tc.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeMemberAddrs(%s) = %v; want ErrMalformed", tc.name, err)
		}
	}
}

// The applier hands a member change to the member set, never to the state
// machine, even when its bytes would read as a batch of commands.
func TestApplierSkipsMemberChanges(t *testing.T) {
	cfg := testConfig()
	cfg.ID, cfg.Members, cfg.DataDir, cfg.Groups = 1, map[uint64]string{1: "mem-1"}, t.TempDir(), []uint32{1}
	sm := &testSM{}
	r, err := New(cfg, map[uint32]StateMachine{1: sm}, NewMemNetwork())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := r.groups[1].applier
	batch := appendBatch(nil, 1, 1, [][]byte{[]byte("x")})
	add := paxos.MemberChange{Op: paxos.OpAddLearner, ID: 2, Meta: MemberAddrs{Peer: "mem-2"}.Encode()}.Encode()
	err = a.applyEntries([]paxos.Entry{
		{Instance: 1, Conf: true, Value: batch}, // a batch's bytes: an invalid change
		{Instance: 2, Conf: true, Value: add},
		{Instance: 3, Value: batch},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sm.count(); got != 1 {
		t.Fatalf("the state machine applied %d commands; want 1 (member changes skipped)", got)
	}
	m, err := r.Members(1)
	if err != nil || m.Epoch != 1 || !slices.Equal(m.Voters(), []uint64{1}) {
		t.Fatalf("Members = %+v, %v; want epoch 1 with learner 2", m, err)
	}
	if x, ok := m.Member(2); !ok || x.Voter {
		t.Fatalf("Members = %+v; want learner 2", m)
	}
	if got := r.peerAddr(2); got != "mem-2" {
		t.Fatalf("peerAddr(2) = %q; want mem-2 (from its MemberAddrs)", got)
	}
}
