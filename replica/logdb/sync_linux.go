package logdb

import "syscall"

// fdatasync flushes f's data and the metadata needed to read it back.
func fdatasync(f journalFile) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
