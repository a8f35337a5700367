package replica

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

var (
	chaosSeed  = flag.Uint64("chaos-seed", 0, "TestChaosMembers: the nemesis seed (0: from the clock)")
	chaosDebug = flag.Bool("chaos-debug", false, "TestChaosMembers: log the replicas at debug level")
)

// TestChaosMembers is TestChaos with member changes: a cell of three to
// five founders on the in-memory network, with small snapshots and α,
// while writers propose and a nemesis isolates replicas, cuts single
// links, heals, restarts and wipes replicas, and, on the current leader,
// adds joiners, promotes them and removes voters (the leader too, or one
// cut off). Afterwards every member must hold the same log with every
// acknowledged command once, and the same member set; every removed
// replica, restarted if it was down, must have learned it (from the log,
// or from a member that forgot it: the network tells it, as TCP does);
// none stopped on a fatal error. The replicas' log is kept in a file when
// the test fails; -chaos-seed repeats a run's nemesis choices (timing is
// real).
func TestChaosMembers(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (nemesis choices only; timing is real; -chaos-seed repeats them)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	lg := chaosLogger(t, seed)
	founders := 3 + rng.IntN(3)
	c := newCell(t, cellOpts{n: founders, tune: func(cfg *Config) {
		smallAlpha(cfg)
		cfg.SnapshotEvery = 30
		cfg.SnapshotChunk = 1024
		cfg.Logger = lg
	}})
	n := newMemberNemesis(t, c, rng, lg, uint64(founders)+1)
	t.Cleanup(n.closeRemoved)
	ctx, cancel := context.WithTimeout(context.Background(), *chaosTime+3*memberPatience)
	defer cancel()
	w := startWriters(ctx, t, c, 6)

	end := time.Now().Add(*chaosTime)
	for time.Now().Before(end) && !t.Failed() {
		time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		n.step()
	}
	n.log.Info("nemesis: done; healing")
	c.mem.Heal()
	clear(n.cut)
	n.restartDown()
	acked := w.stop()
	n.finishJoiners()
	n.settle()
	checkLog(ctx, t, c, acked)
	n.checkMembers()
	n.restartRemoved()
	n.checkRemoved()
	n.checkNoneFailed()
	t.Logf("nemesis: %v", n.counts)
}

// chaosLogger returns a logger that writes to a file named after seed,
// kept (and named in the test's output) only if the test fails.
func chaosLogger(t *testing.T, seed uint64) *slog.Logger {
	f, err := os.CreateTemp("", fmt.Sprintf("chaos-members-%d-*.log", seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			t.Logf("replica logs: %s", f.Name())
			return
		}
		os.Remove(f.Name())
	})
	level := slog.LevelInfo
	if *chaosDebug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: level}))
}

// memberNemesis is TestChaosMembers's fault and member-change injector. It
// runs on the test goroutine only; it changes c.reps under c.mu, as the
// writers read it.
type memberNemesis struct {
	t    *testing.T
	c    *cell
	rng  *rand.Rand
	log  *slog.Logger
	next uint64 // the next fresh id for a joiner

	down    map[uint64]bool     // stopped, to be restarted
	cut     map[uint64]bool     // a link of the id is cut (until Heal)
	wiped   map[uint64]bool     // restarted on an empty data dir, still rebuilding
	joining map[uint64]bool     // joiners started, their AddLearner not yet seen applied
	removed map[uint64]*Replica // retired ids, with the replica that ran when it was seen (nil: down)
	started []*Replica          // every replica started, to check none failed
	counts  map[string]int
}

func newMemberNemesis(t *testing.T, c *cell, rng *rand.Rand, lg *slog.Logger, next uint64) *memberNemesis {
	n := &memberNemesis{
		t: t, c: c, rng: rng, log: lg.With("component", "nemesis"), next: next,
		down: map[uint64]bool{}, cut: map[uint64]bool{}, wiped: map[uint64]bool{},
		joining: map[uint64]bool{}, removed: map[uint64]*Replica{}, counts: map[string]int{},
	}
	n.started = slices.Collect(maps.Values(c.reps))
	return n
}

