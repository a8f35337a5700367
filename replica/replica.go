package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/replica/logdb"
	"github.com/latchd/latch/replica/paxos"
)

// Replica is one member of a cell: it hosts every group of Config.Groups,
// each with its own Paxos log, leader and goroutines, over one shared
// network endpoint and one log database.
//
// Lifetime: New opens the data dir and recovers every group (restoring the
// state machines from their snapshots); Start joins the network and starts
// the goroutines (see docs/threads.md); Close stops them and closes the data
// dir. Run does Start, waits for ctx or a fatal error, then Close.
type Replica struct {
	cfg Config
	log *slog.Logger
	net Network
	db  *logdb.DB

	groups   map[uint32]*group
	groupIDs []uint32

	link Link

	// The member set (members.go). cell is the cell record; founders and
	// joining say what the cores start from without a snapshot's member
	// set; fallbackAddrs are the peer addresses of members whose Meta has
	// none (the record's, overlaid with Config.Members).
	cell          cellRecord
	fallbackAddrs map[uint64]string
	viewMu        sync.Mutex                        // serialises membersChanged; guards retired, cell and configWarned
	addrs         atomic.Pointer[map[uint64]string] // peer address of every member, by id
	retired       []uint64
	configWarned  bool          // warnConfiguredMembers logged
	removedC      chan struct{} // closed once removed in every group (Removed)
	removedOnce   sync.Once

	mu      sync.Mutex // guards started, closed and link
	started bool
	closed  bool
	state   atomic.Int32 // stateNew, stateRunning or stateClosed, for the hot path

	stop      chan struct{} // closed by shutdown: every goroutine returns
	done      chan struct{} // closed when shutdown finished
	fatalOnce sync.Once
	fatalErr  atomic.Pointer[error]
	fatalC    chan struct{} // closed on the first fatal error
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Lifecycle states of a Replica.
const (
	stateNew int32 = iota
	stateRunning
	stateClosed
)

// New opens cfg.DataDir and recovers every group of cfg.Groups with the
// state machine sms[group] (restored from the group's latest snapshot, if
// any). net is how the replica reaches its peers: nil means TCPNetwork{}.
// New starts no goroutines; call Start or Run.
func New(cfg Config, sms map[uint32]StateMachine, net Network) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, g := range cfg.Groups {
		if sms[g] == nil {
			return nil, fmt.Errorf("%w: no StateMachine for group %d", ErrConfig, g)
		}
	}
	for g := range sms {
		if !slices.Contains(cfg.Groups, g) {
			return nil, fmt.Errorf("%w: StateMachine given for group %d, which is not in Groups", ErrConfig, g)
		}
	}
	if net == nil {
		net = TCPNetwork{}
	}
	lg := cfg.logger().With("replica", cfg.ID, "component", "replica")
	db, err := logdb.Open(cfg.DataDir, logdb.Options{Logger: lg})
	if err != nil {
		return nil, fmt.Errorf("replica: open data dir: %w", err)
	}
	rec, err := checkCell(cfg, db, lg)
	if err != nil {
		db.Close()
		return nil, err
	}
	r := &Replica{
		cfg:      cfg,
		log:      lg,
		net:      net,
		db:       db,
		groups:   make(map[uint32]*group, len(cfg.Groups)),
		groupIDs: slices.Sorted(slices.Values(cfg.Groups)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		fatalC:   make(chan struct{}),
		cell:     rec,
		removedC: make(chan struct{}),
	}
	r.fallbackAddrs = rec.addrs()
	maps.Copy(r.fallbackAddrs, cfg.Members)
	for _, id := range r.groupIDs {
		g, err := newGroup(r, id, sms[id])
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("replica: recover group %d: %w", id, err)
		}
		r.groups[id] = g
	}
	v := r.view()
	r.warnConfiguredMembers(v)
	r.addrs.Store(&v.addrs)
	r.retired = v.retired
	return r, nil
}

