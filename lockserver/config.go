package lockserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
	"github.com/latchd/latch/replica/transport"
	"github.com/latchd/latch/session"
)

// ErrConfig wraps every Config.Validate failure.
var ErrConfig = errors.New("lockserver: invalid config")

// Member is one replica of the cell as the other replicas and the clients
// reach it.
type Member struct {
	// Peer is the address replicas reach this one at (Paxos traffic).
	Peer string
	// Client is the address clients connect to.
	Client string
	// HTTP is the admin HTTP address (served by cmd/latchd, not by this
	// package); it may be empty.
	HTTP string
}

// Config configures a Server. Start from DefaultConfig and set ID, Members
// and DataDir.
type Config struct {
	// ID is this replica's id: non-zero and a key of Members.
	ID uint64
	// Members lists every replica of the cell, this one included.
	Members map[uint64]Member
	// ClientListen is the address to listen on for clients; empty means
	// Members[ID].Client. Port 0 picks a free port (see Server.ClientAddr).
	ClientListen string
	// PeerListen is the address to listen on for peers; empty means
	// Members[ID].Peer.
	PeerListen string
	// DataDir holds the Paxos log and snapshots (in DataDir/paxos).
	DataDir string
	// Join starts a replica with an empty DataDir as a new member joining
	// an existing cell: it must have been added as a learner (a member
	// change, `latch members add`), and Members lists it and the cell's
	// replicas it can reach (seeds). It learns the cell's state and member
	// set from them, and votes once promoted. A DataDir that holds state
	// ignores it.
	Join bool
	// TLS, if set, makes the client listener speak TLS: each connection's
	// handshake runs on the connection's goroutine, within
	// RequestTimeout. To require client certificates, set ClientAuth to
	// tls.RequireAndVerifyClientCert and ClientCAs; the Subject
	// CommonName of a verified client certificate is the connection's
	// principal. Nil means plain TCP.
	TLS *tls.Config
	// PeerTLS, if set, secures the connections between replicas with
	// mutual TLS (replica/transport's Config.TLS, which says what it must
	// hold). Every replica of the cell must set it, or none.
	PeerTLS *tls.Config

	// Replica holds the Paxos timings and batching knobs. Its ID, Members,
	// Listen, DataDir, Groups and Logger are set by the server from the
	// fields above.
	Replica replica.Config
	// Namespace holds the limits of the replicated tree. Every replica of a
	// cell must use the same Namespace config.
	Namespace namespace.Config
	// Session holds the leader's lease keeping: the default lease (12 s),
	// the KeepAlive margin and the event queues. Its Clock (the monotonic
	// time of Clock below) and Logger are set from the fields below.
	Session session.Config

	// MinSessionTimeout and MaxSessionTimeout bound the lease a client may
	// ask for in OpenSession.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// MaxFrame is the largest frame a client may send or receive.
	MaxFrame int
	// MaxPage is the most entries one List, Walk, ListLocks or
	// ListSessions reply carries.
	MaxPage int
	// MaxConns bounds the client connections this replica serves at once.
	MaxConns int
	// MaxStreams bounds the calls in flight on one client connection; more
	// wait until one ends.
	MaxStreams int
	// RequestTimeout bounds how long a write or a linearizable read waits
	// for the log (a read's shared barrier round: 1 to 1.25 times it; a
	// blocked Acquire or KeepAlive waits longer: see their docs). A request that times out is answered Unavailable and may have
	// been applied; its retry with the same request id is deduplicated.
	RequestTimeout time.Duration
	// LeaderPoll is how often the server checks whether this replica leads
	// the cell, to start or stop its leader duties.
	LeaderPoll time.Duration
	// SessionTick is how often the leader checks leases and lock-delays.
	SessionTick time.Duration
	// Superusers are the principals (client certificate CNs) that no ACL
	// restricts: their sessions are opened as superusers', and their
	// sessionless writes and reads are not checked. Each must be a
	// non-empty name; the anonymous principal can never be one.
	Superusers []string

	// Clock is the time source (see Clock for what it measures); nil
	// means the system clock.
	Clock Clock
	// Logger receives state transitions; nil discards them. New adds the
	// keys "replica" (ID) and "component" itself: pass a logger without
	// them, as slog writes a key added twice twice.
	Logger *slog.Logger

	// members, if set, replaces the replica's member set (tests).
	members memberSet
}

// DefaultConfig returns a Config with every tunable set; ID, Members and
// DataDir are left for the caller.
func DefaultConfig() Config {
	return Config{
		Replica:           replica.DefaultConfig(),
		Namespace:         namespace.DefaultConfig(),
		Session:           session.DefaultConfig(),
		MinSessionTimeout: 2 * time.Second,
		MaxSessionTimeout: 60 * time.Second,
		MaxFrame:          wire.DefaultMaxFrame,
		MaxPage:           1000,
		MaxConns:          10_000,
		MaxStreams:        4096,
		RequestTimeout:    10 * time.Second,
		LeaderPoll:        10 * time.Millisecond,
		SessionTick:       50 * time.Millisecond,
	}
}

