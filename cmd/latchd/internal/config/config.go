package config

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/lockserver"
)

// MaxContentLimit is the largest maxContent: clients send and receive
// messages of at most wire.DefaultMaxFrame bytes (they do not take a
// larger limit from the cell), and one must carry a whole node: its
// content, a path of up to 4096 bytes and its metadata. A larger
// maxContent would let a client write a node that no client can read.
const MaxContentLimit = wire.DefaultMaxFrame - 8192

// ErrConfig is wrapped by every error of this package.
var ErrConfig = errors.New("config: invalid config")

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	// Field names the field as written in the file, with its index in
	// lists: "myid", "nodes[2].peer", "lease".
	Field string
	// Reason says what is wrong.
	Reason string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrConfig) true.
func (e *FieldError) Unwrap() error { return ErrConfig }

// File is the configuration file as written: JSON, durations as Go duration
// strings. The zero value of an optional field means its default.
type File struct {
	// Nodes lists every replica of the cell, this one included.
	Nodes []Node `json:"nodes"`
	// MyID is this replica's id; it must be one of Nodes.
	MyID uint64 `json:"myid"`
	// DataDir holds this replica's Paxos log and snapshots.
	DataDir string `json:"dataDir"`

	// Lease is the Paxos master lease (default 1s); Heartbeat the leader's
	// heartbeat period (default 50ms), below Lease; ElectionTimeout how long
	// a follower waits for a leader before campaigning (default 1.5 ×
	// Lease), above Lease.
	Lease           string `json:"lease,omitempty"`
	Heartbeat       string `json:"heartbeat,omitempty"`
	ElectionTimeout string `json:"electionTimeout,omitempty"`
	// SessionLease is the session lease given to clients that ask for none
	// and after a fail-over (default 12s).
	SessionLease string `json:"sessionLease,omitempty"`
	// Grace is the client grace period the cell is run for (default 45s);
	// it must be at least SessionLease. The server does not enforce it:
	// clients set their own (client.Config.Grace).
	Grace string `json:"grace,omitempty"`
	// LockDelay is the lock-delay of a lock whose request names none
	// (default 10s); LockDelayCap the most a client may ask for (default
	// 60s).
	LockDelay    string `json:"lockDelay,omitempty"`
	LockDelayCap string `json:"lockDelayCap,omitempty"`
	// Groups is the number of Paxos groups. The lock server keeps its one
	// namespace in one group, so only 1 (or leaving it out) is accepted.
	Groups int `json:"groups,omitempty"`
	// MaxContent is the largest node content in bytes (default 256 KiB).
	MaxContent int `json:"maxContent,omitempty"`
	// MaxConns bounds the client connections one replica serves (default
	// 10000).
	MaxConns int `json:"maxConns,omitempty"`

	// TLS, if set, makes the client listener speak TLS and the admin HTTP
	// server HTTPS, optionally requiring client certificates.
	TLS *TLSFiles `json:"tls,omitempty"`
	// PeerTLS, if set, makes the replicas talk to each other over mutual
	// TLS. Every replica of the cell must set it, or none.
	PeerTLS *PeerTLSFiles `json:"peerTLS,omitempty"`
	// Superusers are the principals (CNs of client certificates) that no
	// ACL restricts and that may use the admin HTTP's /backup and
	// /resign when tls.clientCertAuth is on. They need tls.clientCertAuth:
	// without it no client proves a principal.
	Superusers []string `json:"superusers,omitempty"`
}

// Node is one replica of the cell as the others and the clients reach it.
type Node struct {
	ID uint64 `json:"id"`
	// Peer is the address of Paxos traffic between replicas.
	Peer string `json:"peer"`
	// Client is the address clients (and the latch CLI) connect to.
	Client string `json:"client"`
	// HTTP is the admin HTTP address (/healthz, /readyz, /status,
	// /metrics, /backup, /debug/pprof); empty means none.
	HTTP string `json:"http,omitempty"`
}

// Defaults of the optional fields.
const (
	DefaultLease        = time.Second
	DefaultHeartbeat    = 50 * time.Millisecond
	DefaultSessionLease = 12 * time.Second
	DefaultGrace        = 45 * time.Second
	DefaultLockDelay    = 10 * time.Second
	DefaultLockDelayCap = 60 * time.Second
)

