package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/latchd/latch/internal/muxconn"
)

const (
	// readBufSize is the read buffer of each inbound stream.
	readBufSize = 64 << 10
	// maxPendingHandshakes bounds inbound connections that have not yet
	// said who they are; more are closed at once.
	maxPendingHandshakes = 64
)

// dialLoop owns the connection this replica dials to a peer: dial,
// handshake, serve until the connection ends, wait a backoff, and again,
// until Close, RemovePeer, or the peer's answer that this replica was
// removed from the cell (ErrRetired). To a peer with a higher id it dials
// whenever it has no connection this loop made; to a lower one
// (Config.DialBackAfter) only once the peer has been without any
// connection for DialBackAfter, since the lower id dials by rule and its
// connection is preferred.
func (t *Transport) dialLoop(p *peer) {
	bo := newBackoff(t.cfg.MinBackoff, t.cfg.MaxBackoff, rand.New(rand.NewPCG(t.cfg.ID, p.id)))
	back := !p.dials
	failures := 0
	for {
		if back && !p.waitIdle(t.dialBackAfter(), t.done) {
			return
		}
		s, err := t.dial(p)
		switch {
		case t.closing() || p.removed():
			if s != nil {
				s.Close()
			}
			return
		case errors.Is(err, ErrRetired):
			// The peer forgot this replica for good (OnRetired).
			return
		case err != nil:
			failures++
			level := t.log.Debug
			if failures == 1 {
				level = t.log.Warn
			}
			level("cannot connect to peer; retrying with backoff", "peer", p.id, "addr", p.address(),
				"attempt", failures, "back", back, "err", err)
		default:
			t.log.Info("connected to peer", "peer", p.id, "addr", p.address(), "attempts", failures+1, "back", back)
			failures = 0
			start := time.Now()
			t.serveSession(p, s, back)
			// A connection that lasted starts the backoff afresh; one that
			// died at once (the peer keeps closing it) keeps it growing.
			if time.Since(start) >= t.cfg.MaxBackoff {
				bo.reset()
			}
		}
		if !t.sleepPeer(p, bo.next()) {
			return
		}
	}
}

// probeLoop probes a peer with a lower id that this replica does not dial
// back (Config.ProbeAfter): every ProbeAfter while the peer has been
// without a connection for that long, it asks whether this replica was
// removed from the cell, until Close, RemovePeer or the answer that it
// was (Config.OnRetired).
func (t *Transport) probeLoop(p *peer) {
	for {
		if t.dialBackAfter() > 0 {
			t.dialLoop(p) // DialBack since: dial it back instead
			return
		}
		if !p.waitIdle(t.cfg.ProbeAfter, t.done) {
			return
		}
		if t.dialBackAfter() > 0 {
			continue
		}
		err := t.probe(p)
		switch {
		case t.closing() || p.removed() || errors.Is(err, ErrRetired):
			return
		case err != nil:
			t.log.Debug("probe of peer failed", "peer", p.id, "addr", p.address(), "err", err)
		default:
			t.log.Debug("probe of peer answered: still a member", "peer", p.id)
		}
		if !t.sleepPeer(p, t.cfg.ProbeAfter) {
			return
		}
	}
}

// dial connects to p and runs the dialer's half of the handshake.
func (t *Transport) dial(p *peer) (*yamux.Session, error) {
	conn, err := t.greet(p, false)
	if err != nil {
		return nil, err
	}
	s, err := yamux.Client(muxconn.New(conn), t.ymux)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return s, nil
}

// probe asks p whether this replica was removed from the cell, on a
// connection it closes after the answer (hello.Probe).
func (t *Transport) probe(p *peer) error {
	conn, err := t.greet(p, true)
	if err != nil {
		return err
	}
	return conn.Close()
}

// greet connects to p and runs the dialer's half of the handshake; probe
// asks only for the answer (hello.Probe).
func (t *Transport) greet(p *peer, probe bool) (net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(t.ctx, "tcp", p.address())
	if err != nil {
		return nil, err
	}
	if !t.track(raw) {
		raw.Close()
		return nil, ErrClosed
	}
	defer t.untrack(raw)
	conn := raw
	if t.cfg.TLS != nil {
		conn = tls.Client(raw, t.clientTLS(p))
	}
	if err := t.greetAsDialer(conn, p, probe); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// clientTLS is the TLS config to dial p with: Config.TLS, with the host of
// p's address as the name to verify if it names none.
func (t *Transport) clientTLS(p *peer) *tls.Config {
	c := t.cfg.TLS
	if c.ServerName == "" {
		c = c.Clone()
		c.ServerName, _, _ = net.SplitHostPort(p.address())
	}
	return c
}

// handshake runs the TLS handshake on conn, if it is a TLS connection,
// within the deadline set on it.
func handshake(conn net.Conn) error {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.Handshake()
	}
	return nil
}

