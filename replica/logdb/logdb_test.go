package logdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

func openT(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func ent(inst, round, node uint64, v string) Entry {
	return Entry{Instance: inst, Ballot: Ballot{Round: round, ID: node}, Value: []byte(v)}
}

func TestWriteReopenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(7)
	writes := []Update{
		{Promised: Ballot{Round: 1, ID: 2}},
		{Entries: []Entry{ent(1, 1, 2, "a"), ent(2, 1, 2, "b")}},
		{Promised: Ballot{Round: 3, ID: 1}, Entries: []Entry{ent(2, 3, 1, "b2"), ent(3, 3, 1, "")}, Chosen: 2},
		{Entries: []Entry{{Instance: 4, Ballot: Ballot{Round: 3, ID: 1}, Noop: true}}},
		{Entries: []Entry{{Instance: 5, Ballot: Ballot{Round: 3, ID: 1}, Value: []byte("change"), Conf: true}}},
		{Chosen: 3},
		{},
	}
	for i, u := range writes {
		if err := g.Write(u); err != nil {
			t.Fatalf("Write #%d = %v", i, err)
		}
	}
	want := State{
		Promised: Ballot{Round: 3, ID: 1},
		Chosen:   3,
		Entries: []Entry{ent(1, 1, 2, "a"), ent(2, 3, 1, "b2"), ent(3, 3, 1, ""),
			{Instance: 4, Ballot: Ballot{Round: 3, ID: 1}, Noop: true},
			{Instance: 5, Ballot: Ballot{Round: 3, ID: 1}, Value: []byte("change"), Conf: true}},
	}
	check := func(label string, g *Log) {
		t.Helper()
		got, err := g.Load()
		if err != nil {
			t.Fatalf("%s: Load() = %v", label, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("%s: Load() = %+v; want %+v", label, got, want)
		}
	}
	check("before reopen", g)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2 := openT(t, dir)
	check("after reopen", db2.Group(7))
}

// normalize makes empty values comparable with nil ones.
func normalize(s State) State {
	for i := range s.Entries {
		if len(s.Entries[i].Value) == 0 {
			s.Entries[i].Value = nil
		}
	}
	return s
}

func TestGroupsIsolated(t *testing.T) {
	db := openT(t, t.TempDir())
	a, b := db.Group(1), db.Group(2)
	if db.Group(1) != a {
		t.Fatal("Group(1) returned a different *Log the second time")
	}
	if err := a.Write(Update{Promised: Ballot{Round: 5, ID: 1}, Entries: []Entry{ent(1, 5, 1, "x")}, Chosen: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(Update{Entries: []Entry{ent(9, 1, 3, "y")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SaveSnapshot(1, []byte("snap-a")); err != nil {
		t.Fatal(err)
	}
	sb, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := State{Entries: []Entry{ent(9, 1, 3, "y")}}
	if !reflect.DeepEqual(sb, want) {
		t.Fatalf("group 2 Load() = %+v; want %+v", sb, want)
	}
	if _, err := b.Snapshot(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("group 2 Snapshot() err = %v; want ErrNoSnapshot", err)
	}
	// Group 0x0100 must not see group 1's keys through a prefix overlap.
	c := db.Group(0x0100)
	sc, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sc, State{}) {
		t.Fatalf("group 256 Load() = %+v; want empty", sc)
	}
}

func TestTruncate(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(3)
	var ents []Entry
	for i := uint64(1); i <= 3000; i++ {
		ents = append(ents, ent(i, 1, 1, fmt.Sprint("v", i)))
	}
	if err := g.Write(Update{Entries: ents, Chosen: 3000}); err != nil {
		t.Fatal(err)
	}
	if err := g.Truncate(10); !errors.Is(err, ErrTruncate) {
		t.Fatalf("Truncate(10) without snapshot = %v; want ErrTruncate", err)
	}
	if err := g.Truncate(1); err != nil {
		t.Fatalf("Truncate(1) = %v; want nil (deletes nothing)", err)
	}
	if _, err := g.SaveSnapshot(2500, []byte("state@2500")); err != nil {
		t.Fatal(err)
	}
	if err := g.Truncate(2502); !errors.Is(err, ErrTruncate) {
		t.Fatalf("Truncate(2502) with snapshot at 2500 = %v; want ErrTruncate", err)
	}
	if err := g.Truncate(2501); err != nil {
		t.Fatalf("Truncate(2501) = %v", err)
	}
	all, err := g.Entries(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 500 || all[0].Instance != 2501 || all[499].Instance != 3000 {
		t.Fatalf("after Truncate(2501): %d entries from %d; want 500 from 2501", len(all), all[0].Instance)
	}
	// Entries honours bounds and maxBytes.
	some, err := g.Entries(2600, 2700, 12)
	if err != nil {
		t.Fatal(err)
	}
	if len(some) != 3 || some[0].Instance != 2600 {
		t.Fatalf("Entries(2600, 2700, 12) = %d entries from %d; want 3 from 2600", len(some), some[0].Instance)
	}
	db.Close()
	st, err := openT(t, dir).Group(3).Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot.Instance != 2500 || st.Chosen != 3000 || len(st.Entries) != 500 || st.Entries[0].Instance != 2501 {
		t.Fatalf("reloaded: snapshot %d chosen %d %d entries; want 2500, 3000, 500", st.Snapshot.Instance, st.Chosen, len(st.Entries))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(1)
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	w, err := g.CreateSnapshot(10)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 4096 {
		if _, err := w.Write(data[off:min(off+4096, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if meta.Instance != 10 || meta.Size != int64(len(data)) {
		t.Fatalf("Commit() = %+v; want instance 10 size %d", meta, len(data))
	}
	if _, err := g.CreateSnapshot(10); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("CreateSnapshot(10) again = %v; want ErrStaleSnapshot", err)
	}
	// An aborted newer snapshot leaves the old one in place.
	w2, err := g.CreateSnapshot(20)
	if err != nil {
		t.Fatal(err)
	}
	w2.Write([]byte("partial"))
	w2.Abort()

	db.Close()
	g = openT(t, dir).Group(1)
	st, err := g.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Snapshot != meta || st.Chosen != 10 {
		t.Fatalf("Load() snapshot %+v chosen %d; want %+v chosen 10", st.Snapshot, st.Chosen, meta)
	}
	r, err := g.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll(snapshot) = %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	files, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(files) != 1 {
		t.Fatalf("snapshot dir has %d files; want 1", len(files))
	}
	// A newer snapshot replaces the old file.
	if _, err := g.SaveSnapshot(30, []byte("thirty")); err != nil {
		t.Fatal(err)
	}
	files, _ = os.ReadDir(filepath.Join(dir, "snapshots"))
	if len(files) != 1 || !strings.HasSuffix(files[0].Name(), fmt.Sprintf("%016x.snap", 30)) {
		t.Fatalf("snapshot dir = %v; want only the snapshot at 30", files)
	}
}

func TestSnapshotBitFlipDetected(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(1)
	if _, err := g.SaveSnapshot(5, []byte("hello snapshot")); err != nil {
		t.Fatal(err)
	}
	path := db.snapshotPath(1, 5)
	b, _ := os.ReadFile(path)
	b[3] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := g.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadAll(flipped snapshot) = %v; want ErrCorrupt", err)
	}
}

// Verify checks a snapshot whole before anyone reads it, and names the
// file it finds corrupt, so that an operator knows what to delete.
func TestSnapshotVerify(t *testing.T) {
	db := openT(t, t.TempDir())
	g := db.Group(1)
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	if _, err := g.SaveSnapshot(7, data); err != nil {
		t.Fatal(err)
	}
	r, err := g.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatalf("Verify(intact snapshot) = %v", err)
	}
	// Verify leaves Read at the start.
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll after Verify = %d bytes, %v; want %d bytes", len(got), err, len(data))
	}

	path := db.snapshotPath(1, 7)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = g.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Verify()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Verify(flipped snapshot) = %v; want ErrCorrupt naming %s", err, path)
	}
}

// TestCorruptJournalFailsOpen damages the leveldb journal (the .log file) of
// a database that was not closed cleanly, and checks that Open refuses it
// instead of dropping the damaged records (which strict mode guarantees).
func TestCorruptJournalFailsOpen(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(1)
	for i := uint64(1); i <= 50; i++ {
		if err := g.Write(Update{Promised: Ballot{Round: i, ID: 1}, Entries: []Entry{ent(i, i, 1, strings.Repeat("v", 100))}}); err != nil {
			t.Fatal(err)
		}
	}
	// Copy the files while the DB is open: this is the state a kill -9
	// leaves behind, with every record still in the journal.
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	db.Close()

	logs, _ := filepath.Glob(filepath.Join(crashed, "leveldb", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("found journals %v; want exactly one", logs)
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	// First check the uncorrupted crash image opens with everything.
	intact := t.TempDir()
	copyDir(t, crashed, intact)
	st, err := openT(t, intact).Group(1).Load()
	if err != nil || len(st.Entries) != 50 || st.Promised.Round != 50 {
		t.Fatalf("intact crash image: %d entries, promise %v, err %v; want 50, round 50, nil", len(st.Entries), st.Promised, err)
	}
	// Flip bytes in the middle of the journal.
	mid := len(b) / 2
	for i := mid; i < mid+8; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(logs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(crashed, Options{})
	if err == nil {
		db2.Close()
		t.Fatal("Open(corrupted journal) = nil error; want ErrCorrupt")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(corrupted journal) = %v; want ErrCorrupt", err)
	}
	t.Logf("Open(corrupted journal) = %v", err)
}

// TestCorruptTableFailsLoad flips a bit in the middle of a LevelDB table
// (written from the journal when the database is opened again) and checks
// that Load, which reads every entry, fails with ErrCorrupt naming the
// table and its directory, rather than dropping the damaged block.
func TestCorruptTableFailsLoad(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	g := db.Group(1)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := uint64(1); i <= 500; i++ {
		v := make([]byte, 200)
		for j := range v {
			v[j] = byte(rnd.Uint32())
		}
		if err := g.Write(Update{Entries: []Entry{ent(i, 1, 1, string(v))}}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	openT(t, dir).Close()
	ldbDir := filepath.Join(dir, "leveldb")
	tables, _ := filepath.Glob(filepath.Join(ldbDir, "*.ldb"))
	if len(tables) != 1 {
		t.Fatalf("tables %v; want the journal written to one", tables)
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	// About 100 KB of blocks of 4 KiB, and an index of one entry a block:
	// the middle is in a data block.
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(tables[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = openT(t, dir).Group(1).Load()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "data-block") {
		t.Fatalf("Load() with a flipped table = %v; want ErrCorrupt in a data block", err)
	}
	if name := filepath.Base(tables[0]); !strings.Contains(err.Error(), ldbDir) || !strings.Contains(err.Error(), name) {
		t.Fatalf("Load() with a flipped table = %v; want it to name %s in %s", err, name, ldbDir)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if d.Name() == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFormatVersion(t *testing.T) {
	t.Run("other version", func(t *testing.T) {
		dir := t.TempDir()
		db := openT(t, dir)
		if err := db.ldb.Put(versionKey, []byte(formatMagic+"\x00\x00\x00\x09"), nil); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "version 9") {
			t.Fatalf("Open(version 9) = %v; want ErrFormat naming version 9", err)
		}
	})
	t.Run("foreign leveldb", func(t *testing.T) {
		dir := t.TempDir()
		ldb, err := leveldb.OpenFile(filepath.Join(dir, "leveldb"), &opt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ldb.Put([]byte("hello"), []byte("world"), nil)
		ldb.Close()
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open(foreign leveldb) = %v; want ErrFormat", err)
		}
	})
	t.Run("empty dir", func(t *testing.T) {
		if _, err := Open("", Options{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf(`Open("") = %v; want ErrInvalid`, err)
		}
	})
}

func TestChecksumMismatchIsCorrupt(t *testing.T) {
	db := openT(t, t.TempDir())
	g := db.Group(1)
	if err := g.Write(Update{Promised: Ballot{Round: 2, ID: 2}, Entries: []Entry{ent(1, 2, 2, "value")}}); err != nil {
		t.Fatal(err)
	}
	// Damage the stored entry value (a bit flip leveldb's own checksums
	// would not see, since we write it through leveldb).
	k := g.entryKey(nil, 1)
	v, _ := db.ldb.Get(k, nil)
	v[len(v)-1] ^= 1
	db.ldb.Put(k, v, nil)
	if _, err := g.Load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load() with flipped entry = %v; want ErrCorrupt", err)
	}
}

func TestClosedAndFailed(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := db.Group(1)
	if err := g.Write(Update{Entries: []Entry{{Instance: 0}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write(instance 0) = %v; want ErrInvalid", err)
	}
	// Simulate a failed sync: the error is sticky and wraps ErrFailed.
	boom := errors.New("fsync: input/output error")
	if err := db.fail("write group 1", boom); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
		t.Fatalf("fail() = %v; want ErrFailed wrapping the cause", err)
	}
	if err := g.Write(Update{Chosen: 1}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Write after failure = %v; want ErrFailed", err)
	}
	if _, err := g.Load(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Load after failure = %v; want ErrFailed", err)
	}
	db.Close()
	if err := g.Write(Update{Chosen: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v; want ErrClosed", err)
	}
}

func BenchmarkSyncedWrite(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("entries=%d/value=64B", n), func(b *testing.B) {
			db := openT(b, b.TempDir())
			g := db.Group(1)
			ents := make([]Entry, n)
			val := bytes.Repeat([]byte{'x'}, 64)
			b.ReportAllocs()
			b.ResetTimer()
			inst := uint64(0)
			for b.Loop() {
				for i := range ents {
					inst++
					ents[i] = Entry{Instance: inst, Ballot: Ballot{Round: 1, ID: 1}, Value: val}
				}
				if err := g.Write(Update{Entries: ents, Chosen: inst}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The rebuild mark survives a reopen until a Write with Rebuilt removes it;
// a group is empty only with no state and no mark.
func TestRebuildMark(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir)
	l := db.Group(1)
	st, err := l.Load()
	if err != nil || !st.IsEmpty() {
		t.Fatalf("new group: IsEmpty = %v, err %v; want true", st.IsEmpty(), err)
	}
	if err := l.MarkRebuild(0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("MarkRebuild(0) = %v; want ErrInvalid", err)
	}
	if err := l.MarkRebuild(77); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Update{Entries: []Entry{ent(1, 2, 1, "x")}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openT(t, dir)
	l = db.Group(1)
	if st, err = l.Load(); err != nil || st.Rebuild != 77 || st.IsEmpty() {
		t.Fatalf("after reopen: Rebuild = %d, IsEmpty = %v, err %v; want 77, false", st.Rebuild, st.IsEmpty(), err)
	}
	if other, _ := db.Group(2).Load(); other.Rebuild != 0 {
		t.Fatalf("group 2 sees group 1's mark: %d", other.Rebuild)
	}
	if err := l.Write(Update{Promised: Ballot{Round: 3, ID: 2}, Rebuilt: true}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openT(t, dir)
	defer db.Close()
	if st, err = db.Group(1).Load(); err != nil || st.Rebuild != 0 || st.Promised != (Ballot{Round: 3, ID: 2}) || len(st.Entries) != 1 {
		t.Fatalf("after Rebuilt: %+v, err %v; want no mark, promise 3.2, one entry", st, err)
	}
}

// A data dir another process (here: another Open) holds is refused with
// ErrInUse, not an obscure lock error.
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db2, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		if db2 != nil {
			db2.Close()
		}
		t.Fatalf("second Open = %v; want ErrInUse", err)
	}
}

// A record with a flag this build does not know is refused, as a build
// older than flagConf refuses a member change's record.
func TestUnknownEntryFlagRefused(t *testing.T) {
	e := Entry{Instance: 1, Ballot: Ballot{Round: 1, ID: 1}, Value: []byte("v"), Conf: true}
	rec := sealEntry(nil, &e)
	if got, ok := openEntry(1, rec); !ok || !got.Conf || got.Noop {
		t.Fatalf("openEntry(sealEntry(Conf)) = %+v, %v; want Conf", got, ok)
	}
	p := append([]byte(nil), rec[4:]...)
	p[16] |= 1 << 2
	bad := finishSeal(append([]byte{0, 0, 0, 0}, p...))
	if _, ok := openEntry(1, bad); ok {
		t.Fatalf("openEntry accepted a record with an unknown flag")
	}
}
