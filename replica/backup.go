package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/latchd/latch/replica/logdb"
)

// Backups. A backup is one group's state machine as a replica has applied it
// through some instance, in a file that Restore turns into the data dir of
// a replica of a new cell (docs/replica.md, "Backup and restore"). It
// carries no Paxos state: the new cell starts its log after the backup's
// instance, with no promise and no vote.
//
// The file: backupMagic, a version byte, the group (uint32), the length of
// the body (uint64), the body (the stored snapshot format: the snapshot
// header with instance and command index, then StateMachine.Snapshot's
// bytes), and a CRC-32C of everything before it. Integers are big-endian.

const (
	backupMagic   = "LTBK"
	backupVersion = 1
	backupHead    = len(backupMagic) + 1 + 4 + 8
	// MaxBackupBytes bounds the body Restore accepts, checked before it
	// allocates.
	MaxBackupBytes = 4 << 30
)

// Errors of Backup and Restore.
var (
	// ErrBadBackup: the input is not a whole, intact backup file.
	ErrBadBackup = errors.New("replica: not a valid backup")
	// ErrHasState: Restore into a data dir that already holds Paxos state.
	ErrHasState = errors.New("replica: the data dir already holds state")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BackupMeta describes a backup.
type BackupMeta struct {
	Group    uint32
	Instance uint64 // the last instance the state machine had applied
	Index    uint64 // the last command index it had applied
	Size     int64  // bytes of the body
}

// backupReq asks the apply goroutine for its state machine's snapshot.
type backupReq struct {
	done chan backupResult // buffered: the applier never waits on it
}

type backupResult struct {
	body            []byte
	instance, index uint64
	err             error
}

// Backup writes the group's state machine, as this replica has applied it,
// to w as a backup file, and returns what it holds. The state machine is
// read between two applies, on the apply goroutine, into memory first (so
// a slow w does not hold up applying). For the latest state, take it on the
// leader: a follower's may lag. It fails if ctx ends first, the group is
// unknown or the replica stops.
func (r *Replica) Backup(ctx context.Context, group uint32, w io.Writer) (BackupMeta, error) {
	g, err := r.group(group)
	if err != nil {
		return BackupMeta{}, err
	}
	req := backupReq{done: make(chan backupResult, 1)}
	var res backupResult
	applyc := g.applyc // nil once the request is handed over
	for answered := false; !answered; {
		select {
		case applyc <- applyItem{backup: &req}:
			applyc = nil
		case res = <-req.done:
			answered = true
		case <-ctx.Done():
			return BackupMeta{}, ctx.Err()
		case <-r.stop:
			return BackupMeta{}, r.stoppedErr()
		case <-r.fatalC:
			return BackupMeta{}, r.stoppedErr()
		}
	}
	if res.err != nil {
		return BackupMeta{}, res.err
	}
	meta := BackupMeta{Group: group, Instance: res.instance, Index: res.index, Size: int64(len(res.body))}
	head := append([]byte(backupMagic), backupVersion)
	head = binary.BigEndian.AppendUint32(head, group)
	head = binary.BigEndian.AppendUint64(head, uint64(len(res.body)))
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, res.body)
	for _, p := range [][]byte{head, res.body, binary.BigEndian.AppendUint32(nil, crc)} {
		if _, err := w.Write(p); err != nil {
			return BackupMeta{}, fmt.Errorf("replica: write backup: %w", err)
		}
	}
	return meta, nil
}

// backup serves a backupReq on the apply goroutine.
func (a *applier) backup(req *backupReq) {
	var buf bytes.Buffer
	// A backup carries no member set (LRS1): it starts a new cell, whose
	// members are that cell's configuration.
	buf.Write(appendSnapHeader(nil, a.applied, a.index, nil))
	err := a.sm.Snapshot(&buf)
	if err == nil && a.applied == 0 {
		err = errors.New("replica: nothing applied yet: no backup to take")
	}
	req.done <- backupResult{body: buf.Bytes(), instance: a.applied, index: a.index, err: err}
}

