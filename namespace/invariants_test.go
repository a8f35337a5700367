package namespace

import (
	"testing"
	"time"
)

// CheckInvariants is what the fuzz target relies on, so each kind of
// corruption must be caught.
func TestCheckInvariantsDetectsCorruption(t *testing.T) {
	setup := func(t *testing.T) *Tree {
		h := newHarness(t)
		a, b := h.open(), h.open()
		h.must(NewCreate("/d/f", []byte("x"), FlagParents), 0)
		h.must(NewCreate("/e", nil, FlagEphemeral), a)
		h.must(NewAcquire("/d", ModeExclusive, false, time.Second), a)
		h.must(NewAcquire("/d", ModeShared, true, 0), b)
		h.must(NewAcquire("/d/f", ModeShared, false, time.Second), b)
		h.must(NewExpireSession(b), 0) // /d/f in lock-delay
		return h.tree
	}
	tests := []struct {
		name    string
		corrupt func(*Tree)
	}{
		{"child count", func(tr *Tree) { tr.lookup("/d").children++ }},
		{"checksum", func(tr *Tree) { tr.lookup("/d/f").checksum++ }},
		{"instance reused", func(tr *Tree) { tr.lookup("/d/f").instance = tr.lookup("/d").instance }},
		{"instance ahead", func(tr *Tree) { tr.nextInstance = 1 }},
		{"owner dead", func(tr *Tree) { tr.lookup("/e").owner = 99 }},
		{"orphan", func(tr *Tree) {
			tr.insertNode("/x/y", 2, &node{instance: 50, contentGen: 1, aclGen: 1})
			tr.nextInstance = 51
		}},
		{"no root", func(tr *Tree) { tr.removeNode("/", 0) }},
		{"index disagrees", func(tr *Tree) { tr.byPath["/d"] = &node{} }},
		{"ephemeral not recorded", func(tr *Tree) { tr.sessions[1].ephemerals = nil }},
		{"session holds nothing", func(tr *Tree) { tr.sessions[1].held = append(tr.sessions[1].held, "/zz") }},
		{"holder dead", func(tr *Tree) { tr.locks["/d"].holders[0].session = 42 }},
		{"mode", func(tr *Tree) { tr.locks["/d"].mode = ModeNone }},
		{"grantable waiter", func(tr *Tree) {
			ls := tr.locks["/d"]
			ls.waiters = append(ls.waiters, waiter{session: 1, mode: ModeShared})
			ls.holders = nil
			ls.mode = ModeNone
		}},
		{"delay not in heap", func(tr *Tree) { tr.delayed.set(tr.locks["/d/f"], false) }},
		{"stale delay", func(tr *Tree) { tr.locks["/d/f"].delayUntil = tr.now }},
		{"results", func(tr *Tree) { tr.sessions[1].results.requests = append(tr.sessions[1].results.requests, 5) }},
	}
	if err := setup(t).CheckInvariants(); err != nil {
		t.Fatalf("clean tree: %v", err)
	}
	for _, tt := range tests {
		tr := setup(t)
		tt.corrupt(tr)
		if err := tr.CheckInvariants(); err == nil {
			t.Errorf("%s: corruption not detected", tt.name)
		}
	}
}
