package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
)

// linkProxy carries the TCP connections of one replica-to-replica link,
// and can cut it: cut closes the connections it carries and refuses new
// ones until mend. A cut link is a symmetric partition between the two
// replicas; the client ports are not affected.
type linkProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{} // both ends of every carried connection
}

// startLinkProxy listens on a free loopback port and forwards to target
// until the test ends.
func startLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", freeAddrs(t, 1)[0])
	if err != nil {
		t.Fatalf("link proxy: %v", err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

// setCut cuts the link (closing what it carries) or mends it.
func (p *linkProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// track registers c as carried, unless the link is cut.
func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *linkProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *linkProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			in.Close()
			continue
		}
		p.wg.Go(func() { p.carry(in) })
	}
}

// carry forwards between in and a new connection to the target until
// either side ends or the link is cut.
func (p *linkProxy) carry(in net.Conn) {
	defer p.untrack(in)
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(out) {
		out.Close()
		return
	}
	defer p.untrack(out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	<-done
}

// isolate cuts every link of replica n (true) or mends them (false).
func (c *procCell) isolate(n *node, cut bool) {
	for ends, l := range c.links {
		if ends[0] == n.id || ends[1] == n.id {
			l.setCut(cut)
		}
	}
}