// ReadBackup reads a whole backup file from r and checks it: framing,
// version, size limit, checksum and the snapshot header. It returns the
// body (what a stored snapshot holds) and the backup's meta. Errors match
// ErrBadBackup.
func ReadBackup(r io.Reader) (BackupMeta, []byte, error) {
	bad := func(format string, args ...any) (BackupMeta, []byte, error) {
		return BackupMeta{}, nil, fmt.Errorf("%w: "+format, append([]any{ErrBadBackup}, args...)...)
	}
	head := make([]byte, backupHead)
	if _, err := io.ReadFull(r, head); err != nil {
		return bad("header: %v", err)
	}
	if string(head[:4]) != backupMagic {
		return bad("magic %q, want %q", head[:4], backupMagic)
	}
	if head[4] != backupVersion {
		return bad("version %d; this build reads version %d", head[4], backupVersion)
	}
	group := binary.BigEndian.Uint32(head[5:])
	size := binary.BigEndian.Uint64(head[9:])
	if size > MaxBackupBytes {
		return bad("a body of %d bytes; at most %d", size, int64(MaxBackupBytes))
	}
	if size < snapHeaderLen {
		return bad("a body of %d bytes is shorter than its header", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return bad("body: %v", err)
	}
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return bad("checksum: %v", err)
	}
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, body)
	if got := binary.BigEndian.Uint32(sum[:]); got != crc {
		return bad("checksum %08x, computed %08x: the file is damaged", got, crc)
	}
	if n, _ := r.Read(sum[:1]); n > 0 {
		return bad("data after the checksum")
	}
	h, err := readSnapHeader(bytes.NewReader(body))
	if err != nil {
		return bad("%v", err)
	}
	if h.instance == 0 {
		return bad("instance 0")
	}
	if h.members != nil {
		return bad("a member set in the snapshot header: a backup carries none")
	}
	return BackupMeta{Group: group, Instance: h.instance, Index: h.index, Size: int64(size)}, body, nil
}

// BackupState returns the part of a backup's body (as ReadBackup returned
// it) that the StateMachine's Snapshot wrote, for a caller that checks it
// with its own Restore first.
func BackupState(body []byte) []byte { return body[snapHeaderLen:] }

// Restore makes dataDir the data dir of a replica of a new cell that starts
// from a backup: the group's stored snapshot at meta.Instance, whose state
// machine has applied commands through meta.Index and holds state (what
// StateMachine.Snapshot writes: BackupState of the body ReadBackup returned,
// or the caller's own transformation of it, such as renumbering), nothing
// promised, nothing in the log.
// Start every replica of the new cell from the same backup (the replicas
// then agree on everything up to its instance), as members of a new cell:
// none of them voted before. dataDir must hold no Paxos state (ErrHasState):
// restoring into a replica of a running cell would make it forget its
// votes. Restore creates dataDir if needed.
func Restore(dataDir string, meta BackupMeta, state []byte) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("replica: restore: %w", err)
	}
	db, err := logdb.Open(dataDir, logdb.Options{})
	if err != nil {
		return fmt.Errorf("replica: restore: open the data dir: %w", err)
	}
	defer db.Close()
	l := db.Group(meta.Group)
	st, err := l.Load()
	if err != nil {
		return fmt.Errorf("replica: restore: group %d: %w", meta.Group, err)
	}
	if !st.IsEmpty() {
		return fmt.Errorf("%w: %s, group %d", ErrHasState, dataDir, meta.Group)
	}
	body := append(appendSnapHeader(nil, meta.Instance, meta.Index, nil), state...)
	if _, err := l.SaveSnapshot(meta.Instance, body); err != nil {
		return fmt.Errorf("replica: restore: store the snapshot: %w", err)
	}
	return nil
}
