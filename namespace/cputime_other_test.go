//go:build !linux

package namespace

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