// step makes one nemesis move.
func (n *memberNemesis) step() {
	n.reconcile()
	switch op := n.rng.IntN(16); op {
	case 0, 1:
		n.isolate()
	case 2:
		n.disconnect()
	case 3, 4:
		n.log.Info("nemesis: heal")
		n.c.mem.Heal()
		clear(n.cut)
	case 5:
		n.stop()
	case 6:
		n.restartDown()
	case 7:
		n.wipe()
	case 8, 9:
		n.add()
	case 10, 11:
		n.promote()
	case 12, 13:
		n.remove()
	case 14:
		n.removeLearner()
	case 15:
		n.setMeta()
	}
}

// alive returns the ids that are neither removed nor down, sorted.
func (n *memberNemesis) alive() []uint64 {
	ids := slices.DeleteFunc(n.c.ids(), func(id uint64) bool { return n.down[id] })
	slices.Sort(ids)
	return ids
}

func (n *memberNemesis) pick(ids []uint64) (uint64, bool) {
	if len(ids) == 0 {
		return 0, false
	}
	return ids[n.rng.IntN(len(ids))], true
}

func (n *memberNemesis) isolate() {
	id, ok := n.pick(n.alive())
	if !ok {
		return
	}
	n.log.Info("nemesis: isolate", "id", id)
	n.counts["isolate"]++
	n.c.mem.Isolate(id)
	n.cut[id] = true
}

func (n *memberNemesis) disconnect() {
	ids := n.alive()
	if len(ids) < 2 {
		return
	}
	i := n.rng.IntN(len(ids))
	j := (i + 1 + n.rng.IntN(len(ids)-1)) % len(ids)
	a, b := ids[i], ids[j]
	n.log.Info("nemesis: disconnect", "a", a, "b", b)
	n.counts["disconnect"]++
	n.c.mem.Disconnect(a, b)
	n.cut[a], n.cut[b] = true, true
}

func (n *memberNemesis) stop() {
	id, ok := n.pick(n.alive())
	if !ok || len(n.down) >= 2 {
		return
	}
	n.log.Info("nemesis: stop", "id", id)
	n.counts["stop"]++
	n.c.stop(id)
	n.down[id] = true
}

// start starts replica id and remembers the instance.
func (n *memberNemesis) start(id uint64) {
	n.c.start(id)
	n.c.mu.Lock()
	n.started = append(n.started, n.c.reps[id])
	n.c.mu.Unlock()
}

func (n *memberNemesis) restartDown() {
	for _, id := range slices.Sorted(maps.Keys(n.down)) {
		n.log.Info("nemesis: restart", "id", id)
		n.counts["restart"]++
		n.start(id)
		delete(n.down, id)
	}
}

// wipe stops a replica, deletes its data dir and starts it as an operator
// would, with its original configuration (its first start's, without
// Join) and RebuildEmpty. Only one disk is lost at a time, with no replica
// down and no voter change pending: the operator rules of
// docs/membership.md §9 and §12 that keep a majority able to fence it.
func (n *memberNemesis) wipe() {
	id, ok := n.pick(n.alive())
	if !ok || len(n.wiped) > 0 || len(n.down) > 0 {
		return
	}
	if m, ok := n.members(); !ok || m.Pending != nil {
		return
	}
	n.log.Info("nemesis: wipe", "id", id)
	n.counts["wipe"]++
	n.c.stop(id)
	cfg := n.c.cfgs[id]
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		n.t.Fatal(err)
	}
	cfg.Join = false
	cfg.RebuildEmpty = true
	n.c.cfgs[id] = cfg
	n.start(id)
	n.wiped[id] = true
}

// members returns the leader's member set, or, with no leader, the one of
// the highest epoch among the running replicas.
func (n *memberNemesis) members() (paxos.Members, bool) {
	if lead := n.c.leaderOf(1); lead != nil {
		if m, err := lead.Members(1); err == nil {
			return m, true
		}
	}
	var best paxos.Members
	found := false
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	for _, r := range n.c.reps {
		if m, err := r.Members(1); err == nil && (!found || m.Epoch > best.Epoch) {
			best, found = m, true
		}
	}
	return best, found
}

