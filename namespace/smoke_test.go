package namespace

import (
	"bytes"
	"testing"
)

func TestSmoke(t *testing.T) {
	h := newHarness(t)
	s := h.open()
	h.must(NewCreate("/a/b/c", []byte("x"), FlagParents), s)
	r := h.must(NewCreate("/a/q-", nil, FlagSequential|FlagEphemeral), s)
	if r.Path != "/a/q-0000000000" {
		t.Fatalf("seq path %q", r.Path)
	}
	r = h.must(NewAcquire("/a", ModeExclusive, false, 0), s)
	t.Logf("seq %v", r.Sequencer)
	s2 := h.open()
	r, ev := h.apply(NewAcquire("/a", ModeExclusive, true, 0), s2, 1)
	t.Logf("%+v %v", r, ev)
	_, ev = h.apply(NewExpireSession(s), 0, 0)
	for _, e := range ev {
		t.Log(e)
	}
	d, _ := h.tree.NextDeadline()
	h.now = d
	_, ev = h.apply(NewTick(), 0, 0)
	for _, e := range ev {
		t.Log(e)
	}
	dump, _ := h.tree.Dump("/")
	t.Log("\n" + dump)
	b := snapshotBytes(t, h.tree)
	tr := New(DefaultConfig())
	if err := tr.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := tr.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, tr), b) {
		t.Fatal("snapshot differs")
	}
}