// Validate reports every problem with c, each wrapping ErrConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if c.ID == 0 {
		bad("ID must not be zero")
	}
	if len(c.Members) == 0 {
		bad("Members is empty")
	} else if _, ok := c.Members[c.ID]; !ok {
		bad("Members does not include this replica (ID %d)", c.ID)
	}
	for _, id := range slices.Sorted(maps.Keys(c.Members)) {
		m := c.Members[id]
		switch {
		case id == 0:
			bad("member id 0 is not allowed")
		case m.Peer == "" && id != c.ID:
			bad("member %d has no peer address", id)
		case m.Client == "" && id != c.ID:
			bad("member %d has no client address", id)
		}
	}
	if c.ClientListen == "" && c.Members[c.ID].Client == "" {
		bad("no client listen address: set ClientListen or Members[%d].Client", c.ID)
	}
	if c.PeerListen == "" && c.Members[c.ID].Peer == "" {
		bad("no peer listen address: set PeerListen or Members[%d].Peer", c.ID)
	}
	if c.DataDir == "" {
		bad("DataDir is empty")
	}
	if err := c.replicaConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	if err := c.Namespace.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	if err := c.sessionConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	if c.MinSessionTimeout <= 0 || c.MaxSessionTimeout < c.MinSessionTimeout {
		bad("session timeouts must satisfy 0 < MinSessionTimeout (%v) <= MaxSessionTimeout (%v)", c.MinSessionTimeout, c.MaxSessionTimeout)
	}
	if c.Session.Lease < c.MinSessionTimeout || c.Session.Lease > c.MaxSessionTimeout {
		bad("Session.Lease %v must be within [MinSessionTimeout, MaxSessionTimeout]", c.Session.Lease)
	}
	if c.MaxFrame < wire.MinFrame {
		bad("MaxFrame %d is below %d", c.MaxFrame, wire.MinFrame)
	} else if c.MaxFrame < c.Namespace.MaxContent+c.Namespace.MaxPathLen+1024 {
		bad("MaxFrame %d cannot carry a full content (%d) and path (%d)", c.MaxFrame, c.Namespace.MaxContent, c.Namespace.MaxPathLen)
	}
	if c.Replica.MaxBatchBytes != 0 && c.Replica.MaxBatchBytes < c.Namespace.MaxContent+c.Namespace.MaxPathLen+1024 {
		bad("Replica.MaxBatchBytes %d cannot carry a full content (%d)", c.Replica.MaxBatchBytes, c.Namespace.MaxContent)
	}
	if c.MaxPage < 1 {
		bad("MaxPage %d must be positive", c.MaxPage)
	}
	if c.MaxConns < 1 || c.MaxStreams < 1 {
		bad("MaxConns (%d) and MaxStreams (%d) must be positive", c.MaxConns, c.MaxStreams)
	}
	if t := c.TLS; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		bad("TLS has no certificate: set TLS.Certificates")
	}
	if c.PeerTLS != nil {
		if err := transport.CheckTLS(c.PeerTLS); err != nil {
			errs = append(errs, fmt.Errorf("%w: PeerTLS: %w", ErrConfig, err))
		}
	}
	if c.RequestTimeout <= 0 || c.LeaderPoll <= 0 || c.SessionTick <= 0 {
		bad("RequestTimeout, LeaderPoll and SessionTick must be positive")
	}
	if c.SessionTick >= c.Session.Lease-c.Session.Margin && c.Session.Lease > c.Session.Margin {
		bad("SessionTick %v must be well below the KeepAlive hold time", c.SessionTick)
	}
	for _, u := range c.Superusers {
		if u == "" || len(u) > c.Namespace.MaxClientNameLen || !utf8.ValidString(u) {
			bad("superuser %q must be a non-empty principal of at most %d bytes of UTF-8", u, c.Namespace.MaxClientNameLen)
		}
	}
	return errors.Join(errs...)
}

// replicaConfig is the replica.Config the server runs with.
func (c Config) replicaConfig() replica.Config {
	rc := c.Replica
	rc.ID = c.ID
	rc.Members = make(map[uint64]string, len(c.Members))
	for id, m := range c.Members {
		rc.Members[id] = m.Peer
	}
	rc.Listen = c.PeerListen
	rc.DataDir = c.DataDir + "/paxos"
	rc.Groups = []uint32{group}
	rc.Logger = c.Logger // replica.New adds "replica" and "component"
	rc.Join = c.Join
	return rc
}

// peerNetwork is how the replica reaches its peers: nil (the replica's
// default, TCPNetwork) unless PeerTLS is set.
func (c Config) peerNetwork() replica.Network {
	if c.PeerTLS == nil {
		return nil
	}
	return replica.TCPNetwork{Tune: func(tc *transport.Config) { tc.TLS = c.PeerTLS }}
}

// HasState reports whether dataDir, a Config.DataDir, holds the durable
// Paxos state of a server that has voted (replica.HasState). Call it before
// the server starts.
func HasState(dataDir string) (bool, error) {
	return replica.HasState(dataDir+"/paxos", []uint32{group})
}

// sessionConfig is the session.Config the leader's manager runs with.
func (c Config) sessionConfig() session.Config {
	sc := c.Session
	sc.Clock = steadyClock{c.clock()}
	sc.Logger = c.logger().With("replica", c.ID, "component", "session")
	return sc
}

func (c Config) clock() Clock {
	if c.Clock == nil {
		return systemClock{}
	}
	return c.Clock
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// limits are the limits announced to clients in Welcome.
func (c Config) limits() wire.Limits {
	return wire.Limits{
		MaxFrame:          uint32(c.MaxFrame),
		MaxContent:        uint32(c.Namespace.MaxContent),
		MaxPath:           uint32(c.Namespace.MaxPathLen),
		MaxPage:           uint32(c.MaxPage),
		MinSessionTimeout: c.MinSessionTimeout,
		MaxSessionTimeout: c.MaxSessionTimeout,
	}
}
