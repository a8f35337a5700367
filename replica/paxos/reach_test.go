package paxos

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// Scenes: runs of the simulation whose first seconds of faults follow a
// script instead of the dice, to reach rules of the rebuild (docs/paxos.md,
// "Rebuilding a replica that lost its state") that random faults reach once
// in thousands of seeds or never. A scene drives the same replicas, disks,
// network and workload as TestSimulation, and the same checkers judge the
// run: a planted bug must show up as two values chosen for one instance
// (the vote audit), a broken agreement, a lost acknowledged write or a
// history porcupine rejects, never as a scene asserting the rule itself.
// Each scene also runs with the rule in place and must pass; then the
// random faults take over.

// scene scripts the faults of a run's first sceneFor: steps taken in
// order, each once its condition holds (checked every simulated
// millisecond), and rules that drop or hold the messages they match.
type scene struct {
	s     *sim
	steps []sceneStep
	done  int // steps taken
	rules []sceneRule
	held  map[string][]Message
}

type sceneStep struct {
	name string
	when func() bool
	do   func()
}

// A sceneRule sees each message sent while the scene lasts: it returns ""
// to leave it to the next rule (after the last, to the network), sceneDrop
// to lose it, or the name of a queue to hold it in until the scene
// releases that queue.
type sceneRule func(from, to *simReplica, m Message) string

const sceneDrop = "drop"

// sceneFor is how long a scene scripts the faults: every scene has played
// out by then (by 1.5 s in 200 seeds of each).
const sceneFor = 3 * second

// newScene starts a scene: at sceneFor (or when the faults end, if
// sooner) it hands over to the simulation's random faults.
func newScene(s *sim) *scene {
	sc := &scene{s: s, held: map[string][]Message{}}
	s.tap = sc.tap
	s.after(ms, sc.poll)
	s.at(min(sceneFor, s.p.faultFor), sc.handOver) // before the heal, if at the same time (scheduled after this)
	return sc
}

// handOver ends the scene: it stops dropping and holding messages, delivers
// those it held, late, and starts the random faults for the time left.
func (sc *scene) handOver() {
	s := sc.s
	s.tap = nil
	for _, name := range slices.Sorted(maps.Keys(sc.held)) {
		sc.release(name)
	}
	if s.p.faultFor > s.now {
		s.after(s.uniform(100*ms, 1500*ms), s.fault)
	}
}

// step appends a step; do may be nil (a step that only waits).
func (sc *scene) step(name string, when func() bool, do func()) {
	sc.steps = append(sc.steps, sceneStep{name, when, do})
}

// rule adds a message rule, consulted after the rules added before it.
func (sc *scene) rule(r sceneRule) { sc.rules = append(sc.rules, r) }

// reached names the last step taken ("" before the first).
func (sc *scene) reached() string {
	if sc.done == 0 {
		return ""
	}
	return sc.steps[sc.done-1].name
}

func (sc *scene) poll() {
	s := sc.s
	if s.tap == nil || s.failed != nil {
		return // handed over (or the run failed)
	}
	for sc.done < len(sc.steps) && sc.steps[sc.done].when() {
		st := sc.steps[sc.done]
		sc.done++
		if *flagSimLog {
			fmt.Printf("t=%.3fs scene: %s\n", float64(s.now)/float64(second), st.name)
		}
		if st.do != nil {
			st.do()
		}
	}
	s.after(ms, sc.poll)
}

func (sc *scene) tap(from, to int, m Message) bool {
	for _, r := range sc.rules {
		switch v := r(sc.s.rs[from], sc.s.rs[to], m); v {
		case "":
			continue
		case sceneDrop:
			return true
		default:
			sc.held[v] = append(sc.held[v], m)
			return true
		}
	}
	return false
}

// release delivers the messages held under name, each after a network
// delay (to the replica's incarnation of that moment, if it is up).
func (sc *scene) release(name string) {
	s := sc.s
	for _, m := range sc.held[name] {
		to := int(m.To - 1)
		s.after(s.uniform(s.delayMin, s.delayMax), func() { s.deliver(to, m) })
	}
	delete(sc.held, name)
}

// cut drops every message between a and b (on), or no more (off).
func (sc *scene) cut(a, b *simReplica, on bool) {
	sc.s.cut[a.idx][b.idx], sc.s.cut[b.idx][a.idx] = on, on
}

// wipe crashes r, empties its disk and starts it again at once, rebuilding.
func (sc *scene) wipe(r *simReplica) {
	s := sc.s
	if r.up {
		r.crash()
	}
	s.res.wipes++
	r.disk = simDisk{log: map[uint64]Entry{}, rebuild: s.rng.Uint64() | 1}
	r.revealed, r.acked = Ballot{}, map[uint64]Ballot{}
	r.start()
}

