package lockserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/latchd/latch/internal/wire"
)

// testTune gives a cell short timings, so tests elect and expire quickly.
func testTune(cfg *Config) {
	FastTimings(cfg)
	if os.Getenv("LOCKSERVER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// testCell starts a 3-replica cell over loopback TCP with LevelDB in
// t.TempDir(), and waits until its first election has settled
// (waitSettled): tests may then take the leader they find for the leader.
func testCell(t testing.TB, tune ...func(*Config)) *Cell {
	t.Helper()
	c := startTestCell(t, tune...)
	waitSettled(t, c, c.N()-1)
	return c
}

// startTestCell is testCell up to the first leader, which may still be
// deposed by a candidate of the same election.
func startTestCell(t testing.TB, tune ...func(*Config)) *Cell {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := StartCell(ctx, CellConfig{N: 3, DataDir: t.TempDir(), Tune: func(cfg *Config) {
		testTune(cfg)
		for _, f := range tune {
			f(cfg)
		}
	}})
	if err != nil {
		t.Fatalf("StartCell: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Cell.Close: %v", err)
		}
	})
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	return c
}

// waitSettled waits until a replica leads, holds its master lease, and
// has been acknowledged by followers of its peers, and returns its index.
// At start-up the replicas campaign at once, and the first to lead may be
// deposed a few milliseconds later by another's Prepare already on its way
// (docs/paxos.md, Election): the cell then has no leader until the loser
// campaigns again, and a test that took the first leader it saw talks to a
// follower, or indexes with Cell.Leader's -1. A candidate that has
// acknowledged the leader has given up; only an election timeout without
// hearing from the leader starts another campaign.
func waitSettled(t testing.TB, c *Cell, followers int) int {
	t.Helper()
	lead := -1
	waitFor(t, 20*time.Second, "the election to settle", func() bool {
		if lead = c.Leader(); lead < 0 {
			return false
		}
		s := c.Server(lead)
		if s == nil {
			return false
		}
		st := s.Status()
		acked := 0
		for _, p := range st.Peers {
			if p.LastAck >= 0 {
				acked++
			}
		}
		return st.IsLeader && st.LeaseValid && acked >= followers
	})
	return lead
}

// leaderIndex returns the index of the replica that leads, waiting for
// one while an election is under way: Cell.Leader's -1 indexes nothing.
func leaderIndex(t testing.TB, c *Cell) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	i, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	return i
}

// rawConn is a raw wire connection to one replica: TCP, yamux, and the one
// call stream of protocol version 2, on which the test writes request
// frames and reads replies by hand, one call at a time. A failure closes
// the connection (the next dial replaces it).
type rawConn struct {
	mux    *yamux.Session
	st     *yamux.Stream
	closed atomic.Bool
	enc    *wire.Encoder
	dec    *wire.Decoder
	next   uint32 // the last call id used
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	rc, err := tryDial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(rc.close)
	return rc
}

func tryDial(addr string) (*rawConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	rc, err := newRawConn(nc)
	if err != nil {
		return nil, err
	}
	m, err := rc.call(&wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.Version, Client: "test"})
	if err != nil {
		rc.close()
		return nil, err
	}
	if _, ok := m.(*wire.Welcome); !ok {
		rc.close()
		return nil, fmt.Errorf("Hello answered %T", m)
	}
	return rc, nil
}

// newRawConn starts yamux on nc and opens the call stream, without Hello.
func newRawConn(nc net.Conn) (*rawConn, error) {
	yc := yamux.DefaultConfig()
	yc.LogOutput = io.Discard
	yc.MaxStreamWindowSize = 2 << 20
	mux, err := yamux.Client(nc, yc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	st, err := mux.OpenStream()
	if err != nil {
		mux.Close()
		return nil, err
	}
	return &rawConn{mux: mux, st: st, enc: wire.NewEncoder(st, 4<<20), dec: wire.NewDecoder(st, 4<<20)}, nil
}

func (rc *rawConn) close() {
	rc.closed.Store(true)
	rc.mux.Close() // closes the TCP connection
}

// send writes req as a new call and returns its call id, without waiting
// for the reply.
func (rc *rawConn) send(req wire.Message) (uint32, error) {
	rc.next++
	rc.st.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := rc.enc.EncodeCall(rc.next, req); err != nil {
		rc.close()
		return 0, err
	}
	return rc.next, nil
}

// recv reads replies until the one to call id, dropping replies to calls
// sent without waiting; a *wire.Error reply is returned as the error.
func (rc *rawConn) recv(id uint32, timeout time.Duration) (wire.Message, error) {
	rc.st.SetReadDeadline(time.Now().Add(timeout))
	for {
		got, m, err := rc.dec.DecodeCall()
		if err != nil {
			rc.close()
			return nil, err
		}
		if got != id {
			continue
		}
		if e, ok := m.(*wire.Error); ok {
			return nil, e
		}
		return m, nil
	}
}

// call makes one call and returns the reply; a *wire.Error reply is
// returned as the error.
func (rc *rawConn) call(req wire.Message) (wire.Message, error) {
	id, err := rc.send(req)
	if err != nil {
		return nil, err
	}
	return rc.recv(id, 30*time.Second)
}

// codeOf returns the wire code of err.
func codeOf(err error) wire.Code {
	var e *wire.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return wire.OK
	}
	return wire.Internal
}

