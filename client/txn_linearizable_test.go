package client_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

// txnKeys is the number of keys of the transaction workload: few, so that
// transactions often touch the same keys at once.
const txnKeys = 3

// txnPath is the path of key i.
func txnPath(i int) string { return fmt.Sprintf("/tk%d", i) }

// txnKind is what a call of the transaction workload does.
type txnKind uint8

const (
	opGet      txnKind = iota // Get(keys[0])
	opPut                     // Put(keys[0], values[0])
	opRead                    // Txn(OpGet(keys[0]), OpGet(keys[1])): both nodes at one point (a read, no log command)
	opMultiPut                // Txn(OpPut(keys[0], values[0]), OpPut(keys[1], values[1]))
	opCAS                     // a compare-and-set of both keys on gens (see txnIn.late)
)

// txnIn is one call of the transaction workload. Every value written is
// unique.
type txnIn struct {
	kind   txnKind
	keys   [2]int // distinct for the txns; opGet and opPut use keys[0]
	gens   [2]uint64
	values [2]string
	// late orders a compare-and-set's ops so that a failed one has a
	// write to undo: Txn(OpPut(a), IfExists(a, IfGeneration(gens[0]+1)),
	// IfExists(b, IfGeneration(gens[1])), OpPut(b)) rather than the two
	// conditions and then the two writes.
	late bool
}

// txnOut is what a call returned.
type txnOut struct {
	unknown bool      // a write that failed as it may or may not have applied
	failed  int       // a txn that did not apply: 1 + the op that failed (TxnError.Op); 0 if it applied
	missing bool      // opGet: not found
	values  [2]string // opGet: the content (values[0]); opRead: both keys'
	gens    [2]uint64 // opGet: the content generation (gens[0]); opRead: both keys'
}

// txnKey is one key as the model sees it.
type txnKey struct {
	exists bool
	value  string
	gen    uint64 // content generation: 1 after the creation, one more per write
}

// txnState is every key of the workload (comparable, so porcupine's ==
// compares states).
type txnState [txnKeys]txnKey

// put is what a Put, or a txn's OpPut, does to key i: create it with
// generation 1, or set its content and bump its generation.
func (s txnState) put(i int, v string) txnState {
	k := &s[i]
	k.value = v
	if k.exists {
		k.gen++
	} else {
		k.exists, k.gen = true, 1
	}
	return s
}

// firstFailing returns 1 + the first of keys that is missing or, with
// gens, has another generation; 0 if none.
func (s txnState) firstFailing(keys [2]int, gens *[2]uint64) int {
	for j, i := range keys {
		if !s[i].exists || gens != nil && s[i].gen != gens[j] {
			return j + 1
		}
	}
	return 0
}

// txnModel is the keys of the workload, and a txn one step of it that
// applies all its writes or none. A write whose outcome is unknown returns
// at the end of time (porcupine may place it after everything, where it
// changes nothing anyone saw); placed anywhere else it does what it would
// have done there, so "applied" and "not applied" both linearize.
var txnModel = porcupine.Model{
	Init: func() any { return txnState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(txnState), input.(txnIn), output.(txnOut)
		switch in.kind {
		case opGet:
			k := s[in.keys[0]]
			if out.missing {
				return !k.exists, s
			}
			return k.exists && k.value == out.values[0] && k.gen == out.gens[0], s
		case opRead:
			want := s.firstFailing(in.keys, nil)
			if want != 0 || out.failed != 0 {
				return out.failed == want, s
			}
			a, b := s[in.keys[0]], s[in.keys[1]]
			return a.gen == out.gens[0] && b.gen == out.gens[1] && a.value == out.values[0] && b.value == out.values[1], s
		case opPut:
			return true, s.put(in.keys[0], in.values[0])
		case opMultiPut:
			return out.unknown || out.failed == 0, s.put(in.keys[0], in.values[0]).put(in.keys[1], in.values[1])
		case opCAS:
			if want := s.firstFailing(in.keys, &in.gens); want != 0 {
				if in.late {
					// Ops 1 and 2 check a and b. (A missing a is
					// created by op 0 with generation 1, which is not
					// gens[0]+1.)
					want++
				}
				return out.unknown || out.failed == want, s
			}
			return out.unknown || out.failed == 0, s.put(in.keys[0], in.values[0]).put(in.keys[1], in.values[1])
		}
		return false, s
	},
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		for _, k := range state.(txnState) {
			fmt.Fprintf(h, "%v/%s/%d;", k.exists, k.value, k.gen)
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(txnIn), output.(txnOut)
		res := "ok"
		switch {
		case out.unknown:
			res = "unknown"
		case out.failed != 0:
			res = fmt.Sprintf("failed at op %d", out.failed-1)
		}
		a, b := txnPath(in.keys[0]), txnPath(in.keys[1])
		switch in.kind {
		case opGet:
			if out.missing {
				return fmt.Sprintf("get %s -> not found", a)
			}
			return fmt.Sprintf("get %s -> %q gen %d", a, out.values[0], out.gens[0])
		case opPut:
			return fmt.Sprintf("put %s=%s: %s", a, in.values[0], res)
		case opRead:
			return fmt.Sprintf("txn get %s, %s -> %q gen %d, %q gen %d: %s", a, b, out.values[0], out.gens[0], out.values[1], out.gens[1], res)
		case opMultiPut:
			return fmt.Sprintf("txn put %s=%s, %s=%s: %s", a, in.values[0], b, in.values[1], res)
		}
		late := ""
		if in.late {
			late = " (late checks)"
		}
		return fmt.Sprintf("txn if %s gen %d, %s gen %d put %s=%s, %s=%s%s: %s",
			a, in.gens[0], b, in.gens[1], a, in.values[0], b, in.values[1], late, res)
	},
}

