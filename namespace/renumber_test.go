package namespace

import (
	"math"
	"testing"
)

// After Renumber, nothing the old numbering handed out matches any more
// (sequencers, generations, session ids), what the tree hands out next is
// above it, and the tree stays consistent through a snapshot.
func TestRenumber(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/a", []byte("x"), 0), s)
	seq := h.must(NewAcquire("/a", ModeExclusive, false, 0), s).Sequencer
	h.must(NewRelease("/a", 0), s)
	before, err := h.tree.Stat("/a")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	if err := h.tree.Renumber(n); err != nil {
		t.Fatalf("Renumber: %v", err)
	}
	h.index += n
	if err := h.tree.CheckInvariants(); err != nil {
		t.Fatalf("invariants after Renumber: %v", err)
	}
	after, _ := h.tree.Stat("/a")
	if after.ContentGen != before.ContentGen+n || after.LockGen != before.LockGen+n || after.ACLGen != before.ACLGen+n ||
		after.Instance != before.Instance {
		t.Fatalf("stat %+v after Renumber(%d) of %+v; want the generations moved, the instance kept", after, n, before)
	}
	// A write conditional on the old generation fails.
	r, _ := h.apply(NewSetContent("/a", []byte("y"), before.ContentGen), s, 0)
	wantErr(t, "set-content at the old generation", r.Err, ErrGenerationMismatch)
	// The next grant is above everything the old numbering handed out, and
	// its sequencer is the one that checks.
	seq2 := h.must(NewAcquire("/a", ModeExclusive, false, 0), s).Sequencer
	if seq2.LockGen <= seq.LockGen+n-1 || !h.tree.CheckSequencer(seq2) || h.tree.CheckSequencer(seq) {
		t.Fatalf("sequencers old %+v (valid %v), new %+v (valid %v)", seq, h.tree.CheckSequencer(seq), seq2, h.tree.CheckSequencer(seq2))
	}
	if s2 := h.open(); s2 < s+n {
		t.Errorf("session id %d after Renumber(%d); want at least %d", s2, n, s+n)
	}
	if b := h.must(NewCreate("/b", nil, 0), s).Stat; b.Instance < before.Instance+n {
		t.Errorf("new node instance %d; want at least %d", b.Instance, before.Instance+n)
	}
	restored := New(DefaultConfig())
	if err := restored.Restore(bytesReader(snapshotBytes(t, h.tree))); err != nil {
		t.Fatalf("Restore of the renumbered tree: %v", err)
	}
	if err := restored.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

func TestRenumberRefusesZeroAndOverflow(t *testing.T) {
	h := newHarness(t)
	h.must(NewCreate("/a", nil, 0), h.open())
	snap := snapshotBytes(t, h.tree)
	for _, n := range []uint64{0, math.MaxUint64 - 1} {
		if err := h.tree.Renumber(n); err == nil {
			t.Errorf("Renumber(%d) succeeded", n)
		}
	}
	if got := snapshotBytes(t, h.tree); string(got) != string(snap) {
		t.Errorf("a refused Renumber changed the tree")
	}
}
