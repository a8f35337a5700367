package logdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/latchd/latch/replica/paxos"
)

// Errors returned by this package. Test for them with errors.Is.
var (
	// ErrFormat means the directory holds a database of another format
	// version (or something that is not a logdb at all).
	ErrFormat = errors.New("logdb: unsupported format")
	// ErrCorrupt means stored data failed a checksum or could not be
	// decoded, including a damaged leveldb journal or manifest on Open.
	ErrCorrupt = errors.New("logdb: corrupt data")
	// ErrFailed means an earlier write or sync failed. The DB refuses every
	// later write; the replica must stop and recover from disk.
	ErrFailed = errors.New("logdb: database failed")
	// ErrClosed means the DB was closed.
	ErrClosed = errors.New("logdb: closed")
	// ErrTruncate means Truncate was asked to delete entries the latest
	// durable snapshot does not cover.
	ErrTruncate = errors.New("logdb: truncate above the snapshot")
	// ErrNoSnapshot means the group has no snapshot.
	ErrNoSnapshot = errors.New("logdb: no snapshot")
	// ErrStaleSnapshot means a snapshot was offered that is not newer than
	// the one already stored.
	ErrStaleSnapshot = errors.New("logdb: snapshot not newer than the stored one")
	// ErrInvalid means an argument breaks the API's contract (for example
	// instance 0, which is never used).
	ErrInvalid = errors.New("logdb: invalid argument")
	// ErrInUse means another process (a running replica) has the
	// directory's database open: leveldb's lock file is held.
	ErrInUse = errors.New("logdb: the data dir is in use by another process")
)

// FormatVersion is the on-disk format this package reads and writes.
const FormatVersion = 1

// formatMagic prefixes the format-version value so that a leveldb database
// written by someone else is recognised as foreign rather than as an old
// version.
const formatMagic = "latch-logdb"

// Ballot and Entry are the protocol core's types, stored as they are: what
// a Ready asks to persist goes to Write unchanged, and what Load returns goes
// to paxos.New.
type (
	Ballot = paxos.Ballot
	Entry  = paxos.Entry
)

// Update is what one Log.Write stores, all or nothing. An Update with a
// promise or entries is synced; one that only raises the chosen mark is not
// (the mark can be re-learned from peers, so losing it in an OS crash is
// harmless).
type Update struct {
	// Promised is the new promised ballot; the zero Ballot leaves it as is.
	Promised Ballot
	// Entries are accepted entries to store, replacing any stored entry of
	// the same instance.
	Entries []Entry
	// Chosen is the new chosen mark; 0 leaves it as is.
	Chosen uint64
	// Rebuilt removes the rebuild mark (Log.MarkRebuild): the group no
	// longer rebuilds lost state. Such a write is synced.
	Rebuilt bool
}

// IsEmpty reports whether u would write nothing.
func (u *Update) IsEmpty() bool {
	return u.Promised.IsZero() && len(u.Entries) == 0 && u.Chosen == 0 && !u.Rebuilt
}

// SnapshotMeta describes a durable snapshot.
type SnapshotMeta struct {
	// Instance is the last instance the snapshot covers: the state machine
	// state after applying instances 1..Instance.
	Instance uint64
	// Size is the number of bytes of snapshot data.
	Size int64
	// CRC is the CRC-32C (Castagnoli) of the data.
	CRC uint32
}

// State is what Load recovers for one group.
type State struct {
	// Promised is the highest ballot ever promised (zero if none).
	Promised Ballot
	// Chosen is the chosen mark: every instance at or below it is chosen.
	// It is at least Snapshot.Instance.
	Chosen uint64
	// Snapshot is the latest durable snapshot (zero Instance if none).
	Snapshot SnapshotMeta
	// Entries are the accepted entries above Snapshot.Instance, ascending.
	Entries []Entry
	// Rebuild is the rebuild mark's nonce (Log.MarkRebuild), 0 if none.
	Rebuild uint64
}

// IsEmpty reports whether the group holds no state at all: nothing
// promised, accepted, chosen or snapshotted, and no rebuild under way. A
// group is empty on a new disk, or on one that lost its data.
func (st *State) IsEmpty() bool {
	return st.Promised.IsZero() && st.Chosen == 0 && st.Snapshot.Instance == 0 && len(st.Entries) == 0 && st.Rebuild == 0
}

// Options tune Open. The zero value is usable.
type Options struct {
	// Logger receives state transitions (open, failure). Nil discards.
	Logger *slog.Logger
	// WriteBuffer is leveldb's memtable size in bytes; 0 means 16 MiB.
	WriteBuffer int
	// BlockCacheCapacity is leveldb's block cache in bytes; 0 means 8 MiB.
	BlockCacheCapacity int
}

