package logdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// truncateBatch is how many deletions Truncate puts in one leveldb batch.
const truncateBatch = 1024

// Log is the durable state of one Paxos group inside a DB.
type Log struct {
	db    *DB
	group uint32

	prefix      [groupPrefixLen]byte
	keyPromised []byte
	keyRebuild  []byte
	keyChosen   []byte
	keySnapshot []byte

	mu    sync.Mutex // guards everything below
	batch leveldb.Batch
	kbuf  []byte
	vbuf  []byte
	// floor is an instance below which no entry is stored any more (every
	// entry below it was truncated); iteration starts there.
	floor uint64
}

// ID returns the group id.
func (l *Log) ID() uint32 { return l.group }

func (l *Log) subKey(sub byte) []byte {
	k := make([]byte, 0, groupPrefixLen+1)
	k = append(k, l.prefix[:]...)
	return append(k, sub)
}

func (l *Log) entryKey(dst []byte, instance uint64) []byte {
	dst = append(dst, l.prefix[:]...)
	dst = append(dst, subEntry)
	return binary.BigEndian.AppendUint64(dst, instance)
}

// entryRange is the key range of entries lo <= instance < hi (hi 0 means
// no upper bound).
func (l *Log) entryRange(lo, hi uint64) *util.Range {
	r := &util.Range{Start: l.entryKey(nil, lo)}
	if hi == 0 {
		r.Limit = append(append([]byte{}, l.prefix[:]...), subEntry+1)
	} else {
		r.Limit = l.entryKey(nil, hi)
	}
	return r
}

