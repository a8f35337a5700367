package wire

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// quickTestHandler answers the Gets under "/quick/" at once, on the reader
// ("/quick/panic" panics, "/quick/nil" returns nil), and leaves the rest
// to the testServer's ServeWire.
type quickTestHandler struct {
	Handler
	s *testServer
}

func (h quickTestHandler) ServeQuick(req Message) (Message, bool) {
	g, ok := req.(*Get)
	if !ok || !strings.HasPrefix(g.Path, "/quick/") {
		return nil, false
	}
	switch g.Path {
	case "/quick/panic":
		panic("boom")
	case "/quick/nil":
		return nil, true
	}
	h.s.quick.Add(1)
	return &GetReply{Content: []byte(g.Path), Stat: Stat{Instance: g.Request}}, true
}

// A burst of requests, some answered at once and some by call goroutines,
// each gets its own reply; the quick ones never reach ServeWire.
func TestQuickRepliesInABurst(t *testing.T) {
	s := startServer(t, ConnConfig{})
	r := dialRaw(t, s)
	r.hello(t)
	const n = 200
	var burst []byte
	for i := range n {
		path := fmt.Sprintf("/quick/%d", i)
		if i%10 == 0 {
			path = fmt.Sprintf("/slow/%d", i)
		}
		b, err := MarshalCall(uint32(100+i), &Get{Header: Header{Request: uint64(i)}, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		burst = append(burst, b...)
	}
	r.write(t, burst) // one write: the server reads it as one burst
	seen := make(map[uint32]bool)
	for range n {
		id, m, err := r.dec.DecodeCall()
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		i := int(id) - 100
		want := fmt.Sprintf("/quick/%d", i)
		if i%10 == 0 {
			want = fmt.Sprintf("/slow/%d", i)
		}
		g, ok := m.(*GetReply)
		if !ok || string(g.Content) != want || seen[id] {
			t.Fatalf("reply on call %d = %v (seen before: %v); want the GetReply of %s", id, m, seen[id], want)
		}
		seen[id] = true
	}
	if q := s.quick.Load(); q != n-n/10 {
		t.Errorf("ServeQuick answered %d requests; want %d", q, n-n/10)
	}
}

// A reply held for the end of a burst goes out even when the reader then
// has to wait for a call slot: with MaxStreams 1 and the slot taken by a
// blocked call, the quick Get that came just before a second slow call is
// answered while both slow calls wait.
func TestQuickReplyNotHeldBehindFullStreams(t *testing.T) {
	s := startServer(t, ConnConfig{MaxStreams: 1})
	r := dialRaw(t, s)
	r.hello(t)
	gate, err := MarshalCall(10, &Get{Header: Header{Request: 1}, Path: "/gate"})
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, gate)
	<-s.gated // the only slot is taken
	quick, err := MarshalCall(11, &Get{Path: "/quick/a"})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := MarshalCall(12, &Get{Path: "/slow"})
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, append(quick, slow...))
	r.st.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a timing check
	if id, m, err := r.dec.DecodeCall(); err != nil || id != 11 {
		t.Fatalf("first reply = call %d %v %v; want the quick Get's (call 11)", id, m, err)
	}
	close(s.gate(1))
	got := map[uint32]bool{}
	for range 2 {
		id, m, err := r.dec.DecodeCall()
		if err != nil || m.Type() != TypeGetReply {
			t.Fatalf("reply = call %d %v %v", id, m, err)
		}
		got[id] = true
	}
	if !got[10] || !got[12] {
		t.Errorf("replies on calls %v; want 10 and 12", got)
	}
}

// A panic or a nil reply in ServeQuick is answered Internal, as in
// ServeWire, and the connection goes on.
func TestQuickHandlerFailures(t *testing.T) {
	s := startServer(t, ConnConfig{})
	c := dial(t, s)
	for _, path := range []string{"/quick/panic", "/quick/nil"} {
		if _, err := c.Call(context.Background(), &Get{Path: path}); CodeOf(err) != Internal {
			t.Errorf("Get %s = %v; want Internal", path, err)
		}
	}
	if g, err := Do[*GetReply](context.Background(), c, &Get{Path: "/quick/ok"}); err != nil || string(g.Content) != "/quick/ok" {
		t.Errorf("Get after the failures = %v, %v", g, err)
	}
}