// Config is a checked configuration with every default filled in.
type Config struct {
	Nodes   []Node
	MyID    uint64
	DataDir string

	Lease, Heartbeat, ElectionTimeout time.Duration
	SessionLease, Grace               time.Duration
	LockDelay, LockDelayCap           time.Duration

	MaxContent int // 0: the lock server's default
	MaxConns   int // 0: the lock server's default

	// Superusers: see File.Superusers.
	Superusers []string

	// TLS is the client listener's and the admin HTTP server's TLS config
	// (the "tls" section); nil means plain TCP and HTTP. ClientTLS is what
	// this replica dials the other replicas' client ports with (/status):
	// it trusts tls.caFile (the system's roots without it) and presents
	// this replica's certificate. PeerTLS is the mutual TLS between
	// replicas (the "peerTLS" section); nil means plain TCP.
	TLS, ClientTLS, PeerTLS *tls.Config

	// NewCell is latchd's --new-cell: this is the first start of a
	// brand-new cell, so an empty DataDir starts as a founding member.
	// Otherwise an empty DataDir means a lost disk, and the replica
	// rebuilds it from its peers before it votes
	// (replica.Config.RebuildEmpty). A DataDir that holds state ignores
	// it. It is a flag only, never a field of the file: kept in a file,
	// it would let a replica that lost its disk vote as if it had never
	// voted.
	NewCell bool

	// Join is latchd's --join: an empty DataDir starts as a new member
	// joining the running cell whose replicas Nodes lists (seeds), as the
	// learner a member change added (lockserver.Config.Join). A DataDir
	// that holds state ignores it. A flag only, like NewCell: it is about
	// one start, not about the replica.
	Join bool
}

// CheckStart checks the start flags against the rest of c: --join and
// --new-cell exclude each other, and a joiner needs a seed.
func (c Config) CheckStart() error {
	var errs problems
	if c.Join && c.NewCell {
		errs.bad("--join", "a joining replica is not a founding member of a new cell: drop --new-cell")
	}
	if c.Join && len(c.Nodes) < 2 {
		errs.bad("nodes", "--join needs at least one replica of the running cell besides this one (a seed) to learn the cell from")
	}
	return errors.Join(errs...)
}

// Load reads and strictly decodes the file at path.
func Load(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	f, err := Parse(bytes.NewReader(b))
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse strictly decodes one JSON object: unknown fields, wrong types and
// anything after the object are errors.
func Parse(r io.Reader) (File, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return File{}, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return File{}, &FieldError{Field: "(file)", Reason: "unexpected data after the JSON object"}
	}
	return f, nil
}

// decodeError turns a encoding/json error into a FieldError where it names
// a field.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(file)"
		}
		return &FieldError{Field: field, Reason: fmt.Sprintf("want %v, got JSON %s", te.Type, te.Value)}
	case errors.As(err, &se):
		return &FieldError{Field: "(file)", Reason: fmt.Sprintf("JSON syntax error at byte %d: %v", se.Offset, err)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Field: "(file)", Reason: "empty or truncated JSON"}
	}
	// encoding/json reports an unknown field as `json: unknown field "x"`.
	const prefix = "json: unknown field "
	if msg := err.Error(); len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		name, uerr := strconv.Unquote(msg[len(prefix):])
		if uerr != nil {
			name = msg[len(prefix):]
		}
		reason := "unknown field"
		switch {
		case strings.EqualFold(strings.ReplaceAll(name, "-", ""), "newcell"):
			reason += ": --new-cell is a command-line flag only, for the first start of a brand-new cell (docs/operations.md)"
		case strings.EqualFold(name, "join"):
			reason += ": --join is a command-line flag only, for the first start of a replica that joins a running cell (docs/operations.md)"
		case name == "clientCertAuth":
			reason += `: it belongs in "tls"; "peerTLS" always requires the replicas' certificates`
		}
		return &FieldError{Field: name, Reason: reason}
	}
	return fmt.Errorf("%w: %w", ErrConfig, err)
}

// Overrides are command-line flags that replace fields of the file. A nil
// field leaves the file's value.
type Overrides struct {
	ID      *uint64 // --id: myid
	DataDir *string // --data-dir: dataDir
	HTTP    *string // --http: this replica's nodes[].http ("" turns it off)

	// --cert-file, --key-file, --trusted-ca-file, --client-cert-auth: the
	// fields of "tls" (a file without the section gets one).
	CertFile, KeyFile, CAFile *string
	ClientCertAuth            *bool
	// --peer-cert-file, --peer-key-file, --peer-trusted-ca-file: the
	// fields of "peerTLS".
	PeerCertFile, PeerKeyFile, PeerCAFile *string
}

