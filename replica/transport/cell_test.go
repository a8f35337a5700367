package transport

import (
	"sync/atomic"
	"testing"
	"time"
)

// Replicas of two cells that share ids keep apart: a hello (or its
// answer) naming another cell id is refused on both sides, and nothing is
// delivered.
func TestAnotherCellIsRefused(t *testing.T) {
	cfgA := testConfig(2, map[uint64]string{})
	cfgA.AcceptUnknown, cfgA.Cell = true, 0xa
	a := startNode(t, cfgA)
	cfgB := testConfig(1, map[uint64]string{2: a.Addr().String()})
	cfgB.AcceptUnknown, cfgB.Cell = true, 0xb
	b := startNode(t, cfgB)
	if err := b.Send(2, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other cell's hello refused", func() bool { return a.Stats().Rejected > 0 })
	waitLogged(t, a, "replica 1 belongs to another cell (cell id 000000000000000b, ours 000000000000000a)")
	waitLogged(t, b, "belongs to another cell")
	select {
	case m := <-a.inbox:
		t.Fatalf("a message crossed between cells: %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	if _, ok := a.Stats().Peers[1]; ok {
		t.Fatalf("the refused replica was added as a peer")
	}
}

// A replica that does not know its cell id (joining, or rebuilt from an
// empty disk) takes the first one a peer presents, from a hello or from
// an answer, reports it once, and from then on refuses another one.
func TestCellIDLearnedFromAPeer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		knowsLowID  bool // the dialer (lower id) knows the cell id, not the listener
		learnerFrom string
	}{
		{"from a hello", true, "hello"},
		{"from an answer", false, "answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var learned atomic.Uint64
			var calls atomic.Int32
			onCell := func(c uint64) { learned.Store(c); calls.Add(1) }
			cfgHigh := testConfig(5, map[uint64]string{})
			cfgHigh.AcceptUnknown = true
			if tc.knowsLowID {
				cfgHigh.OnCell = onCell
			} else {
				cfgHigh.Cell = 0xc
			}
			high := startNode(t, cfgHigh)
			cfgLow := testConfig(2, map[uint64]string{5: high.Addr().String()})
			cfgLow.AcceptUnknown = true
			if tc.knowsLowID {
				cfgLow.Cell = 0xc
			} else {
				cfgLow.OnCell = onCell
			}
			low := startNode(t, cfgLow)
			deliverEventually(t, low, high, 1, "the first contact")
			if learned.Load() != 0xc || calls.Load() != 1 {
				t.Fatalf("OnCell got %x in %d calls; want c once", learned.Load(), calls.Load())
			}
			learner := high
			if !tc.knowsLowID {
				learner = low
			}
			if got := learner.cellID.Load(); got != 0xc {
				t.Fatalf("the learner's cell id = %x; want c", got)
			}
			// A replica of another cell is now refused by the learner.
			cfgOther := testConfig(1, map[uint64]string{learner.id: learner.Addr().String()})
			cfgOther.AcceptUnknown, cfgOther.Cell = true, 0xd
			other := startNode(t, cfgOther)
			other.Send(learner.id, 1, []byte("x"))
			waitFor(t, "another cell refused after learning", func() bool { return learner.Stats().Rejected > 0 })
			if calls.Load() != 1 {
				t.Fatalf("OnCell called %d times; want once", calls.Load())
			}
		})
	}
}

// Replicas that both know no cell id are not checked (a cell whose data
// dirs predate cell ids), as before.
func TestNoCellIDsConnect(t *testing.T) {
	nodes := startCell(t, 2, func(c *Config) { c.AcceptUnknown = true })
	deliverEventually(t, nodes[1], nodes[2], 1, "no cell ids")
}