// reconcile brings the nemesis's view up to the member set: retired
// replicas leave the cell (c.reps), joiners whose AddLearner applied are
// members, wiped replicas that ended their rebuild are whole again.
func (n *memberNemesis) reconcile() {
	m, ok := n.members()
	if !ok {
		return
	}
	for _, id := range m.Retired {
		if _, done := n.removed[id]; done {
			continue
		}
		n.c.mu.Lock()
		r := n.c.reps[id]
		delete(n.c.reps, id) // no longer checked with the others
		n.c.mu.Unlock()
		n.removed[id] = r
		delete(n.down, id)
		delete(n.wiped, id)
		delete(n.joining, id)
		n.log.Info("nemesis: seen removed", "id", id, "running", r != nil, "epoch", m.Epoch)
	}
	for id := range n.joining {
		if _, ok := m.Member(id); ok {
			delete(n.joining, id)
		}
	}
	for id := range n.wiped {
		if st, ok := n.status(id); ok && !st.Rebuilding {
			n.log.Info("nemesis: rebuilt", "id", id)
			delete(n.wiped, id)
		}
	}
}

func (n *memberNemesis) status(id uint64) (Status, bool) {
	n.c.mu.Lock()
	r := n.c.reps[id]
	n.c.mu.Unlock()
	if r == nil {
		return Status{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := r.Status(ctx, 1)
	return st, err == nil
}

// add adds a learner: the joiner whose AddLearner was not seen applied, or
// a fresh one, started after its AddLearner as an operator would start it
// (also when the change's outcome is unknown: it then just waits).
func (n *memberNemesis) add() {
	m, ok := n.members()
	if !ok {
		return
	}
	id, again := n.pick(slices.Sorted(maps.Keys(n.joining)))
	if !again {
		if len(m.Members) >= 6 {
			return
		}
		id = n.next
		n.next++
		n.c.prepareJoiner(id, "")
		// Its seeds are the current members, as an operator would give.
		cfg := n.c.cfgs[id]
		cfg.Members = map[uint64]string{id: cfg.Members[id]}
		for _, x := range m.Members {
			cfg.Members[x.ID] = fmt.Sprintf("mem-%d", x.ID)
		}
		n.c.cfgs[id] = cfg
	}
	n.counts["add"]++
	err := n.change(paxos.MemberChange{Op: paxos.OpAddLearner, ID: id, Meta: n.c.addrsOf(id).Encode()}, time.Second)
	if !again {
		n.log.Info("nemesis: start joiner", "id", id)
		n.start(id)
		n.joining[id] = true
	}
	if err == nil {
		n.counts["added"]++
	}
}

// promote promotes a bound learner that is up and not rebuilding, once it
// has caught up, while no disk is lost and at most four voters remain.
func (n *memberNemesis) promote() {
	m, ok := n.members()
	if !ok || m.Pending != nil || len(m.Voters()) >= 5 || len(n.wiped) > 0 {
		return
	}
	var cands []uint64
	for _, x := range m.Members {
		if !x.Voter && x.Nonce != 0 && !n.down[x.ID] && !n.joining[x.ID] && n.running(x.ID) {
			cands = append(cands, x.ID)
		}
	}
	id, ok := n.pick(cands)
	if !ok {
		return
	}
	if st, ok := n.status(id); !ok || st.Rebuilding {
		return
	}
	n.counts["promote"]++
	if n.change(paxos.MemberChange{Op: paxos.OpPromote, ID: id, Epoch: n.ifEpoch(m)}, 2*time.Second, paxos.ErrNotCaughtUp, paxos.ErrChangePending) == nil {
		n.counts["promoted"]++
	}
}

func (n *memberNemesis) running(id uint64) bool {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.c.reps[id] != nil
}

// remove removes a voter, keeping at least three: the leader a third of
// the time, one cut off or down a third of the time, any otherwise.
func (n *memberNemesis) remove() {
	m, ok := n.members()
	if !ok || m.Pending != nil || len(m.Voters()) <= 3 || len(n.wiped) > 0 {
		return
	}
	voters := m.Voters()
	id, _ := n.pick(voters)
	switch n.rng.IntN(3) {
	case 0:
		if lead := n.c.leaderOf(1); lead != nil && slices.Contains(voters, lead.ID()) {
			id = lead.ID()
		}
	case 1:
		if x, ok := n.pick(slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return !n.cut[v] && !n.down[v] })); ok {
			id = x
		}
	}
	n.counts["remove"]++
	if n.change(paxos.MemberChange{Op: paxos.OpRemoveVoter, ID: id, Epoch: n.ifEpoch(m)}, time.Second, paxos.ErrChangePending) == nil {
		n.counts["removed"]++
	}
}