func (t *Transport) greetAsDialer(conn net.Conn, p *peer, probe bool) error {
	conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if err := handshake(conn); err != nil {
		return fmt.Errorf("%w: TLS with replica %d at %s: %w", ErrHandshake, p.id, p.address(), err)
	}
	ours := t.cellID.Load()
	if err := writeMsg(conn, hello{From: t.cfg.ID, To: p.id, Cell: t.cell, CellID: ours, Probe: probe}); err != nil {
		return err
	}
	var ack helloAck
	if err := readMsg(conn, &ack); err != nil {
		return fmt.Errorf("%w: reading the answer of replica %d: %w", ErrHandshake, p.id, err)
	}
	if ack.Retired && ack.From == p.id && ours != 0 && ack.CellID == ours {
		// The peer this dial meant to reach, in this cell, applied this
		// replica's removal (Transport.checkRetired).
		t.reportRetired(p.id)
		return fmt.Errorf("%w: replica %d: %s", ErrRetired, p.id, ack.Err)
	}
	if ack.Err != "" {
		return fmt.Errorf("%w: replica %d: %s", ErrRejected, p.id, ack.Err)
	}
	if ack.From != p.id {
		return fmt.Errorf("%w: %s answered as replica %d, not %d (check peer addresses)",
			ErrHandshake, p.address(), ack.From, p.id)
	}
	if err := t.matchCell(ack.CellID, p.id); err != nil {
		return err
	}
	return conn.SetDeadline(time.Time{})
}

