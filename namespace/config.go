package namespace

import (
	"fmt"
	"time"
)

// Config holds the limits and policies of a Tree. Every replica of a cell must
// use the same Config: the limits decide command results, so they are part of
// the replicated behaviour (the lockserver configures them cell-wide).
//
// There is no logger: the package is pure and does no I/O. Callers log the
// results and events Apply returns.
type Config struct {
	// MaxPathLen is the longest path in bytes (default 4096).
	MaxPathLen int
	// MaxNameLen is the longest name (path element) in bytes (default 255).
	MaxNameLen int
	// MaxDepth is the most names in a path (default 64, at most 255).
	MaxDepth int
	// MaxContent is the largest node content in bytes (default 256 KiB).
	MaxContent int
	// MaxChildren is the most children of one node (default 100,000).
	MaxChildren int
	// MaxEphemerals is the most ephemeral nodes one session owns (default 10,000).
	MaxEphemerals int
	// MaxClientNameLen is the longest client name of a session
	// (Command.Client) in bytes (default 256; 0 allows no names).
	MaxClientNameLen int
	// DefaultLockDelay is the lock-delay of an acquire that names none (default 10 s).
	DefaultLockDelay time.Duration
	// MaxLockDelay caps the lock-delay an acquire may ask for (default 60 s).
	MaxLockDelay time.Duration
	// Results is how many recent results each session keeps for idempotent
	// retries (default 64).
	Results int
}

// Limits above which the package's formats or counters break.
const (
	maxDepthCap    = 255 // the depth is one byte of the tree key
	maxChildrenCap = 1<<32 - 1
)

// DefaultConfig returns the default limits (Chubby's and the DESIGN's numbers).
func DefaultConfig() Config {
	return Config{
		MaxPathLen:       4096,
		MaxNameLen:       255,
		MaxDepth:         64,
		MaxContent:       256 << 10,
		MaxChildren:      100_000,
		MaxEphemerals:    10_000,
		MaxClientNameLen: 256,
		DefaultLockDelay: 10 * time.Second,
		MaxLockDelay:     60 * time.Second,
		Results:          64,
	}
}

// Validate checks every field and the relations between them.
func (c Config) Validate() error {
	switch {
	case c.MaxNameLen < 1:
		return fmt.Errorf("%w: MaxNameLen %d < 1", ErrBadConfig, c.MaxNameLen)
	case c.MaxPathLen < 2:
		return fmt.Errorf("%w: MaxPathLen %d < 2", ErrBadConfig, c.MaxPathLen)
	case c.MaxNameLen > c.MaxPathLen-1:
		return fmt.Errorf("%w: MaxNameLen %d does not fit in MaxPathLen %d", ErrBadConfig, c.MaxNameLen, c.MaxPathLen)
	case c.MaxDepth < 1 || c.MaxDepth > maxDepthCap:
		return fmt.Errorf("%w: MaxDepth %d not in [1, %d]", ErrBadConfig, c.MaxDepth, maxDepthCap)
	case c.MaxContent < 0:
		return fmt.Errorf("%w: MaxContent %d < 0", ErrBadConfig, c.MaxContent)
	case c.MaxChildren < 1 || c.MaxChildren > maxChildrenCap:
		return fmt.Errorf("%w: MaxChildren %d not in [1, %d]", ErrBadConfig, c.MaxChildren, maxChildrenCap)
	case c.MaxEphemerals < 0:
		return fmt.Errorf("%w: MaxEphemerals %d < 0", ErrBadConfig, c.MaxEphemerals)
	case c.MaxClientNameLen < 0:
		return fmt.Errorf("%w: MaxClientNameLen %d < 0", ErrBadConfig, c.MaxClientNameLen)
	case c.DefaultLockDelay < 0:
		return fmt.Errorf("%w: DefaultLockDelay %v < 0", ErrBadConfig, c.DefaultLockDelay)
	case c.MaxLockDelay < c.DefaultLockDelay:
		return fmt.Errorf("%w: MaxLockDelay %v < DefaultLockDelay %v", ErrBadConfig, c.MaxLockDelay, c.DefaultLockDelay)
	case c.Results < 0:
		return fmt.Errorf("%w: Results %d < 0", ErrBadConfig, c.Results)
	}
	return nil
}