// Apply returns f with o's fields set. The HTTP override applies to the
// node whose id is the (possibly overridden) myid, if there is one.
func (f File) Apply(o Overrides) File {
	f.Nodes = append([]Node(nil), f.Nodes...)
	if o.ID != nil {
		f.MyID = *o.ID
	}
	if o.DataDir != nil {
		f.DataDir = *o.DataDir
	}
	if o.HTTP != nil {
		for i := range f.Nodes {
			if f.Nodes[i].ID == f.MyID {
				f.Nodes[i].HTTP = *o.HTTP
			}
		}
	}
	return f.applyTLS(o)
}

// Resolve checks f and returns the Config with defaults filled in. The error
// joins one *FieldError per problem.
func (f File) Resolve() (Config, error) {
	var errs problems
	bad := errs.bad
	c := Config{Nodes: append([]Node(nil), f.Nodes...), MyID: f.MyID, DataDir: f.DataDir}

	if len(f.Nodes) == 0 {
		bad("nodes", "no nodes: list every replica of the cell")
	}
	ids := make(map[uint64]int)
	addrs := make(map[string]string) // normalized address -> field that uses it
	for i, n := range f.Nodes {
		field := fmt.Sprintf("nodes[%d]", i)
		if n.ID == 0 {
			bad(field+".id", "missing or 0: ids are positive integers")
		} else if j, dup := ids[n.ID]; dup {
			bad(field+".id", "duplicate id %d (also nodes[%d])", n.ID, j)
		} else {
			ids[n.ID] = i
		}
		for _, a := range []struct {
			name, addr string
			optional   bool
		}{{"peer", n.Peer, false}, {"client", n.Client, false}, {"http", n.HTTP, true}} {
			af := field + "." + a.name
			if a.addr == "" {
				if !a.optional {
					bad(af, "missing address")
				}
				continue
			}
			norm, err := checkAddr(a.addr)
			if err != nil {
				bad(af, "bad address %q: %v", a.addr, err)
				continue
			}
			if other, dup := addrs[norm]; dup {
				bad(af, "address %s is also used by %s", a.addr, other)
				continue
			}
			addrs[norm] = af
		}
	}
	switch _, ok := ids[f.MyID]; {
	case f.MyID == 0:
		bad("myid", "missing or 0: set it to this replica's id (or pass --id)")
	case len(f.Nodes) > 0 && !ok:
		bad("myid", "%d is not the id of any of the nodes", f.MyID)
	}
	if f.DataDir == "" {
		bad("dataDir", "missing: set it (or pass --data-dir)")
	}

	dur := func(field, s string, def time.Duration, allowZero bool) time.Duration {
		if s == "" {
			return def
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			bad(field, "bad duration %q: want a Go duration such as \"3s\" or \"250ms\"", s)
		case d < 0 || (d == 0 && !allowZero):
			bad(field, "%s must be positive", s)
		default:
			return d
		}
		return def
	}
	c.Lease = dur("lease", f.Lease, DefaultLease, false)
	c.Heartbeat = dur("heartbeat", f.Heartbeat, DefaultHeartbeat, false)
	c.ElectionTimeout = dur("electionTimeout", f.ElectionTimeout, c.Lease+c.Lease/2, false)
	c.SessionLease = dur("sessionLease", f.SessionLease, DefaultSessionLease, false)
	c.Grace = dur("grace", f.Grace, DefaultGrace, false)
	c.LockDelay = dur("lockDelay", f.LockDelay, DefaultLockDelay, true)
	c.LockDelayCap = dur("lockDelayCap", f.LockDelayCap, DefaultLockDelayCap, false)

	if c.Lease <= c.Heartbeat {
		bad("lease", "%v must be longer than heartbeat (%v): the leader renews its lease with heartbeats", c.Lease, c.Heartbeat)
	}
	if c.ElectionTimeout <= c.Lease {
		bad("electionTimeout", "%v must be longer than lease (%v)", c.ElectionTimeout, c.Lease)
	}
	if c.SessionLease < 2*c.Lease {
		bad("sessionLease", "%v must be at least twice lease (%v), so sessions outlive a leader change", c.SessionLease, c.Lease)
	}
	if c.Grace < c.SessionLease {
		bad("grace", "%v must be at least sessionLease (%v)", c.Grace, c.SessionLease)
	}
	if c.LockDelay > c.LockDelayCap {
		bad("lockDelay", "%v must not exceed lockDelayCap (%v)", c.LockDelay, c.LockDelayCap)
	}
	if f.Groups != 0 && f.Groups != 1 {
		bad("groups", "%d: the lock server keeps its namespace in one Paxos group; only 1 is supported", f.Groups)
	}
	if f.MaxContent < 0 {
		bad("maxContent", "%d must be positive", f.MaxContent)
	} else if f.MaxContent > MaxContentLimit {
		bad("maxContent", "%d is more than %d: a client sends and receives a node in one message of at most %d bytes, with its path and metadata",
			f.MaxContent, MaxContentLimit, wire.DefaultMaxFrame)
	}
	if f.MaxConns < 0 {
		bad("maxConns", "%d must be positive", f.MaxConns)
	}
	c.MaxContent, c.MaxConns = f.MaxContent, f.MaxConns
	c.resolveAccess(f.TLS, f.PeerTLS, f.Superusers, selfHost(f, false), selfHost(f, true), bad)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// problems collects one *FieldError per problem found.
type problems []error

func (p *problems) bad(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// checkAddr checks that addr is host:port with a non-empty host and a port
// in 1..65535 (wire.CheckAddr, as the cell checks a member change's), and
// returns it in a normal form for duplicate checks.
func checkAddr(addr string) (string, error) { return wire.CheckAddr(addr) }

// Self returns this replica's node.
func (c Config) Self() Node {
	for _, n := range c.Nodes {
		if n.ID == c.MyID {
			return n
		}
	}
	return Node{}
}

// Server returns the lockserver.Config of this replica, checked by
// lockserver's own Validate.
func (c Config) Server(logger *slog.Logger) (lockserver.Config, error) {
	sc := lockserver.DefaultConfig()
	sc.ID = c.MyID
	sc.DataDir = c.DataDir
	sc.Logger = logger
	sc.Replica.RebuildEmpty = !c.NewCell
	sc.Join = c.Join
	sc.Members = make(map[uint64]lockserver.Member, len(c.Nodes))
	for _, n := range c.Nodes {
		sc.Members[n.ID] = lockserver.Member{Peer: n.Peer, Client: n.Client, HTTP: n.HTTP}
	}
	Tune(&sc, c)
	if err := sc.Validate(); err != nil {
		return lockserver.Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return sc, nil
}

// Tune sets the timings, limits, TLS configs and superusers of c on a
// lockserver.Config (also used for the replicas of `latchd dev`).
func Tune(sc *lockserver.Config, c Config) {
	sc.TLS, sc.PeerTLS = c.TLS, c.PeerTLS
	sc.Superusers = c.Superusers
	sc.Replica.LeaseDuration = c.Lease
	sc.Replica.HeartbeatInterval = c.Heartbeat
	sc.Replica.ElectionTimeout = c.ElectionTimeout
	sc.Session.Lease = c.SessionLease
	if sc.MaxSessionTimeout < c.SessionLease {
		sc.MaxSessionTimeout = c.SessionLease
	}
	if sc.MinSessionTimeout > c.SessionLease {
		sc.MinSessionTimeout = c.SessionLease
	}
	sc.Namespace.DefaultLockDelay = c.LockDelay
	sc.Namespace.MaxLockDelay = c.LockDelayCap
	if c.MaxContent > 0 {
		sc.Namespace.MaxContent = c.MaxContent
		if need := c.MaxContent + sc.Namespace.MaxPathLen + 4096; sc.MaxFrame < need {
			sc.MaxFrame = need
		}
		if sc.Replica.MaxBatchBytes < sc.MaxFrame {
			sc.Replica.MaxBatchBytes = sc.MaxFrame
		}
	}
	if c.MaxConns > 0 {
		sc.MaxConns = c.MaxConns
	}
}

// Default returns the Config of a cell with every default: the timings and
// limits `latchd dev` runs with (Nodes, MyID and DataDir are left empty).
func Default() Config {
	return Config{
		Lease: DefaultLease, Heartbeat: DefaultHeartbeat, ElectionTimeout: DefaultLease + DefaultLease/2,
		SessionLease: DefaultSessionLease, Grace: DefaultGrace,
		LockDelay: DefaultLockDelay, LockDelayCap: DefaultLockDelayCap,
	}
}
