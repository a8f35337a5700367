package logdb

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// crashImage writes entries 1..n (entry big has a value of bigSize bytes,
// spanning several journal blocks) and returns a copy of the directory
// taken while the DB is still open, what a kill -9 leaves behind, with the
// journal's preallocated zeros cut off.
func crashImage(t *testing.T, n, big uint64, bigSize int) (dir, journal string) {
	t.Helper()
	src := t.TempDir()
	db := openT(t, src)
	g := db.Group(1)
	for i := uint64(1); i <= n; i++ {
		size := 100
		if i == big {
			size = bigSize
		}
		writeEntry(t, g, i, size)
	}
	dir = t.TempDir()
	copyDir(t, src, dir)
	db.Close()
	logs, _ := filepath.Glob(filepath.Join(dir, "leveldb", "*.log"))
	if len(logs) != 1 {
		t.Fatalf("journals %v; want one", logs)
	}
	cutRegion(t, logs[0])
	return dir, logs[0]
}

// cutRegion cuts the preallocated zero region (journal.go) off a crash
// image's journal, leaving what goleveldb wrote, for tests that tear it.
func cutRegion(t *testing.T, journal string) {
	t.Helper()
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	good, err := scanJournal(b)
	if err != nil || !allZero(b[good:]) {
		t.Fatalf("crash image journal: scan %d of %d bytes, %v; want whole records then zeros", good, len(b), err)
	}
	if err := os.Truncate(journal, int64(good)); err != nil {
		t.Fatal(err)
	}
}

func TestTornTailIsRepaired(t *testing.T) {
	cases := []struct {
		name string
		tear func(b []byte) []byte
	}{
		{"record cut between blocks", func(b []byte) []byte { return b[:len(b)-50_000] }},
		{"chunk cut mid-data", func(b []byte) []byte { return b[:len(b)-10] }},
		{"chunk header cut", func(b []byte) []byte {
			// Cut to a few bytes into the last block's first header.
			last := (len(b) - 1) / jBlockSize * jBlockSize
			return b[:last+3]
		}},
		{"zero-filled tail", func(b []byte) []byte {
			cut := b[:len(b)-50_000]
			return append(cut, make([]byte, 4096)...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Entry 20 is 120 KiB: four journal blocks, the last record.
			dir, journal := crashImage(t, 20, 20, 120_000)
			b, _ := os.ReadFile(journal)
			if err := os.WriteFile(journal, tc.tear(b), 0o644); err != nil {
				t.Fatal(err)
			}
			checkEntries(t, dir, 19) // the tail repaired: the 19 complete writes
		})
	}
}

func TestTornTailNotNewestOrMidJournalFails(t *testing.T) {
	// A damaged complete record followed by a torn one is corruption, not
	// a torn tail.
	dir, journal := crashImage(t, 20, 20, 120_000)
	b, _ := os.ReadFile(journal)
	b = b[:len(b)-50_000]
	b[100] ^= 0x5a // inside an early, complete record
	if err := os.WriteFile(journal, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open(damaged + torn journal) = %v; want ErrCorrupt", err)
	}
}

func TestScanJournal(t *testing.T) {
	_, journal := crashImage(t, 5, 0, 0)
	b, _ := os.ReadFile(journal)
	good, err := scanJournal(b)
	if err != nil || good != len(b) {
		t.Fatalf("scanJournal(clean) = %d, %v; want %d, nil", good, err, len(b))
	}
	// A zero header followed by data is not a torn tail.
	bad := append(append(bytes.Clone(b), make([]byte, 7)...), 1, 2, 3)
	if _, err := scanJournal(bad); !errors.Is(err, errNotTorn) {
		t.Fatalf("scanJournal(zeros then data) = %v; want errNotTorn", err)
	}
}