// leader returns the replica that leads with every other one following it
// and caught up, after a few puts: the cell has settled. nil if none.
func (sc *scene) leader() *simReplica {
	s := sc.s
	l := s.leaderIdx()
	if l < 0 || s.res.opsOK < 10 {
		return nil
	}
	L := s.rs[l]
	if _, ok := L.node.ReadBarrier(); !ok {
		return nil
	}
	for _, r := range s.rs {
		if !r.up || r.node.rebuild != 0 || r != L && (r.node.leader != L.id || r.node.commit+2 < L.node.commit) {
			return nil
		}
	}
	return L
}

// logEnd is one past the highest instance r holds a record of.
func logEnd(r *simReplica) uint64 { return r.node.base + uint64(len(r.node.log)) }

// others returns the replicas other than those given, in order.
func (sc *scene) others(not ...*simReplica) []*simReplica {
	var out []*simReplica
	for _, r := range sc.s.rs {
		if !slices.Contains(not, r) {
			out = append(out, r)
		}
	}
	return out
}

// onSettled adds the first step: once the cell settled, do(L, others),
// with L its leader.
func (sc *scene) onSettled(do func(L *simReplica, others []*simReplica)) {
	sc.step("settled", func() bool { return sc.leader() != nil }, func() {
		L := sc.leader()
		do(L, sc.others(L))
	})
}

// hideBallots returns a rule that keeps L from hearing of any ballot above
// its own (in a Prepare, a Reject, ...), so that its next campaign stays
// below them, and everyone from hearing of other campaigns than of *b,
// whose Prepares reach only those given.
func hideBallots(L *simReplica, b *Ballot, to ...*simReplica) sceneRule {
	return func(from, dst *simReplica, m Message) string {
		switch {
		case dst == L && m.Ballot.ID != L.id && L.node.ballot.Less(m.Ballot):
			return sceneDrop
		case m.Type == MsgPrepare && from != L && (b.IsZero() || m.Ballot != *b || !slices.Contains(to, dst)):
			return sceneDrop
		}
		return ""
	}
}

// campaignAbove has r campaign until its ballot is above b.
func campaignAbove(r *simReplica, b Ballot) Ballot {
	for range 8 {
		r.node.Campaign()
		if b.Less(r.node.ballot) {
			break
		}
	}
	return r.node.ballot
}

// ---- the scenes ----

// sceneStaleFence: a fence must come from a Phase 1 that began after the
// rebuild, promised by every other replica. Three replicas: leader L
// (ballot B), y, w. w stops hearing from L; once its lease to L ran out, y
// campaigns with a ballot by > B, which only w hears of: w promises by and
// is wiped, its Promise still on the way to y. L must not fence w with B
// (which y and w promised before w's loss): w, voting again under B,
// helps L choose values past y's log, then w's old Promise completes y's
// Phase 1 of by, which does not see them, and w accepts y's no-op there at
// by > B. With the rule, L needs a Phase 1 that y promises too, above by.
func sceneStaleFence(sc *scene) {
	var L, y, w *simReplica
	var by Ballot
	var top uint64 // one past the highest record in y's or w's log: y's first own instance
	sc.onSettled(func(l *simReplica, o []*simReplica) {
		L, y, w = l, o[0], o[1]
		sc.cut(L, w, true)
		sc.rule(hideBallots(L, &by, w))
		sc.rule(func(from, to *simReplica, m Message) string {
			if from == w && to == y && m.Type == MsgPromise && m.Ballot == by {
				return "stale"
			}
			return ""
		})
	})
	sc.step("w's lease to L ran out", func() bool { return w.node.now >= w.node.grantUntil }, func() {
		by = campaignAbove(y, w.node.promised)
		y.pump()
	})
	sc.step("w promised by", func() bool { return len(sc.held["stale"]) > 0 }, func() {
		top = max(logEnd(y), logEnd(w))
		sc.wipe(w)
		sc.cut(L, w, false)
	})
	sc.step("w votes again", func() bool { return w.node.rebuild == 0 }, nil)
	sc.step("L chose y's first own instance", func() bool { return L.node.commit > top }, func() {
		sc.release("stale")
	})
}

