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
// across a cut link, or to a full queue, is dropped.
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
	ep := &memEndpoint{net: n, id: cfg.ID, addr: addr, h: h, inbox: make(chan memMsg, memQueue), done: make(chan struct{})}
	n.eps[cfg.ID] = ep
	go ep.run()
	return ep, nil
}

type memMsg struct {
	from    uint64
	group   uint32
	payload []byte
}

type memEndpoint struct {
	net   *MemNetwork
	id    uint64
	addr  string
	h     Handler
	inbox chan memMsg
	done  chan struct{}

	closeOnce sync.Once
	closed    bool            // guarded by net.mu
	removed   map[uint64]bool // ids SetPeers forgot, guarded by net.mu
}

func (e *memEndpoint) run() {
	defer close(e.done)
	for m := range e.inbox {
		e.h(m.from, m.group, m.payload)
	}
}

func (e *memEndpoint) Send(to uint64, group uint32, payload []byte) error {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	dst := e.net.eps[to]
	if e.closed || dst == nil || dst.closed || e.net.cut[[2]uint64{e.id, to}] || e.removed[to] || dst.removed[e.id] {
		return fmt.Errorf("%w: %d -> %d", ErrDropped, e.id, to)
	}
	select {
	case dst.inbox <- memMsg{from: e.id, group: group, payload: append([]byte(nil), payload...)}:
		return nil
	default:
		return fmt.Errorf("%w: %d -> %d: queue full", ErrDropped, e.id, to)
	}
}

func (e *memEndpoint) Addr() string { return e.addr }

// SetPeers implements Link: the in-memory network needs no addresses, but
// it drops messages to and from removed ids, as the TCP transport does.
func (e *memEndpoint) SetPeers(_ map[uint64]string, removed []uint64) {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	for _, id := range removed {
		if e.removed == nil {
			e.removed = make(map[uint64]bool)
		}
		e.removed[id] = true
	}
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
