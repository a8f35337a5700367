package lockserver

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
)

// RestoreRenumber is how far Restore moves every number the namespace hands
// out (namespace.Tree.Renumber): the old cell may have gone on after the
// backup, and nothing the new cell hands out may equal what it did. As
// etcd's restore suggests for its revisions: a billion.
const RestoreRenumber = 1_000_000_000

// Backup writes the cell's state as this replica has applied it (the
// namespace, sessions, locks) to w as a backup file (replica.Backup) and
// returns what it holds. Take it on the leader for the latest state; a
// follower's may lag. See docs/operations.md, "Backup and restore".
func (s *Server) Backup(ctx context.Context, w io.Writer) (replica.BackupMeta, error) {
	return s.rep.Backup(ctx, group, w)
}

// Restore reads a backup file from r and makes dataDir (a replica's
// Config.DataDir, which must hold no Paxos state: replica.ErrHasState) a
// replica of a new cell that starts from it: ReadRestore, then WriteTo.
// Every replica of the new cell must be restored from the same file; the
// result is deterministic, so they start from the same state. It returns
// the backup's meta with the command index the new cell starts after.
func Restore(dataDir string, r io.Reader, ns namespace.Config) (replica.BackupMeta, error) {
	rs, err := ReadRestore(r, ns)
	if err != nil {
		return rs.Meta, err
	}
	return rs.Meta, rs.WriteTo(dataDir)
}

// RestoreState is a backup made ready to start a new cell (ReadRestore).
// WriteTo puts it into as many data dirs as the new cell has replicas.
type RestoreState struct {
	// Meta is the backup's, with the command index the new cell starts
	// after.
	Meta  replica.BackupMeta
	state []byte
}

// ReadRestore reads a backup file from r, checks it (its framing and
// checksum, then that it decodes as lock server state under ns, the
// namespace limits the new cell runs with) and prepares its state for a
// new cell. The state is the backup's, made safe for a cell that does not
// know what the old one did after the backup: every session of the old
// cell is expired (its ephemeral nodes deleted, its locks released with
// their lock-delay, its waits canceled), so no client of the old cell
// believes it still holds a lock; and every number the namespace hands out
// moves up by RestoreRenumber, so no sequencer, generation or session id
// of the old cell matches anything.
func ReadRestore(r io.Reader, ns namespace.Config) (*RestoreState, error) {
	meta, body, err := replica.ReadBackup(r)
	rs := &RestoreState{Meta: meta}
	if err != nil {
		return rs, err
	}
	if meta.Group != group {
		return rs, fmt.Errorf("%w: group %d; a lock server backup is of group %d", replica.ErrBadBackup, meta.Group, group)
	}
	f := newFSM(ns)
	if err := f.Restore(bytes.NewReader(replica.BackupState(body))); err != nil {
		return rs, fmt.Errorf("%w: %w", replica.ErrBadBackup, err)
	}
	if rs.Meta.Index, err = f.forNewCell(meta.Index); err != nil {
		return rs, err
	}
	var state bytes.Buffer
	if err := f.Snapshot(&state); err != nil {
		return rs, err
	}
	rs.state = state.Bytes()
	return rs, nil
}

// WriteTo makes dataDir a replica of the new cell (replica.Restore into
// dataDir/paxos); a data dir that holds Paxos state is refused.
func (rs *RestoreState) WriteTo(dataDir string) error {
	return replica.Restore(dataDir+"/paxos", rs.Meta, rs.state)
}

// forNewCell renumbers the state (RestoreRenumber) and expires every
// session, applying the expiries as commands after index (moved up too).
// It returns the index of the last one.
func (f *fsm) forNewCell(index uint64) (uint64, error) {
	if err := f.tree.Renumber(RestoreRenumber); err != nil {
		return index, err
	}
	index += RestoreRenumber
	for _, si := range f.tree.Sessions() {
		cmd := namespace.NewExpireSession(si.ID)
		enc, err := encodeCommand(kindNamespace, &cmd)
		if err != nil {
			return index, err
		}
		index++
		res, err := decodeResult(f.Apply(index, enc.entry()))
		enc.release()
		if err != nil {
			return index, err
		}
		if res.res.Err != nil {
			return index, fmt.Errorf("lockserver: expire session %d of the backup: %w", si.ID, res.res.Err)
		}
	}
	return index, nil
}
