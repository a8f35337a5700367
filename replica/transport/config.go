package transport

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// Limits on Config.MaxFrame.
const (
	// MinFrame is the smallest MaxFrame accepted: room for a small payload.
	MinFrame = 64
	// MaxFrameLimit is the largest MaxFrame accepted (1 GiB).
	MaxFrameLimit = 1 << 30
)

// Config configures a Transport. Start from DefaultConfig and set ID, Listen
// and Peers.
type Config struct {
	// ID is this replica's id; it must not be zero.
	ID uint64
	// Listen is the TCP address to listen on, such as "127.0.0.1:7001";
	// port 0 picks a free port (see Transport.Addr).
	Listen string
	// Peers maps every replica id of the cell to its address. An entry for
	// ID itself is ignored. The lower id of a pair dials the higher, so
	// the addresses of peers with a lower id than ID are used only to dial
	// back (DialBackAfter) and may be empty.
	// All replicas must list the same set of ids: the handshake compares a
	// hash of it (unless AcceptUnknown). SetPeer and RemovePeer change the
	// set later.
	Peers map[uint64]string
	// AcceptUnknown makes the transport take a hello from a replica id
	// that is not a peer (nor removed by RemovePeer): it becomes a peer
	// without an address. The cell hash is then not compared. A cell whose
	// members change needs it: a replica that lags behind does not know
	// the members added since and must still hear from them
	// (docs/membership.md §5); peer TLS is what keeps strangers out. It
	// also takes a dial-back from a higher id (DialBackAfter): a member
	// added later may dial back a lower id that does not know its address.
	AcceptUnknown bool
	// Cell is the cell's identity (replica's cell record): every hello and
	// its answer carry it, and a replica that presents another one is
	// refused (ErrHandshake), so two cells whose replicas share ids and
	// reach each other by a wrong address keep apart. 0: not known yet (a
	// replica joining, or rebuilding from an empty disk): the transport
	// takes the first one a peer presents, reports it to OnCell, and
	// checks every later one against it. Replicas that both present 0 are
	// not checked.
	Cell uint64
	// OnCell, if set, is called once with the cell id learned from a peer
	// while Cell was 0 (from a handshake goroutine; it may block briefly,
	// e.g. to record it on disk).
	OnCell func(cell uint64)
	// DialBackAfter, if positive, makes this replica also dial a peer with
	// a lower id, when it knows its address, once it has been without a
	// connection to it for this long; and take such a dial from a peer
	// with a higher id (as AcceptUnknown does). The lower id dials by
	// rule, but it cannot when it does not know the higher one's address:
	// a replica rebuilt from an empty disk whose configuration names only
	// members removed since (docs/operations.md). A connection the lower
	// id dialed always wins over one dialed back, so a pair still settles
	// on one connection. 0 (the default): only the lower id dials.
	DialBackAfter time.Duration
	// ProbeAfter, if positive and DialBackAfter is not, makes this replica
	// probe a peer with a lower id, when it knows its address, once it has
	// been without a connection to it for this long, and again every
	// ProbeAfter while it stays without: a probe is a hello that asks only
	// whether this replica was removed from the cell (OnRetired); the
	// answer makes no connection, so a probe never opens a path the lower
	// id's own dial does not take (the fault tests' link proxies). It is
	// how a removed replica with a higher id than every member learns its
	// removal: the members forgot it and no longer dial it.
	ProbeAfter time.Duration
	// OnRetired, if set, is called once when a peer refuses this
	// replica's hello because it removed this replica's id from the cell
	// (the peer's RemovePeer forgot it; ErrRetired), with the peer's id.
	// The answer is trusted only from the replica the dial meant to reach,
	// presenting the cell id this replica knows (not 0). It runs on a dial
	// goroutine and must not block.
	OnRetired func(by uint64)
	// MaxFrame is the largest frame body, in bytes, this replica sends or
	// accepts. A payload may be up to MaxFrame-EnvelopeOverhead bytes. All
	// replicas should use the same value. Default 16 MiB.
	MaxFrame int
	// QueueLen is the capacity of each (peer, group) send queue. When it is
	// full, Send drops the message and counts the drop. Default 1024.
	QueueLen int
	// MaxGroups bounds the number of groups per peer, in each direction.
	// Default 256.
	MaxGroups int
	// DialTimeout bounds a TCP dial, and separately each side of a
	// handshake. Default 2 s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts;
	// the wait doubles after each failure and is jittered. Defaults 50 ms and
	// 5 s.
	MinBackoff, MaxBackoff time.Duration
	// KeepAlive is the yamux ping interval that detects a dead connection:
	// one whose Ping is not answered within deadPeerFactor intervals is
	// closed and dialled again. Default 1 s, so a connection that a
	// partition or a lost NAT entry left stalled is replaced within about
	// six seconds, well inside a session lease, rather than the twenty of
	// yamux's defaults (the soak's longest leaderless windows, 15 s, were a
	// healed replica's stalled connections; docs/testing.md).
	KeepAlive time.Duration
	// TLS, if set, secures every peer connection with mutual TLS, on both
	// sides: the dialer verifies the listener's certificate against
	// RootCAs (for the host of the peer's address, unless ServerName is
	// set), and the listener requires a client certificate and verifies it
	// against ClientCAs, before the hello. So TLS must have a certificate
	// (Certificates or GetCertificate), RootCAs, ClientCAs, and ClientAuth
	// tls.RequireAndVerifyClientCert; a replica's certificate must be good
	// for server and client authentication. Every replica must use TLS or
	// none. Nil means plain TCP.
	TLS *tls.Config
	// Logger receives connection state changes and protocol errors; nil
	// discards them. New adds the key "replica" (ID): pass a logger
	// without it.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every limit and timing set to its
// default; ID, Listen and Peers are left for the caller.
func DefaultConfig() Config {
	return Config{
		MaxFrame:    16 << 20,
		QueueLen:    1024,
		MaxGroups:   256,
		DialTimeout: 2 * time.Second,
		MinBackoff:  50 * time.Millisecond,
		MaxBackoff:  5 * time.Second,
		KeepAlive:   time.Second,
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
	if c.Listen == "" {
		bad("Listen address is empty")
	}
	for _, id := range slices.Sorted(maps.Keys(c.Peers)) {
		switch {
		case id == 0:
			bad("peer id 0 is not allowed")
		case id > c.ID && c.Peers[id] == "":
			bad("peer %d has no address (replica %d dials it)", id, c.ID)
		}
	}
	if c.MaxFrame < MinFrame || c.MaxFrame > MaxFrameLimit {
		bad("MaxFrame %d is outside [%d, %d]", c.MaxFrame, MinFrame, MaxFrameLimit)
	}
	if c.QueueLen < 1 {
		bad("QueueLen %d must be at least 1", c.QueueLen)
	}
	if c.MaxGroups < 1 {
		bad("MaxGroups %d must be at least 1", c.MaxGroups)
	}
	if c.DialTimeout <= 0 {
		bad("DialTimeout %v must be positive", c.DialTimeout)
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		bad("backoff bounds [%v, %v] need 0 < MinBackoff <= MaxBackoff", c.MinBackoff, c.MaxBackoff)
	}
	if c.KeepAlive <= 0 {
		bad("KeepAlive %v must be positive", c.KeepAlive)
	}
	if c.DialBackAfter < 0 {
		bad("DialBackAfter %v must not be negative", c.DialBackAfter)
	}
	if c.ProbeAfter < 0 {
		bad("ProbeAfter %v must not be negative", c.ProbeAfter)
	}
	if c.TLS != nil {
		errs = append(errs, CheckTLS(c.TLS))
	}
	return errors.Join(errs...)
}

// CheckTLS reports every reason c cannot be a Config.TLS, each wrapping
// ErrConfig: it needs a certificate, RootCAs, ClientCAs and ClientAuth
// tls.RequireAndVerifyClientCert.
func CheckTLS(c *tls.Config) error {
	var errs []error
	bad := func(msg string) { errs = append(errs, fmt.Errorf("%w: %s", ErrConfig, msg)) }
	if len(c.Certificates) == 0 && c.GetCertificate == nil {
		bad("TLS has no certificate: set TLS.Certificates")
	}
	if c.RootCAs == nil {
		bad("TLS.RootCAs is nil: set the CA that signs the replicas' certificates")
	}
	if c.ClientCAs == nil || c.ClientAuth != tls.RequireAndVerifyClientCert {
		bad("peer TLS must be mutual: set TLS.ClientCAs and TLS.ClientAuth = tls.RequireAndVerifyClientCert")
	}
	return errors.Join(errs...)
}

// MaxPayload is the largest payload Send accepts under c.MaxFrame.
func (c Config) MaxPayload() int { return c.MaxFrame - EnvelopeOverhead }

// cellHash identifies the set of replica ids (this one and its peers) so the
// handshake can refuse a peer configured for a different cell.
func (c Config) cellHash() uint64 {
	ids := slices.AppendSeq([]uint64{c.ID}, maps.Keys(c.Peers))
	slices.Sort(ids)
	ids = slices.Compact(ids)
	h := fnv.New64a()
	var b [8]byte
	for _, id := range ids {
		binary.BigEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	return h.Sum64()
}
