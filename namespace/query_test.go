package namespace

import (
	"fmt"
	"slices"
	"testing"
)

func names(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func TestListChildrenOnly(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/a/b", "/a/b/c/d", "/a/b-1", "/a/b0", "/a/B", "/ab", "/a/b/x"} {
		h.must(NewCreate(p, nil, FlagParents), 0)
	}
	tests := []struct {
		path, after string
		limit       int
		want        []string
		more        bool
	}{
		{"/", "", 0, []string{"a", "ab"}, false},
		{"/a", "", 0, []string{"B", "b", "b-1", "b0"}, false},
		{"/a", "", 2, []string{"B", "b"}, true},
		{"/a", "b", 2, []string{"b-1", "b0"}, false},
		{"/a", "b0", 2, nil, false},
		{"/a/b", "", 0, []string{"c", "x"}, false},
		{"/a/b/c/d", "", 0, nil, false},
	}
	for _, tt := range tests {
		got, more, err := h.tree.List(tt.path, tt.after, tt.limit)
		if err != nil || !slices.Equal(names(got), tt.want) || more != tt.more {
			t.Errorf("List(%q, %q, %d) = %v, %v, %v; want %v, %v", tt.path, tt.after, tt.limit, names(got), more, err, tt.want, tt.more)
		}
	}
	if _, _, err := h.tree.List("/nope", "", 0); !errorsIs(err, ErrNotFound) {
		t.Errorf("List of a missing node = %v", err)
	}
	if _, _, err := h.tree.List("nope", "", 0); !errorsIs(err, ErrBadPath) {
		t.Errorf("List of a bad path = %v", err)
	}
	es, _, _ := h.tree.List("/a", "", 1)
	if es[0].Stat.Instance == 0 {
		t.Errorf("List entries carry no stat")
	}
}

func TestWalkOrderAndStop(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/a/b/c", "/a/b-1", "/a/a", "/z"} {
		h.must(NewCreate(p, nil, FlagParents), 0)
	}
	var got []string
	if err := h.tree.Walk("/", func(p string, _ Stat) bool { got = append(got, p); return true }); err != nil {
		t.Fatal(err)
	}
	want := []string{"/", "/a", "/a/a", "/a/b", "/a/b/c", "/a/b-1", "/z"}
	if !slices.Equal(got, want) {
		t.Fatalf("Walk = %v; want %v", got, want)
	}
	got = nil
	h.tree.Walk("/a", func(p string, _ Stat) bool { got = append(got, p); return len(got) < 3 })
	if !slices.Equal(got, want[1:4]) {
		t.Fatalf("stopped Walk = %v; want %v", got, want[1:4])
	}
	if err := h.tree.Walk("/x", func(string, Stat) bool { return true }); !errorsIs(err, ErrNotFound) {
		t.Fatalf("Walk of missing = %v", err)
	}
}

func TestQueries(t *testing.T) {
	h := newHarness(t)
	a, b := h.open(), h.open()
	h.must(NewCreate("/e", []byte("c"), FlagEphemeral), a)
	h.must(NewCreate("/l", nil, 0), 0)
	h.must(NewAcquire("/l", ModeExclusive, false, 0), a)
	h.apply(NewAcquire("/l", ModeShared, true, 0), b, 5)

	n, err := h.tree.Get("/e")
	if err != nil || string(n.Content) != "c" || n.Stat.EphemeralOwner != a || n.Path != "/e" {
		t.Errorf("Get(/e) = %+v, %v", n, err)
	}
	n.Content[0] = 'X'
	wantContent(t, h, "/e", "c") // Get returns a copy
	if _, err := h.tree.Get("/x"); !errorsIs(err, ErrNotFound) {
		t.Errorf("Get(/x) = %v", err)
	}
	locks := h.tree.Locks()
	want := LockInfo{Path: "/l", Instance: 3, Mode: ModeExclusive, LockGen: 1, Holders: []uint64{a},
		Waiters: []Waiter{{Session: b, Request: 5, Mode: ModeShared}}}
	if len(locks) != 1 || fmt.Sprint(locks[0]) != fmt.Sprint(want) {
		t.Errorf("Locks() = %+v; want [%+v]", locks, want)
	}
	if l, err := h.tree.Lock("/e"); err != nil || l.Mode != ModeNone || l.Instance != 2 {
		t.Errorf("Lock(/e) = %+v, %v", l, err)
	}
	ss := h.tree.Sessions()
	if len(ss) != 2 || ss[0].ID != a || !slices.Equal(ss[0].Ephemerals, []string{"/e"}) ||
		!slices.Equal(ss[0].Locks, []string{"/l"}) || !slices.Equal(ss[1].Waiting, []string{"/l"}) {
		t.Errorf("Sessions() = %+v", ss)
	}
	if _, err := h.tree.Session(9); !errorsIs(err, ErrSessionUnknown) {
		t.Errorf("Session(9) = %v", err)
	}
	if h.tree.Len() != 3 || h.tree.AppliedIndex() != h.index || h.tree.Now() != h.now {
		t.Errorf("Len/AppliedIndex/Now = %d/%d/%d", h.tree.Len(), h.tree.AppliedIndex(), h.tree.Now())
	}
	dump, err := h.tree.Dump("/")
	wantDump := "/ inst=1 cgen=1\n  e inst=2 cgen=1 eph=1 \"c\"\n  l inst=3 cgen=1 lgen=1\n"
	if err != nil || dump != wantDump {
		t.Errorf("Dump = %q; want %q", dump, wantDump)
	}
}

// Command time never goes backwards, even if a new leader's clock is behind.
func TestCommandTimeIsMonotonic(t *testing.T) {
	h := newHarness(t)
	h.must(NewTick(), 0)
	before := h.tree.Now()
	h.now -= 1000
	h.must(NewTick(), 0)
	if h.tree.Now() != before {
		t.Fatalf("Now() = %d after an older stamp; want %d", h.tree.Now(), before)
	}
}
