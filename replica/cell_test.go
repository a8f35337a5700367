package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testSM is a StateMachine that keeps every command it applied, in order,
// and answers each with "<index>:<cmd>".
type testSM struct {
	mu   sync.Mutex
	cmds [][]byte
	last uint64 // last index applied
}

var _ StateMachine = (*testSM)(nil)

func (s *testSM) Apply(index uint64, cmd []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index != s.last+1 {
		panic(fmt.Sprintf("Apply(index %d) after %d", index, s.last))
	}
	s.last = index
	s.cmds = append(s.cmds, bytes.Clone(cmd))
	return fmt.Appendf(nil, "%d:%s", index, cmd)
}

func (s *testSM) Snapshot(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	b = binary.AppendUvarint(b, s.last)
	b = binary.AppendUvarint(b, uint64(len(s.cmds)))
	for _, c := range s.cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	_, err := w.Write(b)
	return err
}

func (s *testSM) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var vals []uint64
	read := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errors.New("testSM: bad snapshot")
			return 0
		}
		b = b[n:]
		vals = append(vals, v)
		return v
	}
	last := read()
	n := read()
	cmds := make([][]byte, 0, n)
	for i := uint64(0); i < n && err == nil; i++ {
		l := read()
		if err == nil && l > uint64(len(b)) {
			err = errors.New("testSM: bad snapshot")
		}
		if err != nil {
			break
		}
		cmds = append(cmds, bytes.Clone(b[:l]))
		b = b[l:]
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.cmds = last, cmds
	return nil
}

func (s *testSM) applied() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.cmds...)
}

func (s *testSM) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cmds)
}

// cell is a test cell of replicas sharing one network.
type cell struct {
	mu     sync.Mutex // guards reps and sms, for tests that restart replicas concurrently
	t      testing.TB
	net    Network
	mem    *MemNetwork // nil over TCP
	cfgs   map[uint64]Config
	reps   map[uint64]*Replica
	sms    map[uint64]map[uint32]*testSM
	groups []uint32
	wrap   func(g uint32, sm *testSM) StateMachine
}

type cellOpts struct {
	n      int
	tcp    bool
	groups []uint32
	tune   func(*Config)
	// wrap, if set, gives each replica's group the StateMachine to run
	// around the testSM the cell checks.
	wrap func(g uint32, sm *testSM) StateMachine
}

// newCell builds and starts a cell of o.n replicas (ids 1..n).
func newCell(t testing.TB, o cellOpts) *cell {
	t.Helper()
	if o.n == 0 {
		o.n = 3
	}
	if len(o.groups) == 0 {
		o.groups = []uint32{1}
	}
	c := &cell{t: t, cfgs: map[uint64]Config{}, reps: map[uint64]*Replica{}, sms: map[uint64]map[uint32]*testSM{}, groups: o.groups, wrap: o.wrap}
	members := map[uint64]string{}
	var addrs []string
	if o.tcp {
		addrs = freeAddrs(t, o.n)
	}
	for id := uint64(1); id <= uint64(o.n); id++ {
		if o.tcp {
			members[id] = addrs[id-1]
		} else {
			members[id] = fmt.Sprintf("mem-%d", id)
		}
	}
	if o.tcp {
		c.net = TCPNetwork{}
	} else {
		c.mem = NewMemNetwork()
		c.net = c.mem
	}
	root := t.TempDir()
	for id := range members {
		cfg := testConfig()
		cfg.ID = id
		cfg.Members = members
		cfg.DataDir = filepath.Join(root, fmt.Sprint("r", id))
		cfg.Groups = o.groups
		if os.Getenv("REPLICA_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		if o.tune != nil {
			o.tune(&cfg)
		}
		c.cfgs[id] = cfg
		c.start(id)
	}
	t.Cleanup(c.closeAll)
	return c
}

// testConfig has short timings so that tests elect quickly.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.TickInterval = 5 * time.Millisecond
	cfg.HeartbeatInterval = 25 * time.Millisecond
	cfg.LeaseDuration = 250 * time.Millisecond
	cfg.ElectionTimeout = 400 * time.Millisecond
	return cfg
}

