package replica

import (
	"errors"
	"fmt"
	"sync"
)

// ErrDropped is returned by a MemNetwork link's Send when the message was
// dropped: the destination is unknown, disconnected, closed or its queue is
// full. Like the TCP transport, the network never retries.
var ErrDropped = errors.New("replica: message dropped")

// memQueue is the capacity of each MemNetwork endpoint's inbound queue.
const memQueue = 8192

// MemNetwork is an in-memory Network for tests: every replica joined to it
// can reach every other, except across links cut with Disconnect or
// Isolate. Delivery is asynchronous and in order per sender; a message sent
// across a cut link, or to a full queue, is dropped. Two replicas that can
// reach each other do what the TCP transport's handshake does (greetLocked):
// they share the cell id, and one the other forgot for good (SetPeers
// removed) is told it was removed from the cell.
type MemNetwork struct {
	mu  sync.Mutex
	eps map[uint64]*memEndpoint
	cut map[[2]uint64]bool // directed: cut[{from, to}]
}

// NewMemNetwork returns an empty, fully connected network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{eps: make(map[uint64]*memEndpoint), cut: make(map[[2]uint64]bool)}
}

// Disconnect cuts the link between a and b in both directions.
func (n *MemNetwork) Disconnect(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]uint64{a, b}] = true
	n.cut[[2]uint64{b, a}] = true
}

// Connect restores the link between a and b in both directions.
func (n *MemNetwork) Connect(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, [2]uint64{a, b})
	delete(n.cut, [2]uint64{b, a})
	n.greetLocked()
}

// Isolate cuts every link of id, to replicas joined now or later, until
// Heal or Connect.
func (n *MemNetwork) Isolate(id uint64, others ...uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for other := range n.eps {
		n.cut[[2]uint64{id, other}] = true
		n.cut[[2]uint64{other, id}] = true
	}
	for _, other := range others {
		n.cut[[2]uint64{id, other}] = true
		n.cut[[2]uint64{other, id}] = true
	}
}

// Heal restores every link.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	n.greetLocked()
}

// Join implements Network. A replica id can be joined again after its
// previous link was closed (a restart).
func (n *MemNetwork) Join(cfg Config, h Handler) (Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.eps[cfg.ID]; ok {
		return nil, fmt.Errorf("replica: MemNetwork: replica %d already joined", cfg.ID)
	}
	addr := cfg.Listen
	if addr == "" {
		addr = cfg.Members[cfg.ID]
	}
	ep := &memEndpoint{net: n, id: cfg.ID, addr: addr, h: h, inbox: make(chan memMsg, memQueue), done: make(chan struct{}),
		cell: cfg.cell, onCell: cfg.onCell, onRetired: cfg.onRetired, known: make(map[uint64]bool)}
	for id := range cfg.Members {
		if id != cfg.ID {
			ep.known[id] = true
		}
	}
	n.eps[cfg.ID] = ep
	go ep.run()
	n.greetLocked()
	return ep, nil
}

// greetLocked does, for every pair of joined replicas that can reach each
// other, what a TCP handshake does when one of them connects to the other
// (hello). The TCP transport connects to every peer it knows the address
// of, traffic or not: the lower id dials, a joiner dials back and a
// founder probes a lower id (transport.Config.DialBackAfter, ProbeAfter),
// so every pair greets soon after it can; here at once. It runs whenever
// a pair may have become able to (Join, SetPeers, Connect, Heal), until a
// round teaches no replica the cell id, which a replica may pass on only
// in the next. net.mu is held.
func (n *MemNetwork) greetLocked() {
	for again := true; again; {
		again = false
		for _, a := range n.eps {
			for id := range a.known {
				if b := n.eps[id]; b != nil && n.linkedLocked(a, b) && a.hello(b) {
					again = true
				}
			}
		}
	}
}

// linkedLocked reports whether no link between a and b is cut: a
// handshake needs both directions. net.mu is held.
func (n *MemNetwork) linkedLocked(a, b *memEndpoint) bool {
	return !n.cut[[2]uint64{a.id, b.id}] && !n.cut[[2]uint64{b.id, a.id}]
}

type memMsg struct {
	from    uint64
	group   uint32
	payload []byte
	// A note instead of a message, for the delivery goroutine to pass on
	// as the TCP transport does: the cell id learned from replica from
	// (transport.Config.OnCell), or replica from's answer that this one
	// was removed from the cell (transport.Config.OnRetired).
	cell    uint64
	retired bool
}