// Write stores u with ONE leveldb batch, written with Sync: true whenever u
// carries a promise or entries. When it returns nil every part of u that
// needs to be durable is on disk. Any error is fatal for the DB
// (it wraps ErrFailed) and must stop the replica; it is never worth a retry.
// The caller must only raise the promise and the chosen mark.
func (l *Log) Write(u Update) error {
	if u.IsEmpty() {
		return nil
	}
	if err := l.db.usable(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.batch
	b.Reset()
	if !u.Promised.IsZero() {
		l.vbuf = sealBallot(l.vbuf[:0], u.Promised)
		b.Put(l.keyPromised, l.vbuf)
	}
	for i := range u.Entries {
		e := &u.Entries[i]
		if e.Instance == 0 {
			return fmt.Errorf("%w: entry with instance 0 (group %d)", ErrInvalid, l.group)
		}
		l.kbuf = l.entryKey(l.kbuf[:0], e.Instance)
		l.vbuf = sealEntry(l.vbuf[:0], e)
		b.Put(l.kbuf, l.vbuf)
	}
	if u.Chosen != 0 {
		l.vbuf = sealUint64(l.vbuf[:0], u.Chosen)
		b.Put(l.keyChosen, l.vbuf)
	}
	if u.Rebuilt {
		b.Delete(l.keyRebuild)
	}
	wo := l.db.wsync
	if u.Promised.IsZero() && len(u.Entries) == 0 && !u.Rebuilt {
		wo = l.db.wnosync
	}
	if err := l.db.ldb.Write(b, wo); err != nil {
		return l.db.fail(fmt.Sprintf("write group %d", l.group), err)
	}
	return nil
}

// MarkRebuild records, synced, that the group lost its state and rebuilds
// it from its peers under nonce (non-zero); the mark stays until a Write
// with Rebuilt. Call it only on an empty group (State.IsEmpty).
func (l *Log) MarkRebuild(nonce uint64) error {
	if nonce == 0 {
		return fmt.Errorf("%w: rebuild nonce 0 (group %d)", ErrInvalid, l.group)
	}
	if err := l.db.usable(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vbuf = sealUint64(l.vbuf[:0], nonce)
	if err := l.db.ldb.Put(l.keyRebuild, l.vbuf, l.db.wsync); err != nil {
		return l.db.fail(fmt.Sprintf("mark group %d rebuilding", l.group), err)
	}
	return nil
}

// Load reads the group's recovered state: promise, chosen mark, snapshot
// meta, and every accepted entry above the snapshot. It also removes snapshot
// files of the group that no meta refers to (left by a crash).
func (l *Log) Load() (State, error) {
	var st State
	if err := l.db.usable(); err != nil {
		return st, err
	}
	var err error
	if st.Promised, err = l.getBallot(l.keyPromised); err != nil {
		return st, err
	}
	if st.Chosen, err = l.getUint64(l.keyChosen); err != nil {
		return st, err
	}
	if st.Rebuild, err = l.getUint64(l.keyRebuild); err != nil {
		return st, err
	}
	if st.Snapshot, err = l.Snapshot(); err != nil && !errors.Is(err, ErrNoSnapshot) {
		return st, err
	}
	st.Chosen = max(st.Chosen, st.Snapshot.Instance)
	st.Entries, err = l.Entries(st.Snapshot.Instance+1, 0, 0)
	if err != nil {
		return st, err
	}
	l.mu.Lock()
	l.floor = max(l.floor, st.Snapshot.Instance+1)
	l.mu.Unlock()
	if err := l.db.removeStaleSnapshots(l.group, st.Snapshot.Instance); err != nil {
		l.db.log.Warn("logdb: could not remove stale snapshot files", "group", l.group, "err", err)
	}
	return st, nil
}

// Entries returns the stored entries with lo <= instance < hi, ascending
// (hi 0: no upper bound). When maxBytes > 0 it stops once the values read
// add up to maxBytes or more, returning at least one entry if any exists.
// The returned values do not alias the database.
func (l *Log) Entries(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if err := l.db.usable(); err != nil {
		return nil, err
	}
	lo = max(lo, 1)
	if hi != 0 && hi <= lo {
		return nil, nil
	}
	it := l.db.ldb.NewIterator(l.entryRange(lo, hi), nil)
	defer it.Release()
	var (
		out   []Entry
		total int
	)
	for it.Next() {
		k := it.Key()
		if len(k) != entryKeyLen {
			return nil, fmt.Errorf("%w: group %d: entry key of %d bytes", ErrCorrupt, l.group, len(k))
		}
		inst := binary.BigEndian.Uint64(k[groupPrefixLen+1:])
		e, ok := openEntry(inst, it.Value())
		if !ok {
			return nil, fmt.Errorf("%w: group %d: entry %d fails its checksum", ErrCorrupt, l.group, inst)
		}
		out = append(out, e)
		total += len(e.Value)
		if maxBytes > 0 && total >= maxBytes {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, l.db.readErr(fmt.Sprintf("read entries of group %d", l.group), err)
	}
	return out, nil
}

// Truncate deletes the accepted entries below instance below. It refuses
// (ErrTruncate) to delete any entry the latest durable snapshot does not
// cover, that is below may be at most Snapshot.Instance+1. Deletions are
// written in batches without sync: an entry that reappears after a crash is
// below the snapshot and ignored by Load. Truncate may run on a goroutine of
// its own while the group keeps writing.
func (l *Log) Truncate(below uint64) error {
	if err := l.db.usable(); err != nil {
		return err
	}
	snap, err := l.Snapshot()
	if err != nil && !errors.Is(err, ErrNoSnapshot) {
		return err
	}
	if below > snap.Instance+1 {
		return fmt.Errorf("%w: group %d: below %d, snapshot covers up to %d", ErrTruncate, l.group, below, snap.Instance)
	}
	l.mu.Lock()
	from := max(l.floor, 1)
	l.mu.Unlock()
	if below <= from {
		return nil
	}
	it := l.db.ldb.NewIterator(l.entryRange(from, below), nil)
	defer it.Release()
	var b leveldb.Batch
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		if err := l.db.ldb.Write(&b, l.db.wnosync); err != nil {
			return l.db.fail(fmt.Sprintf("truncate group %d", l.group), err)
		}
		b.Reset()
		return nil
	}
	for it.Next() {
		b.Delete(it.Key())
		if b.Len() >= truncateBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return l.db.readErr(fmt.Sprintf("truncate group %d", l.group), err)
	}
	if err := flush(); err != nil {
		return err
	}
	l.mu.Lock()
	l.floor = max(l.floor, below)
	l.mu.Unlock()
	return nil
}

func (l *Log) get(key []byte) ([]byte, bool, error) {
	v, err := l.db.ldb.Get(key, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, l.db.readErr(fmt.Sprintf("read group %d", l.group), err)
	}
	p, ok := unseal(v)
	if !ok {
		return nil, false, fmt.Errorf("%w: group %d: key %q fails its checksum", ErrCorrupt, l.group, key[groupPrefixLen:])
	}
	return p, true, nil
}

func (l *Log) getBallot(key []byte) (Ballot, error) {
	p, ok, err := l.get(key)
	if err != nil || !ok {
		return Ballot{}, err
	}
	if len(p) != 16 {
		return Ballot{}, fmt.Errorf("%w: group %d: ballot of %d bytes", ErrCorrupt, l.group, len(p))
	}
	return Ballot{Round: binary.BigEndian.Uint64(p), ID: binary.BigEndian.Uint64(p[8:])}, nil
}

func (l *Log) getUint64(key []byte) (uint64, error) {
	p, ok, err := l.get(key)
	if err != nil || !ok {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("%w: group %d: integer of %d bytes", ErrCorrupt, l.group, len(p))
	}
	return binary.BigEndian.Uint64(p), nil
}

// Value encodings. Each sealed value is crc32c(4) followed by the payload.

func sealBallot(dst []byte, b Ballot) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, b.Round)
	dst = binary.BigEndian.AppendUint64(dst, b.ID)
	return finishSeal(dst)
}

func sealUint64(dst []byte, v uint64) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, v)
	return finishSeal(dst)
}

// Entry flags. flagConf (a member change, docs/membership.md) is newer
// than flagNoop: a binary that predates it refuses such a record as failing
// its checksum (ErrCorrupt), loudly, rather than handing the core a member
// change as a plain value.
const (
	flagNoop = 1 << 0
	flagConf = 1 << 1
)

// sealEntry encodes e as crc(4) round(8) id(8) flags(1) value.
func sealEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, e.Ballot.Round)
	dst = binary.BigEndian.AppendUint64(dst, e.Ballot.ID)
	var flags byte
	if e.Noop {
		flags |= flagNoop
	}
	if e.Conf {
		flags |= flagConf
	}
	dst = append(dst, flags)
	dst = append(dst, e.Value...)
	return finishSeal(dst)
}

// openEntry decodes a stored entry; the value is copied out of v.
func openEntry(inst uint64, v []byte) (Entry, bool) {
	p, ok := unseal(v)
	if !ok || len(p) < 17 || p[16]&^(flagNoop|flagConf) != 0 {
		return Entry{}, false
	}
	e := Entry{
		Instance: inst,
		Ballot:   Ballot{Round: binary.BigEndian.Uint64(p), ID: binary.BigEndian.Uint64(p[8:])},
		Noop:     p[16]&flagNoop != 0,
		Conf:     p[16]&flagConf != 0,
	}
	if len(p) > 17 {
		e.Value = append([]byte(nil), p[17:]...)
	}
	return e, true
}