// joining reports whether the cores start as joiners, without a member
// set until a snapshot brings one: the data dir was first used by a
// replica joining the cell (Config.Join) or rebuilding lost state
// (Config.RebuildEmpty), which does not know the founders (cellRecord).
func (r *Replica) joining() bool { return r.cell.Join || r.cell.Rebuilt }

// cellPath is the cell record's path.
func (r *Replica) cellPath() string { return filepath.Join(r.cfg.DataDir, CellFile) }

// HasState reports whether dataDir holds durable Paxos state for any of
// groups: a promise, an accepted or chosen entry, a snapshot or a rebuild
// under way. A data dir that does not exist, or that a replica opened but
// which never voted, holds none. It opens and closes the log database, so
// call it before New, never while a Replica runs on dataDir.
func HasState(dataDir string, groups []uint32) (bool, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "leveldb")); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("replica: data dir: %w", err)
	}
	db, err := logdb.Open(dataDir, logdb.Options{})
	if err != nil {
		return false, fmt.Errorf("replica: open data dir: %w", err)
	}
	defer db.Close()
	for _, g := range groups {
		st, err := db.Group(g).Load()
		if err != nil {
			return false, fmt.Errorf("replica: group %d: %w", g, err)
		}
		if !st.IsEmpty() {
			return true, nil
		}
	}
	return false, nil
}

// Start joins the network and starts every group's goroutines. It returns
// at once.
func (r *Replica) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.started {
		return nil
	}
	// The network starts with the replicated member set's addresses; the
	// configured ones only where no member set is known (a joiner's seeds).
	r.viewMu.Lock()
	v := r.view()
	jc := r.cfg
	jc.Members = maps.Clone(v.addrs)
	jc.Members[r.cfg.ID] = r.cfg.Members[r.cfg.ID]
	jc.cell, jc.onCell = r.cell.cellID(), r.learnCell
	jc.dialBack = r.dialsBack()
	jc.onRetired = r.retiredBy
	link, err := r.net.Join(jc, r.deliver)
	if err != nil {
		r.viewMu.Unlock()
		return err
	}
	link.SetPeers(v.addrs, v.retired)
	r.addrs.Store(&v.addrs)
	r.retired = v.retired
	r.viewMu.Unlock()
	r.link = link
	r.started = true
	r.state.Store(stateRunning)
	for _, id := range r.groupIDs {
		r.groups[id].start()
	}
	r.wg.Add(1)
	go r.supervise()
	r.log.Info("replica started", "addr", link.Addr(), "groups", r.groupIDs)
	return nil
}

// Run starts the replica, waits until ctx is done or the replica stops on a
// fatal error, and closes it. It returns nil after ctx ended, or the fatal
// error (wrapping ErrFatal).
func (r *Replica) Run(ctx context.Context) error {
	if err := r.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-r.fatalC:
	}
	r.Close()
	return r.Err()
}

// supervise closes the replica after a fatal error. Close cannot be called
// from the goroutine that hit the error, since Close waits for it.
func (r *Replica) supervise() {
	defer r.wg.Done()
	select {
	case <-r.fatalC:
		go r.Close()
	case <-r.stop:
	}
}

// Close stops every goroutine, fails waiting calls with ErrClosed, and
// closes the network endpoint and the data dir. It is safe to call more
// than once and from any goroutine except one of the replica's own.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.state.Store(stateClosed)
		started := r.started
		r.mu.Unlock()
		close(r.stop)
		if started {
			// Stop inbound traffic first, so no handler races the teardown.
			if err := r.link.Close(); err != nil {
				r.log.Warn("closing network endpoint", "err", err)
			}
			for _, id := range r.groupIDs {
				r.groups[id].wait()
			}
		}
		r.wg.Wait()
		r.closeErr = r.db.Close()
		close(r.done)
		r.log.Info("replica closed")
	})
	return r.closeErr
}

