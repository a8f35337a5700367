package namespace

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The property tests run propRounds x 100 checks by default (a few
// seconds; one round with -short); raise with -rapid.checks=N for longer runs.

const propRounds = 3

// check runs prop with rapid, propRounds times (fresh seeds each round).
func check(t *testing.T, prop func(*rapid.T)) {
	rounds := propRounds
	if testing.Short() {
		rounds = 1
	}
	for i := 0; i < rounds && !t.Failed(); i++ {
		rapid.Check(t, prop)
	}
}

// propConfig has limits small enough for random sequences to hit them.
func propConfig() Config {
	c := DefaultConfig()
	c.MaxDepth = 3
	c.MaxNameLen = 12
	c.MaxPathLen = 40
	c.MaxChildren = 3
	c.MaxEphemerals = 2
	c.MaxClientNameLen = 8
	c.MaxContent = 4
	c.Results = 3
	c.DefaultLockDelay = 5 * time.Second
	c.MaxLockDelay = 20 * time.Second
	return c
}

var propNames = []string{"a", "b", "c"}

// genPath draws an existing node's path half the time, else a path of up to
// three names from a small alphabet, or now and then a bad path.
func genPath(t *rapid.T, ps *propState, label string) string {
	switch k := rapid.IntRange(0, 19).Draw(t, label+"-kind"); {
	case k < 10 && len(ps.existing) > 0:
		return rapid.SampledFrom(ps.existing).Draw(t, label+"-existing")
	case k == 19:
		return rapid.SampledFrom([]string{"", "a", "/a/", "//", "/a\x00", "/" + strings.Repeat("x", 13),
			"/a/b/c/a", "/.", "/", "/\xff"}).Draw(t, label+"-bad")
	case k >= 16:
		return rapid.SampledFrom([]string{ACLDir, ACLDir + "/r", ACLDir + "/w", ACLDir + "/c"}).Draw(t, label+"-acl")
	}
	depth := rapid.IntRange(1, 3).Draw(t, label+"-depth")
	var b strings.Builder
	for i := 0; i < depth; i++ {
		b.WriteString("/" + rapid.SampledFrom(propNames).Draw(t, label+"-name"))
	}
	return b.String()
}

// propState tracks what the generator needs to aim commands well.
type propState struct {
	live        []uint64 // live sessions, from the model
	existing    []string // nodes other than the root, from the model
	locks       []LockInfo
	nextSession uint64
	nextRequest uint64
	recent      []Command // for retries
	sequencers  []Sequencer
}

func (ps *propState) update(m *model) {
	ps.live = ps.live[:0]
	for _, s := range m.sessionInfos() {
		ps.live = append(ps.live, s.ID)
	}
	ps.nextSession = m.nextSession
	ps.existing = append(ps.existing[:0], m.walk("/")[1:]...)
	ps.locks = m.lockInfos()
}

// aimLock points a release or cancel at a real holder or waiter most of the time.
func aimLock(t *rapid.T, ps *propState, c *Command, waiter bool) {
	if len(ps.locks) == 0 || rapid.IntRange(0, 2).Draw(t, "aim") == 2 {
		return
	}
	l := rapid.SampledFrom(ps.locks).Draw(t, "aimed-lock")
	c.Path = l.Path
	switch {
	case waiter && len(l.Waiters) > 0:
		c.Session = rapid.SampledFrom(l.Waiters).Draw(t, "aimed-waiter").Session
	case !waiter && len(l.Holders) > 0:
		c.Session = rapid.SampledFrom(l.Holders).Draw(t, "aimed-holder")
	}
}

// genContent draws node content of up to 5 bytes (propConfig allows 4):
// filler, or an ACL file's lines naming the principals p and q, everyone,
// or a comment.
func genContent(t *rapid.T, filler string) []byte {
	if rapid.IntRange(0, 2).Draw(t, "acl-content") == 0 {
		return []byte(rapid.SampledFrom([]string{"p", "q\np", " p ", "*", "#p", "q", "\n*", "\nq"}).Draw(t, "principals"))
	}
	return []byte(strings.Repeat(filler, rapid.IntRange(0, 5).Draw(t, "size")))
}

// genSession mostly picks a live session, sometimes none (the leader), a
// closed one or one never issued.
func genSession(t *rapid.T, ps *propState, label string) uint64 {
	switch k := rapid.IntRange(0, 19).Draw(t, label+"-kind"); {
	case k == 16 || len(ps.live) == 0:
		return 0
	case k == 17:
		return rapid.Uint64Range(1, ps.nextSession).Draw(t, label+"-any")
	default:
		return rapid.SampledFrom(ps.live).Draw(t, label)
	}
}

// genCommand draws a command: a retry of a recent one (same session and
// request) one time in ten, else a fresh one.
func genCommand(t *rapid.T, ps *propState) Command {
	if len(ps.recent) > 0 && rapid.IntRange(0, 9).Draw(t, "retry") == 0 {
		return rapid.SampledFrom(ps.recent).Draw(t, "retried")
	}
	c := genFresh(t, ps)
	ps.recent = append(ps.recent, c)
	if len(ps.recent) > 8 {
		ps.recent = ps.recent[1:]
	}
	return c
}

func genFresh(t *rapid.T, ps *propState) Command {
	var c Command
	// rapid favours small numbers, so the most useful ops come first.
	switch kind := rapid.IntRange(0, 99).Draw(t, "kind"); {
	case kind < 12:
		c = genTxn(t, ps)
	case kind < 25:
		mode := rapid.SampledFrom([]Mode{ModeExclusive, ModeShared}).Draw(t, "mode")
		if rapid.IntRange(0, 19).Draw(t, "no-mode") == 7 {
			mode = ModeNone
		}
		delay := rapid.SampledFrom([]time.Duration{0, time.Second, 3 * time.Second, -1, time.Minute}).Draw(t, "delay")
		c = NewAcquire(genPath(t, ps, "path"), mode, rapid.IntRange(0, 2).Draw(t, "try") < 2, delay)
	case kind < 45:
		flags := Flags(rapid.IntRange(0, 7).Draw(t, "create-flags"))
		path := genPath(t, ps, "path")
		if flags&FlagSequential != 0 && rapid.Bool().Draw(t, "seq-prefix") {
			path = strings.TrimSuffix(path, "/") + "/q"
		}
		c = NewCreate(path, genContent(t, "x"), flags)
		if rapid.IntRange(0, 4).Draw(t, "has-acl") == 4 {
			c.ACL = ACL{Reader: rapid.SampledFrom([]string{"r", "", "a/b"}).Draw(t, "reader"),
				Writer: rapid.SampledFrom([]string{"", "w"}).Draw(t, "writer")}
		}
	case kind < 55:
		c = NewRelease(genPath(t, ps, "path"), uint64(rapid.IntRange(0, 3).Draw(t, "gen")))
	case kind < 65:
		c = NewSetContent(genPath(t, ps, "path"), genContent(t, "y"), uint64(rapid.IntRange(0, 3).Draw(t, "gen")))
	case kind < 71:
		c = NewCancel(genPath(t, ps, "path"))
	case kind < 78:
		c = NewDelete(genPath(t, ps, "path"), rapid.Bool().Draw(t, "recursive"), uint64(rapid.IntRange(0, 2).Draw(t, "gen")))
	case kind < 82:
		c = NewSetACL(genPath(t, ps, "path"), ACL{Writer: rapid.SampledFrom([]string{"w", "", ".."}).Draw(t, "writer"),
			Changer: rapid.SampledFrom([]string{"", "c"}).Draw(t, "changer")},
			uint64(rapid.IntRange(0, 2).Draw(t, "gen")))
	case kind < 88:
		c = NewOpenSession(time.Duration(rapid.IntRange(1, 3).Draw(t, "timeout")) * time.Second)
		if rapid.IntRange(0, 9).Draw(t, "zero-timeout") == 9 {
			c.Timeout = 0
		}
		// No name, names within MaxClientNameLen (8), one over it, and one
		// that is not UTF-8.
		c.Client = rapid.SampledFrom([]string{"", "", "web-1", "12345678", "123456789", "w\xff"}).Draw(t, "client")
		// Anonymous, two principals, one over the limit, and one that is
		// not UTF-8; restricted mostly, and now and then a superuser's, an
		// unchecked one (as before ACLs) or both flags (an error).
		c.Principal = rapid.SampledFrom([]string{"", "p", "q", "p", "123456789", "p\xff"}).Draw(t, "principal")
		c.Flags = rapid.SampledFrom([]Flags{FlagRestricted, FlagRestricted, FlagRestricted, FlagSuperuser, 0,
			FlagRestricted | FlagSuperuser}).Draw(t, "access")
	case kind < 91:
		c = NewCloseSession()
	case kind < 96:
		c = NewExpireSession(genSession(t, ps, "target"))
	default:
		c = NewTick()
		switch rapid.IntRange(0, 3).Draw(t, "odd") {
		case 1:
			c.Version = 2
		case 2:
			c.Op = 77
		case 3:
			c.Flags = FlagWait
		}
	}
	c.Session = genSession(t, ps, "session")
	if c.Op == OpRelease || c.Op == OpCancel {
		aimLock(t, ps, &c, c.Op == OpCancel)
	}
	if (c.Op == OpOpenSession || c.Op == OpExpireSession) && rapid.IntRange(0, 9).Draw(t, "leader-op-from-session") < 9 {
		c.Session = 0
	}
	switch c.Op {
	case OpCreate, OpSetContent, OpSetACL, OpDelete, OpTxn:
		// A write for a principal (as a server marks the sessionless
		// writes of clients that are not superusers), mostly without a
		// session as it should be.
		if rapid.IntRange(0, 2).Draw(t, "restricted-write") == 0 {
			c.Flags |= FlagRestricted
			c.Principal = rapid.SampledFrom([]string{"", "p", "q", "123456789"}).Draw(t, "write-principal")
			if rapid.IntRange(0, 9).Draw(t, "restricted-with-session") > 0 {
				c.Session = 0
			}
		}
	}
	ps.nextRequest++
	c.Request = ps.nextRequest
	if rapid.IntRange(0, 4).Draw(t, "no-request") == 4 {
		c.Request = 0
	}
	return c
}

// genTxn draws a txn of 1 to 4 sub-ops (now and then none), a mix of
// conditions that hold or not and writes that succeed or fail, so that
// many txns fail after some of their writes were applied.
func genTxn(t *rapid.T, ps *propState) Command {
	n := rapid.IntRange(1, 4).Draw(t, "txn-ops")
	if rapid.IntRange(0, 29).Draw(t, "txn-empty") == 29 {
		n = 0
	}
	ops := make([]TxnOp, n)
	for i := range ops {
		ops[i] = genTxnOp(t, ps)
	}
	return NewTxn(ops...)
}

func genTxnOp(t *rapid.T, ps *propState) TxnOp {
	gen := func() uint64 { return uint64(max(0, rapid.IntRange(-2, 3).Draw(t, "txn-gen"))) }
	switch k := rapid.IntRange(0, 43).Draw(t, "txn-op"); {
	case k < 6:
		return TxnCheckExists(genPath(t, ps, "txn-path"), gen())
	case k < 10:
		return TxnCheckMissing(genPath(t, ps, "txn-path"))
	case k < 14:
		return TxnCheckSequencer(genSequencer(t, ps))
	case k < 22:
		flags := Flags(rapid.IntRange(0, 7).Draw(t, "txn-create-flags"))
		path := genPath(t, ps, "txn-path")
		if flags&FlagSequential != 0 && rapid.Bool().Draw(t, "txn-seq-prefix") {
			path = strings.TrimSuffix(path, "/") + "/q"
		}
		o := TxnCreate(path, genContent(t, "t"), flags)
		if rapid.IntRange(0, 4).Draw(t, "txn-has-acl") == 4 {
			o.ACL = ACL{Reader: rapid.SampledFrom([]string{"r", ""}).Draw(t, "txn-reader"),
				Writer: rapid.SampledFrom([]string{"", "w", "a/b"}).Draw(t, "txn-writer")}
		}
		return o
	case k < 29:
		return TxnSetContent(genPath(t, ps, "txn-path"), genContent(t, "u"), gen())
	case k < 34:
		path := genPath(t, ps, "txn-path")
		if len(ps.locks) > 0 && rapid.IntRange(0, 2).Draw(t, "txn-delete-locked") == 0 {
			path = rapid.SampledFrom(ps.locks).Draw(t, "txn-locked").Path
		}
		return TxnDelete(path, rapid.Bool().Draw(t, "txn-recursive"), gen())
	case k < 43 && k >= 39:
		return TxnPut(genPath(t, ps, "txn-path"), genContent(t, "p"), Flags(rapid.IntRange(0, 3).Draw(t, "txn-put-flags")))
	case k < 39:
		return TxnSetACL(genPath(t, ps, "txn-path"), ACL{Writer: rapid.SampledFrom([]string{"w", "", ".."}).Draw(t, "txn-acl-writer"),
			Changer: rapid.SampledFrom([]string{"", "c"}).Draw(t, "txn-acl-changer")}, gen())
	}
	// Malformed: a lock op, a nested txn, an unknown op, a flag the kind
	// does not take, a sequencer without a mode.
	return rapid.SampledFrom([]TxnOp{
		{Op: OpAcquire, Path: "/a", Mode: ModeExclusive},
		{Op: OpTxn},
		{Op: 99, Path: "/a"},
		{Op: OpSetContent, Path: "/a", Flags: FlagRecursive},
		{Op: OpCreate, Path: "/a", Flags: FlagRestricted},
		{Op: OpCheckSequencer, Path: "/a", Generation: 1, Instance: 2},
	}).Draw(t, "txn-bad-op")
}

// genSequencer draws a sequencer: a current grant most of the time, else
// one seen earlier (maybe stale) or a made-up one.
func genSequencer(t *rapid.T, ps *propState) Sequencer {
	var held []LockInfo
	for _, l := range ps.locks {
		if len(l.Holders) > 0 {
			held = append(held, l)
		}
	}
	switch k := rapid.IntRange(0, 3).Draw(t, "seq-kind"); {
	case k < 2 && len(held) > 0:
		l := rapid.SampledFrom(held).Draw(t, "seq-current")
		return Sequencer{Path: l.Path, Mode: l.Mode, LockGen: l.LockGen, Instance: l.Instance}
	case k < 3 && len(ps.sequencers) > 0:
		return rapid.SampledFrom(ps.sequencers).Draw(t, "seq-seen")
	}
	return Sequencer{Path: genPath(t, ps, "seq-path"), Mode: ModeExclusive,
		LockGen: uint64(rapid.IntRange(0, 2).Draw(t, "seq-gen")), Instance: uint64(rapid.IntRange(1, 9).Draw(t, "seq-inst"))}
}

// checkTxnAtomic checks that a failed txn left everything Snapshot writes
// as it was: the tree equals pre (a copy taken before the txn) after a
// tick at the same index and time (which does what every command does
// before its own work: index, time, ended lock-delays) and after the
// idempotence table kept the txn's result, as Apply does for any command.
func checkTxnAtomic(t fataler, where string, pre, tree *Tree, index uint64, c Command, r Result) {
	tick := NewTick()
	tick.Time = c.Time
	pre.Apply(index, &tick)
	if s := pre.sessions[c.Session]; s != nil && c.Request != 0 {
		if _, ok := s.results.get(c.Request); !ok {
			s.results.put(c.Request, r.kept(), pre.cfg.Results)
		}
	}
	if !bytes.Equal(snapshotBytes(t, pre), snapshotBytes(t, tree)) {
		t.Fatalf("%s: failed txn (%v) changed the state", where, r.Err)
	}
}

// openSessions opens 1 to 3 sessions on both and returns the next index.
func openSessions(t *rapid.T, tree *Tree, m *model, ps *propState, now int64) uint64 {
	n := rapid.IntRange(1, 3).Draw(t, "initial-sessions")
	for i := 1; i <= n; i++ {
		c := NewOpenSession(time.Second)
		c.Time = now
		c1 := c
		tree.Apply(uint64(i), &c1)
		m.apply(uint64(i), c)
	}
	ps.update(m)
	return uint64(n + 1)
}

var propSteps = []time.Duration{0, 0, time.Second, 2 * time.Second, 5 * time.Second, 30 * time.Second, -time.Second}

// TestPropertyMatchesModel applies random command sequences to a Tree and to
// the reference model and compares every result, event and query.
func TestPropertyMatchesModel(t *testing.T) {
	check(t, func(t *rapid.T) {
		cfg := propConfig()
		tree, m := New(cfg), newModel(cfg)
		ps := &propState{nextSession: 1}
		now := int64(time.Hour)
		n := uint64(rapid.IntRange(20, 200).Draw(t, "steps"))
		first := openSessions(t, tree, m, ps, now)
		for i := first; i <= n+first; i++ {
			now += int64(rapid.SampledFrom(propSteps).Draw(t, "advance"))
			c := genCommand(t, ps)
			c.Time = now
			c1, c2 := c, c
			var pre *Tree
			if c.Op == OpTxn {
				pre = snapshotRestore(t, tree, cfg)
			}
			r, ev := tree.Apply(i, &c1)
			mr, mev := m.apply(i, c2)
			where := fmt.Sprintf("step %d %s %+v", i, c.Op, c)
			compareApply(t, where, r, ev, mr, mev)
			if pre != nil && r.Err != nil {
				checkTxnAtomic(t, where, pre, tree, i, c, r)
			}
			ps.update(m)
			ps.sequencers = collectSequencers(ps.sequencers, r, ev)
			compareQueries(t, where, tree, m, ps)
		}
	})
}

// TestPropertySnapshotRestore snapshots at a random point, restores into a
// new tree, and checks that the rest of the sequence gives identical results,
// events and snapshots on both.
func TestPropertySnapshotRestore(t *testing.T) {
	check(t, func(t *rapid.T) {
		cfg := propConfig()
		orig, m := New(cfg), newModel(cfg)
		ps := &propState{nextSession: 1}
		now := int64(time.Hour)
		n := uint64(rapid.IntRange(10, 120).Draw(t, "steps"))
		first := openSessions(t, orig, m, ps, now)
		cut := rapid.Uint64Range(first, n+first).Draw(t, "cut")
		var restored *Tree
		for i := first; i <= n+first; i++ {
			if i == cut {
				restored = snapshotRestore(t, orig, cfg)
			}
			now += int64(rapid.SampledFrom(propSteps).Draw(t, "advance"))
			c := genCommand(t, ps)
			c.Time = now
			c1, c2 := c, c
			r1, e1 := orig.Apply(i, &c1)
			m.apply(i, c)
			ps.update(m)
			if restored != nil {
				r2, e2 := restored.Apply(i, &c2)
				if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(e1, e2) {
					t.Fatalf("step %d %s: original %+v %v; restored %+v %v", i, c.Op, r1, e1, r2, e2)
				}
			}
		}
		if restored == nil {
			restored = snapshotRestore(t, orig, cfg)
		}
		if err := restored.CheckInvariants(); err != nil {
			t.Fatalf("restored tree: %v", err)
		}
		a, b := snapshotBytes(t, orig), snapshotBytes(t, restored)
		if !bytes.Equal(a, b) {
			t.Fatalf("final snapshots differ")
		}
	})
}

func snapshotRestore(t *rapid.T, tr *Tree, cfg Config) *Tree {
	snap := snapshotBytes(t, tr)
	r := New(cfg)
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if again := snapshotBytes(t, r); !bytes.Equal(again, snap) {
		t.Fatalf("snapshot -> restore -> snapshot is not byte-identical")
	}
	return r
}

func collectSequencers(seqs []Sequencer, r Result, ev []Event) []Sequencer {
	if r.Sequencer != (Sequencer{}) {
		seqs = append(seqs, r.Sequencer)
	}
	for _, e := range ev {
		if e.Kind == EventLockAcquired {
			seqs = append(seqs, e.Sequencer)
		}
	}
	if len(seqs) > 20 {
		seqs = seqs[len(seqs)-20:]
	}
	return seqs
}

func compareApply(t *rapid.T, where string, r Result, ev []Event, mr Result, mev []Event) {
	if r.Code() != mr.Code() {
		t.Fatalf("%s: result code %v (%v); model %v", where, r.Code(), r.Err, mr.Code())
	}
	r.Err, mr.Err = nil, nil
	if !reflect.DeepEqual(r, mr) {
		t.Fatalf("%s: result\n %+v\nmodel\n %+v", where, r, mr)
	}
	if len(ev) != 0 || len(mev) != 0 {
		if !reflect.DeepEqual(ev, mev) {
			t.Fatalf("%s: events\n %v\nmodel\n %v", where, ev, mev)
		}
	}
}

func compareQueries(t *rapid.T, where string, tree *Tree, m *model, ps *propState) {
	if err := tree.CheckInvariants(); err != nil {
		t.Fatalf("%s: invariant: %v", where, err)
	}
	var paths []string
	var stats []Stat
	tree.Walk("/", func(p string, st Stat) bool {
		paths = append(paths, p)
		stats = append(stats, st)
		return true
	})
	if want := m.walk("/"); !reflect.DeepEqual(paths, want) {
		t.Fatalf("%s: Walk\n %v\nmodel\n %v", where, paths, want)
	}
	if tree.Len() != len(paths) {
		t.Fatalf("%s: Len %d, walked %d", where, tree.Len(), len(paths))
	}
	for i, p := range paths {
		got, err := tree.Get(p)
		want, _ := m.get(p)
		if err != nil || !reflect.DeepEqual(got, want) || stats[i] != want.Stat {
			t.Fatalf("%s: Get(%s)\n %+v %v\nmodel\n %+v", where, p, got, err, want)
		}
		kids := m.children(p)
		es, more, err := tree.List(p, "", 0)
		if err != nil || more || !slices.Equal(names(es), kids) {
			t.Fatalf("%s: List(%s) = %v, %v; model %v", where, p, names(es), err, kids)
		}
		if len(kids) > 1 {
			es, more, _ = tree.List(p, kids[0], 1)
			if len(es) != 1 || es[0].Name != kids[1] || more != (len(kids) > 2) {
				t.Fatalf("%s: List(%s, %s, 1) = %v, %v; model %v", where, p, kids[0], names(es), more, kids)
			}
		}
	}
	if got, want := tree.Locks(), m.lockInfos(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: Locks\n %+v\nmodel\n %+v", where, got, want)
	}
	if got, want := tree.Sessions(), m.sessionInfos(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: Sessions\n %+v\nmodel\n %+v", where, got, want)
	}
	d1, ok1 := tree.NextDeadline()
	d2, ok2 := m.nextDeadline()
	if d1 != d2 || ok1 != ok2 {
		t.Fatalf("%s: NextDeadline %d %v; model %d %v", where, d1, ok1, d2, ok2)
	}
	for _, s := range ps.sequencers {
		if tree.CheckSequencer(s) != m.checkSequencer(s) {
			t.Fatalf("%s: CheckSequencer(%v) = %v; model disagrees", where, s, tree.CheckSequencer(s))
		}
	}
	if tree.Now() != m.now || tree.AppliedIndex() != m.index {
		t.Fatalf("%s: Now/AppliedIndex %d/%d; model %d/%d", where, tree.Now(), tree.AppliedIndex(), m.now, m.index)
	}
}
