package transport

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// writeBufSize is the buffer each lane writer coalesces frames in before one
// write to its stream.
const writeBufSize = 64 << 10

// peer is the state kept for one other replica.
type peer struct {
	id    uint64
	addr  atomic.Pointer[string] // where to dial it; "" unknown (SetPeer changes it)
	dials bool                   // this replica dials the peer (the peer's id is higher); else it may dial back
	gone  chan struct{}          // closed by RemovePeer: every goroutine for it returns

	dialing bool // its dial loop runs (under Transport.mu)

	mu        sync.Mutex
	sess      *yamux.Session // the live connection, or nil
	sessBack  bool           // sess was dialed back: by the higher id of the pair
	idleSince time.Time      // when sess last became nil (or the peer was added)
	changed   chan struct{}  // closed and replaced whenever sess changes

	// lanes maps group to lane. Send reads it without locking; a new lane
	// replaces the whole map (copy on write) under Transport.mu, which is
	// cheap because groups are few and created once.
	lanes atomic.Pointer[map[uint32]*lane]

	stats struct {
		framesSent, bytesSent, framesRecv, bytesRecv atomic.Uint64
		dropped, connects, errors                    atomic.Uint64
	}
}

func newPeer(id uint64, addr string, dials bool) *peer {
	p := &peer{id: id, dials: dials, gone: make(chan struct{}), changed: make(chan struct{}), idleSince: time.Now()}
	p.addr.Store(&addr)
	p.lanes.Store(new(map[uint32]*lane))
	return p
}

func (p *peer) address() string        { return *p.addr.Load() }
func (p *peer) setAddress(addr string) { p.addr.Store(&addr) }

// removed reports whether RemovePeer forgot p.
func (p *peer) removed() bool {
	select {
	case <-p.gone:
		return true
	default:
		return false
	}
}

func (p *peer) session() *yamux.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sess
}

// Why attach refuses a session.
var (
	errStopping  = errors.New("transport closing or peer removed")
	errPreferred = errors.New("the connection the lower id dialed is preferred")
)

// attach makes s the peer's connection, closing the one it replaces. back
// says that s was dialed back, by the higher id of the pair
// (Config.DialBackAfter). A connection dialed back never replaces a live
// one that the lower id dialed: both ends prefer the latter, so a pair
// that dialed each other at once keeps the same one connection on both
// ends (errPreferred). attach also fails once the Transport is closing or
// the peer was removed (errStopping): Close and RemovePeer close whatever
// session they find after closing done or gone, so none is left open. A
// failed attach closes s.
func (p *peer) attach(s *yamux.Session, back bool, done <-chan struct{}) (replaced bool, err error) {
	p.mu.Lock()
	select {
	case <-done:
		err = errStopping
	case <-p.gone:
		err = errStopping
	default:
		if back && p.sess != nil && !p.sessBack && !p.sess.IsClosed() {
			err = errPreferred
		}
	}
	if err != nil {
		p.mu.Unlock()
		s.Close()
		return false, err
	}
	old := p.sess
	p.sess, p.sessBack = s, back
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.stats.connects.Add(1)
	if old != nil {
		old.Close()
	}
	return old != nil, nil
}

// detach forgets s if it is still the peer's connection.
func (p *peer) detach(s *yamux.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess == s {
		p.sess = nil
		p.idleSince = time.Now()
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// waitIdle waits until the peer has been without a connection for d; false
// when done closes first or the peer is removed.
func (p *peer) waitIdle(d time.Duration, done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		s, changed, since := p.sess, p.changed, p.idleSince
		p.mu.Unlock()
		left := d - time.Since(since)
		if s == nil && left <= 0 {
			return true
		}
		if s != nil {
			left = d // connected: wait for a change (the timer only bounds the wait)
		}
		tm := time.NewTimer(left)
		select {
		case <-changed:
		case <-tm.C:
		case <-done:
			tm.Stop()
			return false
		case <-p.gone:
			tm.Stop()
			return false
		}
		tm.Stop()
	}
}

// waitSession returns the peer's live connection, waiting for one; nil when
// done closes first or the peer is removed.
func (p *peer) waitSession(done <-chan struct{}) *yamux.Session {
	for {
		p.mu.Lock()
		s, changed := p.sess, p.changed
		p.mu.Unlock()
		if s != nil && !s.IsClosed() {
			return s
		}
		select {
		case <-changed:
		case <-done:
			return nil
		case <-p.gone:
			return nil
		}
	}
}

func (p *peer) snapshot() PeerStats {
	return PeerStats{
		Connected:      p.session() != nil,
		Connects:       p.stats.connects.Load(),
		FramesSent:     p.stats.framesSent.Load(),
		BytesSent:      p.stats.bytesSent.Load(),
		FramesReceived: p.stats.framesRecv.Load(),
		BytesReceived:  p.stats.bytesRecv.Load(),
		Dropped:        p.stats.dropped.Load(),
		Errors:         p.stats.errors.Load(),
	}
}

// lane is the outbound path for one (peer, group): a bounded queue and the
// goroutine that drains it into the group's own yamux stream.
type lane struct {
	group uint32
	queue chan []byte
}

// lane returns the lane for (p, group), creating it and starting its writer
// on first use.
func (t *Transport) lane(p *peer, group uint32) (*lane, error) {
	if l := (*p.lanes.Load())[group]; l != nil {
		return l, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	old := *p.lanes.Load()
	if l := old[group]; l != nil {
		return l, nil
	}
	if len(old) >= t.cfg.MaxGroups {
		return nil, fmt.Errorf("%w: replica %d already has %d groups", ErrTooManyGroups, p.id, len(old))
	}
	l := &lane{group: group, queue: make(chan []byte, t.cfg.QueueLen)}
	lanes := maps.Clone(old)
	if lanes == nil {
		lanes = make(map[uint32]*lane, 1)
	}
	lanes[group] = l
	p.lanes.Store(&lanes)
	t.goLocked(func() { t.runLane(p, l) })
	return l, nil
}

// runLane is the writer goroutine of one lane. For each connection to the
// peer it opens a stream and pumps the queue into it; it waits while there is
// no connection (the queue fills, and Send drops).
func (t *Transport) runLane(p *peer, l *lane) {
	ew := newEnvelopeWriter()
	bw := bufio.NewWriterSize(nil, writeBufSize)
	for {
		s := p.waitSession(t.done)
		if s == nil {
			return
		}
		st, err := s.OpenStream()
		if err == nil {
			bw.Reset(st)
			err = t.pump(p, l, s, bw, ew)
			st.Close()
		}
		if t.closing() {
			return
		}
		if err != nil && !s.IsClosed() {
			// The stream failed on a live connection (the peer reset it):
			// pause before opening another.
			t.log.Debug("stream to peer failed", "peer", p.id, "group", l.group, "err", err)
			if !t.sleep(t.cfg.MinBackoff) {
				return
			}
		}
	}
}

// pump writes queued messages to one stream until the stream fails, the
// connection closes or the Transport closes. It flushes whenever the queue is
// empty, so a burst of small messages leaves in one write.
func (t *Transport) pump(p *peer, l *lane, s *yamux.Session, bw *bufio.Writer, ew *envelopeWriter) error {
	for {
		var m []byte
		select {
		case m = <-l.queue:
		case <-s.CloseChan():
			return nil
		case <-t.done:
			return nil
		}
		for more := true; more; {
			n, err := ew.write(bw, l.group, m)
			if err != nil {
				return err
			}
			p.stats.framesSent.Add(1)
			p.stats.bytesSent.Add(uint64(n))
			select {
			case m = <-l.queue:
			default:
				more = false
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}
