package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Handler receives each message that arrives: the sending replica, the group
// and the payload. The handler owns payload: the transport allocates it for
// this one message and never touches it again.
//
// Handler is called on the reader goroutine of the stream that carried the
// message, one goroutine per (peer, group) direction, so calls for different
// groups or peers run concurrently, and for a short while after a peer
// reconnects even two calls for the same (peer, group) may. While a call
// blocks, that (peer, group) is not read; other groups and peers go on.
// It should return quickly (hand the message to a channel, say); Close waits
// for running calls to return.
type Handler func(from uint64, group uint32, payload []byte)

// Transport connects this replica to its peers. It is safe for concurrent
// use. New starts it; Close stops it.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	handler Handler
	cell    uint64        // the id-set hash (Config.cellHash)
	cellID  atomic.Uint64 // Config.Cell, or the one learned from a peer
	ln      net.Listener
	ymux    *yamux.Config
	// peers maps id to peer. Send reads it without locking; SetPeer,
	// RemovePeer and an unknown peer's hello (Config.AcceptUnknown)
	// replace the whole map (copy on write) under mu.
	peers atomic.Pointer[map[uint64]*peer]

	ctx    context.Context // cancelled by Close; cancels dials
	cancel context.CancelFunc
	done   <-chan struct{} // ctx.Done()

	rejected atomic.Uint64 // inbound connections refused at the handshake
	retired  sync.Once     // calls Config.OnRetired once
	// dialBack is Config.DialBackAfter, or what DialBack set since: 0
	// while this replica does not dial back.
	dialBack atomic.Int64

	// mu guards the fields below. It is taken only to start a goroutine, to
	// create a (peer, group) lane, and by Close: never per message.
	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections still in their handshake
	removed map[uint64]bool       // ids RemovePeer forgot: their hellos are refused
	wg      sync.WaitGroup        // every goroutine the Transport started
}

// New validates cfg, listens on cfg.Listen, starts dialing the peers with a
// higher id than cfg.ID (and, with Config.DialBackAfter, dialing back the
// lower ones), and delivers arriving messages to h. The returned Transport
// runs until Close.
func New(cfg Config, h Handler) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: Handler is nil", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("replica", cfg.ID)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     cfg,
		log:     log,
		handler: h,
		cell:    cfg.cellHash(),
		ln:      ln,
		ymux:    yamuxConfig(cfg, log),
		ctx:     ctx,
		cancel:  cancel,
		done:    ctx.Done(),
		pending: make(map[net.Conn]struct{}),
		removed: make(map[uint64]bool),
	}
	peers := make(map[uint64]*peer, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		if id != cfg.ID {
			peers[id] = newPeer(id, addr, id > cfg.ID)
		}
	}
	t.peers.Store(&peers)
	t.cellID.Store(cfg.Cell)
	t.dialBack.Store(int64(cfg.DialBackAfter))
	t.spawn(t.acceptLoop)
	t.mu.Lock()
	for _, p := range peers {
		t.maybeDialLocked(p)
	}
	t.mu.Unlock()
	log.Info("transport listening", "addr", ln.Addr().String(), "peers", len(peers))
	return t, nil
}

// maybeDialLocked starts p's dial loop if this replica dials it (or may
// dial it back: Config.DialBackAfter), or its probe loop if it may probe
// it (Config.ProbeAfter), once its address is known and no loop runs yet.
// t.mu is held.
func (t *Transport) maybeDialLocked(p *peer) {
	if t.closed || p.dialing || p.address() == "" {
		return
	}
	switch {
	case p.dials || t.dialBackAfter() > 0:
		p.dialing = true
		t.goLocked(func() { t.dialLoop(p) })
	case t.cfg.ProbeAfter > 0:
		p.dialing = true
		t.goLocked(func() { t.probeLoop(p) })
	}
}

// dialBackAfter is how long a lower id must be without a connection before
// this replica dials it back; 0: it does not.
func (t *Transport) dialBackAfter() time.Duration { return time.Duration(t.dialBack.Load()) }

// DialBack makes a replica started without Config.DialBackAfter dial back
// from now on, as if configured with after: a replica whose peer address
// the cell learns only from the replicated member set may not know that
// when it starts (one rebuilt from an empty disk learns the set from a
// peer). A peer being probed is dialed back from its next probe on. It
// does nothing if this replica dials back already or after is not
// positive.
func (t *Transport) DialBack(after time.Duration) {
	if after <= 0 || !t.dialBack.CompareAndSwap(0, int64(after)) {
		return
	}
	t.log.Info("dialing back lower ids from now on", "after", after)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range *t.peers.Load() {
		t.maybeDialLocked(p)
	}
}