// DB is one leveldb database holding the logs of every group of a process.
type DB struct {
	dir     string
	snapDir string
	ldb     *leveldb.DB
	stor    *journalStorage // ldb's storage; closed after ldb
	log     *slog.Logger
	wsync   *opt.WriteOptions
	wnosync *opt.WriteOptions

	failed atomic.Pointer[error] // first fatal error, sticky
	closed atomic.Bool

	mu     sync.Mutex
	groups map[uint32]*Log
}

// Key layout. Every key starts with one kind byte:
//
//	0x00 'v'                               format version
//	0x01 group(4) 'a' instance(8)          accepted entry
//	0x01 group(4) 'c'                      chosen mark
//	0x01 group(4) 'p'                      promised ballot
//	0x01 group(4) 'r'                      rebuild mark (nonce)
//	0x01 group(4) 's'                      snapshot meta
//
// All integers are big-endian, so iteration order is numeric order.
const (
	kindMeta  = 0x00
	kindGroup = 0x01

	subEntry    = 'a'
	subChosen   = 'c'
	subPromised = 'p'
	subRebuild  = 'r'
	subSnapshot = 's'

	groupPrefixLen = 1 + 4
	entryKeyLen    = groupPrefixLen + 1 + 8
)

var versionKey = []byte{kindMeta, 'v'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Open opens (creating if needed) the log database in dir. The leveldb files
// live in dir/leveldb and snapshot files in dir/snapshots.
//
// The database is opened with every strict flag, so a damaged journal,
// manifest or table is an error wrapping ErrCorrupt, never silently dropped
// data. A database of another format fails with ErrFormat.
func Open(dir string, o Options) (*DB, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty directory", ErrInvalid)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	snapDir := filepath.Join(dir, "snapshots")
	if err := os.MkdirAll(snapDir, 0o755); err != nil {
		return nil, fmt.Errorf("logdb: create %s: %w", snapDir, err)
	}
	wb := o.WriteBuffer
	if wb <= 0 {
		wb = 16 << 20
	}
	bc := o.BlockCacheCapacity
	if bc <= 0 {
		bc = 8 << 20
	}
	ldbDir := filepath.Join(dir, "leveldb")
	lopt := &opt.Options{
		Strict:             opt.StrictAll,
		WriteBuffer:        wb,
		BlockCacheCapacity: bc,
		// A batch larger than the write buffer would otherwise bypass the
		// journal through a transaction; keep every write on one path.
		DisableLargeBatchTransaction: true,
	}
	stor, err := openStorage(ldbDir, lg)
	if err != nil {
		return nil, openError(ldbDir, err)
	}
	ldb, err := leveldb.Open(stor, lopt)
	if err != nil && lerrors.IsCorrupted(err) {
		// A crash in the middle of appending a record leaves a torn
		// tail that was never synced; cut it and try once more.
		if dropped, rerr := repairTornTail(ldbDir, err); rerr == nil {
			lg.Warn("logdb: dropped the torn tail of the journal (an unsynced record cut by a crash)",
				"dir", ldbDir, "bytes", dropped, "open_error", err)
			ldb, err = leveldb.Open(stor, lopt)
		}
	}
	if err != nil {
		stor.Close()
		return nil, openError(ldbDir, err)
	}
	db := &DB{
		dir:     dir,
		snapDir: snapDir,
		ldb:     ldb,
		stor:    stor,
		log:     lg,
		wsync:   &opt.WriteOptions{Sync: true},
		wnosync: &opt.WriteOptions{},
		groups:  make(map[uint32]*Log),
	}
	if err := db.checkFormat(); err != nil {
		ldb.Close()
		stor.Close()
		return nil, err
	}
	lg.Info("logdb opened", "dir", dir)
	return db, nil
}

func (db *DB) checkFormat() error {
	want := formatValue()
	got, err := db.ldb.Get(versionKey, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		// New database, or a foreign one: refuse to adopt a non-empty
		// database that has no version key.
		it := db.ldb.NewIterator(nil, nil)
		nonEmpty := it.First()
		it.Release()
		if err := it.Error(); err != nil {
			return db.readErr("check format", err)
		}
		if nonEmpty {
			return fmt.Errorf("%w: %s has data but no format version", ErrFormat, db.dir)
		}
		if err := db.ldb.Put(versionKey, want, db.wsync); err != nil {
			return fmt.Errorf("logdb: write format version: %w", err)
		}
		return nil
	case err != nil:
		return db.readErr("read format version", err)
	}
	if bytes.Equal(got, want) {
		return nil
	}
	if v, ok := parseFormat(got); ok {
		return fmt.Errorf("%w: %s has format version %d; this build reads version %d", ErrFormat, db.dir, v, FormatVersion)
	}
	return fmt.Errorf("%w: %s has an unrecognised format marker %q", ErrFormat, db.dir, got)
}

func formatValue() []byte {
	return binary.BigEndian.AppendUint32([]byte(formatMagic), FormatVersion)
}

func parseFormat(b []byte) (uint32, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(formatMagic))
	if !ok || len(rest) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(rest), true
}