// acceptLoop accepts inbound connections until the listener closes.
func (t *Transport) acceptLoop() {
	sem := make(chan struct{}, maxPendingHandshakes)
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.closing() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("accept failed", "err", err)
			if !t.sleep(t.cfg.MinBackoff) {
				return
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			t.rejected.Add(1)
			t.log.Warn("refused connection: too many pending handshakes", "remote", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		ok := t.spawn(func() {
			defer func() { <-sem }()
			t.serveConn(conn)
		})
		if !ok {
			conn.Close()
			return
		}
	}
}

// serveConn runs the listener's half of the handshake (TLS first, with
// Config.TLS) on an inbound connection and then serves it.
func (t *Transport) serveConn(raw net.Conn) {
	if !t.track(raw) {
		raw.Close()
		return
	}
	conn := raw
	if t.cfg.TLS != nil {
		conn = tls.Server(raw, t.cfg.TLS)
	}
	p, err := t.greetAsListener(conn)
	t.untrack(raw)
	if errors.Is(err, errProbed) {
		t.log.Debug("answered a probe", "remote", conn.RemoteAddr().String())
		conn.Close()
		return
	}
	if err != nil {
		t.rejected.Add(1)
		level := slog.LevelError
		switch {
		case errors.Is(err, io.EOF):
			level = slog.LevelDebug // connected and left without a word: a port probe
		case errors.Is(err, ErrRetired):
			level = slog.LevelInfo // told a removed replica so: it stops
		}
		t.log.Log(context.Background(), level, "refused connection", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	s, err := yamux.Server(muxconn.New(conn), t.ymux)
	if err != nil {
		t.log.Error("cannot start yamux", "peer", p.id, "err", err)
		conn.Close()
		return
	}
	back := p.id > t.cfg.ID // it dialed back (Config.DialBackAfter)
	t.log.Info("peer connected", "peer", p.id, "remote", conn.RemoteAddr().String(), "back", back)
	t.serveSession(p, s, back)
}

// errProbed ends a handshake that answered a probe (hello.Probe).
var errProbed = errors.New("probe answered")

// greetAsListener reads and checks the hello and answers it. A refused hello
// gets an answer naming the reason, so the dialer can log it too. The
// order matters: the cell id is checked first, so a replica of another
// cell learns nothing; then whether the dialer was removed (checkRetired),
// which a probe asks and a dial is told; then the rest.
func (t *Transport) greetAsListener(conn net.Conn) (*peer, error) {
	conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if err := handshake(conn); err != nil {
		return nil, fmt.Errorf("%w: TLS: %w", ErrHandshake, err)
	}
	var h hello
	var p *peer
	ours := t.cellID.Load()
	err := readMsg(conn, &h)
	if err == nil {
		err = t.matchCell(h.CellID, h.From)
	}
	if err == nil {
		err = t.checkRetired(h, ours)
	}
	if err == nil && h.Probe {
		// Not removed, as far as this replica knows: say so, and make no
		// connection (Config.ProbeAfter).
		writeMsg(conn, helloAck{From: t.cfg.ID, CellID: t.cellID.Load()})
		return nil, errProbed
	}
	if err == nil {
		p = t.knownPeer(h.From)
		err = checkHelloFrom(t.cfg, t.cell, h, p != nil)
	}
	if err != nil {
		writeMsg(conn, helloAck{From: t.cfg.ID, Err: err.Error(), CellID: t.cellID.Load(), Retired: errors.Is(err, ErrRetired)})
		return nil, err
	}
	if err := writeMsg(conn, helloAck{From: t.cfg.ID, CellID: t.cellID.Load()}); err != nil {
		return nil, fmt.Errorf("%w: answering replica %d: %w", ErrHandshake, h.From, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return p, nil
}

// serveSession makes s the peer's connection and accepts the peer's streams,
// one reader goroutine each, until s closes. back says the higher id of
// the pair dialed s (peer.attach).
func (t *Transport) serveSession(p *peer, s *yamux.Session, back bool) {
	replaced, err := p.attach(s, back, t.done)
	if errors.Is(err, errPreferred) {
		t.log.Info("connection dialed back closed: the peer's own is up", "peer", p.id)
	}
	if err != nil {
		return
	}
	if replaced {
		t.log.Info("new connection from peer replaces the old one", "peer", p.id)
	}
	defer p.detach(s)
	var open atomic.Int64
	for {
		st, err := s.AcceptStream()
		if err != nil {
			break
		}
		if open.Add(1) > int64(t.cfg.MaxGroups) {
			p.stats.errors.Add(1)
			t.log.Error("closing connection: peer opened too many streams", "peer", p.id,
				"err", fmt.Errorf("%w: more than %d", ErrTooManyGroups, t.cfg.MaxGroups))
			s.Close()
			break
		}
		if !t.spawn(func() {
			defer open.Add(-1)
			t.readStream(p, s, st)
		}) {
			break
		}
	}
	if !t.closing() {
		t.log.Info("peer disconnected", "peer", p.id)
	}
}

// readStream delivers the frames of one inbound stream to the Handler. A
// frame that breaks the protocol closes the whole connection.
func (t *Transport) readStream(p *peer, s *yamux.Session, st *yamux.Stream) {
	defer st.Close()
	fr := frameReader{r: bufio.NewReaderSize(st, readBufSize)}
	er := newEnvelopeReader()
	for {
		body, size, err := fr.next(t.cfg.MaxFrame)
		var group uint32
		var payload []byte
		if err == nil {
			group, payload, err = er.decode(body)
		}
		if err != nil {
			if isProtocolError(err) {
				p.stats.errors.Add(1)
				t.log.Error("closing connection: bad frame from peer", "peer", p.id, "err", err)
				s.Close()
			}
			return
		}
		p.stats.framesRecv.Add(1)
		p.stats.bytesRecv.Add(uint64(size))
		t.handler(p.id, group, payload)
	}
}

// isProtocolError tells a peer's broken frame from a stream that just ended.
func isProtocolError(err error) bool {
	return errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrVersion) || errors.Is(err, ErrMalformed)
}

// matchCell checks the cell id a peer presented in its handshake (0: it
// does not know it) against this replica's (Config.Cell). Not knowing its
// own yet, the replica takes the peer's and reports it (Config.OnCell).
func (t *Transport) matchCell(theirs, from uint64) error {
	if theirs == 0 {
		return nil
	}
	if t.cellID.CompareAndSwap(0, theirs) {
		t.log.Info("cell id learned from a peer", "peer", from, "cell", fmt.Sprintf("%016x", theirs))
		if t.cfg.OnCell != nil {
			t.cfg.OnCell(theirs)
		}
		return nil
	}
	if ours := t.cellID.Load(); ours != theirs {
		return fmt.Errorf("%w: replica %d belongs to another cell (cell id %016x, ours %016x): check the peer addresses",
			ErrHandshake, from, theirs, ours)
	}
	return nil
}
