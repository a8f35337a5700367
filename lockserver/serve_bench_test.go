package lockserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// The BenchmarkServe* benchmarks call the leader's ServeWire directly, with
// no connection in between: they measure the lock server's own path
// (dispatch, validation, session checks, read barrier, proposal, apply and
// wake-up) plus the replica, without the client protocol. Compare them
// with the benchmarks above (same names without "Serve") to see what the
// wire costs. Commands are in docs/benchmarks.md.

// serveTarget is the cell the BenchmarkServe* clients call, through its
// current leader.
type serveTarget struct {
	cell   *Cell
	leader atomic.Pointer[Server]
}

// serveCell starts a cell and returns it as a target.
func serveCell(b *testing.B) *serveTarget {
	b.Helper()
	c, _ := benchCell(b)
	s := &serveTarget{cell: c}
	s.leader.Store(c.Server(leaderIndex(b, c)))
	return s
}

// ServeWire calls the leader's handler, retrying a retryable error with the
// same request (as a client would; the server deduplicates it) for up to
// 30 s. A retry is counted in benchRetries.
func (s *serveTarget) ServeWire(ctx context.Context, req wire.Message) wire.Message {
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := s.leader.Load().ServeWire(ctx, req)
		e, ok := m.(*wire.Error)
		if !ok || !e.Code.Retryable() || time.Now().After(deadline) {
			return m
		}
		benchRetries.Add(1)
		time.Sleep(20 * time.Millisecond)
		if i := s.cell.Leader(); i >= 0 {
			s.leader.Store(s.cell.Server(i))
		}
	}
}

// serveClients opens n sessions on s; the returned clients have no
// connection (call them with serveDo).
func serveClients(b *testing.B, s *serveTarget, n int) []*benchClient {
	b.Helper()
	out := make([]*benchClient, n)
	for i := range out {
		so, err := serveDo[*wire.SessionOpened](s, &wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}, Timeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = &benchClient{sid: so.Session}
	}
	return out
}

// serveDo makes one call straight to the server's handler.
func serveDo[R wire.Message](s *serveTarget, req wire.Message) (R, error) {
	m := s.ServeWire(context.Background(), req)
	if e, ok := m.(*wire.Error); ok {
		var zero R
		return zero, e
	}
	r, ok := m.(R)
	if !ok {
		var zero R
		return zero, fmt.Errorf("reply %T to %T", m, req)
	}
	return r, nil
}

// servePut creates path on s.
func servePut(b *testing.B, s *serveTarget, c *benchClient, path string, content []byte) {
	b.Helper()
	if _, err := serveDo[*wire.PutReply](s, &wire.Put{Header: c.head(), Path: path, Content: content}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkServeGet: linearizable Gets of a 64-byte node.
func BenchmarkServeGet(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			s := serveCell(b)
			clients := serveClients(b, s, n)
			servePut(b, s, clients[0], "/g", make([]byte, 64))
			run(b, clients, "gets", func(c *benchClient) error {
				_, err := serveDo[*wire.GetReply](s, &wire.Get{Header: wire.Header{Session: c.sid}, Path: "/g"})
				return err
			})
		})
	}
}

// BenchmarkServePut: 64-byte writes, each client to its own node.
func BenchmarkServePut(b *testing.B) {
	content := make([]byte, 64)
	serveOwnPaths(b, "/p", false, "puts", func(s *serveTarget, c *benchClient, path string) error {
		_, err := serveDo[*wire.PutReply](s, &wire.Put{Header: c.head(), Path: path, Content: content})
		return err
	})
}

// BenchmarkServeLockUnlock: each client takes and releases its own lock.
func BenchmarkServeLockUnlock(b *testing.B) {
	serveOwnPaths(b, "/l", true, "pairs", func(s *serveTarget, c *benchClient, path string) error {
		return serveLockPair(s, c, path, false)
	})
}

// serveOwnPaths runs op with 1 and 64 clients, each on a path of its own
// (prefix and its index; created first if create).
func serveOwnPaths(b *testing.B, prefix string, create bool, unit string, op func(s *serveTarget, c *benchClient, path string) error) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			s := serveCell(b)
			clients := serveClients(b, s, n)
			paths := map[*benchClient]string{}
			for i, c := range clients {
				paths[c] = fmt.Sprintf("%s%d", prefix, i)
				if create {
					servePut(b, s, c, paths[c], nil)
				}
			}
			run(b, clients, unit, func(c *benchClient) error { return op(s, c, paths[c]) })
		})
	}
}

// BenchmarkServeHandoff: the clients take turns on one lock (waiting
// Acquire, then Release); one operation is one handoff. It also reports the
// commands proposed and the Paxos instances (batches) per handoff.
func BenchmarkServeHandoff(b *testing.B) {
	for _, n := range []int{2, 64} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			s := serveCell(b)
			clients := serveClients(b, s, n)
			servePut(b, s, clients[0], "/hot", nil)
			props0, inst0 := s.counts(b)
			run(b, clients, "handoffs", func(c *benchClient) error {
				return serveLockPair(s, c, "/hot", true)
			})
			props, inst := s.counts(b)
			b.ReportMetric(float64(props-props0)/float64(b.N), "cmds/op")
			b.ReportMetric(float64(inst-inst0)/float64(b.N), "instances/op")
		})
	}
}

// counts returns the commands the leader proposed and the instances its
// replica proposed (batches) so far.
func (s *serveTarget) counts(b *testing.B) (proposals, instances uint64) {
	b.Helper()
	l := s.leader.Load()
	st, err := l.rep.Status(context.Background(), group)
	if err != nil {
		b.Fatal(err)
	}
	return l.metrics.Proposals.Load(), st.Stats.Batches
}

// serveLockPair takes path's exclusive lock (waiting for it if wait) and
// releases it.
func serveLockPair(s *serveTarget, c *benchClient, path string, wait bool) error {
	a, err := serveDo[*wire.AcquireReply](s, &wire.Acquire{Header: c.head(), Path: path, Mode: wire.Exclusive, Wait: wait})
	if err != nil {
		return err
	}
	_, err = serveDo[*wire.Ack](s, &wire.Release{Header: c.head(), Path: path, LockGen: a.Sequencer.LockGen})
	return err
}
