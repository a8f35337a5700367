package lockserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
	"github.com/latchd/latch/replica/paxos"
)

// group is the one Paxos group the server runs its namespace in.
const group uint32 = 1

// Errors of the Server's lifecycle.
var (
	// ErrClosed is returned by calls on a closed Server.
	ErrClosed = errors.New("lockserver: server closed")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("lockserver: server already started")
)

// Server is one replica of a latch cell: the Paxos replica, the namespace
// state machine it replicates, the leader's session manager, and the client
// listener.
//
// Lifetime: New opens the data dir and recovers the state; Start listens
// for clients and peers and starts the goroutines (docs/threads.md); Close
// stops them all. Run is Start, wait for ctx, Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	cell    *cellClock  // command time
	steady  steadyClock // the session manager's clock
	fsm     *fsm
	rep     *replica.Replica
	members memberSet // rep's member set (Config.members in tests)
	metrics *Metrics

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	term    atomic.Pointer[term]               // the current leader term, nil when not leading
	role    atomic.Pointer[replica.RoleChange] // the replica's latest role report
	roleC   chan struct{}                      // wakes the leader loop on a report
	barrier readBarrier
	pending pendingTable
	changes changeLog // member changes answered, for retries

	mu      sync.Mutex
	started bool
	closed  bool
	ln      net.Listener

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, opens cfg.DataDir and recovers the namespace from the
// local snapshot and log. It starts nothing: call Start or Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.logger().With("replica", cfg.ID),
		clock:   cfg.clock(),
		steady:  steadyClock{cfg.clock()},
		fsm:     newFSM(cfg.Namespace),
		metrics: newMetrics(),
		roleC:   make(chan struct{}, 1),
	}
	s.cell = newCellClock(s.clock, &s.fsm.applied)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	rc := cfg.replicaConfig()
	rc.OnRoleChange = s.onRoleChange
	rep, err := replica.New(rc, map[uint32]replica.StateMachine{group: s.fsm}, cfg.peerNetwork())
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("lockserver: %w", err)
	}
	s.rep = rep
	s.members = cfg.members
	if s.members == nil {
		s.members = rep
	}
	s.barrier.s = s
	return s, nil
}

// Start listens for clients, joins the cell and starts the goroutines. It
// returns at once.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.started:
		return ErrStarted
	}
	addr := s.cfg.ClientListen
	if addr == "" {
		addr = s.cfg.Members[s.cfg.ID].Client
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("lockserver: listen for clients: %w", err)
	}
	if err := s.rep.Start(); err != nil {
		ln.Close()
		return fmt.Errorf("lockserver: %w", err)
	}
	s.ln = ln
	s.started = true
	s.wg.Add(2)
	go s.acceptLoop(ln)
	go s.leaderLoop()
	s.log.Info("server started", "clients", ln.Addr().String(), "peers", s.rep.Addr())
	return nil
}

// Run starts the server, waits until ctx ends, the replica stops on a
// fatal error, or a member change removes it from the cell, and closes the
// server. It returns nil after ctx ended, ErrRemoved, or the fatal error.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	removed := false
	select {
	case <-ctx.Done():
	case <-s.rep.Done():
	case <-s.Removed():
		removed = true
		// The replica keeps answering as an acceptor meanwhile, which a
		// remaining voter that lags behind may still need
		// (docs/membership.md §11).
		s.log.Info("removed from the cell by a member change; stopping after two election timeouts")
		select {
		case <-ctx.Done():
		case <-s.rep.Done():
		case <-time.After(2 * s.cfg.Replica.ElectionTimeout):
		}
	}
	err := s.rep.Err()
	if removed && err == nil {
		err = ErrRemoved
	}
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// Done is closed when the server's replica has stopped (after Close or a
// fatal storage error).
func (s *Server) Done() <-chan struct{} { return s.rep.Done() }

// Close hands the leadership off if this replica leads (see resign), stops
// accepting clients, closes every connection (calls in flight are answered
// Unavailable or cut), ends the leader term, and closes the replica and its
// data dir. It is safe to call more than once.
func (s *Server) Close() error { return s.close(true) }

