package transport

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// dialBack returns cfg set to dial back, after the given time, the lower
// ids whose address it knows (Config.DialBackAfter; 0: never), and to
// take hellos from ids it does not know, and dial-backs, as a replica does.
func dialBack(cfg Config, after time.Duration) Config {
	cfg.AcceptUnknown, cfg.DialBackAfter = true, after
	return cfg
}

// sessionKind reports whether n has a live connection to peer id, and
// whether it was dialed back.
func sessionKind(n *node, id uint64) (up, back bool) {
	p := (*n.peers.Load())[id]
	if p == nil {
		return false, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sess != nil && !p.sess.IsClosed(), p.sessBack
}

// settledOnLowerDial reports whether both a and b hold a live connection
// to each other that the lower id dialed.
func settledOnLowerDial(a, b *node) bool {
	upA, backA := sessionKind(a, b.id)
	upB, backB := sessionKind(b, a.id)
	return upA && upB && !backA && !backB
}

// A replica that does not know a higher id's address (it has no peers at
// all, as a replica rebuilt from an empty disk whose configured members
// are gone) is dialed back by it; once it learns the address, its own
// connection replaces the dialed-back one on both ends.
func TestDialBackReachesALowerIDThatCannotDial(t *testing.T) {
	low := startNode(t, dialBack(testConfig(1, map[uint64]string{}), 0))
	high := startNode(t, dialBack(testConfig(3, map[uint64]string{1: low.Addr().String()}), 20*time.Millisecond))
	deliverEventually(t, high, low, 1, "dialed back")
	deliverEventually(t, low, high, 1, "answered on it")
	if up, back := sessionKind(low, 3); !up || !back {
		t.Fatalf("replica 1's connection to 3: up %v, dialed back %v; want up, dialed back", up, back)
	}

	low.SetPeer(3, high.Addr().String())
	waitFor(t, "the lower id's own connection on both ends", func() bool { return settledOnLowerDial(low, high) })
	deliverEventually(t, low, high, 1, "on the lower id's connection")
	deliverEventually(t, high, low, 1, "both ways")
}

// A replica started without dial-back (it probes the lower ids, as a
// replica rebuilt from an empty disk does until it learns from the member
// set that its address is known only there) dials back once DialBack turns
// it on, from its next probe on.
func TestDialBackTurnedOnLater(t *testing.T) {
	low := startNode(t, dialBack(testConfig(1, map[uint64]string{}), 0))
	cfg := dialBack(testConfig(3, map[uint64]string{1: low.Addr().String()}), 0)
	cfg.ProbeAfter = 20 * time.Millisecond
	high := startNode(t, cfg)
	// Probes never connect (TestRemovedReplicaIsToldItWasRemoved); let a
	// few go by first, so that DialBack meets a running probe loop.
	time.Sleep(3 * cfg.ProbeAfter)
	if up, _ := sessionKind(high, 1); up {
		t.Fatalf("replica 3 connected to 1 while it only probes")
	}
	high.DialBack(20 * time.Millisecond)
	deliverEventually(t, high, low, 1, "dialed back once turned on")
	if up, back := sessionKind(low, 3); !up || !back {
		t.Fatalf("replica 1's connection to 3: up %v, dialed back %v; want up, dialed back", up, back)
	}
}

// Replicas that dial each other at once, both ways (every one knows every
// address, and dials back without waiting), settle on one connection per
// pair, the one the lower id dialed, and keep it: the connections do not
// flap.
func TestDialBackYieldsToTheLowerIDsConnection(t *testing.T) {
	const n = 3
	nodes := make([]*node, n+1)
	for id := uint64(1); id <= n; id++ {
		nodes[id] = startNode(t, dialBack(testConfig(id, map[uint64]string{}), time.Nanosecond))
	}
	for _, a := range nodes[1:] {
		for _, b := range nodes[1:] {
			if a != b {
				a.SetPeer(b.id, b.Addr().String())
			}
		}
	}
	settled := func() bool {
		for _, a := range nodes[1:] {
			for _, b := range nodes[a.id+1:] {
				if !settledOnLowerDial(a, b) {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, "one connection per pair, dialed by the lower id", settled)
	connects := func() (sum uint64) {
		for _, a := range nodes[1:] {
			for _, st := range a.Stats().Peers {
				sum += st.Connects
			}
		}
		return sum
	}
	before := connects()
	exchange(t, nodes, []uint32{1, 2}, 200)
	// Every dial back ended as soon as the lower id's connection was up
	// on its end: none was attached since.
	if !settled() {
		t.Fatalf("the pairs left the lower id's connections")
	}
	if after := connects(); after != before {
		t.Fatalf("connections established during the exchange: %d; want none (flapping)", after-before)
	}
}

// pipeSession returns one end of a yamux session over an in-memory pipe.
func pipeSession(t *testing.T) *yamux.Session {
	t.Helper()
	a, b := net.Pipe()
	s, err := yamux.Client(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := yamux.Server(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); other.Close() })
	return s
}

// Whatever the order two connections of a pair come up in, each end keeps
// the one the lower id dialed: a dial-back never replaces it, and it
// replaces a dial-back.
func TestAttachPrefersTheLowerIDsConnection(t *testing.T) {
	done := make(chan struct{})
	for _, backFirst := range []bool{false, true} {
		p := newPeer(1, "", false)
		lower, back := pipeSession(t), pipeSession(t)
		first, second := lower, back
		if backFirst {
			first, second = back, lower
		}
		if _, err := p.attach(first, first == back, done); err != nil {
			t.Fatalf("attach the first connection (dialed back %v) = %v", backFirst, err)
		}
		_, err := p.attach(second, second == back, done)
		if backFirst && err != nil || !backFirst && !errors.Is(err, errPreferred) {
			t.Fatalf("attach a second connection (dialed back %v) = %v", !backFirst, err)
		}
		if p.session() != lower || !back.IsClosed() || lower.IsClosed() {
			t.Fatalf("dialed back first %v: kept the dial-back, or closed the lower id's connection", backFirst)
		}
	}
}
