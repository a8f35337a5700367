package transport

import (
	"errors"
	"testing"
)

// A peer added with SetPeer is dialled and reached without a restart, and
// a peer whose address changes is dialled at the new one.
func TestSetPeerAddsAndMovesAPeer(t *testing.T) {
	dyn := func(c *Config) { c.AcceptUnknown = true }
	nodes := startCell(t, 2, dyn)
	cfg3 := testConfig(3, map[uint64]string{1: "", 2: ""})
	dyn(&cfg3)
	n3 := startNode(t, cfg3)
	if err := nodes[1].Send(3, 1, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Send to a peer not added yet = %v; want ErrUnknownPeer", err)
	}
	nodes[1].SetPeer(3, n3.Addr().String())
	nodes[2].SetPeer(3, n3.Addr().String())
	deliverEventually(t, nodes[1], n3, 1, "hello 3 from 1")
	deliverEventually(t, nodes[2], n3, 1, "hello 3 from 2")
	deliverEventually(t, n3, nodes[1], 1, "hello 1 from 3")

	// Replica 3 moves: a new process on a new address.
	n3.Close()
	cfg3b := testConfig(3, map[uint64]string{1: "", 2: ""})
	dyn(&cfg3b)
	n3b := startNode(t, cfg3b)
	nodes[1].SetPeer(3, n3b.Addr().String())
	deliverEventually(t, nodes[1], n3b, 1, "hello new 3 from 1")
}

// A hello from an id that is not a peer is taken with AcceptUnknown (and
// refused without it); RemovePeer forgets a peer for good.
func TestAcceptUnknownAndRemovePeer(t *testing.T) {
	cfgHigh := testConfig(5, map[uint64]string{})
	cfgHigh.AcceptUnknown = true
	high := startNode(t, cfgHigh)
	cfgLow := testConfig(2, map[uint64]string{5: high.Addr().String()})
	cfgLow.AcceptUnknown = true
	low := startNode(t, cfgLow)
	deliverEventually(t, low, high, 1, "from an unknown lower id")
	deliverEventually(t, high, low, 1, "back to it")

	high.RemovePeer(2)
	if err := high.Send(2, 1, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Send to a removed peer = %v; want ErrUnknownPeer", err)
	}
	waitFor(t, "the removed peer's hello refused", func() bool { return high.Stats().Rejected > 0 })
	high.SetPeer(2, "127.0.0.1:1") // a removed id is never added again
	if _, ok := high.Stats().Peers[2]; ok {
		t.Fatalf("SetPeer added back a removed peer")
	}

	cfgStrict := testConfig(7, map[uint64]string{})
	strict := startNode(t, cfgStrict)
	low.SetPeer(7, strict.Addr().String())
	waitFor(t, "a hello from an unknown id refused without AcceptUnknown", func() bool { return strict.Stats().Rejected > 0 })
	waitLogged(t, strict, "replica 2 is not a peer")
}