// close is Close; without resign the leadership is not handed off, so the
// peers see this replica vanish as after a crash and wait out its lease
// (Cell.Crash, for tests of that path).
func (s *Server) close(resign bool) error {
	s.closeOnce.Do(func() {
		if resign {
			s.resign()
		}
		s.mu.Lock()
		s.closed = true
		ln := s.ln
		s.mu.Unlock()
		s.cancel() // ends every client connection and the calls on it
		if ln != nil {
			ln.Close()
		}
		s.wg.Wait() // the leader loop ends the term on its way out
		s.closeErr = s.rep.Close()
		s.log.Info("server closed")
	})
	return s.closeErr
}

// resign gives up the leadership before Close stops the replica, so the
// others elect a new leader at once instead of waiting out this replica's
// master lease (replica.Resign). It waits at most the lease, and at most a
// second: past that, waiting longer costs more than the lease it saves.
// Clients still connected meanwhile are told the new leader, not cut off.
func (s *Server) resign() {
	if id, _, ok := s.rep.Leader(group); !ok || id != s.cfg.ID {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(time.Second, s.cfg.Replica.LeaseDuration))
	defer cancel()
	err := s.rep.Resign(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("could not resign leadership", "err", err)
		return
	}
	// Past the bound the resignation is normally out all the same: what
	// went unconfirmed is a new leader (the others may still be electing,
	// or be stopping too, as when a whole cell is shut down).
	id, _, _ := s.rep.Leader(group)
	s.log.Info("resigned leadership", "leader", id, "confirmed", err == nil)
}

// ErrNotLeading: TransferLeadership on a replica that does not lead.
var ErrNotLeading = errors.New("lockserver: this replica does not lead")

// TransferLeadership hands the leadership to another replica while this one
// keeps running, as a leader does before it stops (replica.Resign): it ends
// its master lease at once and names the most up-to-date follower, which is
// elected without waiting out a lease; sessions keep their leases (the new
// leader gives each a fresh one and a Failover event). It returns the new
// leader once one is known, or ctx's error; ErrNotLeading if this replica
// does not lead. For maintenance of a leader's machine, or to move the
// leadership away from a slow one (etcd's move-leader).
func (s *Server) TransferLeadership(ctx context.Context) (uint64, error) {
	if id, _, ok := s.rep.Leader(group); !ok || id != s.cfg.ID {
		return 0, ErrNotLeading
	}
	if err := s.rep.Resign(ctx); err != nil {
		return 0, err
	}
	id, _, _ := s.rep.Leader(group)
	s.log.Info("leadership transferred", "leader", id)
	return id, nil
}

// ID returns this replica's id.
func (s *Server) ID() uint64 { return s.cfg.ID }

// ClientAddr returns the address clients reach this server at (the
// listener's, which resolves port 0), or "" before Start.
func (s *Server) ClientAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// PeerAddr returns the address the replica listens on for peers.
func (s *Server) PeerAddr() string { return s.rep.Addr() }

// Metrics returns the server's counters (live: read them with Snapshot).
func (s *Server) Metrics() *Metrics { return s.metrics }

// IsLeader reports whether this replica leads the cell and has started its
// leader term (it serves sessions).
func (s *Server) IsLeader() bool { return s.term.Load() != nil }

// onRoleChange receives the replica's role reports (on its loop goroutine:
// it must not block) and wakes the leader loop.
func (s *Server) onRoleChange(rc replica.RoleChange) {
	if rc.Group != group {
		return
	}
	s.role.Store(&rc)
	select {
	case s.roleC <- struct{}{}:
	default:
	}
}

// leaderLoop starts and ends leader terms as this replica gains and loses
// the Paxos leadership: on every role report, and every LeaderPoll in case a
// start failed or the state was restored under a term.
func (s *Server) leaderLoop() {
	defer s.wg.Done()
	tk := time.NewTicker(s.cfg.LeaderPoll)
	defer tk.Stop()
	var cur *term
	defer func() {
		if cur != nil {
			cur.end()
		}
	}()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.rep.Done():
			return
		case <-s.roleC:
		case <-tk.C:
		}
		rc := s.role.Load()
		leading := rc != nil && rc.Role == paxos.Leader
		if cur != nil {
			if leading && rc.Ballot == cur.ballot && s.fsm.restored.Load() == cur.restored {
				continue
			}
			cur.end()
			cur = nil
		}
		if leading {
			cur = s.startTerm(rc.Ballot)
		}
	}
}

