package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

// Config configures a Replica. Start from DefaultConfig and set ID, Members,
// DataDir and Groups.
type Config struct {
	// ID is this replica's id, unique in the cell and never zero.
	ID uint64
	// Members maps every replica id of the cell (this one included) to the
	// address its peers reach it at, such as "10.0.0.1:7001".
	Members map[uint64]string
	// Listen is the address to listen on for peers; empty means
	// Members[ID]. Port 0 picks a free port (see Replica.Addr).
	Listen string
	// DataDir holds the durable log (DataDir/leveldb) and snapshots.
	DataDir string
	// RebuildEmpty makes a replica whose DataDir holds no state yet (a new
	// or wiped disk) rebuild it from its peers instead of starting as a
	// founding member of a new cell: it learns the chosen log but votes
	// only once a leader fenced every ballot it may have voted for before
	// its state was lost (paxos.State.Rebuild). Leave it unset only for
	// the first start of a brand-new cell; a replica that lost its disk
	// and starts without it may break agreement. latchd sets it unless
	// --new-cell is given. See docs/operations.md.
	RebuildEmpty bool
	// Join makes a replica whose DataDir holds no state yet join a running
	// cell as a learner (docs/membership.md R10): Members lists this
	// replica and some current members as seeds to reach (every member
	// with a higher id than this one, which this replica must dial); the
	// member set comes from a snapshot the leader sends once an
	// AddLearner of this id is chosen. It rebuilds (as RebuildEmpty) and
	// votes only once promoted. Ignored once the data dir holds state.
	// Without Join, Members is the founding voter set of a new cell, or
	// the seeds of a running one: once the data dir holds a member set,
	// the replicated set wins (New logs any difference).
	Join bool
	// Alpha is α for a new cell (0: paxos.DefaultAlpha): a voter change
	// chosen at instance s takes effect at s+α. Fixed at creation; tests
	// set it low.
	Alpha uint64
	// Groups are the ids of the Paxos groups this process hosts; every
	// replica of the cell must host the same groups. Each group needs a
	// StateMachine (see New).
	Groups []uint32

	// TickInterval is the period of the monotonic ticker that drives each
	// group's timers. Every duration below is rounded up to whole ticks.
	TickInterval time.Duration
	// HeartbeatInterval is how often a leader sends heartbeats, which
	// carry the chosen mark and renew its lease.
	HeartbeatInterval time.Duration
	// LeaseDuration is the master lease: while a majority granted it, the
	// leader serves reads without a log round and the granters refuse any
	// other proposer's Phase 1. It must exceed HeartbeatInterval.
	LeaseDuration time.Duration
	// ElectionTimeout is how long a follower goes without hearing from a
	// leader before it campaigns. It must exceed LeaseDuration (a granted
	// lease blocks elections anyway).
	ElectionTimeout time.Duration
	// MaxClockDrift bounds how far each replica's monotonic clock may run
	// fast or slow against true time (0.01 = 1 %), so two replicas' clocks
	// may differ by up to twice this. The leader's lease is shortened by
	// the resulting margin (see docs/paxos.md, "lease").
	MaxClockDrift float64

	// MaxBatchCommands and MaxBatchBytes bound one instance's value: the
	// leader packs up to this many concurrent proposals (and bytes) into
	// one Paxos instance.
	MaxBatchCommands int
	MaxBatchBytes    int
	// Window is how many instances a leader keeps in flight at once.
	Window int
	// SnapshotEvery makes each group snapshot its state machine every this
	// many applied instances and truncate its log below the snapshot.
	SnapshotEvery uint64
	// SnapshotChunk is the size of the chunks a snapshot is sent in to a
	// replica too far behind.
	SnapshotChunk int

	// Logger receives state transitions. Nil discards. New adds the keys
	// "replica" (ID) and "component" ("replica", "transport", "paxos")
	// itself: pass a logger without them, as slog writes a key added
	// twice twice.
	Logger *slog.Logger
	// OnRoleChange, if set, is called whenever a group's role, known
	// leader or (while leading) ballot changes on this replica. It runs on
	// the group's loop goroutine and must not block: hand the change to a
	// goroutine of your own. A new leader's state is complete once
	// ReadBarrier succeeds; the ballot serves as a leader epoch.
	OnRoleChange func(RoleChange)

	// Set by Start on the copy it passes to Network.Join, not by callers:
	// the cell id from the cell record (0: not known yet) and where to
	// report one learned from a peer (transport.Config.Cell, OnCell); and
	// whether to dial back lower ids, whose configurations may not name
	// this replica (Replica.dialsBack); and where to report a peer's
	// answer that this replica was removed from the cell
	// (transport.Config.OnRetired).
	cell      uint64
	onCell    func(uint64)
	dialBack  bool
	onRetired func(by uint64)
}

