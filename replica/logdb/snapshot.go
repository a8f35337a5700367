package logdb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Snapshot returns the meta of the group's latest durable snapshot, or
// ErrNoSnapshot.
func (l *Log) Snapshot() (SnapshotMeta, error) {
	if err := l.db.usable(); err != nil {
		return SnapshotMeta{}, err
	}
	p, ok, err := l.get(l.keySnapshot)
	if err != nil {
		return SnapshotMeta{}, err
	}
	if !ok {
		return SnapshotMeta{}, fmt.Errorf("%w: group %d", ErrNoSnapshot, l.group)
	}
	if len(p) != 20 {
		return SnapshotMeta{}, fmt.Errorf("%w: group %d: snapshot meta of %d bytes", ErrCorrupt, l.group, len(p))
	}
	return SnapshotMeta{
		Instance: binary.BigEndian.Uint64(p),
		Size:     int64(binary.BigEndian.Uint64(p[8:])),
		CRC:      binary.BigEndian.Uint32(p[16:]),
	}, nil
}

func sealSnapshotMeta(dst []byte, m SnapshotMeta) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, m.Instance)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Size))
	dst = binary.BigEndian.AppendUint32(dst, m.CRC)
	return finishSeal(dst)
}

// snapshotPrefix is the file-name prefix of group's snapshot files.
func snapshotPrefix(group uint32) string { return fmt.Sprintf("g%08x-", group) }

func (db *DB) snapshotPath(group uint32, instance uint64) string {
	return filepath.Join(db.snapDir, fmt.Sprintf("%s%016x.snap", snapshotPrefix(group), instance))
}

// removeStaleSnapshots deletes the group's snapshot files (and temporaries)
// other than the one for instance keep.
func (db *DB) removeStaleSnapshots(group uint32, keep uint64) error {
	ents, err := os.ReadDir(db.snapDir)
	if err != nil {
		return err
	}
	keepName := filepath.Base(db.snapshotPath(group, keep))
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, snapshotPrefix(group)) || name == keepName {
			continue
		}
		if err := os.Remove(filepath.Join(db.snapDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SaveSnapshot stores data as the group's snapshot at instance; see
// CreateSnapshot.
func (l *Log) SaveSnapshot(instance uint64, data []byte) (SnapshotMeta, error) {
	w, err := l.CreateSnapshot(instance)
	if err != nil {
		return SnapshotMeta{}, err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return SnapshotMeta{}, err
	}
	return w.Commit()
}

// SnapshotWriter streams a snapshot to a temporary file. Commit makes it the
// group's snapshot; Abort discards it. Exactly one of them must be called.
type SnapshotWriter struct {
	l        *Log
	instance uint64
	f        *os.File
	bw       *bufio.Writer
	tmp      string
	size     int64
	crc      uint32
	err      error
	done     bool
}

// CreateSnapshot starts a snapshot of the state after instance (which must be
// above the stored snapshot's, else ErrStaleSnapshot).
func (l *Log) CreateSnapshot(instance uint64) (*SnapshotWriter, error) {
	if err := l.db.usable(); err != nil {
		return nil, err
	}
	if instance == 0 {
		return nil, fmt.Errorf("%w: snapshot at instance 0 (group %d)", ErrInvalid, l.group)
	}
	cur, err := l.Snapshot()
	if err != nil && !errors.Is(err, ErrNoSnapshot) {
		return nil, err
	}
	if instance <= cur.Instance {
		return nil, fmt.Errorf("%w: group %d: offered %d, stored %d", ErrStaleSnapshot, l.group, instance, cur.Instance)
	}
	f, err := os.CreateTemp(l.db.snapDir, snapshotPrefix(l.group)+"*.tmp")
	if err != nil {
		return nil, fmt.Errorf("logdb: create snapshot file: %w", err)
	}
	return &SnapshotWriter{l: l, instance: instance, f: f, bw: bufio.NewWriterSize(f, 256<<10), tmp: f.Name()}, nil
}

// Write appends p to the snapshot.
func (w *SnapshotWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("%w: write to a finished snapshot", ErrInvalid)
	}
	n, err := w.bw.Write(p)
	w.size += int64(n)
	w.crc = crc32.Update(w.crc, castagnoli, p[:n])
	if err != nil {
		w.err = w.l.db.fail("write snapshot file", err)
		return n, w.err
	}
	return n, nil
}

// Sum returns the size and CRC-32C of what was written so far, so a receiver
// can check a transferred snapshot before committing it.
func (w *SnapshotWriter) Sum() (size int64, crc uint32) { return w.size, w.crc }

// Commit makes the snapshot durable and records it: the file is synced,
// renamed into place and the directory synced, and only then is the meta
// written (synced) to leveldb. The previous snapshot file is removed after.
// A sync error is fatal for the DB, as for Log.Write.
func (w *SnapshotWriter) Commit() (SnapshotMeta, error) {
	if w.done {
		return SnapshotMeta{}, fmt.Errorf("%w: snapshot already finished", ErrInvalid)
	}
	if w.err != nil {
		w.Abort()
		return SnapshotMeta{}, w.err
	}
	w.done = true
	db, l := w.l.db, w.l
	fail := func(op string, err error) (SnapshotMeta, error) {
		w.f.Close()
		os.Remove(w.tmp)
		return SnapshotMeta{}, db.fail(op, err)
	}
	if err := w.bw.Flush(); err != nil {
		return fail("write snapshot file", err)
	}
	if err := w.f.Sync(); err != nil {
		return fail("sync snapshot file", err)
	}
	if err := w.f.Close(); err != nil {
		return fail("close snapshot file", err)
	}
	meta := SnapshotMeta{Instance: w.instance, Size: w.size, CRC: w.crc}
	final := db.snapshotPath(l.group, w.instance)

	l.mu.Lock()
	defer l.mu.Unlock()
	cur, err := l.Snapshot()
	if err != nil && !errors.Is(err, ErrNoSnapshot) {
		os.Remove(w.tmp)
		return SnapshotMeta{}, err
	}
	if w.instance <= cur.Instance {
		os.Remove(w.tmp)
		return SnapshotMeta{}, fmt.Errorf("%w: group %d: offered %d, stored %d", ErrStaleSnapshot, l.group, w.instance, cur.Instance)
	}
	if err := os.Rename(w.tmp, final); err != nil {
		os.Remove(w.tmp)
		return SnapshotMeta{}, db.fail("rename snapshot file", err)
	}
	if err := syncDir(db.snapDir); err != nil {
		return SnapshotMeta{}, db.fail("sync snapshot directory", err)
	}
	v := sealSnapshotMeta(nil, meta)
	if err := db.ldb.Put(l.keySnapshot, v, db.wsync); err != nil {
		return SnapshotMeta{}, db.fail(fmt.Sprintf("write snapshot meta of group %d", l.group), err)
	}
	if cur.Instance != 0 {
		if err := os.Remove(db.snapshotPath(l.group, cur.Instance)); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.log.Warn("logdb: could not remove old snapshot", "group", l.group, "err", err)
		}
	}
	return meta, nil
}

