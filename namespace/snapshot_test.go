package namespace

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// richState builds a tree that uses every part of the state.
func richState(t testing.TB) *harness {
	h := newHarness(t)
	a, b, c := h.open(), h.open(), h.open()
	h.apply(NewCreate("/svc/web/leader", []byte("host:1"), FlagParents), a, 1)
	h.apply(NewCreate("/svc/web/m-", []byte("x"), FlagSequential|FlagEphemeral), a, 2)
	h.apply(NewCreate("/svc/web/m-", nil, FlagSequential|FlagEphemeral), b, 1)
	cmd := NewCreate("/acl/x", nil, FlagParents)
	cmd.ACL = ACL{Reader: "r", Writer: "w", Changer: "c"}
	h.apply(cmd, 0, 0)
	h.apply(NewCreate("/acl/x/y", nil, 0), 0, 0)
	h.apply(NewAcquire("/svc/web/leader", ModeExclusive, false, 4*time.Second), a, 3)
	h.apply(NewAcquire("/svc/web/leader", ModeExclusive, true, 0), b, 2)
	h.apply(NewAcquire("/svc/web/leader", ModeShared, true, 0), c, 1)
	h.apply(NewAcquire("/svc", ModeShared, false, 0), b, 3)
	h.apply(NewAcquire("/svc", ModeShared, false, 0), c, 2)
	h.apply(NewAcquire("/acl", ModeExclusive, false, 9*time.Second), c, 3)
	h.apply(NewSetContent("/nope", nil, 0), c, 4) // a stored error
	h.apply(NewExpireSession(c), 0, 0)            // /acl in lock-delay, no waiters
	h.apply(NewExpireSession(a), 0, 0)            // leader in lock-delay with waiters
	h.advance(time.Second)
	return h
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := richState(t)
	snap := snapshotBytes(t, h.tree)
	r := New(DefaultConfig())
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := r.CheckInvariants(); err != nil {
		t.Fatalf("restored tree: %v", err)
	}
	if again := snapshotBytes(t, r); !bytes.Equal(again, snap) {
		t.Fatalf("snapshot of the restored tree differs (%d vs %d bytes)", len(again), len(snap))
	}
	if !reflect.DeepEqual(r.Sessions(), h.tree.Sessions()) || !reflect.DeepEqual(r.Locks(), h.tree.Locks()) {
		t.Fatalf("restored sessions or locks differ")
	}
	d1, ok1 := h.tree.NextDeadline()
	d2, ok2 := r.NextDeadline()
	if d1 != d2 || ok1 != ok2 || !ok1 {
		t.Fatalf("NextDeadline %d,%v vs %d,%v", d1, ok1, d2, ok2)
	}
	// Later commands behave identically.
	later := []Command{NewTick(), NewAcquire("/acl", ModeExclusive, false, 0), NewCreate("/svc/web/m-", nil, FlagSequential),
		NewSetContent("/svc/web/leader", []byte("b"), 0), NewCloseSession()}
	at := h.now + int64(10*time.Second)
	for i, c := range later {
		c.Time, c.Session, c.Request = at, 2, uint64(10+i)
		if c.Op == OpTick {
			c.Session = 0
		}
		c1, c2 := c, c
		r1, e1 := h.tree.Apply(uint64(100+i), &c1)
		r2, e2 := r.Apply(uint64(100+i), &c2)
		if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(e1, e2) {
			t.Fatalf("command %d (%s): original %+v %v; restored %+v %v", i, c.Op, r1, e1, r2, e2)
		}
	}
	if !bytes.Equal(snapshotBytes(t, h.tree), snapshotBytes(t, r)) {
		t.Fatalf("snapshots differ after the same commands")
	}
}

func TestSnapshotDeterministic(t *testing.T) {
	a, b := richState(t), richState(t)
	if !bytes.Equal(snapshotBytes(t, a.tree), snapshotBytes(t, b.tree)) {
		t.Fatal("two trees built by the same commands give different snapshots")
	}
	if bytes.Equal(snapshotBytes(t, a.tree), snapshotBytes(t, New(DefaultConfig()))) {
		t.Fatal("snapshot ignores the state")
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	h := richState(t)
	snap := snapshotBytes(t, h.tree)
	want := snapshotBytes(t, h.tree)
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x10
		if err := h.tree.Restore(bytes.NewReader(bad)); err == nil {
			t.Fatalf("flip at byte %d of %d accepted", i, len(snap))
		}
	}
	for n := 0; n < len(snap); n++ {
		if err := h.tree.Restore(bytes.NewReader(snap[:n])); err == nil {
			t.Fatalf("snapshot truncated to %d bytes accepted", n)
		}
	}
	if got := snapshotBytes(t, h.tree); !bytes.Equal(got, want) {
		t.Fatal("failed restores changed the tree")
	}
}

func TestRestoreRejectsHeaders(t *testing.T) {
	header := func(magic string, version int) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.EncodeArrayLen(9)
		enc.EncodeString(magic)
		enc.EncodeUint(uint64(version))
		for i := 0; i < 7; i++ {
			enc.EncodeUint(0)
		}
		return buf.Bytes()
	}
	tree := New(DefaultConfig())
	if err := tree.Restore(bytes.NewReader(header("other", 1))); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("bad magic: %v", err)
	}
	if err := tree.Restore(bytes.NewReader(header(snapshotMagic, 2))); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("version 2: %v", err)
	}
	if err := tree.Restore(bytes.NewReader(header(snapshotMagic, 1))); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("no root: %v", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, io.ErrShortWrite
	}
	w.after -= len(p)
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	h := richState(t)
	n := len(snapshotBytes(t, h.tree))
	for _, after := range []int{0, n - 1} {
		if err := h.tree.Snapshot(&failWriter{after: after}); !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("Snapshot to a writer failing after %d bytes = %v", after, err)
		}
	}
}

// A snapshot written by a buggy or hostile peer must not smuggle in a node
// whose path is not valid, even with a correct checksum.
func TestRestoreRejectsBadKeys(t *testing.T) {
	for _, key := range []string{"\x02//a", "\x01/a/", "\x01/.", "\x02/a/b", "\x01/a\x00", "\x01/\xff", "\x00/x", "\x01/"} {
		tr := New(DefaultConfig())
		tr.nodes.Insert(key, &node{instance: 1, contentGen: 1, aclGen: 1})
		tr.nextInstance = 2
		snap := snapshotBytes(t, tr)
		if err := New(DefaultConfig()).Restore(bytes.NewReader(snap)); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("key %q: Restore = %v; want ErrBadSnapshot", key, err)
		}
	}
}
