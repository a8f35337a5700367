package session

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Clock tells the time. The Manager reads it on every call that depends on
// time; tests pass a fake clock and call Tick by hand.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config configures a Manager.
type Config struct {
	// Lease is the lease of a session opened or failed over with a zero
	// lease. Chubby's default is 12 s.
	Lease time.Duration
	// Margin is how long before the end of a lease a held KeepAlive is
	// answered, so the client's next KeepAlive arrives in time. A session's
	// effective margin is min(Margin, its lease/2): with the defaults, a
	// KeepAlive is held 9 s of a 12 s lease.
	Margin time.Duration
	// QueueLen bounds each session's queue of undelivered or unacknowledged
	// events. On overflow the queue is replaced by a single EventsLost item.
	QueueLen int
	// MaxBatch bounds the events returned by one KeepAlive.
	MaxBatch int
	// MaxSessions bounds the sessions a Manager tracks; Open refuses more.
	MaxSessions int
	// MaxWatches bounds the watches of one session.
	MaxWatches int
	// Shards is the number of session shards, a power of two.
	Shards int
	// Clock is the time source; nil means the system clock.
	Clock Clock
	// Logger receives state transitions (expiry, fail-over, overflow); nil
	// discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: a 12 s lease, a 3 s margin, queues of
// 1024 events, 256 events per KeepAlive, 100,000 sessions, 1,000 watches per
// session, 64 shards, the system clock.
func DefaultConfig() Config {
	return Config{
		Lease:       12 * time.Second,
		Margin:      3 * time.Second,
		QueueLen:    1024,
		MaxBatch:    256,
		MaxSessions: 100_000,
		MaxWatches:  1000,
		Shards:      64,
	}
}

// ErrConfig is returned (wrapped) by Validate and New for a bad Config.
var ErrConfig = errors.New("session: invalid config")

// Validate checks the Config, including its cross-field rules.
func (c Config) Validate() error {
	switch {
	case c.Lease <= 0:
		return fmt.Errorf("%w: Lease %v must be positive", ErrConfig, c.Lease)
	case c.Margin <= 0 || c.Margin >= c.Lease:
		return fmt.Errorf("%w: Margin %v must be positive and less than Lease %v", ErrConfig, c.Margin, c.Lease)
	case c.QueueLen < 2:
		return fmt.Errorf("%w: QueueLen %d must be at least 2", ErrConfig, c.QueueLen)
	case c.MaxBatch < 1 || c.MaxBatch > c.QueueLen:
		return fmt.Errorf("%w: MaxBatch %d must be in 1..QueueLen (%d)", ErrConfig, c.MaxBatch, c.QueueLen)
	case c.MaxSessions < 1:
		return fmt.Errorf("%w: MaxSessions %d must be positive", ErrConfig, c.MaxSessions)
	case c.MaxWatches < 0:
		return fmt.Errorf("%w: MaxWatches %d must not be negative", ErrConfig, c.MaxWatches)
	case c.Shards < 1 || c.Shards > 4096 || c.Shards&(c.Shards-1) != 0:
		return fmt.Errorf("%w: Shards %d must be a power of two in 1..4096", ErrConfig, c.Shards)
	}
	return nil
}

// Errors returned by the Manager. The lockserver maps ErrUnknown and
// ErrExpired to the wire code SessionExpired.
var (
	ErrUnknown    = errors.New("session: unknown session")
	ErrExpired    = errors.New("session: lease expired")
	ErrExists     = errors.New("session: session already open")
	ErrLimit      = errors.New("session: limit reached")
	ErrBadLease   = errors.New("session: lease must be positive")
	ErrBadPath    = errors.New("session: bad watch path")
	ErrNoWatch    = errors.New("session: unknown watch")
	ErrSuperseded = errors.New("session: KeepAlive superseded by a newer one")
	ErrClosed     = errors.New("session: manager closed")
)
