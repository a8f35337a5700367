package logdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// Torn tails.
//
// Strict mode makes goleveldb refuse a journal with any damaged record. One
// kind of damage is not data loss: a process killed (or a machine crashed)
// while a record was being appended leaves the last record of the newest
// journal incomplete. goleveldb writes a record larger than a 32 KiB block
// with several write calls and syncs only after the last, so that record was
// never synced, never acknowledged, and dropping it loses nothing anyone was
// promised. repairTornTail recognises exactly that case, truncates the
// journal to the end of its last complete record, and lets Open retry. Any
// other damage (a checksum mismatch, an invalid chunk, an incomplete record
// followed by more data, a torn journal that is not the newest) is left for
// Open to report as ErrCorrupt.

// Journal format constants (leveldb's log format, as goleveldb writes it).
const (
	jBlockSize  = 32 * 1024
	jHeaderSize = 7
	jFull       = 1
	jFirst      = 2
	jMiddle     = 3
	jLast       = 4
)

// errNotTorn means the damage is not a torn tail.
var errNotTorn = errors.New("not a torn tail")

// repairTornTail inspects the open error; if it names the newest journal
// and that journal only has a torn tail, it truncates the tail and returns
// the number of bytes dropped. Otherwise it returns an error and changes
// nothing.
func repairTornTail(ldbDir string, openErr error) (int64, error) {
	var ce *lerrors.ErrCorrupted
	if !errors.As(openErr, &ce) || ce.Fd.Type != storage.TypeJournal {
		return 0, errNotTorn
	}
	newest, err := newestJournal(ldbDir)
	if err != nil {
		return 0, err
	}
	if newest != ce.Fd.Num {
		return 0, fmt.Errorf("%w: damaged journal %s is not the newest (%06d.log)", errNotTorn, ce.Fd, newest)
	}
	path := filepath.Join(ldbDir, ce.Fd.String())
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	good, err := scanJournal(b)
	if err != nil {
		return 0, err
	}
	if good == len(b) {
		return 0, fmt.Errorf("%w: %s scans clean", errNotTorn, ce.Fd)
	}
	if err := truncateSync(path, int64(good)); err != nil {
		return 0, err
	}
	return int64(len(b) - good), nil
}

func newestJournal(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	newest := int64(-1)
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n > newest {
			newest = n
		}
	}
	return newest, nil
}

// scanJournal returns the length of the longest prefix of b made of whole,
// valid records, provided everything after it is a torn tail: an incomplete
// chunk header, chunk or record running into the end of the file, zero
// bytes to the end of the file, or a damaged chunk torn inside a
// preallocated region (tornInRegion). Any other damage is errNotTorn.
func scanJournal(b []byte) (int, error) {
	off, good, inRecord := 0, 0, false
	for off < len(b) {
		blockEnd := (off/jBlockSize + 1) * jBlockSize
		if blockEnd-off < jHeaderSize {
			off = blockEnd // block trailer padding
			continue
		}
		if off+jHeaderSize > len(b) {
			return good, nil // torn chunk header
		}
		h := b[off : off+jHeaderSize]
		length := int(binary.LittleEndian.Uint16(h[4:6]))
		typ := h[6]
		if binary.LittleEndian.Uint32(h[0:4]) == 0 && length == 0 && typ == 0 {
			if allZero(b[off:]) {
				return good, nil // zero-filled tail
			}
			return 0, fmt.Errorf("%w: zero chunk header at %d followed by data", errNotTorn, off)
		}
		if typ < jFull || typ > jLast {
			if tornInRegion(b, off, off+jHeaderSize) {
				return good, nil // chunk header torn inside a preallocated region
			}
			return 0, fmt.Errorf("%w: invalid chunk type %d at %d", errNotTorn, typ, off)
		}
		end := off + jHeaderSize + length
		if end > len(b) {
			return good, nil // torn chunk
		}
		if end > blockEnd {
			return 0, fmt.Errorf("%w: chunk at %d overflows its block", errNotTorn, off)
		}
		if util.NewCRC(b[off+6:end]).Value() != binary.LittleEndian.Uint32(h[0:4]) {
			if tornInRegion(b, off, end) {
				return good, nil // torn chunk inside a preallocated region
			}
			return 0, fmt.Errorf("%w: chunk checksum mismatch at %d", errNotTorn, off)
		}
		switch {
		case typ == jFull && !inRecord:
			good = end
		case typ == jFirst && !inRecord:
			inRecord = true
		case typ == jMiddle && inRecord:
		case typ == jLast && inRecord:
			inRecord, good = false, end
		default:
			return 0, fmt.Errorf("%w: chunk type %d out of sequence at %d", errNotTorn, typ, off)
		}
		off = end
	}
	return good, nil // a record left open at EOF is torn too
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sectorSize is the unit a disk writes atomically (at least).
const sectorSize = 512

// tornInRegion reports whether the damaged chunk b[off:end] is a write torn
// inside a preallocated journal region (journal.go): only zeros follow it,
// and a piece of it between sector boundaries is all zeros, a sector the
// crash kept the write from reaching. A chunk damaged any other way (a
// flipped bit, data after it) is not torn. etcd's WAL reader uses the same
// test for its preallocated segments.
func tornInRegion(b []byte, off, end int) bool {
	if !allZero(b[end:]) {
		return false
	}
	for p := off; p < end; {
		next := min((p/sectorSize+1)*sectorSize, end)
		if allZero(b[p:next]) {
			return true
		}
		p = next
	}
	return false
}