// client talks to a cell: it follows NotLeader redirects and retries
// Unavailable, keeping the request's ids (so retries are deduplicated).
type client struct {
	t     testing.TB
	cell  *Cell
	conns map[string]*rawConn
	addr  string // where the last call went
	sid   uint64
	rid   uint64
}

func newClient(t testing.TB, c *Cell) *client {
	cl := &client{t: t, cell: c, conns: map[string]*rawConn{}}
	t.Cleanup(func() {
		for _, rc := range cl.conns {
			rc.close()
		}
	})
	return cl
}

func (cl *client) conn(addr string) (*rawConn, error) {
	if rc := cl.conns[addr]; rc != nil && !rc.closed.Load() {
		return rc, nil
	}
	rc, err := tryDial(addr)
	if err != nil {
		return nil, err
	}
	cl.conns[addr] = rc
	return rc, nil
}

// do sends req (filling in the session and a new request id if it has
// none) until it gets a reply that is not a redirect or a transient error.
func (cl *client) do(req wire.Message) (wire.Message, error) {
	if r, ok := req.(wire.Request); ok {
		h := r.Head()
		if h.Session == 0 {
			h.Session = cl.sid
		}
		if h.Request == 0 {
			cl.rid++
			h.Request = cl.rid
		}
	}
	return cl.retry(req)
}

// retry sends req as it is until it gets a final answer.
func (cl *client) retry(req wire.Message) (wire.Message, error) {
	eps := cl.cell.Endpoints()
	addr := cl.addr
	if addr == "" {
		addr = eps[0]
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		var m wire.Message
		rc, err := cl.conn(addr)
		if err == nil {
			m, err = rc.call(req)
		}
		var we *wire.Error
		switch {
		case err == nil:
			cl.addr = addr
			return m, nil
		case errors.As(err, &we) && we.Code == wire.NotLeader && we.Leader != "":
			addr = we.Leader
		case errors.As(err, &we) && we.Code != wire.Unavailable:
			cl.addr = addr
			return nil, err
		default: // unreachable, closed connection or Unavailable: try the next replica
			addr = eps[i%len(eps)]
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%v: no answer from the cell within 30s; last error %w", req.Type(), err)
		}
	}
}

func (cl *client) must(req wire.Message) wire.Message {
	cl.t.Helper()
	m, err := cl.do(req)
	if err != nil {
		cl.t.Fatalf("%v: %v", req.Type(), err)
	}
	return m
}

func (cl *client) open(timeout time.Duration) uint64 {
	cl.t.Helper()
	// The request id of OpenSession is a nonce that must be unique per
	// client: the server answers a repeated nonce with the same session.
	m := cl.must(&wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}, Timeout: timeout})
	cl.sid = m.(*wire.SessionOpened).Session
	return cl.sid
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeClock is a Clock the test moves by hand: Advance moves its wall and
// its monotonic time alike, as time passing; Step moves the wall clock
// alone, as an NTP step or a VM restore does. One is shared by every
// replica of a cell, unless a test gives each its own (fakeClocks).
type fakeClock struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{wall: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

func (f *fakeClock) Monotonic() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
	f.mono += d
}

func (f *fakeClock) Step(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
}

// fakeClocks are one fakeClock per replica of a cell: time passes on all
// alike (Advance); each wall clock can step on its own.
type fakeClocks []*fakeClock

func newFakeClocks(n int) fakeClocks {
	cs := make(fakeClocks, n)
	for i := range cs {
		cs[i] = newFakeClock()
	}
	return cs
}

// tune gives replica i (ID i+1) clock i.
func (cs fakeClocks) tune(cfg *Config) { cfg.Clock = cs[cfg.ID-1] }

func (cs fakeClocks) Advance(d time.Duration) {
	for _, c := range cs {
		c.Advance(d)
	}
}

// lockInfo returns the ListLocks entry of path (zero if none).
func lockInfo(t testing.TB, cl *client, path string) wire.LockInfo {
	t.Helper()
	for _, l := range cl.must(&wire.ListLocks{Path: path}).(*wire.LocksReply).Locks {
		if l.Path == path {
			return l
		}
	}
	return wire.LockInfo{}
}

// async runs a call in the background; its reply arrives on the channel.
type callResult struct {
	m   wire.Message
	err error
}

func async(cl *client, req wire.Message) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		m, err := cl.do(req)
		ch <- callResult{m, err}
	}()
	return ch
}

func recv(t testing.TB, ch <-chan callResult, what string) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("no reply to %s", what)
	}
	return callResult{}
}

// pending reports whether ch has no reply yet.
func pending(ch <-chan callResult) bool { return len(ch) == 0 }