// removeLearner removes a learner (bound or not, up or not).
func (n *memberNemesis) removeLearner() {
	m, ok := n.members()
	if !ok {
		return
	}
	var learners []uint64
	for _, x := range m.Members {
		if !x.Voter && !(m.Pending != nil && slices.Contains(m.Pending.Voters, x.ID)) {
			learners = append(learners, x.ID)
		}
	}
	id, ok := n.pick(learners)
	if !ok {
		return
	}
	n.counts["removeLearner"]++
	n.change(paxos.MemberChange{Op: paxos.OpRemoveLearner, ID: id, Epoch: n.ifEpoch(m)}, time.Second)
}

// ifEpoch makes half the changes conditional on the epoch they were made
// against (the client's IfEpoch).
func (n *memberNemesis) ifEpoch(m paxos.Members) uint64 {
	if n.rng.IntN(2) == 0 {
		return 0
	}
	return m.Epoch
}

// setMeta announces a member's (unchanged) addresses again: a change
// applied at once, which moves the epoch.
func (n *memberNemesis) setMeta() {
	m, ok := n.members()
	if !ok || len(m.Members) == 0 {
		return
	}
	x := m.Members[n.rng.IntN(len(m.Members))].ID
	n.counts["setmeta"]++
	n.change(paxos.MemberChange{Op: paxos.OpSetMeta, ID: x, Meta: n.c.addrsOf(x).Encode(), Epoch: n.ifEpoch(m)}, time.Second)
}

