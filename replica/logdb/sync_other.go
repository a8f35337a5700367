//go:build !linux

package logdb

// fdatasync falls back to fsync where the system has no fdatasync.
func fdatasync(f journalFile) error { return f.Sync() }