// SetPeer adds replica id as a peer reachable at addr, or gives a known
// peer its new address: the next dial goes there (a live connection is
// kept until it fails). A replica the cell's member changes added or moved
// is reachable this way without a restart. It does nothing for this
// replica's own id or for an id RemovePeer forgot.
func (t *Transport) SetPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || id == t.cfg.ID || id == 0 || t.removed[id] {
		return
	}
	p := (*t.peers.Load())[id]
	if p == nil {
		p = t.addPeerLocked(id, addr)
		t.log.Info("peer added", "peer", id, "addr", addr)
	} else if old := p.address(); old != addr && addr != "" {
		p.setAddress(addr)
		t.log.Info("peer address changed", "peer", id, "was", old, "now", addr)
	}
	t.maybeDialLocked(p)
}

// addPeerLocked adds a new peer to the map. t.mu is held.
func (t *Transport) addPeerLocked(id uint64, addr string) *peer {
	p := newPeer(id, addr, id > t.cfg.ID)
	peers := maps.Clone(*t.peers.Load())
	peers[id] = p
	t.peers.Store(&peers)
	return p
}

// RemovePeer forgets replica id for good: its connection is closed, its
// queued messages dropped, Send to it fails with ErrUnknownPeer and its
// hellos are refused (a replica removed from the cell; ids are never
// reused), saying why (ErrRetired, Config.OnRetired) when the dialer
// presents this replica's cell id. Call it only for an id that is removed
// from the cell: that answer makes the replica stop.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	if t.closed || id == t.cfg.ID || t.removed[id] {
		t.mu.Unlock()
		return
	}
	t.removed[id] = true
	p := (*t.peers.Load())[id]
	if p != nil {
		peers := maps.Clone(*t.peers.Load())
		delete(peers, id)
		t.peers.Store(&peers)
		close(p.gone)
	}
	t.mu.Unlock()
	if p != nil {
		if s := p.session(); s != nil {
			s.Close()
		}
		t.log.Info("peer removed", "peer", id)
	}
}

// checkRetired refuses a hello from an id RemovePeer forgot with
// ErrRetired, which tells the dialer it was removed, but only when the
// dialer can trust it: it reached the replica it meant to (To), and both
// know the same cell id (ours, as it was before this hello), so a replica
// of another cell, or one misconfigured with this replica's address for
// another peer, is never told. Any other hello from a forgotten id is
// refused later as from an unknown peer.
func (t *Transport) checkRetired(h hello, ours uint64) error {
	t.mu.Lock()
	removed := t.removed[h.From]
	t.mu.Unlock()
	if !removed || h.To != t.cfg.ID || ours == 0 || h.CellID != ours {
		return nil
	}
	return fmt.Errorf("%w: replica %d was removed from the cell (replica %d applied its removal)",
		ErrRetired, h.From, t.cfg.ID)
}

// reportRetired calls Config.OnRetired, once, for a peer's answer that
// this replica was removed from the cell. The warning is OnRetired's to
// give (the replica says what it does about it); without one the
// transport gives it.
func (t *Transport) reportRetired(by uint64) {
	t.retired.Do(func() {
		if t.cfg.OnRetired == nil {
			t.log.Warn("a peer reports this replica removed from the cell", "peer", by)
			return
		}
		t.cfg.OnRetired(by)
	})
}

