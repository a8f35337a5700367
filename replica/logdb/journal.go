package logdb

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/syndtr/goleveldb/leveldb/storage"
)

// Preallocated journals.
//
// Every synced write appends to leveldb's journal. An append grows the file,
// so its fsync must also commit the new size and block map through the
// filesystem's own journal: a second device flush where one would do. etcd's
// WAL avoids it by preallocating its segments. goleveldb cannot, but it does
// all its file I/O through a storage.Storage: journalStorage keeps a region
// of zeros, written and synced in the background, ahead of the journal's
// end. leveldb's writes overwrite those zeros, so neither the size nor the
// block map changes and fdatasync flushes the data alone. On the machine of
// docs/benchmarks.md a synced 4 KiB write then takes 0.30 ms instead of 0.51
// (three writers sharing the disk: 0.60 ms instead of 0.84).
//
// Durability never depends on the region. fdatasync flushes whatever
// metadata a write needs to be read back, so a write beyond the region (the
// grower behind, or the disk full) costs what it always did and is as
// durable. What changes is what a crash leaves: a journal ending in zeros.
// Open trims a zero tail that starts where a record would (trimZeroTails)
// before goleveldb reads the journal, and scanJournal recognises a record
// torn inside the region (repair.go).

// Preallocation sizes.
const (
	// journalAhead is the most zeros kept ahead of a journal's end: about
	// a hundred milliseconds of writes at full speed, and no more, since a
	// replica whose disk fills up goes on writing into the region before
	// it stops (4 MiB made the disk-full test take 90-125 s instead of
	// 32; 1 MiB, 48 s). A new journal
	// starts with journalAheadMin and the region doubles at each top-up,
	// so an idle replica (or a test) writes little more than it uses.
	// The grower tops the region up once less than half is left.
	journalAhead    = 1 << 20
	journalAheadMin = 256 << 10
	// zeroPiece is what the grower writes under the writer's lock at a
	// time, so a leveldb write never waits behind more than one piece.
	zeroPiece = 64 << 10
)

var zeros = make([]byte, zeroPiece)

// journalStorage is goleveldb's file storage with preallocated journals.
type journalStorage struct {
	storage.Storage
	ahead int64 // most bytes of zeros kept ahead of a journal's end; 0: none
	log   *slog.Logger

	mu   sync.Mutex
	live map[*journalWriter]struct{} // journals not closed yet
}

// journalFile is what journalWriter needs of the file goleveldb's storage
// opened: its *os.File's methods, which its writer type embeds.
type journalFile interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Fd() uintptr
	Name() string
}

// Create creates a file as goleveldb's storage does, and for a journal
// starts keeping a zero region ahead of its end.
func (s *journalStorage) Create(fd storage.FileDesc) (storage.Writer, error) {
	w, err := s.Storage.Create(fd)
	if err != nil || fd.Type != storage.TypeJournal || s.ahead <= 0 {
		return w, err
	}
	f, ok := w.(journalFile)
	if !ok {
		return w, nil // not goleveldb's file storage: plain appends
	}
	jw := newJournalWriter(w, f, min(s.ahead, journalAheadMin), s.ahead, s.log)
	s.mu.Lock()
	if s.live == nil {
		s.live = make(map[*journalWriter]struct{})
	}
	s.live[jw] = struct{}{}
	s.mu.Unlock()
	jw.onClose = func() {
		s.mu.Lock()
		delete(s.live, jw)
		s.mu.Unlock()
	}
	return jw, nil
}

// Close stops the growers of journals leveldb left open (it closes every
// journal first, unless its Open failed half-way) and closes the storage.
func (s *journalStorage) Close() error {
	s.mu.Lock()
	live := s.live
	s.live = nil
	s.mu.Unlock()
	for jw := range live {
		jw.stopGrowing()
	}
	return s.Storage.Close()
}

// journalWriter writes a journal at explicit offsets, over the zeros its
// grower keeps ahead, and syncs it with fdatasync.
type journalWriter struct {
	storage.Writer
	f        journalFile
	max      int64 // the most ahead may grow to
	log      *slog.Logger
	grow     chan struct{} // buffered: wakes the grower
	stop     chan struct{} // closed by stopGrowing
	stopOnce sync.Once
	done     chan struct{} // closed when the grower has returned
	onClose  func()        // called by Close; nil: nothing to tell

	mu       sync.Mutex
	off      int64 // end of what leveldb wrote
	filled   int64 // end of the zeros written ahead (maybe not yet synced)
	ahead    int64 // the region's size the grower keeps: doubles to max
	isClosed bool
}

