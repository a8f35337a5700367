package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Config configures a Client. The zero value of every field but Endpoints
// means its default (see DefaultConfig); negative durations are errors.
type Config struct {
	// Endpoints are the client addresses (host:port) of the cell's replicas.
	// Any one reachable replica is enough to find the leader. Required.
	Endpoints []string
	// Name identifies this client in the cell's session list (for example
	// "billing-7f9c on host-12"); the cell keeps it with the session.
	// Optional; at most 256 bytes of UTF-8 by default (the cell's
	// Namespace.MaxClientNameLen), or Dial fails with ErrBadRequest.
	Name string
	// NoSession makes Dial connect without opening a session, for tools
	// that only look: reads (Get, Stat, List, ListEntries, Walk, ACL,
	// CheckSequencer, Locks, Sessions, Resolve, Election.Leader), Status and
	// Members work, and with Stale they work while the cell has no leader.
	// Writes, locks and watches fail with ErrInvalid. Dial then needs only
	// some replica to answer.
	NoSession bool

	// SessionTimeout is the session lease to ask the cell for; 0 lets the
	// cell choose (12 s by default). The cell clamps it to its limits.
	SessionTimeout time.Duration
	// Grace is how long a session in jeopardy (its local lease ran out
	// without a successful KeepAlive) keeps trying every replica before the
	// client declares it expired. Default 45 s, as in Chubby.
	Grace time.Duration

	// TLS, if set, makes the client connect to the replicas over TLS with
	// this config: RootCAs verifies their certificates (nil: the system's
	// roots), for the host of each endpoint unless ServerName is set, and
	// Certificates holds the client's certificate for a cell that requires
	// one. Nil means plain TCP. A replica that fails TLS for want of trust
	// (see ErrTLS) is not retried.
	TLS *tls.Config

	// DialTimeout bounds one connection attempt to one replica (TCP connect,
	// the TLS handshake and the Hello/Welcome exchange). Default 2 s.
	DialTimeout time.Duration
	// AttemptTimeout bounds one attempt of a call that does not block by
	// design (everything but Lock's wait and the KeepAlive long poll): after
	// it the client gives up on that replica and retries elsewhere with the
	// same request id. Default 5 s.
	AttemptTimeout time.Duration
	// OpenTimeout bounds Dial when its context has no deadline: connecting
	// to the cell and opening the session. Default 30 s.
	OpenTimeout time.Duration
	// CloseTimeout bounds Close's attempt to end the session at the cell.
	// Default 5 s.
	CloseTimeout time.Duration

	// BackoffMin and BackoffMax bound the pause between retries after a
	// failure; it doubles (with jitter) from min to max. Defaults 20 ms and
	// 1 s.
	BackoffMin, BackoffMax time.Duration

	// WatchBuffer bounds the events queued for one watch that its reader has
	// not taken yet; on overflow they are replaced by one EventMissed.
	// Default 1024.
	WatchBuffer int

	// Logger receives session state transitions and leader changes; nil
	// discards them.
	Logger *slog.Logger
	// Clock is the time source of the session's lease bookkeeping; nil means
	// the system clock.
	Clock Clock
}

// Clock is the client's source of time. Tests may supply their own.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time after d.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults.
const (
	DefaultGrace          = 45 * time.Second
	DefaultDialTimeout    = 2 * time.Second
	DefaultAttemptTimeout = 5 * time.Second
	DefaultOpenTimeout    = 30 * time.Second
	DefaultCloseTimeout   = 5 * time.Second
	DefaultBackoffMin     = 20 * time.Millisecond
	DefaultBackoffMax     = time.Second
	DefaultWatchBuffer    = 1024
)

// DefaultConfig returns a Config with every default filled in and the given
// endpoints.
func DefaultConfig(endpoints ...string) Config {
	return Config{
		Endpoints:      endpoints,
		Grace:          DefaultGrace,
		DialTimeout:    DefaultDialTimeout,
		AttemptTimeout: DefaultAttemptTimeout,
		OpenTimeout:    DefaultOpenTimeout,
		CloseTimeout:   DefaultCloseTimeout,
		BackoffMin:     DefaultBackoffMin,
		BackoffMax:     DefaultBackoffMax,
		WatchBuffer:    DefaultWatchBuffer,
	}
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.Grace, d.Grace)
	setDur(&c.DialTimeout, d.DialTimeout)
	setDur(&c.AttemptTimeout, d.AttemptTimeout)
	setDur(&c.OpenTimeout, d.OpenTimeout)
	setDur(&c.CloseTimeout, d.CloseTimeout)
	setDur(&c.BackoffMin, d.BackoffMin)
	setDur(&c.BackoffMax, d.BackoffMax)
	if c.WatchBuffer == 0 {
		c.WatchBuffer = d.WatchBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return c
}

// Validate checks the Config: at least one endpoint, each a host:port with a
// numeric port and no duplicates; no negative durations; and the cross-field
// rules BackoffMin <= BackoffMax, BackoffMax < Grace, DialTimeout <=
// AttemptTimeout and, when a SessionTimeout is asked for, DialTimeout <
// SessionTimeout (otherwise one hung dial could use up a whole lease). Zero
// fields are checked as their defaults.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: no endpoints", ErrConfig)
	}
	seen := make(map[string]bool, len(c.Endpoints))
	for _, e := range c.Endpoints {
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			return fmt.Errorf("%w: endpoint %q: %v", ErrConfig, e, err)
		}
		if host == "" {
			return fmt.Errorf("%w: endpoint %q has no host", ErrConfig, e)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return fmt.Errorf("%w: endpoint %q: port must be 1..65535", ErrConfig, e)
		}
		if seen[e] {
			return fmt.Errorf("%w: endpoint %q listed twice", ErrConfig, e)
		}
		seen[e] = true
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"SessionTimeout", c.SessionTimeout}, {"Grace", c.Grace},
		{"DialTimeout", c.DialTimeout}, {"AttemptTimeout", c.AttemptTimeout},
		{"OpenTimeout", c.OpenTimeout}, {"CloseTimeout", c.CloseTimeout},
		{"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s is negative (%v)", ErrConfig, f.name, f.v)
		}
	}
	if c.WatchBuffer < 0 {
		return fmt.Errorf("%w: WatchBuffer is negative (%d)", ErrConfig, c.WatchBuffer)
	}
	d := c.withDefaults()
	switch {
	case d.BackoffMin > d.BackoffMax:
		return fmt.Errorf("%w: BackoffMin %v > BackoffMax %v", ErrConfig, d.BackoffMin, d.BackoffMax)
	case d.BackoffMax >= d.Grace:
		return fmt.Errorf("%w: BackoffMax %v must be less than Grace %v", ErrConfig, d.BackoffMax, d.Grace)
	case d.DialTimeout > d.AttemptTimeout:
		return fmt.Errorf("%w: DialTimeout %v > AttemptTimeout %v", ErrConfig, d.DialTimeout, d.AttemptTimeout)
	case d.SessionTimeout > 0 && d.DialTimeout >= d.SessionTimeout:
		return fmt.Errorf("%w: DialTimeout %v must be less than SessionTimeout %v", ErrConfig, d.DialTimeout, d.SessionTimeout)
	}
	return nil
}
