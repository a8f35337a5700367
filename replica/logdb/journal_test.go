package logdb

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
	"go.uber.org/goleak"
)

// journals returns the journal files of the DB in dir.
func journals(t *testing.T, dir string) []string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "leveldb", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return logs
}

func writeEntry(t *testing.T, g *Log, i uint64, size int) {
	t.Helper()
	v := bytes.Repeat([]byte{byte(i)}, size)
	if err := g.Write(Update{Promised: Ballot{Round: i, ID: 1}, Entries: []Entry{{Instance: i, Ballot: Ballot{Round: i, ID: 1}, Value: v}}}); err != nil {
		t.Fatal(err)
	}
}

func checkEntries(t *testing.T, dir string, n uint64) {
	t.Helper()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	st, err := db.Group(1).Load()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(st.Entries)) != n || st.Promised.Round != n {
		t.Fatalf("reopened: %d entries, promise %v; want %d", len(st.Entries), st.Promised, n)
	}
	for _, e := range st.Entries {
		if len(e.Value) == 0 || e.Value[0] != byte(e.Instance) {
			t.Fatalf("entry %d holds %d bytes starting %v", e.Instance, len(e.Value), e.Value[:min(len(e.Value), 4)])
		}
	}
}

// TestJournalPreallocated: a journal in use has a zero region ahead of its
// records; a crash image (copied while open) opens with every synced write,
// and a journal closed cleanly ends with its last record.
func TestJournalPreallocated(t *testing.T) {
	src := t.TempDir()
	db := openT(t, src)
	g := db.Group(1)
	writeEntry(t, g, 1, 100)
	logs := journals(t, src)
	if len(logs) != 1 {
		t.Fatalf("journals %v; want one", logs)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		fi, err := os.Stat(logs[0])
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= journalAheadMin {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal is %d bytes after 20 s; want the %d-byte zero region ahead", fi.Size(), journalAheadMin)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := uint64(2); i <= 50; i++ {
		writeEntry(t, g, i, 1000)
	}
	crash := t.TempDir()
	copyDir(t, src, crash)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range journals(t, src) {
		b, _ := os.ReadFile(p)
		if good, err := scanJournal(b); err != nil || good != len(b) {
			t.Errorf("%s after a clean close: %d bytes, whole records up to %d (%v); want no zero tail", p, len(b), good, err)
		}
	}
	checkEntries(t, crash, 50)
	checkEntries(t, src, 50)
}

// TestJournalRotation: with a small write buffer leveldb moves to a new
// journal every few writes (closing each with its zeros cut); a crash image
// taken after many rotations holds every write, as does a clean reopen.
func TestJournalRotation(t *testing.T) {
	src := t.TempDir()
	db, err := Open(src, Options{WriteBuffer: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	g := db.Group(1)
	const n = 400
	for i := uint64(1); i <= n-5; i++ {
		writeEntry(t, g, i, 2000)
	}
	// Let compaction finish, so that the copy below is not torn between
	// a manifest and the tables it names, then write into the new journal.
	if err := db.ldb.CompactRange(util.Range{}); err != nil {
		t.Fatal(err)
	}
	for i := uint64(n - 4); i <= n; i++ {
		writeEntry(t, g, i, 2000)
	}
	crash := t.TempDir()
	copyDir(t, src, crash)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, crash, n)
	checkEntries(t, src, n)
}

// TestTornInsideRegion: a record torn inside the preallocated region (a
// sector of it never written, zeros after it) is a torn tail; a record
// damaged otherwise, zeros after it or not, is corruption.
func TestTornInsideRegion(t *testing.T) {
	region := make([]byte, 64<<10)
	cases := []struct {
		name string
		tear func(b []byte) []byte
		torn bool
	}{
		{"last sector of the record unwritten", func(b []byte) []byte {
			clear(b[len(b)-300:])
			return append(b, region...)
		}, true},
		{"bit flipped in the last record", func(b []byte) []byte {
			b[len(b)-300] ^= 0x10
			return append(b, region...)
		}, false},
		{"last sector unwritten, data after the region's start", func(b []byte) []byte {
			clear(b[len(b)-300:])
			return append(append(b, region...), 1)
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Entry 20 is 120 KiB: four journal blocks, the last record.
			dir, journal := crashImage(t, 20, 20, 120_000)
			b, _ := os.ReadFile(journal)
			if err := os.WriteFile(journal, tc.tear(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if !tc.torn {
				if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v; want ErrCorrupt", err)
				}
				return
			}
			checkEntries(t, dir, 19)
		})
	}
}

func TestTornInRegionSectors(t *testing.T) {
	b := bytes.Repeat([]byte{7}, 2048)
	copy(b[1024:], make([]byte, 1024)) // sectors 2 and 3 unwritten
	if !tornInRegion(b, 600, 1100) {
		t.Error("chunk [600,1100) whose piece [1024,1100) is zeros, zeros after: want torn")
	}
	if tornInRegion(b, 100, 1000) {
		t.Error("chunk [100,1000) with no zero piece: want not torn")
	}
	b[2000] = 1
	if tornInRegion(b, 600, 1100) {
		t.Error("chunk followed by data: want not torn")
	}
	h := bytes.Repeat([]byte{7}, 1024)
	clear(h[512:])
	if !tornInRegion(h, 508, 515) {
		t.Error("header [508,515) across a sector boundary, its second piece zero: want torn")
	}
}

// failingFile fails writes of zeros at or beyond failAt, as a full disk
// fails the grower's writes.
type failingFile struct {
	*os.File
	failAt int64
}

func (f *failingFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.failAt && allZero(p) {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

// TestJournalWriterGrowerFails: once the grower cannot write (the disk
// full), leveldb's writes go on appending; the file holds exactly what was
// written, and Close cuts the zeros left ahead.
func TestJournalWriterGrowerFails(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "000001.log"))
	if err != nil {
		t.Fatal(err)
	}
	ff := &failingFile{File: f, failAt: 256 << 10}
	w := newJournalWriter(f, ff, 32<<10, 128<<10, slog.New(slog.DiscardHandler))
	var want []byte
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i + 1)}, 4000)
		if _, err := w.Write(p); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if err := w.Sync(); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		want = append(want, p...)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes; want the %d written", len(got), len(want))
	}
	if err := w.Close(); err == nil {
		t.Fatalf("second Close = nil; want an error")
	}
}