// Done is closed once the replica has stopped (after Close, or after a
// fatal error and the close it triggers).
func (r *Replica) Done() <-chan struct{} { return r.done }

// Err returns the fatal error that stopped the replica (wrapping ErrFatal),
// or nil.
func (r *Replica) Err() error {
	if p := r.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fatal records err as fatal and starts the shutdown. The caller must stop
// what it was doing at once (never continue after a failed write).
func (r *Replica) fatal(err error) {
	r.fatalOnce.Do(func() {
		e := fmt.Errorf("%w: %w", ErrFatal, err)
		r.fatalErr.Store(&e)
		r.log.Error("replica stopping on a fatal error", "err", err)
		close(r.fatalC)
	})
}

// stoppedErr is the error for calls that find the replica stopping.
func (r *Replica) stoppedErr() error {
	if err := r.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// ID returns this replica's id.
func (r *Replica) ID() uint64 { return r.cfg.ID }

// Addr returns the address the replica listens on for peers (empty before
// Start).
func (r *Replica) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.link == nil {
		return ""
	}
	return r.link.Addr()
}

// Groups returns the ids of the hosted groups, ascending.
func (r *Replica) Groups() []uint32 { return slices.Clone(r.groupIDs) }

func (r *Replica) group(id uint32) (*group, error) {
	g := r.groups[id]
	if g == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownGroup, id)
	}
	switch r.state.Load() {
	case stateClosed:
		return nil, r.stoppedErr()
	case stateNew:
		return nil, ErrNotStarted
	}
	return g, nil
}

// Propose submits cmd to the group and waits until it is chosen and applied
// on this replica, returning the state machine's result. Only the group's
// leader accepts proposals: elsewhere Propose returns a *NotLeaderError
// (naming the leader when known) without proposing anything.
//
// Concurrent proposals are batched into one Paxos instance. The caller must
// not modify cmd until Propose returns.
//
// If ctx ends first, Propose returns ctx.Err(). The command may then still
// be chosen and applied (on every replica, all or nothing) later; it is
// never half-applied. The same holds for ErrLeadershipLost.
func (r *Replica) Propose(ctx context.Context, group uint32, cmd []byte) ([]byte, error) {
	g, err := r.group(group)
	if err != nil {
		return nil, err
	}
	if batchHeaderMax+batchSize(cmd) > r.cfg.MaxBatchBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d per batch", ErrTooLarge, len(cmd), r.cfg.MaxBatchBytes-batchHeaderMax-binaryMaxVarint)
	}
	return g.propose(ctx, cmd, false)
}

const binaryMaxVarint = 10

// ReadBarrier returns once this replica's state machine for the group
// reflects every write acknowledged (by any replica) before the call, so a
// read of the local state after it is linearizable. On the leader it costs no
// log round while the master lease holds; without a lease it sends a read
// marker through the log. On a follower it returns *NotLeaderError.
func (r *Replica) ReadBarrier(ctx context.Context, group uint32) error {
	g, err := r.group(group)
	if err != nil {
		return err
	}
	return g.readBarrier(ctx)
}

// LeaseRead reports whether a read of this replica's state machine for the
// group, made after LeaseRead returns true and before the request it serves
// is answered, is linearizable without ReadBarrier: this replica leads, its
// master lease holds now, and its state machine has applied every write
// acknowledged before the call. It never waits and takes no lock; when it
// returns false (a follower, no lease, the state machine behind), use
// ReadBarrier.
func (r *Replica) LeaseRead(group uint32) bool {
	g := r.groups[group]
	return g != nil && g.leaseRead()
}

// Leader returns the group's leader as this replica knows it: its id and
// peer address, and ok false when unknown (or the group is not hosted).
func (r *Replica) Leader(group uint32) (id uint64, addr string, ok bool) {
	g := r.groups[group]
	if g == nil {
		return 0, "", false
	}
	id = g.leader.Load()
	if id == 0 {
		return 0, "", false
	}
	return id, r.peerAddr(id), true
}