// newJournalWriter wraps w, whose file is f, and starts its grower with a
// region of ahead bytes, growing to max.
func newJournalWriter(w storage.Writer, f journalFile, ahead, max int64, lg *slog.Logger) *journalWriter {
	jw := &journalWriter{
		Writer: w,
		f:      f,
		ahead:  ahead,
		max:    max,
		log:    lg,
		grow:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	jw.grow <- struct{}{}
	go jw.grower()
	return jw
}

// stopGrowing stops the grower and waits for it to return.
func (w *journalWriter) stopGrowing() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

// Write appends p at the journal's end, waking the grower once less than
// half the zero region is left.
func (w *journalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	low := w.filled-w.off < w.ahead/2
	w.mu.Unlock()
	if low {
		select {
		case w.grow <- struct{}{}:
		default:
		}
	}
	return n, err
}

// Sync makes everything written durable. Within the synced zero region
// that is the data alone.
func (w *journalWriter) Sync() error { return fdatasync(w.f) }

// Close stops the grower, cuts the zeros it left beyond the last record
// and syncs the cut, so a journal closed cleanly (rotated or at shutdown)
// is exactly what goleveldb wrote, then closes the file.
func (w *journalWriter) Close() error {
	w.mu.Lock()
	if w.isClosed {
		w.mu.Unlock()
		return storage.ErrClosed
	}
	w.isClosed = true
	w.mu.Unlock()
	w.stopGrowing()
	if w.onClose != nil {
		w.onClose()
	}
	w.mu.Lock()
	off, filled := w.off, w.filled
	w.mu.Unlock()
	var err error
	if filled > off {
		if err = w.f.Truncate(off); err == nil {
			err = w.f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("logdb: cut the preallocated tail of %s: %w", w.f.Name(), err)
		}
	}
	return errors.Join(err, w.Writer.Close())
}

// grower keeps the zero region ahead of the journal's end topped up until
// Close. A failure to grow (the disk full) only ends the preallocation:
// leveldb's writes then append as they would without it, and fail there
// if they must.
func (w *journalWriter) grower() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.grow:
		}
		grew, err := w.fill()
		if err == nil && grew {
			err = w.f.Sync() // the region's size and blocks, once per top-up
		}
		if err != nil {
			w.log.Debug("logdb: journal preallocation stopped; writes append", "file", w.f.Name(), "err", err)
			return
		}
	}
}

// fill writes zeros, a piece at a time under the writer's lock, until the
// region reaches w.ahead beyond the journal's end, then doubles w.ahead
// (up to w.max) for the next top-up. It reports whether it wrote any.
func (w *journalWriter) fill() (grew bool, err error) {
	for {
		select {
		case <-w.stop:
			return grew, nil
		default:
		}
		w.mu.Lock()
		start := max(w.filled, w.off)
		if start-w.off >= w.ahead {
			w.ahead = min(2*w.ahead, w.max)
			w.mu.Unlock()
			return grew, nil
		}
		_, err := w.f.WriteAt(zeros, start)
		if err == nil {
			w.filled = start + zeroPiece
		}
		w.mu.Unlock()
		if err != nil {
			return grew, err
		}
		grew = true
	}
}

// trimZeroTails cuts, from every journal in dir, a tail of zeros that
// begins after the last whole record: the unused part of a preallocated
// region, left by a crash (or by a cut that did not reach the disk). It
// leaves every other journal as it is, for goleveldb to read or to refuse.
func trimZeroTails(dir string, lg *slog.Logger) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return err
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("logdb: read %s: %w", p, err)
		}
		good, err := scanJournal(b)
		if err != nil || good == len(b) || !allZero(b[good:]) {
			continue
		}
		if err := truncateSync(p, int64(good)); err != nil {
			return fmt.Errorf("logdb: cut the zero tail of %s: %w", p, err)
		}
		lg.Debug("logdb: cut the unused preallocated tail of a journal", "file", p, "bytes", len(b)-good)
	}
	return nil
}

// truncateSync truncates the file at path to size and syncs it.
func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}