// freeAddrs returns n distinct free loopback addresses: their listeners
// are all open before any closes, so the kernel cannot hand out one port
// twice (it did, once: two members with one address).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// start (re)starts replica id from its data dir with fresh state machines.
func (c *cell) start(id uint64) {
	c.t.Helper()
	sms := map[uint32]StateMachine{}
	mine := map[uint32]*testSM{}
	for _, g := range c.groups {
		sm := &testSM{}
		mine[g] = sm
		sms[g] = sm
		if c.wrap != nil {
			sms[g] = c.wrap(g, sm)
		}
	}
	var r *Replica
	var err error
	// A restarted TCP replica may find its port briefly taken; retry.
	for try := 0; try < 20; try++ {
		r, err = New(c.cfgs[id], sms, c.net)
		if err != nil {
			c.t.Fatalf("New(replica %d) = %v", id, err)
		}
		if err = r.Start(); err == nil {
			break
		}
		r.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("Start(replica %d) = %v", id, err)
	}
	c.mu.Lock()
	c.reps[id] = r
	c.sms[id] = mine
	c.mu.Unlock()
}

func (c *cell) stop(id uint64) {
	c.mu.Lock()
	r := c.reps[id]
	delete(c.reps, id)
	c.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

func (c *cell) closeAll() {
	for _, id := range c.ids() {
		c.stop(id)
	}
}

// ids returns the ids of the running replicas.
func (c *cell) ids() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := range c.reps {
		ids = append(ids, id)
	}
	return ids
}

// leaderOf returns the running replica that leads group g, or nil.
func (c *cell) leaderOf(g uint32) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reps {
		if gr := r.groups[g]; gr != nil && gr.isLeader.Load() {
			return r
		}
	}
	return nil
}

// leader waits until some running replica leads group g and returns it.
func (c *cell) leader(g uint32, timeout time.Duration) *Replica {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r := c.leaderOf(g); r != nil {
			return r
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no leader for group %d after %v", g, timeout)
	return nil
}

// propose proposes cmd on whichever replica leads, retrying through leader
// changes, until it is applied or the deadline passes.
func (c *cell) propose(ctx context.Context, g uint32, cmd []byte) ([]byte, error) {
	for {
		if lead := c.leaderOf(g); lead != nil {
			res, err := lead.Propose(ctx, g, cmd)
			var nl *NotLeaderError
			if err == nil || !(errors.As(err, &nl) || errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrClosed)) {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitApplied waits until every running replica applied at least n
// commands of group g.
func (c *cell) waitApplied(g uint32, n int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done := true
		for id := range c.reps {
			if c.sms[id][g].count() < n {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for id := range c.reps {
				c.t.Logf("replica %d applied %d of group %d", id, c.sms[id][g].count(), g)
			}
			c.t.Fatalf("not every replica applied %d commands within %v", n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitConverged waits until every running replica has applied the same
// number of commands of group g, and that number held still for a while
// (proposals whose callers gave up may still be chosen late).
func (c *cell) waitConverged(g uint32, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	stable, last := 0, -1
	for stable < 5 {
		if time.Now().After(deadline) {
			for _, id := range c.ids() {
				c.t.Logf("replica %d applied %d of group %d", id, c.sms[id][g].count(), g)
			}
			c.t.Fatalf("replicas did not converge within %v", timeout)
		}
		n, same := -1, true
		for _, id := range c.ids() {
			k := c.sms[id][g].count()
			if n >= 0 && k != n {
				same = false
			}
			n = k
		}
		if same && n == last {
			stable++
		} else {
			stable = 0
		}
		last = n
		time.Sleep(40 * time.Millisecond)
	}
}

// checkSame fails unless every running replica applied the same commands
// of group g.
func (c *cell) checkSame(g uint32) [][]byte {
	c.t.Helper()
	var ref [][]byte
	var refID uint64
	for id := range c.reps {
		got := c.sms[id][g].applied()
		if ref == nil {
			ref, refID = got, id
			continue
		}
		if len(got) != len(ref) {
			c.t.Fatalf("replica %d applied %d commands, replica %d applied %d", id, len(got), refID, len(ref))
		}
		for i := range got {
			if !bytes.Equal(got[i], ref[i]) {
				c.t.Fatalf("command %d: replica %d applied %q, replica %d applied %q", i+1, id, got[i], refID, ref[i])
			}
		}
	}
	return ref
}
