package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Election is the leader-election recipe of Chubby §2.6: candidates take the
// exclusive lock on the election node; the winner writes its sequencer and
// its value (an address, say) into the node's content. Anyone can read the
// leader (Leader) or follow it (Observe); a value counts only while its
// sequencer is current, so a leader whose session ended is never reported.
//
// An Election is used by one candidate at a time; observers may share it.
type Election struct {
	c    *Client
	path string

	mu          sync.Mutex
	lock        *Lock // held while leader
	campaigning bool  // a Campaign is waiting or publishing
}

// NewElection returns the election on the node at path (created on the
// first Campaign if missing).
func NewElection(c *Client, path string) *Election {
	return &Election{c: c, path: path}
}

// LeaderInfo describes the current leader of an election.
type LeaderInfo struct {
	// Value is what the leader passed to Campaign.
	Value string
	// Sequencer is the leader's grant: pass it to servers that must reject
	// a deposed leader.
	Sequencer Sequencer
}

// Campaign blocks until this candidate is the leader (or ctx ends, or the
// session is over), then publishes value. Leadership lasts until Resign or
// the loss of the session: watch Lost. Campaigning while already leader, or
// while another Campaign on the same Election runs, fails with ErrInvalid.
func (e *Election) Campaign(ctx context.Context, value string) error {
	e.mu.Lock()
	switch {
	case e.campaigning:
		e.mu.Unlock()
		return fmt.Errorf("Campaign: %w: a Campaign for %s is already running", ErrInvalid, e.path)
	case e.lock != nil && !isClosed(e.lock.Lost()):
		e.mu.Unlock()
		return fmt.Errorf("Campaign: %w: already the leader of %s", ErrInvalid, e.path)
	}
	e.lock, e.campaigning = nil, true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.campaigning = false
		e.mu.Unlock()
	}()

	l, err := e.c.Lock(ctx, e.path)
	if err != nil {
		return fmt.Errorf("Campaign: %w", err)
	}
	if _, err := e.c.Put(ctx, e.path, encodeLeader(l.Sequencer(), value)); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.c.cfg.AttemptTimeout)
		defer cancel()
		if uerr := l.Unlock(uctx); uerr != nil {
			e.c.log.Warn("client: could not resign after failing to publish leadership", "path", e.path, "err", uerr)
		}
		return fmt.Errorf("Campaign: publish: %w", err)
	}
	e.mu.Lock()
	e.lock = l
	e.mu.Unlock()
	return nil
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Proclaim changes the value the leader publishes, without losing
// leadership. It fails with ErrNotHolder if this candidate is not the leader.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock == nil {
		return fmt.Errorf("Proclaim: %w: not the leader of %s", ErrNotHolder, e.path)
	}
	if isClosed(e.lock.Lost()) {
		return fmt.Errorf("Proclaim: %w: leadership of %s was lost", ErrNotHolder, e.path)
	}
	_, err := e.c.Put(ctx, e.path, encodeLeader(e.lock.Sequencer(), value))
	return err
}

// Resign gives up leadership. It does nothing if this candidate is not the
// leader (it never won, or already resigned).
//
// If the cell says the leadership was already gone (another session deleted
// the election node, and maybe created it again; or this session ended),
// Resign still ends it here, and returns an error matching ErrNotHolder and
// the cell's error (ErrNotFound, ErrGenerationMismatch, ErrSessionExpired):
// this candidate did not lead all along, whatever it did as leader may
// need undoing. After the Client's Close it returns nil: Close ended the
// session and with it the leadership. Any other error (the cell
// unreachable) leaves the leadership held: retry.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock == nil {
		return nil
	}
	err := e.lock.Unlock(ctx)
	switch {
	case err == nil, errors.Is(err, ErrClosed):
		e.lock = nil
		return nil
	case errors.Is(err, ErrNotHolder):
		e.lock = nil
		return fmt.Errorf("Resign: leadership of %s was lost before: %w", e.path, err)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrGenerationMismatch), errors.Is(err, ErrSessionExpired):
		e.lock = nil
		return fmt.Errorf("Resign: %w: leadership of %s was lost before: %w", ErrNotHolder, e.path, err)
	}
	return fmt.Errorf("Resign: %w", err)
}

// Lost returns a channel that is closed if leadership is lost without
// Resign (the session ended). Before a successful Campaign it returns a
// closed channel.
func (e *Election) Lost() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return e.lock.Lost()
}

// Sequencer returns the leader's sequencer while this candidate leads, and
// the zero Sequencer otherwise.
func (e *Election) Sequencer() Sequencer {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lock == nil {
		return Sequencer{}
	}
	return e.lock.Sequencer()
}

// Leader returns the current leader. It fails with ErrNoLeader if no
// candidate holds the election, or the holder has not published yet.
// Options: Stale.
func (e *Election) Leader(ctx context.Context, opts ...Option) (LeaderInfo, error) {
	n, err := e.c.Get(ctx, e.path, opts...)
	if errors.Is(err, ErrNotFound) {
		return LeaderInfo{}, fmt.Errorf("Leader: %w: %s does not exist", ErrNoLeader, e.path)
	}
	if err != nil {
		return LeaderInfo{}, err
	}
	info, ok := decodeLeader(n.Data)
	if !ok || info.Sequencer.Path != e.path {
		return LeaderInfo{}, fmt.Errorf("Leader: %w: %s holds no leader record", ErrNoLeader, e.path)
	}
	valid, err := e.c.CheckSequencer(ctx, info.Sequencer, opts...)
	if err != nil {
		return LeaderInfo{}, err
	}
	if !valid {
		return LeaderInfo{}, fmt.Errorf("Leader: %w: the last leader of %s is gone", ErrNoLeader, e.path)
	}
	return info, nil
}

// Observe returns a channel that receives the leader now and then each time
// it changes; a zero LeaderInfo means that there is no leader. The channel
// is closed when ctx ends or the session is over.
func (e *Election) Observe(ctx context.Context) (<-chan LeaderInfo, error) {
	events, err := e.c.Watch(ctx, e.path)
	if err != nil {
		return nil, fmt.Errorf("Observe: %w", err)
	}
	out := make(chan LeaderInfo)
	c := e.c
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("Observe: %w", c.Err())
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer close(out)
		var last *LeaderInfo
		for {
			info, err := e.Leader(ctx)
			if err != nil && !errors.Is(err, ErrNoLeader) {
				if ctx.Err() != nil || c.life.Err() != nil {
					return
				}
				c.log.Warn("client: election observer could not read the leader", "path", e.path, "err", err)
			} else if last == nil || *last != info {
				last = &info
				select {
				case out <- info:
				case <-ctx.Done():
					return
				case <-c.life.Done():
					return
				}
			}
			// Any event on the node may change the leader; a closed events
			// channel means the watch is over.
			if _, ok := <-events; !ok {
				return
			}
		}
	}()
	return out, nil
}

// encodeLeader is the election node's content: the sequencer's printable
// form, a newline, and the value.
func encodeLeader(seq Sequencer, value string) []byte {
	return []byte(seq.String() + "\n" + value)
}

func decodeLeader(data []byte) (LeaderInfo, bool) {
	line, value, ok := strings.Cut(string(data), "\n")
	if !ok {
		return LeaderInfo{}, false
	}
	seq, err := ParseSequencer(line)
	if err != nil {
		return LeaderInfo{}, false
	}
	return LeaderInfo{Value: value, Sequencer: seq}, true
}
