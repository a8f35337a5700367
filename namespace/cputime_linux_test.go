//go:build linux

package namespace

import (
	"syscall"
	"time"
)

// threadCPU returns the CPU time (user + system) the calling OS thread has
// used. Benchmarks lock their goroutine to its thread, so this is the time
// spent applying on one core, whatever else runs on the machine (other
// processes and the GC's background workers are not counted; GC assists
// made by the applying goroutine are).
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