// writeOutcome records the error of a write in out: a txn's failed
// condition is a definite failure; an error that leaves the outcome open
// (the cell unreachable, the context over) makes it unknown. Any other
// error fails the test.
func writeOutcome(t *testing.T, err error, out *txnOut) {
	t.Helper()
	var te *client.TxnError
	switch {
	case err == nil:
	case errors.As(err, &te) && (errors.Is(err, client.ErrGenerationMismatch) || errors.Is(err, client.ErrNotFound)):
		out.failed = te.Op + 1
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled), // the workload stopped with the call in flight
		errors.Is(err, client.ErrCanceled), errors.Is(err, client.ErrInternal):
		out.unknown = true
	default:
		t.Errorf("unexpected error of a write: %v", err)
		out.unknown = true
	}
}

// txnWorker is one client of the transaction workload: at most maxOps
// calls, one at a time, of Get, Put and the three kinds of txn on random
// keys, each with 3 s, recorded in h under id. A compare-and-set is two
// recorded Gets and a Txn on the generations they saw.
func txnWorker(t *testing.T, ctx context.Context, h *history, c *client.Client, id, maxOps int) {
	rng := rand.New(rand.NewPCG(uint64(id), 13))
	// do makes one call and records it; a failed read observed nothing and
	// is left out.
	do := func(in txnIn) txnOut {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		a, b := txnPath(in.keys[0]), txnPath(in.keys[1])
		call := h.now()
		var out txnOut
		var err error
		switch in.kind {
		case opGet:
			var n client.Node
			n, err = c.Get(octx, a)
			switch {
			case err == nil:
				out.values[0], out.gens[0] = string(n.Data), n.Stat.ContentGen
			case errors.Is(err, client.ErrNotFound):
				out.missing, err = true, nil
			}
		case opRead:
			var res []client.TxnResult
			res, err = c.Txn(octx, client.OpGet(a), client.OpGet(b))
			var te *client.TxnError
			switch {
			case err == nil:
				out.gens = [2]uint64{res[0].Stat.ContentGen, res[1].Stat.ContentGen}
				out.values = [2]string{string(res[0].Content), string(res[1].Content)}
			case errors.As(err, &te) && errors.Is(err, client.ErrNotFound):
				out.failed, err = te.Op+1, nil
			}
		case opPut:
			_, err = c.Put(octx, a, []byte(in.values[0]))
			writeOutcome(t, err, &out)
		case opMultiPut:
			_, err = c.Txn(octx, client.OpPut(a, []byte(in.values[0])), client.OpPut(b, []byte(in.values[1])))
			writeOutcome(t, err, &out)
		case opCAS:
			ops := []client.TxnOp{
				client.IfExists(a, client.IfGeneration(in.gens[0])),
				client.IfExists(b, client.IfGeneration(in.gens[1])),
				client.OpPut(a, []byte(in.values[0])),
				client.OpPut(b, []byte(in.values[1])),
			}
			if in.late {
				ops = []client.TxnOp{ops[2], client.IfExists(a, client.IfGeneration(in.gens[0]+1)), ops[1], ops[3]}
			}
			_, err = c.Txn(octx, ops...)
			writeOutcome(t, err, &out)
		}
		ret := h.now()
		switch {
		case out.unknown:
			ret = math.MaxInt64 // applied or not, at any time after the call
		case err != nil && (in.kind == opGet || in.kind == opRead):
			return txnOut{unknown: true}
		}
		h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
		return out
	}
	for n := 0; n < maxOps && ctx.Err() == nil; n++ {
		in := txnIn{keys: [2]int{rng.IntN(txnKeys), 0}}
		in.keys[1] = (in.keys[0] + 1 + rng.IntN(txnKeys-1)) % txnKeys
		in.values = [2]string{fmt.Sprintf("c%d-%d-a", id, n), fmt.Sprintf("c%d-%d-b", id, n)}
		switch r := rng.IntN(20); {
		case r < 6:
			in.kind = opGet
		case r < 9:
			in.kind = opPut
		case r < 12:
			in.kind = opRead
		case r < 15:
			in.kind = opMultiPut
		default:
			in.kind, in.late = opCAS, rng.IntN(2) == 0
			ra := do(txnIn{kind: opGet, keys: [2]int{in.keys[0]}})
			rb := do(txnIn{kind: opGet, keys: [2]int{in.keys[1]}})
			if ra.unknown || ra.missing || rb.unknown || rb.missing {
				continue
			}
			in.gens = [2]uint64{ra.gens[0], rb.gens[0]}
		}
		do(in)
	}
}