// RoleChange is what OnRoleChange reports.
type RoleChange struct {
	Group  uint32
	Role   paxos.Role   // this replica's role now
	Leader uint64       // the leader this replica knows, 0 if none
	Ballot paxos.Ballot // the ballot this replica leads or campaigns with
}

// DefaultConfig returns a Config with every tunable set to its default;
// ID, Members, DataDir and Groups are left for the caller.
func DefaultConfig() Config {
	return Config{
		TickInterval:      10 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond,
		LeaseDuration:     1 * time.Second,
		ElectionTimeout:   1500 * time.Millisecond,
		MaxClockDrift:     0.01,
		MaxBatchCommands:  1024,
		MaxBatchBytes:     1 << 20,
		Window:            64,
		SnapshotEvery:     10_000,
		SnapshotChunk:     1 << 20,
	}
}

// maxPeerMessage bounds what one peer message may carry (the transport's
// frame limit). Batches and snapshot chunks are limited to maxChunk, so an
// Accept or snapshot chunk always fits, and so does a Promise: the core
// splits one at MaxMessageBytes. Only a Promise to a candidate of an older
// version, which takes no split report, carries every accepted entry above
// its first unchosen instance and gets the rest of the room.
const (
	maxPeerMessage = 64 << 20
	maxChunk       = 8 << 20
)

// Validate reports every problem with c, each wrapping ErrConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if c.ID == 0 {
		bad("ID must not be zero")
	}
	switch {
	case len(c.Members) == 0:
		bad("Members is empty")
	default:
		if _, ok := c.Members[c.ID]; !ok && c.ID != 0 {
			bad("Members does not include this replica (ID %d)", c.ID)
		}
		byAddr := make(map[string]uint64, len(c.Members))
		for _, id := range slices.Sorted(maps.Keys(c.Members)) {
			addr := c.Members[id]
			switch {
			case id == 0:
				bad("member id 0 is not allowed")
			case addr == "" && id != c.ID:
				bad("member %d has no address", id)
			case addr != "" && byAddr[addr] != 0:
				bad("members %d and %d share the address %q", byAddr[addr], id, addr)
			}
			if addr != "" && byAddr[addr] == 0 {
				byAddr[addr] = id
			}
		}
	}
	if c.Listen == "" && c.Members[c.ID] == "" {
		bad("no listen address: set Listen or Members[%d]", c.ID)
	}
	if c.DataDir == "" {
		bad("DataDir is empty")
	}
	if c.Alpha == 1 {
		bad("Alpha 1: must be 0 (the default) or at least 2")
	}
	if len(c.Groups) == 0 {
		bad("Groups is empty")
	}
	seen := make(map[uint32]bool, len(c.Groups))
	for _, g := range c.Groups {
		if seen[g] {
			bad("group %d listed twice", g)
		}
		seen[g] = true
	}
	if c.TickInterval <= 0 {
		bad("TickInterval %v must be positive", c.TickInterval)
	}
	if c.HeartbeatInterval < c.TickInterval {
		bad("HeartbeatInterval %v must be at least TickInterval %v", c.HeartbeatInterval, c.TickInterval)
	}
	if c.LeaseDuration <= c.HeartbeatInterval {
		bad("LeaseDuration %v must exceed HeartbeatInterval %v", c.LeaseDuration, c.HeartbeatInterval)
	}
	if c.ElectionTimeout <= c.LeaseDuration {
		bad("ElectionTimeout %v must exceed LeaseDuration %v", c.ElectionTimeout, c.LeaseDuration)
	}
	if c.MaxClockDrift < 0 || c.MaxClockDrift >= 0.5 {
		bad("MaxClockDrift %v must be in [0, 0.5)", c.MaxClockDrift)
	}
	if c.MaxBatchCommands < 1 {
		bad("MaxBatchCommands %d must be at least 1", c.MaxBatchCommands)
	}
	if c.MaxBatchBytes < 1024 || c.MaxBatchBytes > maxChunk {
		bad("MaxBatchBytes %d must be in [1024, %d]", c.MaxBatchBytes, maxChunk)
	}
	if c.Window < 1 {
		bad("Window %d must be at least 1", c.Window)
	}
	if c.SnapshotEvery < 1 {
		bad("SnapshotEvery %d must be at least 1", c.SnapshotEvery)
	}
	if c.SnapshotChunk < 1024 || c.SnapshotChunk > maxChunk {
		bad("SnapshotChunk %d must be in [1024, %d]", c.SnapshotChunk, maxChunk)
	}
	return errors.Join(errs...)
}

// ticks converts d to a whole number of ticks, rounding up, at least 1.
func (c Config) ticks(d time.Duration) int {
	n := int((d + c.TickInterval - 1) / c.TickInterval)
	return max(n, 1)
}

// peerIDs returns the member ids in ascending order.
func (c Config) peerIDs() []uint64 { return slices.Sorted(maps.Keys(c.Members)) }

// logger returns the configured logger or a discarding one.
func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
