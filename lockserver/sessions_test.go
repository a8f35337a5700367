package lockserver

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// openNamed opens cl's session with a client name.
func (cl *client) openNamed(name string) uint64 {
	cl.t.Helper()
	m := cl.must(&wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}, Timeout: time.Minute, Client: name})
	cl.sid = m.(*wire.SessionOpened).Session
	return cl.sid
}

// sessionsByID lists the sessions of the cell through cl, by id.
func sessionsByID(t *testing.T, cl *client, stale bool) map[uint64]wire.SessionInfo {
	t.Helper()
	ss := cl.must(&wire.ListSessions{Stale: stale}).(*wire.SessionsReply)
	out := make(map[uint64]wire.SessionInfo, len(ss.Sessions))
	for _, si := range ss.Sessions {
		out[si.ID] = si
	}
	return out
}

// TestListSessionsNamesAndWatches checks that ListSessions reports the name
// each client gave at OpenSession, and, from the leader, how many watches
// each session has; a follower answering a stale read knows the names but
// no watches (they live in the leader's memory).
func TestListSessionsNamesAndWatches(t *testing.T) {
	c := testCell(t)
	web, batch, anon := newClient(t, c), newClient(t, c), newClient(t, c)
	webID := web.openNamed("web-1 on host-12")
	batchID := batch.openNamed("batch/ü")
	anonID := anon.open(time.Minute)
	w1 := web.must(&wire.Watch{Path: "/app", Recursive: true}).(*wire.WatchReply).Watch
	web.must(&wire.Watch{Path: "/cfg"})
	batch.must(&wire.Watch{Path: "/"})

	want := map[uint64]struct {
		client  string
		watches uint32
	}{webID: {"web-1 on host-12", 2}, batchID: {"batch/ü", 1}, anonID: {"", 0}}
	got := sessionsByID(t, anon, false)
	if len(got) != len(want) {
		t.Fatalf("ListSessions = %+v; want %d sessions", got, len(want))
	}
	for id, w := range want {
		if si := got[id]; si.Client != w.client || si.Watches != w.watches {
			t.Errorf("session %d: Client %q, Watches %d; want %q, %d", id, si.Client, si.Watches, w.client, w.watches)
		}
	}

	web.must(&wire.Unwatch{Watch: w1})
	if si := sessionsByID(t, anon, false)[webID]; si.Watches != 1 {
		t.Errorf("after Unwatch: session %d has %d watches; want 1", webID, si.Watches)
	}

	// A follower's stale answer: names (once it has applied the opens), no
	// watch counts.
	follower := (leaderIndex(t, c) + 1) % c.N()
	fcl := newClient(t, c)
	fcl.addr = c.Endpoints()[follower]
	waitFor(t, 20*time.Second, "the follower to apply the sessions", func() bool {
		m, err := fcl.retry(&wire.ListSessions{Stale: true})
		if err != nil || fcl.addr != c.Endpoints()[follower] {
			t.Fatalf("stale ListSessions at the follower: %v (answered by %s)", err, fcl.addr)
		}
		return len(m.(*wire.SessionsReply).Sessions) == len(want)
	})
	for id, si := range sessionsByID(t, fcl, true) {
		if si.Client != want[id].client || si.Watches != 0 {
			t.Errorf("follower: session %d: Client %q, Watches %d; want %q, 0", id, si.Client, si.Watches, want[id].client)
		}
	}
}

// TestOpenSessionBadClientName checks that a client name over the limit, or
// not UTF-8, is refused before anything is proposed, with an error that
// says why.
func TestOpenSessionBadClientName(t *testing.T) {
	c := testCell(t)
	limit := c.Config(0).Namespace.MaxClientNameLen
	if limit != 256 {
		t.Fatalf("default MaxClientNameLen = %d; want 256", limit)
	}
	rc := dialRaw(t, c.Endpoints()[0])
	tests := []struct {
		name, client, msg string
	}{
		{"too long", strings.Repeat("n", limit+1), "client name of 257 bytes; the limit is 256"},
		{"not UTF-8", "web\xff", "not valid UTF-8"},
	}
	for _, tt := range tests {
		_, err := rc.call(&wire.OpenSession{Header: wire.Header{Request: rand.Uint64() | 1}, Client: tt.client})
		if codeOf(err) != wire.BadRequest || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: OpenSession = %v; want BadRequest %q", tt.name, err, tt.msg)
		}
	}
	// The longest name is fine.
	cl := newClient(t, c)
	id := cl.openNamed(strings.Repeat("n", limit))
	if si := sessionsByID(t, cl, false)[id]; len(si.Client) != limit {
		t.Errorf("session %d: client name of %d bytes; want %d", id, len(si.Client), limit)
	}
}