// Group returns the log of group id. The same *Log is returned for the same
// id for the lifetime of the DB.
func (db *DB) Group(id uint32) *Log {
	db.mu.Lock()
	defer db.mu.Unlock()
	if l, ok := db.groups[id]; ok {
		return l
	}
	l := &Log{db: db, group: id}
	binary.BigEndian.PutUint32(l.prefix[1:], id)
	l.prefix[0] = kindGroup
	l.keyPromised = l.subKey(subPromised)
	l.keyRebuild = l.subKey(subRebuild)
	l.keyChosen = l.subKey(subChosen)
	l.keySnapshot = l.subKey(subSnapshot)
	db.groups[id] = l
	return l
}

// Close closes the database. Logs of a closed DB return ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	err := db.ldb.Close()
	if serr := db.stor.Close(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("logdb: close: %w", err)
	}
	return nil
}

// openStorage opens goleveldb's file storage in ldbDir (taking its lock),
// trims the zero tails a crash left in preallocated journals and wraps it
// to preallocate the journals it creates (journal.go).
func openStorage(ldbDir string, lg *slog.Logger) (*journalStorage, error) {
	st, err := storage.OpenFile(ldbDir, false)
	if err != nil {
		return nil, err
	}
	if err := trimZeroTails(ldbDir, lg); err != nil {
		st.Close()
		return nil, err
	}
	return &journalStorage{Storage: st, ahead: journalAhead, log: lg}, nil
}

// openError maps an error opening the leveldb in ldbDir to the package's.
func openError(ldbDir string, err error) error {
	if lerrors.IsCorrupted(err) {
		return fmt.Errorf("%w: open %s: %w", ErrCorrupt, ldbDir, err)
	}
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("%w (its lock is held): open %s: %w", ErrInUse, ldbDir, err)
	}
	return fmt.Errorf("logdb: open %s: %w", ldbDir, err)
}

// Dir returns the directory the DB was opened in.
func (db *DB) Dir() string { return db.dir }

// Err returns the sticky fatal error, or nil while the DB is healthy.
func (db *DB) Err() error {
	if p := db.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}
	return nil
}

// usable returns the error every operation must fail with, if any.
func (db *DB) usable() error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.Err()
}

// fail records a fatal write error and returns the error to hand back.
func (db *DB) fail(op string, err error) error {
	if db.closed.Load() || errors.Is(err, leveldb.ErrClosed) {
		return fmt.Errorf("%w: %s", ErrClosed, op)
	}
	wrapped := fmt.Errorf("%s: %w", op, err)
	if db.failed.CompareAndSwap(nil, &wrapped) {
		db.log.Error("logdb failed; refusing further writes", "op", op, "err", err)
	}
	return fmt.Errorf("%w: %w", ErrFailed, *db.failed.Load())
}

// readErr classifies an error from a leveldb read.
func (db *DB) readErr(op string, err error) error {
	switch {
	case db.closed.Load() || errors.Is(err, leveldb.ErrClosed):
		return fmt.Errorf("%w: %s", ErrClosed, op)
	case lerrors.IsCorrupted(err):
		// goleveldb names a damaged table by its base name alone.
		return fmt.Errorf("%w: %s in %s: %w", ErrCorrupt, op, filepath.Join(db.dir, "leveldb"), err)
	default:
		return fmt.Errorf("logdb: %s: %w", op, err)
	}
}

// finishSeal fills the 4-byte CRC-32C header of v (whose first four bytes
// were reserved) with the checksum of the rest.
func finishSeal(v []byte) []byte {
	binary.BigEndian.PutUint32(v, crc32.Checksum(v[4:], castagnoli))
	return v
}

// unseal checks and strips the CRC-32C of a stored value.
func unseal(v []byte) ([]byte, bool) {
	if len(v) < 4 {
		return nil, false
	}
	payload := v[4:]
	return payload, binary.BigEndian.Uint32(v) == crc32.Checksum(payload, castagnoli)
}
