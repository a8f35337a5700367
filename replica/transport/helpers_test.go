package transport

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// patience bounds every wait in these tests. It is a deadlock guard, not a
// performance assertion: on a loaded machine things are slow, never wrong.
const patience = 30 * time.Second

type message struct {
	from    uint64
	group   uint32
	payload []byte
}

// logBuffer collects a node's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// node is a Transport under test with an inbox its handler fills.
type node struct {
	*Transport
	id    uint64
	inbox chan message
	log   *logBuffer
}

// testConfig returns a config for replica id with fast backoff for tests.
func testConfig(id uint64, peers map[uint64]string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Listen = "127.0.0.1:0"
	cfg.Peers = peers
	cfg.MinBackoff = 5 * time.Millisecond
	cfg.MaxBackoff = 100 * time.Millisecond
	return cfg
}

// startNode starts a Transport whose handler queues every message in inbox.
func startNode(t *testing.T, cfg Config) *node {
	t.Helper()
	n := &node{id: cfg.ID, inbox: make(chan message, 1<<16), log: &logBuffer{}}
	cfg.Logger = slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := New(cfg, func(from uint64, group uint32, payload []byte) {
		n.inbox <- message{from, group, payload}
	})
	if err != nil {
		t.Fatalf("New(replica %d): %v", cfg.ID, err)
	}
	n.Transport = tr
	t.Cleanup(func() { tr.Close() })
	return n
}

// startCell starts replicas 1..n on loopback. Replicas start from the highest
// id down, so each knows the addresses of the higher ids it dials; the lower
// ids' addresses are never used and stay empty.
func startCell(t *testing.T, n int, tweak func(*Config)) []*node {
	t.Helper()
	nodes := make([]*node, n+1) // indexed by id
	addrs := make(map[uint64]string)
	for id := uint64(n); id >= 1; id-- {
		peers := make(map[uint64]string)
		for p := uint64(1); p <= uint64(n); p++ {
			peers[p] = addrs[p]
		}
		cfg := testConfig(id, peers)
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[id] = startNode(t, cfg)
		addrs[id] = nodes[id].Addr().String()
	}
	return nodes
}

// receive waits for n messages on inbox.
func (n *node) receive(t *testing.T, count int) []message {
	t.Helper()
	got := make([]message, 0, count)
	deadline := time.After(patience)
	for len(got) < count {
		select {
		case m := <-n.inbox:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("replica %d received %d of %d messages in %v\nlog:\n%s", n.id, len(got), count, patience, n.log)
		}
	}
	return got
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", patience, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// deliverEventually sends payload from src to dst until dst receives a
// message with that payload: use it across reconnects, when a message in
// flight may be lost. Earlier copies that arrive late are discarded.
func deliverEventually(t *testing.T, src, dst *node, group uint32, payload string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		src.Send(dst.id, group, []byte(payload))
		wait := time.After(20 * time.Millisecond)
	drain:
		for {
			select {
			case m := <-dst.inbox:
				if m.from == src.id && m.group == group && string(m.payload) == payload {
					return
				}
			case <-wait:
				break drain
			}
		}
	}
	t.Fatalf("%q from replica %d never reached replica %d\nsender log:\n%s\nreceiver log:\n%s",
		payload, src.id, dst.id, src.log, dst.log)
}

func payloadOf(from uint64, group uint32, seq int) []byte {
	return fmt.Appendf(nil, "%d/%d/%d", from, group, seq)
}

func logContains(t *testing.T, n *node, texts ...string) {
	t.Helper()
	log := n.log.String()
	for _, text := range texts {
		if !strings.Contains(log, text) {
			t.Errorf("log of replica %d lacks %q:\n%s", n.id, text, log)
		}
	}
}

// waitLogged waits until n's log contains text: a refusal is counted
// before it is logged, on both sides of a handshake.
func waitLogged(t *testing.T, n *node, text string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("replica %d to log %q", n.id, text), func() bool {
		return strings.Contains(n.log.String(), text)
	})
}

// unusedAddr returns a loopback address nobody listens on (it was free a
// moment ago).
func unusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
