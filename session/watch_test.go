package session

import (
	"errors"
	"reflect"
	"testing"
)

func TestWatchRouting(t *testing.T) {
	m, _ := newTestManager(t, nil)
	for id := uint64(1); id <= 4; id++ {
		if err := m.Open(id, 0); err != nil {
			t.Fatal(err)
		}
	}
	watch := func(id uint64, path string, rec bool) uint64 {
		t.Helper()
		w, err := m.Watch(id, path, rec)
		if err != nil {
			t.Fatalf("Watch(%d, %q, %v) = %v", id, path, rec, err)
		}
		return w
	}
	w1a := watch(1, "/a", false)     // exact /a
	w1ab := watch(1, "/a/b", true)   // subtree /a/b
	w2a := watch(2, "/a", true)      // subtree /a
	w3root := watch(3, "/", true)    // everything
	w4ab := watch(4, "/ab", false)   // exact /ab: not under /a
	w4x := watch(4, "/a/b/c", false) // exact /a/b/c
	if w1a != 1 || w1ab != 2 || w2a != 1 {
		t.Errorf("watch ids = %d %d %d; want per-session ids 1 2 1", w1a, w1ab, w2a)
	}

	tests := []struct {
		path string
		want []Target
	}{
		{"/", []Target{{3, []uint64{w3root}}}},
		{"/a", []Target{{1, []uint64{w1a}}, {2, []uint64{w2a}}, {3, []uint64{w3root}}}},
		{"/a/b", []Target{{1, []uint64{w1ab}}, {2, []uint64{w2a}}, {3, []uint64{w3root}}}},
		{"/a/b/c", []Target{{1, []uint64{w1ab}}, {2, []uint64{w2a}}, {3, []uint64{w3root}}, {4, []uint64{w4x}}}},
		{"/a/bc", []Target{{2, []uint64{w2a}}, {3, []uint64{w3root}}}},
		{"/ab", []Target{{3, []uint64{w3root}}, {4, []uint64{w4ab}}}},
		{"/b", []Target{{3, []uint64{w3root}}}},
	}
	for _, tt := range tests {
		if got := m.Route(tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Route(%q) = %v; want %v", tt.path, got, tt.want)
		}
	}

	// Two watches of one session that both match are grouped.
	w1b := watch(1, "/a", true)
	if got, want := m.Route("/a"), []Target{{1, []uint64{w1a, w1b}}, {2, []uint64{w2a}}, {3, []uint64{w3root}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Route(/a) = %v; want %v", got, want)
	}

	if err := m.Unwatch(1, w1a); err != nil {
		t.Fatal(err)
	}
	if err := m.Unwatch(1, w1a); !errors.Is(err, ErrNoWatch) {
		t.Errorf("Unwatch twice = %v; want ErrNoWatch", err)
	}
	if err := m.Unwatch(9, 1); !errors.Is(err, ErrUnknown) {
		t.Errorf("Unwatch(unknown session) = %v; want ErrUnknown", err)
	}
	m.Remove(3)
	if got, want := m.Route("/a"), []Target{{1, []uint64{w1b}}, {2, []uint64{w2a}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Unwatch and Remove Route(/a) = %v; want %v", got, want)
	}
	m.Remove(1)
	m.Remove(2)
	m.Remove(4)
	if got := m.Route("/a/b/c"); got != nil {
		t.Errorf("Route after all sessions removed = %v; want nil", got)
	}
	if len(m.index.exact) != 0 || m.index.tree.Len() != 0 {
		t.Errorf("index not empty: %d exact, %d subtree keys", len(m.index.exact), m.index.tree.Len())
	}
}

func TestWatchErrors(t *testing.T) {
	m, _ := newTestManager(t, func(c *Config) { c.MaxWatches = 2 })
	m.Open(1, 0)
	for _, p := range []string{"", "a", "/a/", "//", "/a//b", "/a\x00b"} {
		if _, err := m.Watch(1, p, false); !errors.Is(err, ErrBadPath) {
			t.Errorf("Watch(%q) = %v; want ErrBadPath", p, err)
		}
	}
	if _, err := m.Watch(2, "/a", false); !errors.Is(err, ErrUnknown) {
		t.Errorf("Watch(unknown session) = %v; want ErrUnknown", err)
	}
	m.Watch(1, "/a", false)
	m.Watch(1, "/a", false)
	if _, err := m.Watch(1, "/b", false); !errors.Is(err, ErrLimit) {
		t.Errorf("Watch past MaxWatches = %v; want ErrLimit", err)
	}
}

func TestWatchesCount(t *testing.T) {
	m, _ := newTestManager(t, nil)
	m.Open(1, 0)
	m.Open(2, 0)
	count := func(id uint64, want int) {
		t.Helper()
		if got := m.Watches(id); got != want {
			t.Errorf("Watches(%d) = %d; want %d", id, got, want)
		}
	}
	count(1, 0)
	w, _ := m.Watch(1, "/a", false)
	m.Watch(1, "/a", true)
	m.Watch(2, "/", true)
	count(1, 2)
	count(2, 1)
	if err := m.Unwatch(1, w); err != nil {
		t.Fatal(err)
	}
	count(1, 1)
	m.Remove(2)
	count(2, 0)
	count(9, 0) // never tracked
}