// sceneEarlyVote: a fenced replica votes only once it learned through the
// fence's first own instance. Three replicas: leader L, w, c. c misses L's
// Accepts and catch-up replies (it still acknowledges heartbeats), so L
// chooses instance i with w alone; then w is wiped and misses them too.
// L's Phase 1 for the fence (promised by c, which lacks i) re-proposes i;
// once w votes again, L crashes. A w that votes before learning i then
// forms a majority with c that has never seen i's value, and c's Phase 1
// fills it with something else.
func sceneEarlyVote(sc *scene) {
	var L, w, c *simReplica
	quiet := func(r *simReplica) sceneRule { // r misses L's Accepts and catch-up replies
		return func(from, to *simReplica, m Message) string {
			if from == L && to == r && (m.Type == MsgAccept || m.Type == MsgChosen) {
				return sceneDrop
			}
			return ""
		}
	}
	sc.onSettled(func(l *simReplica, o []*simReplica) {
		L, w, c = l, o[0], o[1]
		sc.rule(quiet(c))
	})
	// L chose an instance c lacks, above L's snapshot and far enough
	// below its next one that L takes no snapshot of it while stuck.
	sc.step("L chose past c's log", func() bool {
		i := L.node.commit - 1
		return L.applied == i && i >= logEnd(c) && i > L.disk.snap.instance && i+10 < L.disk.snap.instance+40
	}, func() {
		sc.wipe(w)
		sc.rule(quiet(w))
	})
	sc.step("w votes again", func() bool { return w.node.rebuild == 0 }, func() { L.crash() })
}

// sceneSplitFence: a fence needs the promise of every other replica,
// except replicas rebuilding since before its Phase 1 began. Five replicas:
// leader L, x, y, w, a. x campaigns with a ballot bx that L never hears
// of; w, whose lease to L ran out, promises bx and is wiped, its Promise
// still on the way to x. L runs a Phase 1 of B < bx for w's fence, which a
// and y promise, but not x, a candidate; a and y accept L's first own
// instance. Once y's lease to L ran out (it hears from L no more), y
// promises bx too, and x leads with y and w's old Promise: it proposes its
// no-op where L will choose a value. With wipeX, x is wiped right after it
// and y accepted that no-op, and answers L's heartbeats with Rebuild since.
// A fence without x's promise (a majority's is enough; or, with wipeX, x
// counted as rebuilding although it began after the Phase 1) lets w vote
// under B: w helps L choose the value, then accepts x's no-op at bx > B,
// arriving late, which makes a majority for it. (y's lease runs out
// LeaseTicks after it accepted B's first own instance, so x must stay a
// candidate that long: it campaigns until its election timeout allows it.)
func sceneSplitFence(wipeX bool) func(*scene) {
	return func(sc *scene) { splitFence(sc, wipeX) }
}

func splitFence(sc *scene, wipeX bool) {
	var L, x, y, w *simReplica
	var b0, bx, B Ballot
	var i uint64 // x's first own instance
	cutY, xLeads := false, false
	sc.onSettled(func(l *simReplica, o []*simReplica) {
		L, x, y, w = l, o[0], o[1], o[2]
		sc.cut(L, w, true)
		sc.rule(hideBallots(L, &bx, w, y))
		sc.rule(func(from, to *simReplica, m Message) string {
			switch {
			case from == L && to == y && (cutY && m.Type != MsgPrepare || m.Type == MsgAccept && m.Ballot == b0):
				return sceneDrop
			case m.Type == MsgPrepare && from == x && to == y:
				return "toY"
			case m.Type == MsgPromise && from == w && to == x && m.Ballot == bx:
				return "stale"
			case from == x && m.Ballot == bx && to == w && m.Type == MsgAccept:
				return "late"
			case from == x && m.Ballot == bx && to != y && m.Type != MsgPrepare:
				return sceneDrop
			case from == L && to == w && m.Type == MsgFenced && !xLeads:
				return "fenced" // a fence given early waits for x's no-op
			}
			return ""
		})
	})
	sc.step("w's lease to L ran out", func() bool { return w.node.now >= w.node.grantUntil }, func() {
		// From now on L chooses nothing until its Phase 1 for the fence
		// (y misses its Accepts), so that x's Phase 1 below finds all
		// that y knows chosen in y's log, not in a snapshot.
		b0 = L.node.ballot
		sc.cut(L, x, true)
		// bx stays above the ballots L, w and y may yet campaign with.
		bx = campaignAbove(x, Ballot{Round: L.node.maxRound + 5, ID: ^uint64(0)})
		for k := 0; k < 30 && x.node.electionTimeout < x.node.cfg.ElectionTicks+26; k++ {
			x.node.Campaign()
			bx = x.node.ballot
		}
		x.pump()
	})
	sc.step("w promised bx", func() bool { return len(sc.held["stale"]) > 0 }, func() {
		sc.wipe(w)
		sc.cut(L, w, false)
	})
	sc.step("w's Rebuild reached L", func() bool { return L.node.rebuildNonce[w.idx] == w.disk.rebuild }, func() {
		if L.node.role == Leader { // else it campaigns already, to fence w
			L.node.Campaign()
			L.pump()
		}
		B = L.node.ballot
	})
	sc.step("y accepted L's first own instance", func() bool {
		return L.node.role == Leader && L.node.ballot == B && y.disk.log[L.node.firstOwn].Ballot == B
	}, func() { cutY = true })
	sc.step("y's lease to L ran out", func() bool { return y.node.now >= y.node.grantUntil }, func() {
		sc.release("toY")
		sc.release("stale")
	})
	sc.step("x and y accepted x's first own instance", func() bool {
		if x.node.role != Leader || x.node.ballot != bx {
			return false
		}
		i = x.node.firstOwn
		return x.disk.log[i].Ballot == bx && y.disk.log[i].Ballot == bx
	}, func() {
		xLeads = true
		sc.release("fenced")
		if wipeX {
			sc.wipe(x)
			sc.cut(L, x, false)
		}
	})
	sc.step("w votes again", func() bool { return w.node.rebuild == 0 }, nil)
	sc.step("L chose x's first own instance with w", func() bool {
		return L.node.commit > i && w.disk.log[i].Ballot == B
	}, func() { sc.release("late") })
}

