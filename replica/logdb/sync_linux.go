package logdb

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data and the metadata needed to read it back. Its
// error names the file, as os.File.Sync's does.
func fdatasync(f journalFile) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err == nil {
			return nil
		}
		if err != syscall.EINTR {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
		}
	}
}
