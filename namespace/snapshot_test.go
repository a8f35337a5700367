package namespace

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
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
	for _, v := range []int{0, 4} {
		if err := tree.Restore(bytes.NewReader(header(snapshotMagic, v))); !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("version %d: %v", v, err)
		}
	}
	for _, v := range []int{1, 2, 3} {
		if err := tree.Restore(bytes.NewReader(header(snapshotMagic, v))); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("version %d, no root: %v", v, err)
		}
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

// namedState is richState plus sessions that gave client names, one of
// them owning an ephemeral node.
func namedState(t testing.TB) *harness {
	h := richState(t)
	web := h.must(namedOpen("web-1 on host-12"), 0).Session
	h.must(namedOpen("läuft"), 0)
	h.must(NewCreate("/svc/web/m-", nil, FlagSequential|FlagEphemeral), web)
	return h
}

// Version 2 keeps the client names, and identical states still give
// identical bytes.
func TestSnapshotKeepsClientNames(t *testing.T) {
	h := namedState(t)
	snap := snapshotBytes(t, h.tree)
	if again := snapshotBytes(t, namedState(t).tree); !bytes.Equal(again, snap) {
		t.Fatal("two trees built by the same commands give different snapshots")
	}
	r := New(DefaultConfig())
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, want := r.Sessions(), h.tree.Sessions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored Sessions() = %+v; want %+v", got, want)
	}
	var names []string
	for _, si := range r.Sessions() {
		names = append(names, si.Client)
	}
	if want := []string{"", "web-1 on host-12", "läuft"}; !reflect.DeepEqual(names, want) {
		t.Errorf("restored client names %q; want %q", names, want)
	}
	if again := snapshotBytes(t, r); !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored tree differs")
	}
}

// snapshotAsV1 rewrites a version-2 snapshot in the version-1 format, as
// version-1 code wrote it: the same values, without the sessions' client
// names, and a new trailer.
func snapshotAsV1(t testing.TB, v2 []byte) []byte {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("rewriting as version 1: %v", err)
		}
	}
	dec := msgpack.NewDecoder(bytes.NewReader(v2))
	var buf bytes.Buffer
	hw := &hashWriter{w: &buf}
	enc := msgpack.NewEncoder(hw)
	copyValue := func() {
		raw, err := dec.DecodeRaw()
		must(err)
		must(enc.Encode(raw))
	}
	count := func() uint64 {
		v, err := dec.DecodeUint64()
		must(err)
		must(enc.EncodeUint(v))
		return v
	}
	arrayLen := func(want int) {
		n, err := dec.DecodeArrayLen()
		must(err)
		if n != want {
			t.Fatalf("rewriting as version 1: array of %d, want %d", n, want)
		}
	}
	arrayLen(9) // header
	must(enc.EncodeArrayLen(9))
	copyValue() // magic
	_, err := dec.DecodeUint64()
	must(err)
	must(enc.EncodeUint(snapshotV1))
	for range 4 { // index, now, nextInstance, nextSession
		copyValue()
	}
	sessions, nodes, locks := count(), count(), count()
	for range sessions {
		arrayLen(6)
		must(enc.EncodeArrayLen(5))
		for range 4 { // id, timeout, createdIndex, createdTime
			copyValue()
		}
		_, err := dec.DecodeString() // the client name
		must(err)
		copyValue() // results
	}
	for range nodes + locks {
		copyValue()
	}
	sum := hw.crc
	must(enc.EncodeArrayLen(2))
	must(enc.EncodeString(snapshotTrailer))
	must(enc.EncodeUint(uint64(sum)))
	return buf.Bytes()
}

// testdata/snapshot_v1.golden was written by the version-1 code from
// richState (whose sessions have no names). It must keep restoring.
func TestRestoreVersion1Golden(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "snapshot_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	h := richState(t)
	if got := snapshotAsV1(t, snapshotBytes(t, h.tree)); !bytes.Equal(got, golden) {
		t.Fatal("snapshotAsV1(richState) differs from what version-1 code wrote (has richState changed?)")
	}
	r := New(DefaultConfig())
	if err := r.Restore(bytes.NewReader(golden)); err != nil {
		t.Fatalf("Restore(version 1): %v", err)
	}
	if err := r.CheckInvariants(); err != nil {
		t.Fatalf("restored tree: %v", err)
	}
	if !reflect.DeepEqual(r.Sessions(), h.tree.Sessions()) || !reflect.DeepEqual(r.Locks(), h.tree.Locks()) {
		t.Fatal("restored sessions or locks differ")
	}
	if !bytes.Equal(snapshotBytes(t, r), snapshotBytes(t, h.tree)) {
		t.Fatal("the restored version-1 state snapshots differently from the state that wrote it")
	}
}

// A version-1 snapshot of sessions with names restores them without.
func TestRestoreVersion1DropsNothingElse(t *testing.T) {
	h := namedState(t)
	v1 := snapshotAsV1(t, snapshotBytes(t, h.tree))
	r := New(DefaultConfig())
	if err := r.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatalf("Restore(version 1): %v", err)
	}
	want := h.tree.Sessions()
	for i := range want {
		want[i].Client = ""
	}
	if got := r.Sessions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored Sessions() = %+v; want %+v", got, want)
	}
	if !reflect.DeepEqual(r.Locks(), h.tree.Locks()) {
		t.Fatal("restored locks differ")
	}
	if again := snapshotAsV1(t, snapshotBytes(t, r)); !bytes.Equal(again, v1) {
		t.Fatal("version-1 round trip differs")
	}
}

// A snapshot whose client name is not UTF-8 is refused, checksum or not.
func TestRestoreRejectsBadClientName(t *testing.T) {
	h := namedState(t)
	for _, s := range h.tree.sessions {
		if s.client != "" {
			s.client = "web\xff"
		}
	}
	snap := snapshotBytes(t, h.tree)
	if err := New(DefaultConfig()).Restore(bytes.NewReader(snap)); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("Restore = %v; want ErrBadSnapshot", err)
	}
}
