package e2e

import (
	"net"
	"sync"
	"testing"
)

// linkProxy carries the TCP connections of one replica-to-replica link and
// can break it in two ways:
//   - cut: the connections it carries are closed and new ones refused, as
//     when a peer is down or a firewall rejects; both ends notice at once.
//   - blackhole: the connections it carries stop moving bytes, for good,
//     while staying open, as when packets are silently dropped; new ones
//     are accepted and stall too. Only a liveness check notices.
//
// mend lets new connections through again; a blackholed connection stays
// stalled, so the replicas must notice it is dead and dial again. The client
// ports are not proxied.
type linkProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	state linkState
	pairs map[*carried]struct{}
}

type linkState int

const (
	linkOpen linkState = iota
	linkCut
	linkBlackhole
	// linkToTargetLost and linkToDialerLost blackhole one direction only:
	// the bytes toward the target (the higher id) or toward the dialer.
	linkToTargetLost
	linkToDialerLost
)

// carried is one connection through the proxy: in from the dialing
// replica, out to the target.
type carried struct {
	in, out net.Conn
	// stalled is closed when the connection stops moving bytes in the
	// directions of lost (linkBlackhole: both).
	stalled chan struct{}
	lost    linkState
	stall   sync.Once
	closed  chan struct{} // closed with the connections
	closing sync.Once
}

func newCarried(in net.Conn) *carried {
	return &carried{in: in, stalled: make(chan struct{}), closed: make(chan struct{})}
}

// freeze stalls c in the directions of s, once.
func (c *carried) freeze(s linkState) {
	c.stall.Do(func() {
		c.lost = s
		close(c.stalled)
	})
}

// lostToward reports whether bytes toward the target (or the dialer) are
// stalled; call it once stalled is closed.
func (c *carried) lostToward(target bool) bool {
	return c.lost == linkBlackhole || target && c.lost == linkToTargetLost || !target && c.lost == linkToDialerLost
}

func (c *carried) close() {
	c.closing.Do(func() {
		c.in.Close()
		if c.out != nil {
			c.out.Close()
		}
		close(c.closed)
	})
}

// startLinkProxy listens on a free loopback port and forwards to target
// until the test ends.
func startLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", freeAddrs(t, 1)[0])
	if err != nil {
		t.Fatalf("link proxy: %v", err)
	}
	p := &linkProxy{ln: ln, target: target, pairs: map[*carried]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.set(linkCut)
		p.wg.Wait()
	})
	return p
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

// set changes the link's state: cutting closes what it carries,
// blackholing stalls it, opening lets new connections through.
func (p *linkProxy) set(s linkState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
	for c := range p.pairs {
		switch s {
		case linkCut:
			c.close()
		case linkOpen:
		default:
			c.freeze(s)
		}
	}
}

// admit registers c as carried; it reports false (and c is to be closed) if
// the link is cut. A connection admitted to a blackholed link is stalled
// from the start.
func (p *linkProxy) admit(c *carried) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case linkCut:
		return false
	case linkOpen:
	default:
		c.freeze(p.state)
	}
	p.pairs[c] = struct{}{}
	return true
}

func (p *linkProxy) drop(c *carried) {
	p.mu.Lock()
	delete(p.pairs, c)
	p.mu.Unlock()
	c.close()
}

func (p *linkProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		c := newCarried(in)
		p.wg.Go(func() { p.carry(c) })
	}
}

// carry forwards between c.in and a new connection to the target until
// either side ends, the link is cut, or the proxy closes.
func (p *linkProxy) carry(c *carried) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		c.in.Close()
		return
	}
	c.out = out
	if !p.admit(c) {
		c.close()
		return
	}
	defer p.drop(c)
	done := make(chan struct{}, 2)
	go func() { pipe(c, out, c.in, true); done <- struct{}{} }()
	go func() { pipe(c, c.in, out, false); done <- struct{}{} }()
	<-done
	c.close()
	<-done
}

// pipe copies src to dst (toward the target if toTarget) until either
// fails. Once c is stalled in this direction it forwards nothing more and
// stops reading, so the sender's buffers fill up as they
// would with a peer that drops every packet; it returns when c is closed.
func pipe(c *carried, dst, src net.Conn, toTarget bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-c.stalled:
				if !c.lostToward(toTarget) {
					break
				}
				// Drop this read and read no more until the connection
				// is closed (the link cut, or the test over).
				<-c.closed
				return
			default:
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// isolate cuts every link of replica n, or opens them again.
func (c *procCell) isolate(n *node, cut bool) {
	s := linkOpen
	if cut {
		s = linkCut
	}
	c.setLinks(n, s)
}

// deafen blackholes every byte sent to replica n by its peers, while what
// it sends still arrives (a replica that can send but not receive), or
// lets the links work again.
func (c *procCell) deafen(n *node, deaf bool) {
	for ends, l := range c.links {
		switch {
		case !deaf && (ends[0] == n.id || ends[1] == n.id):
			l.set(linkOpen)
		case ends[0] == n.id: // n dials: bytes toward n go to the dialer
			l.set(linkToDialerLost)
		case ends[1] == n.id:
			l.set(linkToTargetLost)
		}
	}
}

// shape cuts every link between replicas a < b (ids) that connected
// reports false and opens every other: a partition of any shape.
func (c *procCell) shape(connected func(a, b int) bool) {
	for ends, l := range c.links {
		if connected(ends[0], ends[1]) {
			l.set(linkOpen)
		} else {
			l.set(linkCut)
		}
	}
}

// setLinks sets the state of every link of replica n.
func (c *procCell) setLinks(n *node, s linkState) {
	for ends, l := range c.links {
		if ends[0] == n.id || ends[1] == n.id {
			l.set(s)
		}
	}
}