// sceneReusedBallot: no rule to break, an argument to check. A replica
// issues a ballot again only after it lost its disk, and then the Promises
// made to its earlier incarnation, which the core ignores (Prepares carry
// Config.Incarnation), would be ignored anyway: they echo the first
// unchosen instance of that incarnation's Phase 1, and a rebuilt replica's
// is higher (docs/paxos.md, "Rebuilding a replica that lost its state").
// Five replicas: leader L, x, z. x campaigns with bx two rounds above L's
// ballot, which only z hears of; z, whose lease to L ran out, promises it;
// both are wiped, its Promise still on the way to x. L fences both with
// one ballot B one round above its old one, below bx; once both rebuilt, x
// campaigns: with bx again. Then z's old Promise reaches it.
func sceneReusedBallot(sc *scene, got *reusedBallot) {
	var L, x, z *simReplica
	var bx Ballot
	sc.onSettled(func(l *simReplica, o []*simReplica) {
		L, x, z = l, o[0], o[1]
		sc.cut(L, z, true)
		sc.rule(hideBallots(L, &bx, z))
		sc.rule(func(from, to *simReplica, m Message) string {
			if m.Type == MsgPromise && from == z && to == x && m.Ballot == bx {
				return "stale"
			}
			return ""
		})
	})
	sc.step("z's lease to L ran out", func() bool { return z.node.now >= z.node.grantUntil }, func() {
		for range 8 {
			if x.node.ballot.Round >= L.node.maxRound+2 {
				break
			}
			x.node.Campaign()
		}
		bx = x.node.ballot
		x.pump()
	})
	sc.step("z promised bx", func() bool { return len(sc.held["stale"]) > 0 }, func() {
		got.stale = sc.held["stale"][0].Instance
		sc.wipe(z)
		sc.wipe(x)
		sc.cut(L, z, false)
	})
	sc.step("x and z rebuilt", func() bool { return x.node.rebuild == 0 && z.node.rebuild == 0 }, func() {
		x.node.Campaign()
		x.pump()
		if x.node.ballot == bx {
			got.reused, got.p1from = true, x.node.p1from
			sc.release("stale")
		}
	})
}

// reusedBallot is what sceneReusedBallot saw: whether x issued bx again,
// the first instance of its Phase 1 then, and the one z's old Promise
// echoes.
type reusedBallot struct {
	reused        bool
	p1from, stale uint64
}

// ---- the tests ----

type reachCase struct {
	name   string
	n      int
	scene  func(*scene)
	bug    bugs
	budget int // seeds
}

var reachCases = []reachCase{
	{"fence-at-once", 3, sceneStaleFence, bugs{fenceStale: true, fenceMajority: true}, 10},
	{"fence-from-an-earlier-phase-1", 3, sceneStaleFence, bugs{fenceStale: true}, 10},
	{"vote-before-catch-up", 3, sceneEarlyVote, bugs{voteBeforeCatchUp: true}, 10},
	{"fence-from-a-majority", 5, sceneSplitFence(false), bugs{fenceMajority: true}, 10},
	{"fence-late-rebuild", 5, sceneSplitFence(true), bugs{fenceLateRebuild: true}, 10},
}

