package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// exchange has every node send perGroup messages in each group to every
// other node, from one goroutine per (destination, group), and checks that
// each node receives all of them, in order per (sender, group).
func exchange(t *testing.T, nodes []*node, groups []uint32, perGroup int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, src := range nodes[1:] {
		for _, dst := range nodes[1:] {
			if src == dst {
				continue
			}
			for _, g := range groups {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perGroup {
						if err := src.Send(dst.id, g, payloadOf(src.id, g, i)); err != nil {
							t.Errorf("Send(%d, %d, #%d) from %d: %v", dst.id, g, i, src.id, err)
							return
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	for _, dst := range nodes[1:] {
		want := (len(nodes) - 2) * len(groups) * perGroup
		next := make(map[[2]uint64]int) // (from, group) -> next sequence number
		for _, m := range dst.receive(t, want) {
			key := [2]uint64{m.from, uint64(m.group)}
			if exp := payloadOf(m.from, m.group, next[key]); !bytes.Equal(m.payload, exp) {
				t.Fatalf("replica %d got %q from %d in group %d; want %q (in order)", dst.id, m.payload, m.from, m.group, exp)
			}
			next[key]++
		}
	}
}

func TestTwoReplicasExchangeInSeveralGroups(t *testing.T) {
	nodes := startCell(t, 2, nil)
	groups := []uint32{0, 1, 7, 1 << 31}
	exchange(t, nodes, groups, 500)

	st := nodes[1].Stats().Peers[2]
	if !st.Connected || st.Connects != 1 || st.FramesSent != 2000 || st.FramesReceived != 2000 {
		t.Errorf("replica 1 stats for peer 2 = %+v; want connected once, 2000 frames each way", st)
	}
	if st.BytesSent == 0 || st.BytesReceived == 0 || st.Dropped != 0 || st.Errors != 0 {
		t.Errorf("replica 1 stats for peer 2 = %+v; want bytes counted, no drops or errors", st)
	}
	if s2 := nodes[2].Stats().Peers[1]; s2.BytesReceived != st.BytesSent {
		t.Errorf("replica 2 received %d bytes; replica 1 sent %d", s2.BytesReceived, st.BytesSent)
	}
}

func TestThreeReplicasExchange(t *testing.T) {
	nodes := startCell(t, 3, nil)
	exchange(t, nodes, []uint32{1, 2, 3}, 200)
	// Exactly one connection per pair: each side counts one connect.
	for _, n := range nodes[1:] {
		for id, st := range n.Stats().Peers {
			if st.Connects != 1 {
				t.Errorf("replica %d connected to %d %d times; want 1", n.id, id, st.Connects)
			}
		}
	}
}

func TestLargePayloadUpToMaxFrame(t *testing.T) {
	nodes := startCell(t, 2, func(c *Config) { c.MaxFrame = 1 << 20 })
	big := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16)[:nodes[1].cfg.MaxPayload()]
	if err := nodes[1].Send(2, 5, big); err != nil {
		t.Fatalf("Send(MaxPayload bytes) = %v", err)
	}
	if err := nodes[1].Send(2, 5, append(big, 'x')); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Send(MaxPayload+1 bytes) = %v; want ErrFrameTooLarge", err)
	}
	if m := nodes[2].receive(t, 1)[0]; !bytes.Equal(m.payload, big) {
		t.Errorf("received %d bytes; want the %d sent", len(m.payload), len(big))
	}
}

func TestRestartHigherReplica(t *testing.T) {
	nodes := startCell(t, 2, nil)
	exchange(t, nodes, []uint32{1}, 10)

	addr := nodes[2].Addr().String()
	cfg2 := nodes[2].cfg
	if err := nodes[2].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cfg2.Listen = addr // same address: replica 1 redials it
	nodes[2] = startNode(t, cfg2)

	deliverEventually(t, nodes[1], nodes[2], 1, "after restart, 1 to 2")
	deliverEventually(t, nodes[2], nodes[1], 1, "after restart, 2 to 1")
	if st := nodes[1].Stats().Peers[2]; st.Connects < 2 {
		t.Errorf("replica 1 connected to 2 %d times; want at least 2 (reconnect)", st.Connects)
	}
	logContains(t, nodes[1], "connected to peer", "peer disconnected")
}

func TestRestartLowerReplica(t *testing.T) {
	nodes := startCell(t, 2, nil)
	exchange(t, nodes, []uint32{1}, 10)

	cfg1 := nodes[1].cfg
	if err := nodes[1].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	nodes[1] = startNode(t, cfg1)

	deliverEventually(t, nodes[1], nodes[2], 1, "after restart, 1 to 2")
	deliverEventually(t, nodes[2], nodes[1], 1, "after restart, 2 to 1")
	waitFor(t, "replica 2 to count the second connection", func() bool {
		return nodes[2].Stats().Peers[1].Connects == 2
	})
}

// TestReplacedConnection has replica 1 open a second connection while its
// first is alive (as after a crash the listener has not noticed yet): replica
// 2 keeps the newer one and messages flow on it.
func TestReplacedConnection(t *testing.T) {
	nodes := startCell(t, 2, nil)
	exchange(t, nodes, []uint32{1}, 10)
	fake := dialAsPeer(t, nodes[2], 1)
	waitFor(t, "the fake connection to replace the real one", func() bool {
		return nodes[2].Stats().Peers[1].Connects == 2
	})
	fake.send(t, 4, []byte("from the newer connection"))
	if m := nodes[2].receive(t, 1)[0]; string(m.payload) != "from the newer connection" {
		t.Errorf("received %q", m.payload)
	}
	logContains(t, nodes[2], "replaces the old one")
	fake.sess.Close()
	// The real replica 1 reconnects by itself.
	deliverEventually(t, nodes[1], nodes[2], 1, "real one back")
}

// TestBlockedGroupDoesNotStopOthers blocks replica 2's handler for group A
// and shows that group B keeps flowing from replica 1 on the same connection,
// even once A's sending side is stalled by flow control and dropping.
func TestBlockedGroupDoesNotStopOthers(t *testing.T) {
	const groupA, groupB = 10, 20
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	entered := make(chan struct{}, 1)
	inbox := make(chan message, 1<<16)

	two := testConfig(2, map[uint64]string{1: "", 2: ""})
	two.QueueLen = 8
	tr2, err := New(two, func(from uint64, group uint32, payload []byte) {
		if group == groupA {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		inbox <- message{from, group, payload}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	defer unblock() // before Close, which waits for the blocked handler
	one := testConfig(1, map[uint64]string{2: tr2.Addr().String()})
	one.QueueLen = 8
	n1 := startNode(t, one)

	// Fill group A: the handler blocks on the first message; keep sending
	// until A's queue has refused many messages in a row, by which time
	// yamux's window for A is exhausted and A's writer is stuck.
	payload := bytes.Repeat([]byte{'a'}, 4096)
	sentA, refused := 0, 0
	for refused < 500 && sentA < 10_000 {
		switch err := n1.Send(2, groupA, payload); {
		case err == nil:
			sentA++
			refused = 0
		case errors.Is(err, ErrQueueFull):
			refused++
			time.Sleep(time.Millisecond)
		default:
			t.Fatalf("Send(A) = %v", err)
		}
	}
	<-entered
	if sentA >= 10_000 {
		t.Fatalf("group A never stalled: %d messages accepted while its handler was blocked", sentA)
	}

	// Group B goes through while A's handler is still blocked.
	const nB = 200
	for i := range nB {
		for n1.Send(2, groupB, payloadOf(1, groupB, i)) != nil {
			time.Sleep(time.Millisecond)
		}
	}
	for i := range nB {
		m := receiveFrom(t, inbox)
		if m.group != groupB || !bytes.Equal(m.payload, payloadOf(1, groupB, i)) {
			t.Fatalf("message %d: got group %d %q; want group B in order", i, m.group, m.payload)
		}
	}

	// Unblock A: every message Send accepted for A arrives; none was lost.
	unblock()
	for range sentA {
		if m := receiveFrom(t, inbox); m.group != groupA {
			t.Fatalf("got group %d; want only A now", m.group)
		}
	}
	if st := n1.Stats().Peers[2]; st.Dropped == 0 {
		t.Errorf("stats %+v: want A's drops counted", st)
	}
}

func receiveFrom(t *testing.T, inbox chan message) message {
	t.Helper()
	select {
	case m := <-inbox:
		return m
	case <-time.After(patience):
		t.Fatalf("no message within %v", patience)
		return message{}
	}
}

func TestSendErrors(t *testing.T) {
	// A peer that is not listening: replica 1 keeps redialing, and messages
	// wait in the queue.
	cfg := testConfig(1, map[uint64]string{2: unusedAddr(t)})
	cfg.QueueLen = 2
	cfg.MaxGroups = 2
	cfg.MaxFrame = 1000
	n := startNode(t, cfg)

	cases := []struct {
		name    string
		to      uint64
		group   uint32
		payload []byte
		want    error
	}{
		{"unknown peer", 9, 1, []byte("x"), ErrUnknownPeer},
		{"to self", 1, 1, []byte("x"), ErrUnknownPeer},
		{"too large", 2, 1, make([]byte, 1000-EnvelopeOverhead+1), ErrFrameTooLarge},
		{"first", 2, 1, []byte("1"), nil},
		{"second", 2, 1, []byte("2"), nil},
		{"queue full", 2, 1, []byte("3"), ErrQueueFull},
		{"second group", 2, 2, []byte("x"), nil},
		{"third group", 2, 3, []byte("x"), ErrTooManyGroups},
	}
	for _, c := range cases {
		if err := n.Send(c.to, c.group, c.payload); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: Send(%d, %d, %d bytes) = %v; want %v", c.name, c.to, c.group, len(c.payload), err, c.want)
		}
	}
	if st := n.Stats().Peers[2]; st.Dropped != 1 || st.Connected {
		t.Errorf("stats = %+v; want 1 drop, not connected", st)
	}
	waitFor(t, "a failed dial to be logged", func() bool {
		return bytes.Contains([]byte(n.log.String()), []byte("cannot connect to peer"))
	})
	if err := n.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := n.Send(2, 1, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v; want ErrClosed", err)
	}
	if err := n.Send(2, 9, []byte("late")); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("Send(new group) after Close = %v; want ErrClosed", err)
	}
}

func TestQueuedWhileDisconnectedThenDelivered(t *testing.T) {
	// Start replica 1 dialing a free address, queue messages, then start
	// replica 2 there.
	addr := unusedAddr(t)
	n1 := startNode(t, testConfig(1, map[uint64]string{2: addr}))
	for i := range 5 {
		if err := n1.Send(2, 3, payloadOf(1, 3, i)); err != nil {
			t.Fatal(err)
		}
	}
	cfg2 := testConfig(2, map[uint64]string{1: ""})
	cfg2.Listen = addr
	n2 := startNode(t, cfg2)
	for i, m := range n2.receive(t, 5) {
		if !bytes.Equal(m.payload, payloadOf(1, 3, i)) {
			t.Errorf("message %d = %q; want %q", i, m.payload, payloadOf(1, 3, i))
		}
	}
}

func TestListenFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(1, nil)
	cfg.Listen = ln.Addr().String()
	if _, err := New(cfg, func(uint64, uint32, []byte) {}); err == nil {
		t.Fatalf("New on a busy address succeeded")
	} else if want := fmt.Sprintf("listen on %s", cfg.Listen); !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("New on a busy address = %v; want it to say %q", err, want)
	}
}
