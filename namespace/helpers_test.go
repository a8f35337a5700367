package namespace

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// harness applies commands to a tree with increasing indexes and a settable
// clock, checking invariants after each.
type harness struct {
	t     testing.TB
	tree  *Tree
	index uint64
	now   int64
}

func newHarness(t testing.TB) *harness {
	return newHarnessConfig(t, DefaultConfig())
}

func newHarnessConfig(t testing.TB, cfg Config) *harness {
	return &harness{t: t, tree: New(cfg), now: int64(time.Hour)}
}

// apply stamps cmd with the harness clock, session and request, and applies it.
func (h *harness) apply(cmd Command, session, request uint64) (Result, []Event) {
	h.t.Helper()
	h.index++
	cmd.Time = h.now
	cmd.Session = session
	cmd.Request = request
	r, ev := h.tree.Apply(h.index, &cmd)
	if err := h.tree.CheckInvariants(); err != nil {
		h.t.Fatalf("after %s: invariant: %v", cmd.Op, err)
	}
	return r, ev
}

// must applies cmd and fails the test if it fails.
func (h *harness) must(cmd Command, session uint64) Result {
	h.t.Helper()
	r, _ := h.apply(cmd, session, 0)
	if r.Err != nil {
		h.t.Fatalf("%s %s: %v", cmd.Op, cmd.Path, r.Err)
	}
	return r
}

// open opens a session and returns its id.
func (h *harness) open() uint64 {
	h.t.Helper()
	return h.must(NewOpenSession(10*time.Second), 0).Session
}

func (h *harness) advance(d time.Duration) { h.now += int64(d) }

// wantErr checks that err wraps want (nil: no error).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: error %v; want none", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v; want %v", what, err, want)
	}
}

// fataler is what testing.TB and *rapid.T share.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

func snapshotBytes(t fataler, tr *Tree) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tr.Snapshot(&buf); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return buf.Bytes()
}

func eventKinds(ev []Event) []EventKind {
	out := make([]EventKind, len(ev))
	for i, e := range ev {
		out[i] = e.Kind
	}
	return out
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }
