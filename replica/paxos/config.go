package paxos

import (
	"fmt"
	"log/slog"
	"slices"
)

// MaxPeers is the largest cell the core supports (acknowledgements are a
// bitmask of peer positions).
const MaxPeers = 64

// leaseRing is how many lease rounds the leader remembers the start of.
const leaseRing = 64

// Config configures a Node. All durations are in ticks; the driver calls
// Node.Tick at a fixed rate of its monotonic clock.
type Config struct {
	// ID of this replica, non-zero, and listed in Peers.
	ID uint64
	// Peers are the IDs of the bootstrap voter set, this replica
	// included unless it joins (Join): the member set of a cell whose
	// durable state holds none (State.Members).
	Peers []uint64
	// Alpha is the bootstrap α (0: DefaultAlpha): a member change chosen
	// at instance s governs instances from s+α on. Fixed when the cell is
	// created; a recovered member set carries its own. At least 2: the
	// far-ahead bound and a leader's window are G = α−1 instances past
	// what a replica knows chosen (R3), and with G 0 nothing is accepted.
	Alpha uint64
	// Join: this replica joins an existing cell as a learner
	// (docs/membership.md R10): it starts rebuilding with no member set
	// and learns one from a peer's snapshot; Peers are only whom it may
	// hear from first.
	Join bool
	// HeartbeatTicks between two heartbeats (lease rounds) of a leader,
	// and between retransmissions of unacknowledged accepts.
	HeartbeatTicks int
	// ElectionTicks without hearing from a leader before a follower starts
	// Phase 1 (plus a random offset in [0, ElectionTicks)); also the time a
	// candidate waits for promises before retrying.
	ElectionTicks int
	// LeaseTicks is the master lease: a follower that acknowledged a
	// leader's message refuses other replicas' Prepares for LeaseTicks+1
	// of its ticks after receiving it.
	LeaseTicks int
	// DriftTicks is subtracted by the leader: its lease ends at the start
	// of the last round a majority acknowledged + LeaseTicks - DriftTicks.
	// Safe while tick rates differ by at most a factor
	// LeaseTicks/(LeaseTicks-DriftTicks).
	DriftTicks int
	// Window is the number of instances a leader may have in flight
	// (proposed, not yet chosen).
	Window int
	// MaxBatchBytes bounds one proposed value.
	MaxBatchBytes int
	// MaxMessageBytes bounds the value bytes the core packs into one
	// Accept or Chosen message, and the bytes of one Promise (values plus
	// 48 per entry); a message always carries at least one entry. A
	// Promise to a candidate of an older version is not split (see
	// docs/paxos.md).
	MaxMessageBytes int
	// Incarnation tells this start of the replica from its earlier ones:
	// the driver draws it at random (non-zero) each time it creates the
	// Node. A Prepare carries it and a Promise counts only if it echoes
	// it, so a Promise made to an earlier incarnation that issued the same
	// ballot is never counted. Only a replica that lost its state can
	// issue a ballot again (docs/paxos.md, "Rebuilding a replica that lost
	// its state"); zero (tests) leaves every start the same.
	Incarnation uint64
	// Rand, if set, supplies the randomness for election offsets; nil
	// gives deterministic offsets staggered by the replica's position.
	Rand func() uint64
	// Logger receives state transitions; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config for replica id in a cell of peers with
// timing for a 10 ms tick: heartbeat 100 ms, election 1 s, lease 2 s,
// drift margin 10 %.
func DefaultConfig(id uint64, peers []uint64) Config {
	return Config{
		ID:              id,
		Peers:           slices.Clone(peers),
		HeartbeatTicks:  10,
		ElectionTicks:   100,
		LeaseTicks:      200,
		DriftTicks:      20,
		Window:          64,
		MaxBatchBytes:   1 << 20,
		MaxMessageBytes: 4 << 20,
	}
}

// Validate checks the configuration, with cross-field checks.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.ID == 0:
		return bad("ID must be non-zero")
	case len(c.Peers) == 0:
		return bad("no peers")
	case len(c.Peers) > MaxPeers:
		return bad("%d peers, at most %d", len(c.Peers), MaxPeers)
	case !c.Join && !slices.Contains(c.Peers, c.ID):
		return bad("ID %d not in Peers %v", c.ID, c.Peers)
	case c.Alpha == 1:
		return bad("Alpha 1, must be 0 (the default) or at least 2: G = α−1 instances may be in flight")
	}
	seen := make(map[uint64]bool, len(c.Peers))
	for _, p := range c.Peers {
		if p == 0 {
			return bad("peer ID 0")
		}
		if seen[p] {
			return bad("duplicate peer %d", p)
		}
		seen[p] = true
	}
	switch {
	case c.HeartbeatTicks <= 0:
		return bad("HeartbeatTicks %d must be positive", c.HeartbeatTicks)
	case c.ElectionTicks <= c.HeartbeatTicks:
		return bad("ElectionTicks %d must exceed HeartbeatTicks %d", c.ElectionTicks, c.HeartbeatTicks)
	case c.LeaseTicks < 0:
		return bad("LeaseTicks %d must not be negative", c.LeaseTicks)
	case c.LeaseTicks > 0 && c.LeaseTicks <= c.HeartbeatTicks:
		return bad("LeaseTicks %d must exceed HeartbeatTicks %d", c.LeaseTicks, c.HeartbeatTicks)
	case c.LeaseTicks >= (leaseRing-2)*c.HeartbeatTicks:
		return bad("LeaseTicks %d must be below %d heartbeats", c.LeaseTicks, leaseRing-2)
	case c.DriftTicks < 0 || (c.LeaseTicks > 0 && c.DriftTicks >= c.LeaseTicks):
		return bad("DriftTicks %d must be in [0, LeaseTicks %d)", c.DriftTicks, c.LeaseTicks)
	case c.Window <= 0:
		return bad("Window %d must be positive", c.Window)
	case c.MaxBatchBytes <= 0:
		return bad("MaxBatchBytes %d must be positive", c.MaxBatchBytes)
	case c.MaxMessageBytes < c.MaxBatchBytes:
		return bad("MaxMessageBytes %d must be at least MaxBatchBytes %d", c.MaxMessageBytes, c.MaxBatchBytes)
	}
	return nil
}