// sceneFaultTime is how long a scene's run has faults: -simsec, else 10 s,
// or under -race only the scene's own (the random faults after it are
// TestSimulation's, which runs under -race too).
func sceneFaultTime() int64 {
	if raceEnabled && *flagSimSec == 0 {
		return sceneFor
	}
	return simFaultTime()
}

// runScene runs c's scene with bugs b, then the random faults of
// TestSimulation (those that do not act from the start) until
// sceneFaultTime.
func runScene(c reachCase, seed uint64, b bugs) (simResult, *scene) {
	var sc *scene
	res := runSim(simParams{n: c.n, seed: seed, faultFor: sceneFaultTime(), bugs: b, wipe: true, late: true,
		earlySend: seed%2 == 1, earlyApply: seed/2%2 == 1, pipeline: seed/4%2 == 1, impatient: seed/16%2 == 1,
		deaf: seed%3 != 2, scene: func(s *sim) { sc = newScene(s); c.scene(sc) }})
	return res, sc
}

// TestSimulationCatchesRebuildBugs: each rule of the rebuild, broken on its
// own, is caught by the checkers within a few seeds of the scene built for
// it (the first seed, when this was written); with the rule in place the
// same scene, and the random faults after it, pass (-seeds sets how many
// seeds of that: 2 by default, 1 under -race).
func TestSimulationCatchesRebuildBugs(t *testing.T) {
	for _, c := range reachCases {
		t.Run(c.name, func(t *testing.T) {
			// The bug planted: caught within the budget.
			seeds := make([]uint64, c.budget)
			for k := range seeds {
				seeds[k] = uint64(k + 1)
			}
			if *flagSeed != 0 {
				seeds = []uint64{*flagSeed}
			}
			caught := false
			for _, seed := range seeds {
				res, sc := runScene(c, seed, c.bug)
				if caught = res.err != nil; caught {
					t.Logf("caught at seed %d (scene reached %q): %v", seed, sc.reached(), res.err)
					break
				}
			}
			if !caught && *flagSeed == 0 {
				t.Errorf("%s not caught in %d seeds", c.name, c.budget)
			}
			// The rule in place: the same scene passes.
			def := 2
			if raceEnabled {
				def = 1
			}
			for _, seed := range simSeeds(def) {
				if res, sc := runScene(c, seed, bugs{}); res.err != nil {
					t.Fatalf("seed %d with the rule in place (scene reached %q): %v\nreplay: go test ./replica/paxos -run 'TestSimulationCatchesRebuildBugs/%s$' -seed=%d -v -simlog",
						seed, sc.reached(), res.err, c.name, seed)
				}
			}
		})
	}
}

// TestStalePromiseForAReusedBallotEchoesAnEarlierInstance: the scene makes
// a rebuilt replica issue a ballot of its earlier incarnation again and
// delivers a Promise made to that incarnation. Its Instance is below the
// new Phase 1's first instance, so the candidate would ignore it even if
// it did not compare incarnations; the run passes the checkers.
func TestStalePromiseForAReusedBallotEchoesAnEarlierInstance(t *testing.T) {
	def := 3
	if raceEnabled {
		def = 1
	}
	seeds := simSeeds(def)
	reused := 0
	for k := 0; k < len(seeds) || reused == 0 && *flagSeed == 0 && k < 10; k++ {
		seed := uint64(k + 1)
		if k < len(seeds) {
			seed = seeds[k]
		}
		var got reusedBallot
		var sc *scene
		res := runSim(simParams{n: 5, seed: seed, faultFor: sceneFaultTime(), wipe: true, late: true,
			scene: func(s *sim) { sc = newScene(s); sceneReusedBallot(sc, &got) }})
		if res.err != nil {
			t.Fatalf("seed %d (scene reached %q): %v\nreplay: go test ./replica/paxos -run 'TestStalePromiseForAReusedBallotEchoesAnEarlierInstance$' -seed=%d -v -simlog",
				seed, sc.reached(), res.err, seed)
		}
		if !got.reused {
			continue
		}
		reused++
		t.Logf("seed %d: ballot issued again; the old Promise echoes instance %d, the new Phase 1 starts at %d", seed, got.stale, got.p1from)
		if got.stale >= got.p1from {
			t.Errorf("seed %d: the Promise to the earlier incarnation echoes instance %d; the Phase 1 of the reused ballot starts at %d",
				seed, got.stale, got.p1from)
		}
	}
	if reused == 0 && *flagSeed == 0 {
		t.Error("no seed issued a ballot again")
	}
}
