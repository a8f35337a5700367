package replica

import (
	"testing"
	"time"
)

// memPeer is one replica's endpoint on a MemNetwork, with what it was told.
type memPeer struct {
	link    Link
	got     chan uint64 // senders of delivered messages
	retired chan uint64 // who reported this replica removed (OnRetired)
	cell    chan uint64 // cell ids learned (OnCell)
}

// joinMem joins replica id, knowing cell id cell (0: none) and the
// addresses of known, to n.
func joinMem(t *testing.T, n *MemNetwork, id, cell uint64, known ...uint64) *memPeer {
	t.Helper()
	p := &memPeer{got: make(chan uint64, 16), retired: make(chan uint64, 16), cell: make(chan uint64, 16)}
	cfg := Config{ID: id, Members: map[uint64]string{id: "self"}, cell: cell}
	for _, k := range known {
		cfg.Members[k] = "peer"
	}
	cfg.onRetired = func(by uint64) { p.retired <- by }
	cfg.onCell = func(c uint64) { p.cell <- c }
	link, err := n.Join(cfg, func(from uint64, _ uint32, _ []byte) { p.got <- from })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	p.link = link
	return p
}

// next returns the next value on c, failing after a generous bound.
func next(t *testing.T, c <-chan uint64, what string) uint64 {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		return 0
	}
}

// quiet checks that p was told nothing: a message from sender, sent after
// whatever would have told it, arrives with no report queued before it.
func quiet(t *testing.T, p *memPeer, sender *memPeer, senderID, id uint64) {
	t.Helper()
	if err := sender.link.Send(id, 1, nil); err != nil {
		t.Fatalf("Send(%d -> %d) = %v", senderID, id, err)
	}
	if from := next(t, p.got, "message"); from != senderID {
		t.Fatalf("message from %d; want %d", from, senderID)
	}
	select {
	case by := <-p.retired:
		t.Fatalf("replica %d told it was removed by %d", id, by)
	default:
	}
}

// A removed replica learns it from a member that forgot it, as a TCP hello
// is answered (transport.Config.OnRetired), but only once it can reach
// that member, only from a member that forgot it, and only within its
// cell; a replica merely cut off is told nothing.
func TestMemNetworkTellsRemovedReplica(t *testing.T) {
	n := NewMemNetwork()
	const cell = 7
	r1 := joinMem(t, n, 1, cell, 2, 3)
	r2 := joinMem(t, n, 2, 0, 1, 3)
	if c := next(t, r2.cell, "cell id learned"); c != cell {
		t.Fatalf("replica 2 learned cell id %d; want %d", c, cell)
	}
	r3 := joinMem(t, n, 3, 0, 1, 2)
	if c := next(t, r3.cell, "cell id learned"); c != cell {
		t.Fatalf("replica 3 learned cell id %d; want %d", c, cell)
	}

	// Cut off, replica 2 is told nothing, nor after the heal.
	n.Isolate(2)
	n.Heal()
	quiet(t, r2, r1, 1, 2)

	// Replica 1 forgets replica 3 while it is cut off: no word until it
	// reaches replica 1 again. Replica 2 has not forgotten it, so reaching
	// it tells nothing; once replica 2 forgets it too, it is told, by 2.
	n.Isolate(3)
	r1.link.SetPeers(nil, []uint64{3})
	n.Connect(3, 2)
	quiet(t, r3, r2, 2, 3)
	r2.link.SetPeers(nil, []uint64{3})
	if by := next(t, r3.retired, "report of the removal"); by != 2 {
		t.Fatalf("replica 3 told it was removed by %d; want 2 (1 is cut off)", by)
	}
	n.Heal()
	quiet(t, r2, r1, 1, 2)

	// Another cell's replica 4, which replica 1 forgot, is told nothing.
	r4 := joinMem(t, n, 4, 9, 1)
	r6 := joinMem(t, n, 6, 9, 4)
	r1.link.SetPeers(nil, []uint64{4})
	n.Heal()
	quiet(t, r4, r6, 6, 4)

	// Nor is replica 5, forgotten before it learned the cell id.
	r1.link.SetPeers(nil, []uint64{5})
	r5 := joinMem(t, n, 5, 0, 1)
	if err := r5.link.Send(1, 1, nil); err == nil {
		t.Fatal("Send from a forgotten id succeeded")
	}
	quiet(t, r5, r2, 2, 5)
	select {
	case c := <-r5.cell:
		t.Fatalf("replica 5 learned cell id %d from a member that forgot it", c)
	default:
	}
}