type memEndpoint struct {
	net   *MemNetwork
	id    uint64
	addr  string
	h     Handler
	inbox chan memMsg
	done  chan struct{}

	onCell    func(uint64)
	onRetired func(by uint64)

	closeOnce sync.Once
	// Guarded by net.mu:
	closed  bool
	removed map[uint64]bool // ids SetPeers forgot
	known   map[uint64]bool // ids with an address (Config.Members, SetPeers): the peers TCP would dial or probe
	cell    uint64          // the cell id, 0 if not known (transport.Config.Cell)
	told    bool            // a peer's answer that this replica was removed is queued (once, as TCP's)
}

func (e *memEndpoint) run() {
	defer close(e.done)
	for m := range e.inbox {
		switch {
		case m.retired:
			if e.onRetired != nil {
				e.onRetired(m.from)
			}
		case m.cell != 0:
			if e.onCell != nil {
				e.onCell(m.cell)
			}
		default:
			e.h(m.from, m.group, m.payload)
		}
	}
}

// hello emulates a TCP handshake from e to the listener l (transport
// greetAsDialer, greetAsListener, checkRetired) for what it tells them and
// reports whether either learned the cell id. In the transport's order:
// the cell ids are matched first (one that does not know it learns the
// other's; another cell's replica learns nothing); then, if l forgot e,
// e is told it was removed, but only if both knew the same cell id before
// the hello; otherwise they connect, and e learns l's cell id. A replica
// that is only cut off is told nothing. net.mu is held.
func (e *memEndpoint) hello(l *memEndpoint) bool {
	if e.removed[l.id] {
		return false // forgotten: e no longer dials it
	}
	ours := l.cell
	learned := false
	switch {
	case e.cell == 0:
	case ours == 0:
		learned = l.learn(e.cell)
	case ours != e.cell:
		return false // refused: another cell
	}
	if l.removed[e.id] {
		if ours != 0 && e.cell == ours {
			e.tellRetired(l.id)
		}
		return learned
	}
	if e.cell == 0 && l.cell != 0 {
		learned = e.learn(l.cell)
	}
	return learned
}

// learn records the cell id a peer presented and queues the note for the
// replica. A full queue leaves it unknown, for the next hello to teach.
// net.mu is held.
func (e *memEndpoint) learn(cell uint64) bool {
	if e.note(memMsg{cell: cell}) {
		e.cell = cell
		return true
	}
	return false
}

// tellRetired queues replica by's answer that e was removed, once. A full
// queue leaves it untold, for the next hello. net.mu is held.
func (e *memEndpoint) tellRetired(by uint64) {
	if !e.told && e.note(memMsg{from: by, retired: true}) {
		e.told = true
	}
}

// note queues a note for the delivery goroutine without blocking; it
// reports whether there was room. net.mu is held.
func (e *memEndpoint) note(m memMsg) bool {
	select {
	case e.inbox <- m:
		return true
	default:
		return false
	}
}

func (e *memEndpoint) Send(to uint64, group uint32, payload []byte) error {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	dst := e.net.eps[to]
	if e.closed || dst == nil || dst.closed || e.net.cut[[2]uint64{e.id, to}] || e.removed[to] {
		return fmt.Errorf("%w: %d -> %d", ErrDropped, e.id, to)
	}
	if dst.removed[e.id] {
		// Its TCP transport would redial and be told it was removed.
		if e.known[to] && e.net.linkedLocked(e, dst) {
			e.hello(dst)
		}
		return fmt.Errorf("%w: %d -> %d: sender removed", ErrDropped, e.id, to)
	}
	if e.cell != 0 && dst.cell != 0 && e.cell != dst.cell {
		return fmt.Errorf("%w: %d -> %d: another cell", ErrDropped, e.id, to)
	}
	select {
	case dst.inbox <- memMsg{from: e.id, group: group, payload: append([]byte(nil), payload...)}:
		return nil
	default:
		return fmt.Errorf("%w: %d -> %d: queue full", ErrDropped, e.id, to)
	}
}

func (e *memEndpoint) Addr() string { return e.addr }

// SetPeers implements Link: the in-memory network needs no addresses, but,
// as the TCP transport does, it greets only peers it knows an address of,
// and drops messages to and from removed ids and tells a removed id that
// greets it that it was removed.
func (e *memEndpoint) SetPeers(addrs map[uint64]string, removed []uint64) {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	for id := range addrs {
		if id != e.id {
			e.known[id] = true
		}
	}
	for _, id := range removed {
		if e.removed == nil {
			e.removed = make(map[uint64]bool)
		}
		e.removed[id] = true
	}
	e.net.greetLocked()
}

func (e *memEndpoint) Close() error {
	e.closeOnce.Do(func() {
		e.net.mu.Lock()
		e.closed = true
		if e.net.eps[e.id] == e {
			delete(e.net.eps, e.id)
		}
		close(e.inbox)
		e.net.mu.Unlock()
		<-e.done
	})
	return nil
}