// Abort discards the snapshot. It is safe to call after Commit (no-op).
func (w *SnapshotWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SnapshotReader reads the group's stored snapshot. Verify checks the whole
// file against the size and CRC in its meta; Read checks them again at the
// end (ErrCorrupt on mismatch); ReadAt serves chunks for a transfer, whose
// receiver checks the sum itself.
type SnapshotReader struct {
	meta SnapshotMeta
	path string
	f    *os.File
	r    *bufio.Reader
	off  int64
	crc  uint32
}

// OpenSnapshot opens the group's latest snapshot (ErrNoSnapshot if none).
// The caller must Close it.
func (l *Log) OpenSnapshot() (*SnapshotReader, error) {
	meta, err := l.Snapshot()
	if err != nil {
		return nil, err
	}
	path := l.db.snapshotPath(l.group, meta.Instance)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: group %d: snapshot %d recorded but unreadable: %w", ErrCorrupt, l.group, meta.Instance, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logdb: stat snapshot: %w", err)
	}
	if fi.Size() != meta.Size {
		f.Close()
		return nil, fmt.Errorf("%w: group %d: snapshot %d has %d bytes, meta says %d (%s)", ErrCorrupt, l.group, meta.Instance, fi.Size(), meta.Size, path)
	}
	return &SnapshotReader{meta: meta, path: path, f: f, r: bufio.NewReaderSize(f, 256<<10)}, nil
}

// Meta returns the snapshot's meta.
func (r *SnapshotReader) Meta() SnapshotMeta { return r.meta }

// Read reads the snapshot sequentially, verifying its checksum at the end.
func (r *SnapshotReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	r.off += int64(n)
	if errors.Is(err, io.EOF) && (r.off != r.meta.Size || r.crc != r.meta.CRC) {
		return n, r.corrupt()
	}
	return n, err
}

// Verify reads the whole file, apart from Read's position, and checks it
// against the meta (ErrCorrupt naming the file on mismatch). A caller that
// hands the snapshot on, to a state machine or a peer, verifies it first,
// so that bytes it was not written with are never restored or sent: Read
// finds a mismatch only at the end, after a state machine has taken in
// the bad bytes (and perhaps failed on them, for a reason of its own).
func (r *SnapshotReader) Verify() error {
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, io.NewSectionReader(r.f, 0, r.meta.Size+1))
	if err != nil {
		return fmt.Errorf("logdb: read snapshot %d (%s): %w", r.meta.Instance, r.path, err)
	}
	if n != r.meta.Size || h.Sum32() != r.meta.CRC {
		return r.corrupt()
	}
	return nil
}

func (r *SnapshotReader) corrupt() error {
	return fmt.Errorf("%w: snapshot %d fails its checksum (%s)", ErrCorrupt, r.meta.Instance, r.path)
}

// ReadAt reads len(p) bytes at off, without verification.
func (r *SnapshotReader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Close closes the file.
func (r *SnapshotReader) Close() error { return r.f.Close() }
