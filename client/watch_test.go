package client_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// next returns the next event that is not a fail-over notice.
func next(t testing.TB, ch <-chan client.Event) client.Event {
	t.Helper()
	for {
		ev, ok := recv(t, ch, 10*time.Second, "event")
		if !ok {
			t.Fatalf("watch channel closed; want an event")
		}
		if ev.Type != client.EventFailover {
			return ev
		}
	}
}

func TestWatchEvents(t *testing.T) {
	cell := startCell(t)
	c, o := dial(t, cell), dial(t, cell)
	ctx := bg(t)
	events, err := c.Watch(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Put(ctx, "/w", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	o.Put(ctx, "/w", []byte("2"))
	o.Put(ctx, "/w/c", nil)
	l, err := o.Lock(ctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock(ctx)
	o.Put(ctx, "/w/c", []byte("not seen: /w/c is not watched"))
	o.Delete(ctx, "/w/c")
	o.Delete(ctx, "/w")
	want := []struct {
		typ   client.EventType
		child string
	}{
		{client.EventNodeCreated, ""},
		{client.EventContentChanged, ""},
		{client.EventChildAdded, "c"},
		{client.EventLockAcquired, ""},
		{client.EventLockReleased, ""},
		{client.EventChildRemoved, "c"},
		{client.EventNodeDeleted, ""},
	}
	var last uint64
	for i, w := range want {
		ev := next(t, events)
		if ev.Type != w.typ || ev.Child != w.child || ev.Path != "/w" {
			t.Fatalf("event %d = %v; want %v %s child=%q", i, ev, w.typ, "/w", w.child)
		}
		if ev.Index <= last {
			t.Fatalf("event %d index %d after %d; want increasing", i, ev.Index, last)
		}
		last = ev.Index
		switch ev.Type {
		case client.EventNodeCreated:
			if ev.Instance != st.Instance {
				t.Fatalf("created event instance %d; want %d", ev.Instance, st.Instance)
			}
		case client.EventContentChanged:
			if ev.ContentGen != 2 {
				t.Fatalf("content event generation %d; want 2", ev.ContentGen)
			}
		case client.EventLockAcquired:
			if ev.Session != o.SessionID() || ev.LockGen != l.Sequencer().LockGen || ev.Mode != client.Exclusive {
				t.Fatalf("lock event %+v; want session %d at %s", ev, o.SessionID(), l.Sequencer())
			}
		}
	}
}

func TestRecursiveWatchAndUnwatch(t *testing.T) {
	cell := startCell(t)
	c, o := dial(t, cell), dial(t, cell)
	ctx := bg(t)
	wctx, stop := context.WithCancel(ctx)
	events, err := c.Watch(wctx, "/r", client.Recursive())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Put(ctx, "/r/a/b", []byte("x"), client.CreateParents()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 5 {
		ev := next(t, events)
		got = append(got, fmt.Sprintf("%s %s %s", ev.Type, ev.Path, ev.Child))
	}
	want := []string{
		"node-created /r ", "node-created /r/a ", "child-added /r a", "node-created /r/a/b ", "child-added /r/a b",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("recursive watch saw %q; want %q (in any order)", got, want)
	}
	stop()
	for range events {
	}
	// The watch is gone: a change is not delivered, and the client's other
	// watches still work.
	other, err := c.Watch(ctx, "/r/a/b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Put(ctx, "/r/a/b", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, other); ev.Type != client.EventContentChanged || ev.Path != "/r/a/b" {
		t.Fatalf("event %v; want content-changed /r/a/b", ev)
	}
}

// A reader that does not keep up gets EventMissed in place of the events
// that did not fit, and the client never blocks on it.
func TestSlowWatcherGetsMissed(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, func(cfg *client.Config) { cfg.WatchBuffer = 3 })
	o := dial(t, cell)
	ctx := bg(t)
	slow, err := c.Watch(ctx, "/slow")
	if err != nil {
		t.Fatal(err)
	}
	marker, err := c.Watch(ctx, "/marker")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := o.Put(ctx, "/slow", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Events reach the client in order: once the marker's arrived, all of
	// /slow's have been queued.
	if _, err := o.Put(ctx, "/marker", nil); err != nil {
		t.Fatal(err)
	}
	next(t, marker)
	var types []client.EventType
	for {
		select {
		case ev := <-slow:
			types = append(types, ev.Type)
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if !slices.Contains(types, client.EventMissed) || len(types) > 5 {
		t.Fatalf("slow reader got %v; want at most the buffer (plus one in hand) with an EventMissed", types)
	}
	if _, err := o.Put(ctx, "/slow", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, slow); ev.Type != client.EventContentChanged {
		t.Fatalf("event after catching up %v; want content-changed", ev)
	}
}

// After the leader fails, the watch is registered again with the new leader
// and the reader is told that events may have been missed; later events
// arrive as before.
func TestWatchAcrossFailover(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell, func(cfg *client.Config) { cfg.Grace = 20 * time.Second })
	o := dial(t, cell, func(cfg *client.Config) { cfg.Grace = 20 * time.Second })
	ctx := bg(t, 30*time.Second)
	sess := c.SessionEvents()
	events, err := c.Watch(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Put(ctx, "/f", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Type != client.EventNodeCreated {
		t.Fatalf("event %v; want node-created", ev)
	}
	old := leaderIndex(t, cell)
	if err := cell.Stop(old); err != nil {
		t.Fatal(err)
	}
	ev, ok := recv(t, events, 15*time.Second, "fail-over event")
	if !ok || ev.Type != client.EventFailover || !ev.Rescan() {
		t.Fatalf("event after the leader stopped: %v (open %v); want failover", ev, ok)
	}
	if _, err := o.Put(ctx, "/f", []byte("after")); err != nil {
		t.Fatalf("Put after fail-over: %v", err)
	}
	if ev := next(t, events); ev.Type != client.EventContentChanged || ev.ContentGen != 2 {
		t.Fatalf("event after fail-over %v; want content-changed at generation 2", ev)
	}
	sawFailover := false
	for !sawFailover {
		e, ok := recv(t, sess, 5*time.Second, "session fail-over notice")
		if !ok {
			t.Fatalf("session events closed")
		}
		sawFailover = e.Failover
	}
	if c.State() != client.StateSafe {
		t.Fatalf("State() = %v after fail-over; want safe", c.State())
	}
	if l := c.Leader(); l == cell.Endpoints()[old] {
		t.Fatalf("Leader() = %s, the stopped replica", l)
	}
}