// startTxnWorkload runs txnWorker on each client until ctx ends or each
// made maxOps calls; the returned function waits for them.
func startTxnWorkload(t *testing.T, ctx context.Context, h *history, clients []*client.Client, maxOps int) (wait func()) {
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { txnWorker(t, ctx, h, c, i, maxOps) })
	}
	return wg.Wait
}

// TestTxnLinearizableAcrossLeaderChanges checks transactions for
// atomicity and linearizability with porcupine: four sessions Get and Put
// three keys and run txns on two of them at a time (a read of both
// nodes, a multi-put, and a compare-and-set on both generations
// read by two Gets) while the leader is stopped and restarted twice
// (changeLeaders). Against txnModel, a txn that applied half, a
// compare-and-set that overwrote a write it did not see, a write applied
// twice (generations count writes), or a read of a stale or partial state
// make the history illegal. A write that fails as the cell was unreachable
// is open-ended (applied or not).
func TestTxnLinearizableAcrossLeaderChanges(t *testing.T) {
	cell := startCell(t)
	ctx, stop := context.WithCancel(bg(t, 60*time.Second))
	defer stop()
	const clients, maxOps = 4, 1600 // the workload stops after the last progress; maxOps is only a bound
	cs := make([]*client.Client, clients)
	for i := range cs {
		if i%2 == 0 {
			cs[i] = dial(t, cell, longGrace)
		} else {
			cs[i] = newSession(t, cs[i-1]) // half the sessions share a connection
		}
	}
	h := newHistory()
	wait := startTxnWorkload(t, ctx, h, cs, maxOps)
	progress := func(what string) { t.Helper(); h.progress(t, ctx, what) }
	progress("progress before the first leader change")
	changeLeaders(t, cell, progress)
	stop()
	wait()
	h.mu.Lock()
	var applied, failed, unknown int
	for _, op := range h.ops {
		if in, out := op.Input.(txnIn), op.Output.(txnOut); in.kind == opCAS {
			switch {
			case out.unknown:
				unknown++
			case out.failed != 0:
				failed++
			default:
				applied++
			}
		}
	}
	h.mu.Unlock()
	t.Logf("compare-and-set txns: %d applied, %d failed, %d unknown", applied, failed, unknown)
	if applied == 0 || failed == 0 {
		t.Errorf("want both applied and failed compare-and-sets")
	}
	h.check(t, txnModel)
}

// fakeMode is how txnFake applies a txn.
type fakeMode int

const (
	fakeAtomic     fakeMode = iota // all or nothing, as a cell must
	fakeHalf                       // only the first write, answered as if all applied
	fakeNoRollback                 // a failed txn keeps the writes before the op that failed
)

func (m fakeMode) String() string { return [...]string{"atomic", "half", "no rollback"}[m] }