// change runs ChangeMembers on the leader, retrying for up to patience
// what leaves nothing proposed (not the leader, Phase 1 pending) and the
// errors in retry. An outcome left unknown (a timeout, lost leadership)
// is not retried: reconcile reads the member set later, as a client would.
// A refused change is logged: the nemesis may ask what a change it thought
// lost already did.
func (n *memberNemesis) change(ch paxos.MemberChange, patience time.Duration, retry ...error) error {
	n.log.Info("nemesis: change", "op", ch.Op, "id", ch.ID)
	retry = append(retry, paxos.ErrPhase1Pending)
	deadline := time.Now().Add(patience)
	for {
		lead := n.c.leaderOf(1)
		var err error
		if lead == nil {
			err = errors.New("no leader")
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			_, _, err = lead.ChangeMembers(ctx, 1, ch)
			cancel()
		}
		var nl *NotLeaderError
		switch {
		case err == nil:
			n.log.Info("nemesis: change done", "op", ch.Op, "id", ch.ID)
			return nil
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrLeadershipLost), errors.Is(err, ErrClosed):
			n.counts["unknown"]++
			n.log.Info("nemesis: change outcome unknown", "op", ch.Op, "id", ch.ID, "err", err)
			return err
		case errors.Is(err, paxos.ErrInvalidChange):
			n.counts["refused"]++
			n.log.Info("nemesis: change refused", "op", ch.Op, "id", ch.ID, "err", err)
			return err
		case lead != nil && !errors.As(err, &nl) && !slices.ContainsFunc(retry, func(e error) bool { return errors.Is(err, e) }):
			n.t.Errorf("ChangeMembers(%v %d) = %v", ch.Op, ch.ID, err)
			return err
		}
		if time.Now().After(deadline) {
			n.log.Info("nemesis: change given up", "op", ch.Op, "id", ch.ID, "err", err)
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finishJoiners adds, on the healed cell, every joiner started whose
// AddLearner is not applied, so that every running replica is a member.
func (n *memberNemesis) finishJoiners() {
	deadline := time.Now().Add(memberPatience)
	for n.reconcile(); len(n.joining) > 0; n.reconcile() {
		if time.Now().After(deadline) {
			n.t.Fatalf("joiners %v never became members", slices.Sorted(maps.Keys(n.joining)))
		}
		n.add()
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits on the healed cell until no voter change is pending and
// every running member has the leader's member set, moving replicas that
// a late change removed out of the cell.
func (n *memberNemesis) settle() {
	deadline := time.Now().Add(memberPatience)
	for {
		n.reconcile()
		bad := n.membersDiffer()
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the member set did not settle within %v: %s", memberPatience, bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// membersDiffer describes how the running replicas' member sets differ
// from the leader's, or one of them has a change pending; "" if neither.
func (n *memberNemesis) membersDiffer() string {
	lead := n.c.leaderOf(1)
	if lead == nil {
		return "no leader"
	}
	want, err := lead.Members(1)
	if err != nil {
		return fmt.Sprintf("leader %d: %v", lead.ID(), err)
	}
	if want.Pending != nil {
		return fmt.Sprintf("leader %d: a change pending: %+v", lead.ID(), want)
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(n.c.reps)) {
		m, err := n.c.reps[id].Members(1)
		if err != nil || !slices.Equal(m.Encode(), want.Encode()) {
			return fmt.Sprintf("replica %d: %+v (%v); leader %d: %+v", id, m, err, lead.ID(), want)
		}
	}
	return ""
}

// checkMembers fails unless every running replica has the same member set
// (epoch included) and is a member of it.
func (n *memberNemesis) checkMembers() {
	if bad := n.membersDiffer(); bad != "" {
		n.t.Fatalf("member sets differ after the log converged: %s", bad)
	}
	m, _ := n.members()
	for _, id := range n.c.ids() {
		if _, ok := m.Member(id); !ok {
			n.t.Errorf("replica %d runs but is not a member: %+v", id, m)
		}
	}
	n.t.Logf("members at epoch %d: voters %v, %d members, retired %v", m.Epoch, m.Voters(), len(m.Members), m.Retired)
}

// restartRemoved starts the removed replicas that were down when their
// removal was seen, as an operator restarting a machine would, and keeps
// them out of the cell (c.reps) as reconcile does.
func (n *memberNemesis) restartRemoved() {
	for _, id := range slices.Sorted(maps.Keys(n.removed)) {
		if n.removed[id] != nil {
			continue
		}
		n.log.Info("nemesis: restart removed", "id", id)
		n.counts["restartRemoved"]++
		n.start(id)
		n.c.mu.Lock()
		n.removed[id] = n.c.reps[id]
		delete(n.c.reps, id)
		n.c.mu.Unlock()
	}
}

// checkRemoved fails unless every removed replica, all up and reachable
// now, reported Removed, and no member did. One that lagged behind its
// removal (cut off, down, slow) learns it from a member that forgot it:
// the network answers its greeting, as the TCP transport answers its
// hello (MemNetwork.greetLocked). Only one that cannot be told is
// excused, and logged (untellable).
func (n *memberNemesis) checkRemoved() {
	m, _ := n.members()
	deadline := time.Now().Add(memberPatience)
	for _, id := range slices.Sorted(maps.Keys(n.removed)) {
		r := n.removed[id]
		select {
		case <-r.Removed():
		case <-time.After(time.Until(deadline)):
		}
		select {
		case <-r.Removed():
		default:
			if why := untellable(r, m); why != "" {
				n.t.Logf("replica %d never learned it was removed: %s", id, why)
			} else {
				n.t.Errorf("replica %d was removed but never reported Removed within %v", id, memberPatience)
			}
		}
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	for id, r := range n.c.reps {
		select {
		case <-r.Removed():
			n.t.Errorf("replica %d reported Removed but is a member", id)
		default:
		}
	}
}

// untellable says why removed replica r cannot learn its removal from the
// members m, "" if it can. A member tells it only on its greeting, which
// carries its cell id: one wiped and stopped before it learned the cell
// id, and forgotten by every member since, learns it from no one
// (docs/transport.md "A removed replica is told"). And it greets only
// the peers it knows: its member set stops with its removal (the members
// drop its messages), so one that knows none of the members left hears
// from no one (they no longer dial it).
func untellable(r *Replica, m paxos.Members) string {
	r.viewMu.Lock()
	cell := r.cell.cellID()
	r.viewMu.Unlock()
	if cell == 0 {
		return "it does not know the cell id"
	}
	if p := r.addrs.Load(); p != nil {
		for id := range *p {
			if _, ok := m.Member(id); ok {
				return ""
			}
		}
	}
	return "it knows none of the members"
}

// checkNoneFailed fails if any replica started stopped on a fatal error.
func (n *memberNemesis) checkNoneFailed() {
	for _, r := range n.started {
		if err := r.Err(); err != nil {
			n.t.Errorf("replica %d stopped: %v", r.ID(), err)
		}
	}
}

// closeRemoved closes the removed replicas (the cell closes the others).
func (n *memberNemesis) closeRemoved() {
	for _, r := range n.removed {
		if r != nil {
			r.Close()
		}
	}
}
