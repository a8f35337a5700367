package lockserver

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
)

// Backup writes the cell's state as this replica has applied it (the
// namespace, sessions, locks) to w as a backup file (replica.Backup) and
// returns what it holds. Take it on the leader for the latest state; a
// follower's may lag. See docs/operations.md, "Backup and restore".
func (s *Server) Backup(ctx context.Context, w io.Writer) (replica.BackupMeta, error) {
	return s.rep.Backup(ctx, group, w)
}

// Restore reads a backup file from r, checks it (its framing and checksum,
// then that it decodes as lock server state under ns, the namespace limits
// the new cell runs with) and makes dataDir (a replica's Config.DataDir)
// start a new cell from it: every replica of the new cell must be restored
// from the same file. dataDir must hold no Paxos state
// (replica.ErrHasState).
func Restore(dataDir string, r io.Reader, ns namespace.Config) (replica.BackupMeta, error) {
	meta, body, err := replica.ReadBackup(r)
	if err != nil {
		return meta, err
	}
	if meta.Group != group {
		return meta, fmt.Errorf("%w: group %d; a lock server backup is of group %d", replica.ErrBadBackup, meta.Group, group)
	}
	if err := newFSM(ns).Restore(bytes.NewReader(replica.BackupState(body))); err != nil {
		return meta, fmt.Errorf("%w: %w", replica.ErrBadBackup, err)
	}
	return meta, replica.Restore(dataDir+"/paxos", meta, body)
}