// txnFake is a fake cell holding nodes in a map, serving Get, Put and Txn
// (IfExists, OpGet, OpPut, in order) one call at a time; mode says how it
// applies a txn. The last two modes are non-atomic txns the checker must
// catch.
func txnFake(t *testing.T, mode fakeMode) *fakeServer {
	type node struct {
		content []byte
		gen     uint64
	}
	var mu sync.Mutex
	nodes := map[string]node{}
	put := func(nodes map[string]node, path string, content []byte) wire.Stat {
		n := nodes[path]
		n.content, n.gen = content, n.gen+1
		nodes[path] = n
		return wire.Stat{Instance: 1, ContentGen: n.gen}
	}
	return startFake(t, "txn-fake", func(m wire.Message) fakeAnswer {
		mu.Lock()
		defer mu.Unlock()
		switch r := m.(type) {
		case *wire.Get:
			if n, ok := nodes[r.Path]; ok {
				return answer(&wire.GetReply{Content: n.content, Stat: wire.Stat{Instance: 1, ContentGen: n.gen}})
			}
			return answer(wire.Errorf(wire.NotFound, "%s", r.Path))
		case *wire.Put:
			return answer(&wire.PutReply{Path: r.Path, Stat: put(nodes, r.Path, r.Content)})
		case *wire.Txn:
			work := maps.Clone(nodes)
			if mode == fakeNoRollback {
				work = nodes
			}
			res := make([]wire.TxnResult, len(r.Ops))
			writes := 0
			for i, op := range r.Ops {
				n, ok := work[op.Path]
				switch {
				case op.Kind == wire.TxnPut:
					if writes++; writes > 1 && mode == fakeHalf {
						continue
					}
					res[i] = wire.TxnResult{Path: op.Path, Stat: put(work, op.Path, op.Content)}
				case !ok:
					return answer(&wire.Error{Code: wire.NotFound, Op: uint32(i + 1)})
				case op.IfGen != 0 && n.gen != op.IfGen:
					return answer(&wire.Error{Code: wire.GenerationMismatch, Op: uint32(i + 1)})
				default:
					res[i] = wire.TxnResult{Path: op.Path, Stat: wire.Stat{Instance: 1, ContentGen: n.gen}}
					if op.Kind == wire.TxnGet {
						res[i].Content = n.content
					}
				}
			}
			nodes = work
			return answer(&wire.TxnReply{Results: res})
		}
		return fakeAnswer{}
	})
}

// The workload and model of TestTxnLinearizableAcrossLeaderChanges catch
// non-atomic txns: against a fake cell that applies only the first write
// of each txn, or keeps the writes of a failed one, porcupine finds no
// linearization; against the same fake applying txns atomically, it
// finds one.
func TestTxnCheckerCatchesNonAtomicTxns(t *testing.T) {
	for _, mode := range []fakeMode{fakeAtomic, fakeHalf, fakeNoRollback} {
		t.Run(mode.String(), func(t *testing.T) {
			f := txnFake(t, mode)
			cs := make([]*client.Client, 3)
			for i := range cs {
				cfg := client.DefaultConfig(f.addr())
				c, err := client.Dial(bg(t), cfg)
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				t.Cleanup(func() { c.Close() })
				cs[i] = c
			}
			h := newHistory()
			startTxnWorkload(t, bg(t, 30*time.Second), h, cs, 200)()
			var late int
			for _, op := range h.ops {
				if in, out := op.Input.(txnIn), op.Output.(txnOut); in.late && out.failed != 0 {
					late++
				}
			}
			if got, want := porcupine.CheckOperations(txnModel, h.ops), mode == fakeAtomic; got != want {
				t.Fatalf("%d operations (%d failed compare-and-sets with a write to undo) linearizable = %v; want %v", len(h.ops), late, got, want)
			}
		})
	}
}