// Status describes one group on this replica.
type Status struct {
	Group      uint32
	ID         uint64       // this replica
	Role       paxos.Role   // follower, candidate or leader
	Leader     uint64       // 0 if unknown
	Ballot     paxos.Ballot // the ballot this replica leads or campaigns with
	Promised   paxos.Ballot // highest ballot promised
	LeaseValid bool         // leader holding a master lease
	Chosen     uint64       // every instance at or below is known chosen
	Applied    uint64       // last instance applied to the state machine
	Snapshot   uint64       // last instance covered by the stored snapshot
	// SnapshotBytes is the size of the stored snapshot (0 if none).
	SnapshotBytes int64
	InFlight      int  // instances proposed, not yet chosen (leader)
	Rebuilding    bool // rebuilding lost state: learning, not voting (Config.RebuildEmpty), until its end is durable
	Stats         Stats
	// Peers is the leader's view of each follower (empty off the leader).
	Peers []PeerStatus
	// Members is the group's member set as of Applied (zero while a
	// joiner has none yet).
	Members paxos.Members
}

// PeerStatus is what a leader knows of one follower.
type PeerStatus struct {
	ID uint64
	// Chosen is the last instance the follower reported it knows chosen
	// (the leader's Chosen minus it is the follower's lag).
	Chosen uint64
	// LastAck is how long ago the follower last acknowledged this leader,
	// -1 if it has not since the leader took office.
	LastAck time.Duration
}

// Stats counts a group's work since Start.
type Stats struct {
	Proposals     uint64        // commands accepted by Propose on this replica
	Batches       uint64        // instances this replica proposed (batches)
	Pipelined     uint64        // of those, proposed while this replica's own write was in flight
	Applied       uint64        // commands applied to the state machine
	Writes        uint64        // log writes (one leveldb batch each)
	SyncedWrites  uint64        // log writes with sync (one fsync each, unless leveldb merged them)
	SyncTime      time.Duration // total time spent in synced log writes
	Dropped       uint64        // inbound peer messages dropped (full queue, undecodable)
	SendErrors    uint64        // outbound messages the network refused
	SnapshotsTook uint64        // snapshots taken of the local state machine
	SnapshotsSent uint64        // snapshot transfers completed to peers
	SnapshotsRecv uint64        // snapshots received and restored
	// BatchSizes counts the batches this replica proposed by size:
	// BatchSizes[i] those of at most BatchSizeBuckets[i] commands (and
	// more than the bucket before), the last one the larger ones;
	// BatchCommands is the commands in them.
	BatchSizes    []uint64
	BatchCommands uint64
	// ApplyLatency counts the chosen instances applied to the state machine
	// by the time it took: ApplyLatency[i] those under
	// ApplyLatencyBuckets[i], the last one the slower ones. ApplyTime is
	// their total.
	ApplyLatency []uint64
	ApplyTime    time.Duration
}

// Status returns the group's state. It asks the group's goroutine, so it
// waits behind the work queued there.
func (r *Replica) Status(ctx context.Context, group uint32) (Status, error) {
	g, err := r.group(group)
	if err != nil {
		return Status{}, err
	}
	return g.status(ctx)
}

// deliver is the network Handler: decode and hand to the group's loop,
// never blocking (a full inbox drops the message, as the network may).
func (r *Replica) deliver(from uint64, group uint32, payload []byte) {
	g := r.groups[group]
	if g == nil {
		return
	}
	in, err := decodeInbound(from, payload)
	if err != nil {
		g.stats.dropped.Add(1)
		g.log.Debug("dropping undecodable peer message", "from", from, "err", err)
		return
	}
	select {
	case g.inbox <- in:
	default:
		g.stats.dropped.Add(1)
	}
}
