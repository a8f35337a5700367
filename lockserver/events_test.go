package lockserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// drain collects a session's events until n have arrived, acknowledging as
// it goes.
func drain(t *testing.T, cl *client, acked *uint64, n int) []wire.Event {
	t.Helper()
	var got []wire.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d events, want %d: %v", len(got), n, summary(got))
		}
		ka := cl.must(&wire.KeepAlive{Acked: *acked}).(*wire.KeepAliveReply)
		for _, e := range ka.Events {
			if e.Seq <= *acked {
				t.Fatalf("event %+v repeated after ack %d", e, *acked)
			}
			*acked = e.Seq
			got = append(got, e)
		}
	}
	return got
}

func summary(evs []wire.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%v %s", e.Type, e.Path)
		if e.Child != "" {
			fmt.Fprintf(&b, "/%s", e.Child)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// TestEvents checks every event type a watch or a held lock produces, in
// apply order, each once, and only for the sessions concerned.
func TestEvents(t *testing.T) {
	c := testCell(t)
	a, b := newClient(t, c), newClient(t, c)
	a.open(10 * time.Second)
	b.open(2 * time.Second) // short: its KeepAlive below waits out one hold
	a.must(&wire.Put{Path: "/e"})
	w := a.must(&wire.Watch{Path: "/e", Recursive: true}).(*wire.WatchReply).Watch
	var acked, bAcked uint64
	a.must(&wire.Put{Path: "/e/x", Content: []byte("1")})
	a.must(&wire.Put{Path: "/e/x", Content: []byte("2")})
	seq := a.must(&wire.Acquire{Path: "/e/x", Mode: wire.Exclusive}).(*wire.AcquireReply).Sequencer
	if _, err := b.do(&wire.Acquire{Path: "/e/x", Mode: wire.Exclusive}); codeOf(err) != wire.Locked {
		t.Fatalf("B's try = %v; want Locked", err)
	}
	a.must(&wire.Release{Path: "/e/x", LockGen: seq.LockGen})
	a.must(&wire.Delete{Path: "/e/x"})

	want := []string{
		"NodeCreated /e/x", "ChildAdded /e/x", "ContentChanged /e/x",
		"LockAcquired /e/x", "LockConflict /e/x", "LockReleased /e/x",
		"NodeDeleted /e/x", "ChildRemoved /e/x",
	}
	got := drain(t, a, &acked, len(want))
	var names []string
	var lastIndex uint64
	for _, e := range got {
		name := e.Type.String() + " " + e.Path
		if e.Child != "" {
			name += "/" + e.Child
		}
		names = append(names, name)
		if e.Index < lastIndex {
			t.Fatalf("events out of log order: %v", summary(got))
		}
		lastIndex = e.Index
		switch e.Type {
		case wire.LockConflict:
			if len(e.Watches) != 0 || e.Session != b.sid {
				t.Fatalf("LockConflict = %+v; want session %d and no watch ids", e, b.sid)
			}
		default:
			if len(e.Watches) != 1 || e.Watches[0] != w {
				t.Fatalf("%v not tagged with watch %d: %+v", e.Type, w, e)
			}
		}
		switch e.Type {
		case wire.ContentChanged:
			if e.ContentGen != 2 {
				t.Fatalf("ContentChanged gen = %d; want 2", e.ContentGen)
			}
		case wire.LockAcquired:
			if e.Session != a.sid || e.LockGen != seq.LockGen || e.Mode != wire.Exclusive {
				t.Fatalf("LockAcquired = %+v", e)
			}
		}
	}
	// Within one command, the namespace emits the node's own event before
	// its parent's child event (docs/namespace.md).
	if strings.Join(names, ", ") != strings.Join(want, ", ") {
		t.Fatalf("events = %v\nwant %v", names, want)
	}
	// B watches nothing and holds nothing: its KeepAlive returns (after
	// the hold) with no event about /e.
	for _, e := range b.must(&wire.KeepAlive{Acked: bAcked}).(*wire.KeepAliveReply).Events {
		if e.Type != wire.Failover {
			t.Fatalf("B got %+v", e)
		}
	}
}

// TestEventsLost overflows a session's bounded queue: the backlog is
// replaced by one EventsLost event, and apply never waits for the client.
func TestEventsLost(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.Session.QueueLen = 8; cfg.Session.MaxBatch = 8 })
	cl := newClient(t, c)
	cl.open(10 * time.Second)
	cl.must(&wire.Put{Path: "/q"})
	var acked uint64
	for attempt := 1; ; attempt++ {
		cl.must(&wire.Watch{Path: "/q"})
		for i := range 20 {
			cl.must(&wire.Put{Path: "/q", Content: fmt.Appendf(nil, "%d", i)})
		}
		var lost, failover bool
		for _, e := range drain(t, cl, &acked, 1) {
			lost = lost || e.Type == wire.EventsLost
			failover = failover || e.Type == wire.Failover
		}
		if lost {
			break
		}
		// Watches live on the leader: a leader change under load drops
		// the watch with the events (the Failover says so). Again.
		if !failover || attempt == 3 {
			t.Fatalf("20 events into a queue of 8 did not report EventsLost (attempt %d, failover %v)", attempt, failover)
		}
	}
	if g := cl.must(&wire.Get{Path: "/q"}).(*wire.GetReply); string(g.Content) != "19" {
		t.Fatalf("after the overflow /q = %q; want 19", g.Content)
	}
}