// The model rejects the histories of non-atomic and lost-update txns, and
// accepts their atomic counterparts.
func TestTxnModelCatchesNonAtomicTxns(t *testing.T) {
	put := func(key int, v string) porcupine.Operation {
		return porcupine.Operation{Input: txnIn{kind: opPut, keys: [2]int{key}, values: [2]string{v}}, Output: txnOut{}}
	}
	get := func(key int, v string, gen uint64) porcupine.Operation {
		return porcupine.Operation{ClientId: 1, Input: txnIn{kind: opGet, keys: [2]int{key}}, Output: txnOut{values: [2]string{v}, gens: [2]uint64{gen}}}
	}
	multi := porcupine.Operation{Input: txnIn{kind: opMultiPut, keys: [2]int{0, 1}, values: [2]string{"x", "y"}}, Output: txnOut{}}
	cas := func(gens [2]uint64, values [2]string, out txnOut) porcupine.Operation {
		return porcupine.Operation{Input: txnIn{kind: opCAS, keys: [2]int{0, 1}, gens: gens, values: values}, Output: out}
	}
	lateCAS := func(gens [2]uint64, out txnOut) porcupine.Operation {
		op := cas(gens, [2]string{"x", "y"}, out)
		in := op.Input.(txnIn)
		in.late = true
		op.Input = in
		return op
	}
	read := func(g0, g1 uint64, v0, v1 string) porcupine.Operation {
		return porcupine.Operation{ClientId: 1, Input: txnIn{kind: opRead, keys: [2]int{0, 1}},
			Output: txnOut{gens: [2]uint64{g0, g1}, values: [2]string{v0, v1}}}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"multi-put seen whole", []porcupine.Operation{put(0, "a"), put(1, "b"), multi, get(0, "x", 2), get(1, "y", 2)}, true},
		{"multi-put seen half", []porcupine.Operation{put(0, "a"), put(1, "b"), multi, get(0, "x", 2), get(1, "b", 1)}, false},
		{"compare-and-set read whole", []porcupine.Operation{put(0, "a"), put(1, "b"), cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{}), read(2, 2, "x", "y")}, true},
		{"compare-and-set read half", []porcupine.Operation{put(0, "a"), put(1, "b"), cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{}), read(2, 1, "x", "b")}, false},
		{"multi-put read half", []porcupine.Operation{put(0, "a"), put(1, "b"), multi, read(2, 2, "x", "b")}, false},
		{"failed compare-and-set left nothing", []porcupine.Operation{put(0, "a"), put(1, "b"), cas([2]uint64{1, 7}, [2]string{"x", "y"}, txnOut{failed: 2}), get(0, "a", 1)}, true},
		{"failed compare-and-set left its first write", []porcupine.Operation{put(0, "a"), put(1, "b"), cas([2]uint64{1, 7}, [2]string{"x", "y"}, txnOut{failed: 2}), get(0, "x", 2)}, false},
		{"failed late compare-and-set undid its first write", []porcupine.Operation{put(0, "a"), put(1, "b"), lateCAS([2]uint64{1, 7}, txnOut{failed: 3}), get(0, "a", 1)}, true},
		{"failed late compare-and-set kept its first write", []porcupine.Operation{put(0, "a"), put(1, "b"), lateCAS([2]uint64{1, 7}, txnOut{failed: 3}), get(0, "x", 2)}, false},
		{"two compare-and-sets on one generation, one fails", []porcupine.Operation{put(0, "a"), put(1, "b"),
			cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{}), cas([2]uint64{1, 1}, [2]string{"v", "w"}, txnOut{failed: 1})}, true},
		{"two compare-and-sets on one generation, both apply (a lost update)", []porcupine.Operation{put(0, "a"), put(1, "b"),
			cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{}), cas([2]uint64{1, 1}, [2]string{"v", "w"}, txnOut{})}, false},
		{"an unknown compare-and-set not applied", []porcupine.Operation{put(0, "a"), put(1, "b"),
			cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{unknown: true}), get(0, "a", 1)}, true},
		{"an unknown compare-and-set applied", []porcupine.Operation{put(0, "a"), put(1, "b"),
			cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{unknown: true}), get(0, "x", 2), get(1, "y", 2)}, true},
		{"an unknown compare-and-set applied half", []porcupine.Operation{put(0, "a"), put(1, "b"),
			cas([2]uint64{1, 1}, [2]string{"x", "y"}, txnOut{unknown: true}), get(0, "x", 2), get(1, "b", 1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One after another in real time, except that an unknown
			// outcome returns at the end of time.
			for i := range tc.ops {
				tc.ops[i].Call, tc.ops[i].Return = int64(2*i), int64(2*i+1)
				if tc.ops[i].Output.(txnOut).unknown {
					tc.ops[i].Return = math.MaxInt64
				}
			}
			if got := porcupine.CheckOperations(txnModel, tc.ops); got != tc.ok {
				t.Fatalf("linearizable = %v; want %v", got, tc.ok)
			}
		})
	}
}