// leaderTerm returns the current term, waiting briefly while this replica
// has won leadership but not yet started its term. It fails with NotLeader
// (naming the leader) or Unavailable.
func (s *Server) leaderTerm(ctx context.Context) (*term, *wire.Error) {
	deadline := time.Now().Add(time.Second)
	for {
		if t := s.term.Load(); t != nil {
			return t, nil
		}
		id, _, ok := s.rep.Leader(group)
		if !ok || id != s.cfg.ID || time.Now().After(deadline) {
			return nil, s.notLeader()
		}
		select {
		case <-ctx.Done():
			return nil, s.closing()
		case <-time.After(s.cfg.LeaderPoll):
		}
	}
}

// notLeader is the answer of a replica that cannot serve a leader-only
// call: NotLeader with the leader's client address when known.
func (s *Server) notLeader() *wire.Error {
	id, _, ok := s.rep.Leader(group)
	switch {
	case !ok:
		return wire.Errorf(wire.Unavailable, "no leader known; retry")
	case id == s.cfg.ID:
		return s.unavailable("this replica is taking over as leader; retry")
	}
	a, _ := s.memberAddrs(id)
	return &wire.Error{Code: wire.NotLeader, Message: fmt.Sprintf("replica %d is not the leader; replica %d is", s.cfg.ID, id),
		Leader: a.Client}
}

// unavailable is an Unavailable error that names the leader when this
// replica knows it (itself, if it leads but cannot serve the call just
// now), so that the client retries there rather than moving on to another
// replica: an Unavailable that names nobody sends clients elsewhere.
func (s *Server) unavailable(format string, args ...any) *wire.Error {
	e := wire.Errorf(wire.Unavailable, format, args...)
	if addr, ok := s.leaderAddr(); ok {
		e.Leader = addr
	}
	return e
}

// leaderAddr returns the leader's client address, or "".
func (s *Server) leaderAddr() (string, bool) {
	id, _, ok := s.rep.Leader(group)
	if !ok {
		return "", false
	}
	if id == s.cfg.ID {
		return s.ClientAddr(), true
	}
	a, _ := s.memberAddrs(id)
	return a.Client, true
}

