package transport

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Replicas of two cells that share ids keep apart: a hello (or its
// answer) naming another cell id is refused on both sides, and nothing is
// delivered; a dial-back (Config.DialBackAfter) alike.
func TestAnotherCellIsRefused(t *testing.T) {
	for _, back := range []bool{false, true} {
		t.Run(fmt.Sprintf("dialed back %v", back), func(t *testing.T) {
			// The listener is of cell a; the dialer, of cell b, knows its
			// address.
			lid, did := uint64(2), uint64(1)
			if back {
				lid, did = 1, 2
			}
			cfgL := testConfig(lid, map[uint64]string{})
			cfgL.AcceptUnknown, cfgL.Cell = true, 0xa
			l := startNode(t, cfgL)
			cfgD := testConfig(did, map[uint64]string{lid: l.Addr().String()})
			cfgD.AcceptUnknown, cfgD.Cell = true, 0xb
			if back {
				cfgD.DialBackAfter = time.Nanosecond
			}
			d := startNode(t, cfgD)
			if err := d.Send(lid, 1, []byte("x")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the other cell's hello refused", func() bool { return l.Stats().Rejected > 0 })
			waitLogged(t, l, fmt.Sprintf("replica %d belongs to another cell (cell id 000000000000000b, ours 000000000000000a)", did))
			waitLogged(t, d, "belongs to another cell")
			select {
			case m := <-l.inbox:
				t.Fatalf("a message crossed between cells: %+v", m)
			case <-time.After(100 * time.Millisecond):
			}
			if _, ok := l.Stats().Peers[did]; ok {
				t.Fatalf("the refused replica was added as a peer")
			}
		})
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
