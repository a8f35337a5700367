package lockserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// TestLeaderFailoverWorkload stops the leader while clients write keys and
// pass an exclusive lock around, then checks that no acknowledged write was
// lost and that the lock never had two holders: every holder increments a
// counter with a conditional write (IfGen) read under the lock, so an
// overlap would show up as a GenerationMismatch or a lost increment. The
// leader stops both ways: handing off (resign, as on SIGTERM) and vanishing
// (crash: the others wait out its lease).
func TestLeaderFailoverWorkload(t *testing.T) {
	t.Run("resign", func(t *testing.T) { leaderFailoverWorkload(t, (*Cell).Stop) })
	t.Run("crash", func(t *testing.T) { leaderFailoverWorkload(t, (*Cell).Crash) })
}

func leaderFailoverWorkload(t *testing.T, stop func(c *Cell, i int) error) {
	c := testCell(t)
	setup := newClient(t, c)
	setup.open(20 * time.Second)
	setup.must(&wire.Put{Path: "/kv"})
	setup.must(&wire.Put{Path: "/counter", Content: []byte("0")})

	const clients, rounds = 5, 12
	var (
		mu        sync.Mutex
		grants    = map[uint64]uint64{} // lock gen -> holder session
		increment atomic.Int64
		progress  atomic.Int64
		lastPut   = make([]int, clients)
	)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		cl := newClient(t, c)
		cl.open(20 * time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				key := fmt.Sprintf("/kv/c%d", i)
				for r := 1; r <= rounds; r++ {
					if _, err := cl.do(&wire.Put{Path: key, Content: []byte(strconv.Itoa(r))}); err != nil {
						return fmt.Errorf("client %d put %d: %w", i, r, err)
					}
					lastPut[i] = r
					m, err := cl.do(&wire.Acquire{Path: "/counter", Mode: wire.Exclusive, Wait: true})
					if err != nil {
						return fmt.Errorf("client %d acquire: %w", i, err)
					}
					seq := m.(*wire.AcquireReply).Sequencer
					mu.Lock()
					if other, dup := grants[seq.LockGen]; dup {
						mu.Unlock()
						return fmt.Errorf("lock gen %d granted to sessions %d and %d", seq.LockGen, other, cl.sid)
					}
					grants[seq.LockGen] = cl.sid
					mu.Unlock()
					g, err := cl.do(&wire.Get{Path: "/counter"})
					if err != nil {
						return fmt.Errorf("client %d get: %w", i, err)
					}
					gr := g.(*wire.GetReply)
					n, _ := strconv.Atoi(string(gr.Content))
					if _, err := cl.do(&wire.Put{Path: "/counter", Content: []byte(strconv.Itoa(n + 1)), IfGen: gr.Stat.ContentGen}); err != nil {
						return fmt.Errorf("client %d increment under lock gen %d: %w", i, seq.LockGen, err)
					}
					increment.Add(1)
					if _, err := cl.do(&wire.Release{Path: "/counter", LockGen: seq.LockGen}); err != nil {
						return fmt.Errorf("client %d release: %w", i, err)
					}
					progress.Add(1)
				}
				return nil
			}()
		}()
	}
	waitFor(t, 30*time.Second, "the workload to get going", func() bool { return progress.Load() >= clients*rounds/4 })
	old := leaderIndex(t, c)
	if err := stop(c, old); err != nil {
		t.Fatalf("stopping %d: %v", old, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	if err := c.Restart(old); err != nil {
		t.Fatalf("Restart(%d): %v", old, err)
	}
	g := setup.must(&wire.Get{Path: "/counter"}).(*wire.GetReply)
	if got, want := string(g.Content), strconv.Itoa(int(increment.Load())); got != want {
		t.Fatalf("counter = %s after %s increments under the lock", got, want)
	}
	for i := range clients {
		g := setup.must(&wire.Get{Path: fmt.Sprintf("/kv/c%d", i)}).(*wire.GetReply)
		if got := string(g.Content); got != strconv.Itoa(lastPut[i]) {
			t.Fatalf("/kv/c%d = %s; the last acknowledged write was %d", i, got, lastPut[i])
		}
	}
	// The restarted replica catches up and serves the same state stale.
	rc := dialRaw(t, c.Endpoints()[old])
	waitFor(t, 10*time.Second, "the restarted replica to catch up", func() bool {
		m, err := rc.call(&wire.Get{Path: "/counter", Stale: true})
		return err == nil && string(m.(*wire.GetReply).Content) == string(g.Content)
	})
}

// TestWatchAcrossFailover checks that a session's events keep their order
// across a leader change, that the new leader sends a Failover event, and
// that sequence numbers keep increasing so the client never drops a new
// event as already seen.
func TestWatchAcrossFailover(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	sid := cl.open(20 * time.Second)
	cl.must(&wire.Put{Path: "/w"})
	cl.must(&wire.Watch{Path: "/w", Recursive: true})
	cl.must(&wire.Put{Path: "/w/a"})
	ka := cl.must(&wire.KeepAlive{}).(*wire.KeepAliveReply)
	before := eventsUntil(t, cl, ka, func(e wire.Event) bool { return e.Type == wire.NodeCreated && e.Path == "/w/a" })
	acked := before[len(before)-1].Seq

	// The leader vanishes (no hand-off; client/watch_test.go covers the
	// hand-off): the new leader is elected after its lease.
	if err := c.Crash(leaderIndex(t, c)); err != nil {
		t.Fatal(err)
	}
	ka = cl.must(&wire.KeepAlive{Header: wire.Header{Session: sid}, Acked: acked}).(*wire.KeepAliveReply)
	if len(ka.Events) == 0 || ka.Events[0].Type != wire.Failover {
		t.Fatalf("first KeepAlive at the new leader = %+v; want a Failover event", ka.Events)
	}
	if ka.Events[0].Seq <= acked {
		t.Fatalf("Failover seq %d is not above the acknowledged %d", ka.Events[0].Seq, acked)
	}
	acked = ka.Events[0].Seq
	// The client registers its watches again, as told.
	w := cl.must(&wire.Watch{Path: "/w", Recursive: true}).(*wire.WatchReply)
	cl.must(&wire.Put{Path: "/w/b", Content: []byte("x")})
	ka = cl.must(&wire.KeepAlive{Acked: acked}).(*wire.KeepAliveReply)
	after := eventsUntil(t, cl, ka, func(e wire.Event) bool { return e.Type == wire.ChildAdded && e.Child == "b" })
	for _, e := range after {
		if e.Seq <= acked {
			t.Fatalf("event %+v has seq %d, not above %d", e, e.Seq, acked)
		}
		acked = e.Seq
		if e.Type == wire.ChildAdded && (len(e.Watches) != 1 || e.Watches[0] != w.Watch) {
			t.Fatalf("event %+v not tagged with the new watch %d", e, w.Watch)
		}
	}
}

// TestRetryAppliedOnce resends requests whose responses were lost and checks
// that each was applied once and the retry got the first result.
func TestRetryAppliedOnce(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	sid := cl.open(time.Minute)

	// A Put whose response is lost: the client drops it. (Sent through cl,
	// which follows the leader: a Put sent once to the replica that led a
	// moment ago may be refused by a replica that no longer does, and
	// never apply.)
	first := &wire.Put{Header: wire.Header{Session: sid, Request: 1000}, Path: "/r", Content: []byte("first")}
	cl.must(first)
	cl.must(&wire.Put{Path: "/r", Content: []byte("second")})
	// The retry returns the first result and does not overwrite "second".
	r := cl.must(first).(*wire.PutReply)
	if r.Stat.ContentGen != 1 {
		t.Fatalf("retried Put reply = gen %d; want the first result, gen 1", r.Stat.ContentGen)
	}
	if g := cl.must(&wire.Get{Path: "/r"}).(*wire.GetReply); string(g.Content) != "second" || g.Stat.ContentGen != 2 {
		t.Fatalf("after the retry /r = %q gen %d; want second gen 2", g.Content, g.Stat.ContentGen)
	}

	// A retried Acquire after the lock was released does not grant again.
	acq := &wire.Acquire{Header: wire.Header{Session: sid, Request: 2000}, Path: "/r", Mode: wire.Exclusive}
	a1 := cl.must(acq).(*wire.AcquireReply)
	cl.must(&wire.Release{Path: "/r", LockGen: a1.Sequencer.LockGen})
	a2 := cl.must(acq).(*wire.AcquireReply)
	if a2.Sequencer != a1.Sequencer {
		t.Fatalf("retried Acquire = %v; want the first grant %v", a2.Sequencer, a1.Sequencer)
	}
	if li := lockInfo(t, cl, "/r"); len(li.Holders) != 0 {
		t.Fatalf("lock after a retried Acquire = %+v; want free", li)
	}
	// A retried Release of an old grant cannot free a newer one.
	a3 := cl.must(&wire.Acquire{Path: "/r", Mode: wire.Exclusive}).(*wire.AcquireReply)
	if _, err := cl.do(&wire.Release{Path: "/r", LockGen: a1.Sequencer.LockGen}); codeOf(err) != wire.GenerationMismatch {
		t.Fatalf("stale Release = %v; want GenerationMismatch", err)
	}
	if !cl.must(&wire.CheckSequencer{Sequencer: a3.Sequencer}).(*wire.CheckReply).Valid {
		t.Fatal("a stale Release freed the newer grant")
	}
}

// TestRedirects checks NotLeader (with the leader's address) from
// followers, stale reads anywhere, and Unavailable without a quorum.
func TestRedirects(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.RequestTimeout = time.Second })
	cl := newClient(t, c)
	cl.open(10 * time.Second)
	cl.must(&wire.Put{Path: "/n", Content: []byte("v")})
	lead := leaderIndex(t, c)
	for i, ep := range c.Endpoints() {
		if i == lead {
			continue
		}
		rc := dialRaw(t, ep)
		_, err := rc.call(&wire.Get{Path: "/n"})
		we, _ := err.(*wire.Error)
		if we == nil || we.Code != wire.NotLeader || we.Leader != c.Endpoints()[lead] {
			t.Fatalf("linearizable Get at follower %d = %v; want NotLeader naming %s", i, err, c.Endpoints()[lead])
		}
		if _, err := rc.call(&wire.Put{Header: wire.Header{Session: cl.sid, Request: 77}, Path: "/n"}); codeOf(err) != wire.NotLeader {
			t.Fatalf("Put at follower %d = %v; want NotLeader", i, err)
		}
		waitFor(t, 5*time.Second, "a stale read at a follower", func() bool {
			m, err := rc.call(&wire.Get{Path: "/n", Stale: true})
			return err == nil && string(m.(*wire.GetReply).Content) == "v"
		})
	}
	// Without a quorum, the survivor answers Unavailable.
	for i := range c.N() {
		if i != lead {
			c.Stop(i)
		}
	}
	rc := dialRaw(t, c.Endpoints()[lead])
	_, err := rc.call(&wire.Put{Header: wire.Header{Session: cl.sid, Request: 78}, Path: "/n"})
	if codeOf(err) != wire.Unavailable {
		t.Fatalf("Put without a quorum = %v; want Unavailable", err)
	}
	// It names itself (its log timed out: retry here) or nobody (it has
	// stepped down: try elsewhere), never a replica that is gone.
	if we := err.(*wire.Error); we.Leader != "" && we.Leader != c.Endpoints()[lead] {
		t.Fatalf("Unavailable without a quorum names %s; want %s or nobody", we.Leader, c.Endpoints()[lead])
	}
}

// TransferLeadership moves the leadership to another replica at once while
// the old leader keeps running; a session carries on through it, and a
// replica that does not lead refuses.
func TestTransferLeadership(t *testing.T) {
	c := testCell(t)
	cl := newClient(t, c)
	cl.open(time.Minute)
	cl.must(&wire.Put{Path: "/before", Content: []byte("1")})
	old := leaderIndex(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other := c.Server((old + 1) % c.N())
	if _, err := other.TransferLeadership(ctx); !errors.Is(err, ErrNotLeading) {
		t.Errorf("TransferLeadership on a follower = %v; want ErrNotLeading", err)
	}
	to, err := c.Server(old).TransferLeadership(ctx)
	if err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	if to == 0 || to == c.Server(old).ID() {
		t.Fatalf("new leader %d; want another replica than %d", to, c.Server(old).ID())
	}
	cl.must(&wire.Put{Path: "/after", Content: []byte("2")})
	if g := cl.must(&wire.Get{Path: "/before"}).(*wire.GetReply); string(g.Content) != "1" {
		t.Errorf("/before after the transfer = %q", g.Content)
	}
	if l := c.Leader(); l == old {
		t.Errorf("replica %d still leads after the transfer", old)
	}
}