// TestZeroTailOfOlderJournalTrimmed: a crash between leveldb creating its
// next journal and the cut of the previous one leaves the zero tail in a
// journal that is not the newest, which the torn-tail repair does not touch.
// Open trims it.
func TestZeroTailOfOlderJournalTrimmed(t *testing.T) {
	dir, journal := crashImage(t, 10, 0, 0)
	f, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var num int
	if _, err := fmt.Sscanf(filepath.Base(journal), "%d.log", &num); err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(filepath.Dir(journal), fmt.Sprintf("%06d.log", num+1))
	if err := os.WriteFile(next, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, dir, 10)
}

// BenchmarkJournalSync is the primitive under the preallocated journal: a
// 4 KiB write and its sync, appended (the file grows: fsync commits the size
// too) or over zeros already synced (fdatasync flushes the data alone).
func BenchmarkJournalSync(b *testing.B) {
	buf := bytes.Repeat([]byte{'x'}, 4096)
	for _, region := range []bool{false, true} {
		name := "append+fsync"
		if region {
			name = "region+fdatasync"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "j"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			const size = 64 << 20
			if region {
				for off := int64(0); off < size; off += zeroPiece {
					if _, err := f.WriteAt(zeros, off); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			off := int64(0)
			for b.Loop() {
				if _, err := f.WriteAt(buf, off%size); err != nil {
					b.Fatal(err)
				}
				off += int64(len(buf))
				if region {
					err = fdatasync(f)
				} else {
					err = f.Sync()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStorageCloseStopsGrowers: a journal leveldb left open (its Open
// failed half-way) does not keep its grower running, nor Close waiting.
func TestStorageCloseStopsGrowers(t *testing.T) {
	dir := t.TempDir()
	st, err := openStorage(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.Create(storage.FileDesc{Type: storage.TypeJournal, Num: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*journalWriter); !ok {
		t.Fatalf("journal writer is %T; want the preallocating *journalWriter", w)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(ignoreLevelDB); err != nil {
		t.Fatal(err)
	}
}

// TestJournalSyncErrorNamesFile: a failed sync says which file, as the
// operator needs (the disk tests S17/S18 check latchd's last words).
func TestJournalSyncErrorNamesFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "000001.log"))
	if err != nil {
		t.Fatal(err)
	}
	w := newJournalWriter(f, f, 32<<10, 32<<10, slog.New(slog.DiscardHandler))
	w.stopGrowing()
	f.Close() // the sync below fails with EBADF
	err = w.Sync()
	if err == nil || !strings.Contains(err.Error(), f.Name()) {
		t.Fatalf("Sync of a closed file = %v; want an error naming %s", err, f.Name())
	}
}