// propose stamps cmd with the command time (cellClock), proposes it and
// waits for its outcome on this replica. The error is a *wire.Error.
func (s *Server) propose(ctx context.Context, k kind, cmd *namespace.Command) (outcome, *wire.Error) {
	cmd.Time = s.cell.now()
	enc, err := encodeCommand(k, cmd)
	if err != nil {
		return outcome{}, wire.Errorf(wire.BadRequest, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	out, err := s.rep.Propose(ctx, group, enc.entry())
	s.metrics.observePropose(time.Since(start), err)
	// The entry's buffer is reused only when the replica is surely done
	// with it: applied, or refused outright. After a timeout or a lost
	// leadership the entry may still wait in the replica's queue.
	if err == nil || refused(err) {
		enc.release()
	}
	if err != nil {
		return outcome{}, s.replicaError(ctx, err)
	}
	o, err := decodeResult(out)
	if err != nil {
		return outcome{}, wire.Errorf(wire.Internal, "%v", err)
	}
	return o, nil
}

// refused reports whether the replica refused a proposal outright (so it
// holds no reference to the entry).
func refused(err error) bool {
	if errors.Is(err, replica.ErrTooLarge) {
		return true
	}
	_, ok := errors.AsType[*replica.NotLeaderError](err)
	return ok
}

// replicaError maps an error of the replica to the wire.
func (s *Server) replicaError(ctx context.Context, err error) *wire.Error {
	var nl *replica.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return s.notLeader()
	case errors.Is(err, replica.ErrTooLarge):
		return wire.Errorf(wire.TooLarge, "%v", err)
	case errors.Is(err, replica.ErrLeadershipLost):
		return s.unavailable("leadership changed; the request may have been applied: retry with the same request id")
	case errors.Is(err, replica.ErrClosed), errors.Is(err, replica.ErrFatal), errors.Is(err, replica.ErrNotStarted):
		return wire.Errorf(wire.Unavailable, "replica is shutting down")
	case errors.Is(err, context.DeadlineExceeded):
		return s.unavailable("timed out waiting for the log; the request may have been applied: retry with the same request id")
	case errors.Is(err, context.Canceled):
		if s.ctx.Err() != nil {
			return wire.Errorf(wire.Unavailable, "server shutting down")
		}
		return wire.Errorf(wire.Canceled, "request canceled")
	}
	return wire.Errorf(wire.Internal, "%v", err)
}

// readBarrier coalesces linearizable reads: a read waits for a
// replica.ReadBarrier that started after the read arrived; all reads that
// arrive while one barrier runs share the next.
//
// Rounds run one at a time. The read that finds no round running runs the
// next one itself, on its own goroutine, so a lone read costs no goroutine
// hand-off; if more reads arrived meanwhile, it hands their round to a new
// goroutine (run) before it returns.
type readBarrier struct {
	s       *Server
	mu      sync.Mutex
	running bool
	next    *barrierRound

	// Owned by the goroutine running rounds (one at a time).
	deadline coarseDeadline
}

// barrierRound is one replica.ReadBarrier shared by the reads waiting for
// it: err is set before done is closed.
type barrierRound struct {
	done chan struct{}
	err  error
}

// wait returns once reading the local state is linearizable: at once, with
// leased true, in the common case on a leader whose lease holds and whose
// state has every acknowledged write applied (replica.LeaseRead: no round,
// no goroutine hand-off); otherwise once a barrier round that started after
// the call has completed. It needs no deadline of its own: every round is
// bounded by RequestTimeout.
func (b *readBarrier) wait(ctx context.Context) (leased bool, err error) {
	if b.s.rep.LeaseRead(group) {
		return true, nil
	}
	return false, b.waitRound(ctx)
}

// waitRound waits for a barrier round that started after the call.
func (b *readBarrier) waitRound(ctx context.Context) error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &barrierRound{done: make(chan struct{})}
	}
	r := b.next
	if !b.running {
		// Run the round here: take it, so later reads wait for the next.
		b.running = true
		b.next = nil
		b.mu.Unlock()
		b.round(r)
		b.handOff()
		return r.err
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOff ends the caller's turn as the runner: reads that arrived during
// its round get a goroutine that runs their rounds.
func (b *readBarrier) handOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next == nil {
		b.running = false
		return
	}
	b.s.wg.Add(1)
	go b.run()
}

// run serves rounds until no read waits.
func (b *readBarrier) run() {
	defer b.s.wg.Done()
	for {
		b.mu.Lock()
		r := b.next
		b.next = nil
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.round(r)
	}
}

// round runs one replica.ReadBarrier, bounded by RequestTimeout (to
// 1.25×; see coarseDeadline) and the server's life, and wakes the reads
// waiting for it.
func (b *readBarrier) round(r *barrierRound) {
	ctx := b.deadline.get(b.s.ctx, b.s.cfg.RequestTimeout)
	r.err = b.s.rep.ReadBarrier(ctx, group)
	close(r.done)
}

// coarseDeadline hands out contexts that end between d and 1.25·d after
// the call (or with their parent), sharing one context, and so one timer,
// per d/4 of time: a read-barrier round is far more frequent than its
// timeout, and a context with a timer of its own cost more than the
// barrier itself. Not safe for concurrent use; a context it returned must
// be out of use by the next call (the rounds that use it run one at a time).
type coarseDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
	renew  time.Time // get makes a new context from this time on
}

// get returns a context derived from parent that ends between d and 1.25·d
// from now.
func (c *coarseDeadline) get(parent context.Context, d time.Duration) context.Context {
	now := time.Now()
	if c.ctx == nil || !now.Before(c.renew) {
		if c.cancel != nil {
			c.cancel() // out of use: stop its timer now
		}
		c.ctx, c.cancel = context.WithDeadline(parent, now.Add(d+d/4))
		c.renew = now.Add(d / 4)
	}
	return c.ctx
}