// knownPeer returns the peer a hello from id is for: a configured or added
// peer, or (Config.AcceptUnknown) a new one added for it, without an
// address (SetPeer gives it one, and then this replica dials it if its id
// is higher). nil if id is refused.
func (t *Transport) knownPeer(id uint64) *peer {
	if p := (*t.peers.Load())[id]; p != nil {
		return p
	}
	if !t.cfg.AcceptUnknown || id == 0 || id == t.cfg.ID {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.removed[id] {
		return nil
	}
	if p := (*t.peers.Load())[id]; p != nil {
		return p
	}
	t.log.Info("hello from a replica not among the peers: taken (AcceptUnknown)", "peer", id)
	return t.addPeerLocked(id, "")
}

// Send queues payload for the group on replica to and returns at once; it
// never blocks. The transport keeps payload until it is written, so the
// caller must not modify it after Send (sending one slice to several peers is
// fine). A nil error means queued, not delivered. Send fails with
// ErrUnknownPeer, ErrFrameTooLarge (payload over Config.MaxPayload),
// ErrTooManyGroups, ErrClosed, or ErrQueueFull (dropped and counted).
func (t *Transport) Send(to uint64, group uint32, payload []byte) error {
	p := (*t.peers.Load())[to]
	if p == nil {
		return fmt.Errorf("%w: replica %d", ErrUnknownPeer, to)
	}
	if len(payload) > t.cfg.MaxPayload() {
		return fmt.Errorf("%w: payload of %d bytes, at most %d", ErrFrameTooLarge, len(payload), t.cfg.MaxPayload())
	}
	l, err := t.lane(p, group)
	if err != nil {
		return err
	}
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	select {
	case l.queue <- payload:
		return nil
	default:
		p.stats.dropped.Add(1)
		return ErrQueueFull
	}
}

// Addr is the address the Transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Stats counts traffic per peer since New.
type Stats struct {
	// Peers has one entry per configured peer.
	Peers map[uint64]PeerStats
	// Rejected counts inbound connections refused before a peer was known:
	// bad hello, unknown id, wrong version, too many pending handshakes.
	Rejected uint64
}

// PeerStats counts the traffic with one peer.
type PeerStats struct {
	Connected      bool   // a connection is up now
	Connects       uint64 // connections established (each handshake that succeeded)
	FramesSent     uint64 // frames written to a connection (a write can still be lost)
	BytesSent      uint64 // bytes of those frames, headers included
	FramesReceived uint64 // frames delivered to the Handler
	BytesReceived  uint64 // bytes of those frames, headers included
	Dropped        uint64 // messages Send dropped because the queue was full
	Errors         uint64 // connections closed because the peer broke the protocol
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	peers := *t.peers.Load()
	s := Stats{Peers: make(map[uint64]PeerStats, len(peers)), Rejected: t.rejected.Load()}
	for id, p := range peers {
		s.Peers[id] = p.snapshot()
	}
	return s
}

// Close stops listening, closes every connection and waits for every
// goroutine of the Transport to end, running Handler calls included. Queued
// messages are discarded. Close is idempotent; Send after Close returns
// ErrClosed.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.cancel()
	pending := make([]net.Conn, 0, len(t.pending))
	for c := range t.pending {
		pending = append(pending, c)
	}
	t.mu.Unlock()

	err := t.ln.Close()
	for _, c := range pending {
		c.Close()
	}
	for _, p := range *t.peers.Load() {
		if s := p.session(); s != nil {
			s.Close()
		}
	}
	t.wg.Wait()
	t.log.Info("transport closed")
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// spawn runs f on a new goroutine that Close waits for, unless the
// Transport is closed.
func (t *Transport) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.goLocked(f)
	return true
}

func (t *Transport) goLocked(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// track registers a connection in its handshake so Close can interrupt it.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.pending[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.pending, c)
	t.mu.Unlock()
}

func (t *Transport) closing() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// sleep waits d, or less if the Transport closes; it reports whether the
// Transport is still open.
func (t *Transport) sleep(d time.Duration) bool { return t.sleepPeer(nil, d) }

// sleepPeer is sleep that also ends, reporting false, once p (if not nil)
// is removed.
func (t *Transport) sleepPeer(p *peer, d time.Duration) bool {
	var gone <-chan struct{} // nil: never
	if p != nil {
		gone = p.gone
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.done:
		return false
	case <-gone:
		return false
	}
}

// deadPeerFactor is how many KeepAlive intervals a Ping, or a write of a
// frame, may wait before yamux closes the connection as dead.
const deadPeerFactor = 5

// yamuxConfig is the session configuration both sides use.
func yamuxConfig(cfg Config, log *slog.Logger) *yamux.Config {
	yc := yamux.DefaultConfig()
	yc.KeepAliveInterval = cfg.KeepAlive
	// yamux waits this long for a Ping's answer (and for a frame's write):
	// its default, 10 s, on top of a 10 s interval let a stalled
	// connection live 20 s.
	yc.ConnectionWriteTimeout = deadPeerFactor * cfg.KeepAlive
	yc.LogOutput = nil
	yc.Logger = yamuxLogger{log}
	return yc
}

// yamuxLogger sends yamux's own log lines to slog: its errors as warnings,
// the rest at debug level.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any)                 { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.emit(fmt.Sprintf(format, v...)) }
func (l yamuxLogger) Println(v ...any)               { l.emit(fmt.Sprint(v...)) }

func (l yamuxLogger) emit(msg string) {
	level := slog.LevelDebug
	if strings.HasPrefix(msg, "[ERR]") || strings.HasPrefix(msg, "[WARN]") {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, msg)
}
