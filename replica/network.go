package replica

import (
	"fmt"
	"time"

	"github.com/latchd/latch/replica/transport"
)

// Handler receives one message from a peer: the sender, the group and the
// payload, which the handler owns. It must return quickly.
type Handler func(from uint64, group uint32, payload []byte)

// Network connects a replica to its peers. The TCP transport is the default
// (TCPNetwork); MemNetwork is an in-memory double for tests.
type Network interface {
	// Join starts this replica's endpoint: it delivers every arriving
	// message to h until the returned Link is closed.
	Join(cfg Config, h Handler) (Link, error)
}

// Link is a joined endpoint.
type Link interface {
	// Send queues payload for group on replica to; it never blocks and may
	// drop the message. The caller must not modify payload afterwards.
	Send(to uint64, group uint32, payload []byte) error
	// Addr is the address peers reach this endpoint at.
	Addr() string
	// Close stops delivery and waits for running handlers to return.
	Close() error
	// SetPeers tells the endpoint the cell's members as they change:
	// addrs holds every member's peer address (a new one is reached from
	// now on, a changed one dialled at its new address), removed the ids
	// retired from the cell, forgotten for good. Ids in neither are left
	// as they are.
	SetPeers(addrs map[uint64]string, removed []uint64)
}

// TCPNetwork is the production Network: package transport (TCP, yamux,
// msgpack frames), configured from the replica's Config. Tune sets the
// transport's own knobs (queue lengths, backoff); the zero value uses
// transport.DefaultConfig with a frame limit that fits the largest batch.
type TCPNetwork struct {
	Tune func(*transport.Config)
}

// Join implements Network.
func (n TCPNetwork) Join(cfg Config, h Handler) (Link, error) {
	tc := transport.DefaultConfig()
	tc.ID = cfg.ID
	tc.Listen = cfg.Listen
	if tc.Listen == "" {
		tc.Listen = cfg.Members[cfg.ID]
	}
	tc.Peers = make(map[uint64]string, len(cfg.Members))
	for id, addr := range cfg.Members {
		if id != cfg.ID {
			tc.Peers[id] = addr
		}
	}
	tc.MaxFrame = max(tc.MaxFrame, maxPeerMessage+transport.EnvelopeOverhead+1024)
	// Members change: a replica must take connections from members it
	// does not know yet (docs/membership.md §5).
	tc.AcceptUnknown = true
	// Twice the longest backoff: a lower id that knows this replica's
	// address has redialed by then. A founder only probes the lower ids
	// (Replica.dialsBack): a removed one with a higher id than every
	// member learns so from them, since they no longer dial it.
	after := 2 * tc.MaxBackoff
	if cfg.dialBack {
		tc.DialBackAfter = after
	} else {
		tc.ProbeAfter = after
	}
	tc.Cell, tc.OnCell = cfg.cell, cfg.onCell
	tc.OnRetired = cfg.onRetired
	if cfg.Logger != nil {
		tc.Logger = cfg.Logger.With("component", "transport")
	}
	if n.Tune != nil {
		n.Tune(&tc)
	}
	t, err := transport.New(tc, transport.Handler(h))
	if err != nil {
		return nil, fmt.Errorf("replica: start transport: %w", err)
	}
	return tcpLink{t: t, dialBackAfter: after}, nil
}

// dialsBack reports whether this replica dials back the lower ids
// (transport.Config.DialBackAfter): whether its peer address may be known
// only from the replicated member set, not from the founders'
// configurations. Between two replicas the lower id dials, knowing the
// higher one's address from its configuration or its member set; but one
// rebuilt from an empty disk knows only its configuration, and that may
// name only founders removed since (docs/operations.md, "Changing the
// members"). So a replica that joined the cell, or was moved (its
// MemberAddrs name its peer address), dials back a lower id that has not
// connected for a while, if it knows its address. A founder does not:
// every founder's configuration names it, and the fault tests' link
// proxies, one per pair for the lower id to dial, stay the only path
// between founders (docs/testing.md). A founder only probes a lower id
// that has not connected for a while (transport.Config.ProbeAfter): the
// probe asks whether this replica was removed and carries nothing else.
func (r *Replica) dialsBack() bool {
	if r.cell.Join {
		return true
	}
	for _, id := range r.groupIDs {
		m := r.groups[id].members.Load()
		if m == nil {
			continue
		}
		if x, ok := m.Member(r.cfg.ID); ok {
			if peer, err := peerOf(x); err == nil && peer != "" {
				return true
			}
		}
	}
	return false
}

type tcpLink struct {
	t             *transport.Transport
	dialBackAfter time.Duration // for DialBack
}

// dialBacker is a Link that can start dialing back the lower ids after it
// started (tcpLink): a replica learns that it dials back (dialsBack) only
// once it knows its member set, which one rebuilt from an empty disk
// learns from a peer after it started.
type dialBacker interface{ DialBack() }

func (l tcpLink) DialBack() { l.t.DialBack(l.dialBackAfter) }

func (l tcpLink) Send(to uint64, group uint32, payload []byte) error {
	return l.t.Send(to, group, payload)
}
func (l tcpLink) Addr() string { return l.t.Addr().String() }
func (l tcpLink) SetPeers(addrs map[uint64]string, removed []uint64) {
	for id, addr := range addrs {
		l.t.SetPeer(id, addr)
	}
	for _, id := range removed {
		l.t.RemovePeer(id)
	}
}
func (l tcpLink) Close() error { return l.t.Close() }
