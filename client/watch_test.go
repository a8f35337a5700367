package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
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

// A watch the new leader refuses after a fail-over (the session's
// principal may no longer read the path) ends: its reader gets
// EventFailover carrying the refusal, and then the channel closes, while
// the session and its other watches go on.
func TestWatchRefusedAfterFailoverEnds(t *testing.T) {
	watchAt := func(refuse string) func(wire.Message) fakeAnswer {
		return func(m wire.Message) fakeAnswer {
			if w, ok := m.(*wire.Watch); ok {
				if w.Path == refuse {
					return answer(wire.Errorf(wire.Permission, "principal \"bob\" may not read %q", w.Path))
				}
				return answer(&wire.WatchReply{Watch: 1})
			}
			return fakeAnswer{}
		}
	}
	a := startFake(t, "a", watchAt(""))
	b := startFake(t, "b", watchAt("/secret"))
	c := dialFake(t, fakeConfig(a.addr(), b.addr()))
	ctx := bg(t, 20*time.Second)
	secret, err := c.Watch(ctx, "/secret")
	if err != nil {
		t.Fatal(err)
	}
	open, err := c.Watch(ctx, "/open")
	if err != nil {
		t.Fatal(err)
	}
	// The client learns a new replica leads when another one answers its
	// KeepAlive: once a has answered one (the next is then on its way), a
	// goes and b answers.
	for a.kas.Load() < 2 {
		if ctx.Err() != nil {
			t.Fatal("a KeepAlive was never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.close()
	ev, ok := <-secret
	if !ok || ev.Type != client.EventFailover || !errors.Is(ev.Err, client.ErrPermission) {
		t.Fatalf("the refused watch's event: %v (open %v); want a failover carrying ErrPermission", ev, ok)
	}
	if ev, ok := <-secret; ok {
		t.Fatalf("the refused watch delivered %v after its last event; want it closed", ev)
	}
	if ev, ok := <-open; !ok || ev.Type != client.EventFailover || ev.Err != nil {
		t.Fatalf("the other watch's event: %v (open %v); want a plain failover", ev, ok)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("the session ended: %v", err)
	}
}
