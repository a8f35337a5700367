package client_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

var testSet = wire.MemberSet{Alpha: 16, Epoch: 5, Applied: 40, Leader: 1,
	Members: []wire.MemberEntry{
		{ID: 1, Voter: true, Bound: true, Peer: "p1:1", Client: "c1:1"},
		{ID: 2, Voter: true, Bound: true, Peer: "p2:1", Client: "c2:1"},
		{ID: 4, Bound: true, Peer: "p4:1", Client: "c4:1", HTTP: "h4:1"},
	},
	Retired: []uint64{3}, Pending: &wire.MemberPending{At: 30, Voters: []uint64{1, 2, 4}}}

// withStatus answers Status (as a NoSession Dial asks) before handle.
func withStatus(handle func(wire.Message) fakeAnswer) func(wire.Message) fakeAnswer {
	return func(m wire.Message) fakeAnswer {
		if _, ok := m.(*wire.Status); ok {
			return answer(&wire.StatusReply{ServerID: "1", IsLeader: true})
		}
		return handle(m)
	}
}

// TestMemberCalls: each call sends its op with its arguments (no session,
// the epoch only with IfEpoch) and returns the set the cell answered.
func TestMemberCalls(t *testing.T) {
	f := startFake(t, "1", withStatus(func(m wire.Message) fakeAnswer {
		switch m.(type) {
		case *wire.MemberList:
			return answer(&testSet)
		case *wire.MemberChange:
			return answer(&wire.MemberChanged{Members: testSet, Instance: 30, Effective: 46})
		}
		return fakeAnswer{}
	}))
	cfg := fakeConfig(f.addr())
	cfg.NoSession = true
	c := dialFake(t, cfg)
	ctx := bg(t)

	s, err := c.MemberSet(ctx)
	if err != nil {
		t.Fatalf("MemberSet: %v", err)
	}
	if s.Epoch != 5 || s.Alpha != 16 || s.Leader != 1 || len(s.Members) != 3 || s.Pending == nil || s.Pending.Effective != 46 {
		t.Fatalf("MemberSet = %+v", s)
	}
	if m, ok := s.Member(4); !ok || m.Role != client.RolePromoting || !m.Joined || m.Addrs.HTTP != "h4:1" {
		t.Fatalf("member 4 = %+v, %v; want pending+ with its addresses", m, ok)
	}
	if m, _ := s.Member(1); m.Role != client.RoleVoter {
		t.Fatalf("member 1 role = %q; want voter", m.Role)
	}
	if _, err := c.MemberSet(ctx, client.Stale()); err != nil {
		t.Fatalf("MemberSet(Stale): %v", err)
	}

	addrs := client.MemberAddrs{Peer: "p5:1", Client: "c5:1", HTTP: "h5:1"}
	calls := []struct {
		name string
		call func() (client.MemberChange, error)
		want wire.MemberChange
	}{
		{"add", func() (client.MemberChange, error) { return c.AddMember(ctx, 5, addrs) },
			wire.MemberChange{Op: wire.MemberAdd, ID: 5, Peer: "p5:1", Client: "c5:1", HTTP: "h5:1"}},
		{"promote at epoch", func() (client.MemberChange, error) { return c.PromoteMember(ctx, 4, client.IfEpoch(5)) },
			wire.MemberChange{Op: wire.MemberPromote, ID: 4, Epoch: 5}},
		{"remove", func() (client.MemberChange, error) { return c.RemoveMember(ctx, 2) },
			wire.MemberChange{Op: wire.MemberRemove, ID: 2}},
		{"update", func() (client.MemberChange, error) { return c.UpdateMember(ctx, 4, addrs) },
			wire.MemberChange{Op: wire.MemberUpdate, ID: 4, Peer: "p5:1", Client: "c5:1", HTTP: "h5:1"}},
	}
	for _, tt := range calls {
		got, err := tt.call()
		if err != nil || got.Instance != 30 || got.Effective != 46 || len(got.Members.Members) != 3 {
			t.Fatalf("%s = %+v, %v", tt.name, got, err)
		}
		sent := seen[*wire.MemberChange](f)
		last := *sent[len(sent)-1]
		if last.Session != 0 || last.Request == 0 {
			t.Errorf("%s header = %+v; want no session, a request id", tt.name, last.Header)
		}
		last.Header = wire.Header{}
		if last != tt.want {
			t.Errorf("%s sent %+v; want %+v", tt.name, last, tt.want)
		}
	}
	lists := seen[*wire.MemberList](f)
	if len(lists) != 2 || lists[0].Stale || !lists[1].Stale {
		t.Errorf("MemberList calls = %+v; want not stale, then stale", lists)
	}
}

func TestMemberCallErrors(t *testing.T) {
	var reply *wire.Error
	f := startFake(t, "1", withStatus(func(m wire.Message) fakeAnswer { return answer(reply) }))
	cfg := fakeConfig(f.addr())
	cfg.NoSession = true
	c := dialFake(t, cfg)
	ctx := bg(t)
	for _, tt := range []struct {
		code  wire.Code
		wants []error
	}{
		{wire.NotFound, []error{client.ErrUnknownMember, client.ErrNotFound}},
		{wire.ChangePending, []error{client.ErrChangePending}},
		{wire.NotCaughtUp, []error{client.ErrNotCaughtUp}},
		{wire.Permission, []error{client.ErrPermission}},
		{wire.GenerationMismatch, []error{client.ErrGenerationMismatch}},
		{wire.Exists, []error{client.ErrExists}},
		{wire.BadRequest, []error{client.ErrBadRequest}},
	} {
		reply = wire.Errorf(tt.code, "the cell says no")
		_, err := c.PromoteMember(ctx, 4)
		for _, want := range tt.wants {
			if !errors.Is(err, want) {
				t.Errorf("PromoteMember answered %v: err = %v; want %v", tt.code, err, want)
			}
		}
		if err == nil || !strings.Contains(err.Error(), "the cell says no") {
			t.Errorf("PromoteMember answered %v: err = %v; want the cell's message", tt.code, err)
		}
	}
	before := len(seen[*wire.MemberChange](f))
	for name, call := range map[string]func() error{
		"id 0":        func() error { _, err := c.RemoveMember(ctx, 0); return err },
		"IfEpoch(0)":  func() error { _, err := c.RemoveMember(ctx, 2, client.IfEpoch(0)); return err },
		"Stale":       func() error { _, err := c.AddMember(ctx, 5, client.MemberAddrs{}, client.Stale()); return err },
		"set IfEpoch": func() error { _, err := c.MemberSet(ctx, client.IfEpoch(3)); return err },
	} {
		if err := call(); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("%s: err = %v; want ErrInvalid", name, err)
		}
	}
	if n := len(seen[*wire.MemberChange](f)); n != before {
		t.Errorf("invalid calls sent %d changes", n-before)
	}
}

// TestMemberChangeFollowsLeader: a follower's NotLeader sends the change
// to the leader it names; MemberSetOf asks one replica only.
func TestMemberChangeFollowsLeader(t *testing.T) {
	leader := startFake(t, "1", withStatus(func(m wire.Message) fakeAnswer {
		switch m.(type) {
		case *wire.MemberChange:
			return answer(&wire.MemberChanged{Members: testSet, Instance: 31, Effective: 31})
		case *wire.MemberList:
			return answer(&testSet)
		}
		return fakeAnswer{}
	}))
	follower := startFake(t, "2", withStatus(func(m wire.Message) fakeAnswer {
		if ml, ok := m.(*wire.MemberList); ok && ml.Stale {
			return answer(&wire.MemberSet{Alpha: 16, Epoch: 4})
		}
		return answer(&wire.Error{Code: wire.NotLeader, Message: "not the leader", Leader: leader.addr()})
	}))
	follower.leader = leader.addr()
	cfg := fakeConfig(follower.addr())
	cfg.NoSession = true
	c := dialFake(t, cfg)
	got, err := c.UpdateMember(bg(t), 4, client.MemberAddrs{Peer: "p:1", Client: "c:1"})
	if err != nil || got.Instance != 31 {
		t.Fatalf("UpdateMember via a follower = %+v, %v", got, err)
	}
	if n := len(seen[*wire.MemberChange](leader)); n != 1 {
		t.Fatalf("the leader saw %d changes; want 1", n)
	}

	if s, err := client.MemberSetOf(bg(t), follower.addr(), nil, true); err != nil || s.Epoch != 4 {
		t.Fatalf("MemberSetOf(follower, stale) = %+v, %v; want its own set", s, err)
	}
	if _, err := client.MemberSetOf(bg(t), follower.addr(), nil, false); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("MemberSetOf(follower) = %v; want ErrUnavailable (NotLeader)", err)
	}
	if s, err := client.MemberSetOf(bg(t), leader.addr(), nil, false); err != nil || s.Epoch != 5 {
		t.Fatalf("MemberSetOf(leader) = %+v, %v", s, err)
	}
}

// TestMemberChangeFoundMadeAfterRetry: a change whose first answer was lost
// and whose retry is refused (another leader: the id is a member already)
// is reported made when the set shows it; a refusal of a change sent once
// stays an error.
func TestMemberChangeFoundMadeAfterRetry(t *testing.T) {
	var changes atomic.Int32
	f := startFake(t, "1", withStatus(func(m wire.Message) fakeAnswer {
		switch m := m.(type) {
		case *wire.MemberChange:
			if changes.Add(1) == 1 && m.ID == 4 {
				return fakeAnswer{drop: true} // made, but the answer is lost
			}
			return answer(wire.Errorf(wire.Exists, "4 is already a member of the cell"))
		case *wire.MemberList:
			return answer(&testSet)
		}
		return fakeAnswer{}
	}))
	cfg := fakeConfig(f.addr())
	cfg.NoSession = true
	c := dialFake(t, cfg)
	got, err := c.AddMember(bg(t), 4, client.MemberAddrs{Peer: "p4:1", Client: "c4:1", HTTP: "h4:1"})
	if err != nil || got.Instance != 0 || len(got.Members.Members) != 3 {
		t.Fatalf("AddMember after a lost answer = %+v, %v; want it found made (instance 0)", got, err)
	}
	sent := seen[*wire.MemberChange](f)
	if len(sent) != 2 || sent[0].Request != sent[1].Request || sent[0].Request == 0 {
		t.Fatalf("sent %d changes; want 2 with one (random) request id", len(sent))
	}
	// Sent once and refused: an error, even though the set has 4.
	if _, err := c.AddMember(bg(t), 4, client.MemberAddrs{Peer: "p4:1", Client: "c4:1", HTTP: "h4:1"}); !errors.Is(err, client.ErrExists) {
		t.Fatalf("AddMember of a member = %v; want ErrExists", err)
	}
	// Retried, but the set shows another address: still the error.
	changes.Store(0)
	if _, err := c.AddMember(bg(t), 4, client.MemberAddrs{Peer: "p9:1", Client: "c9:1"}); !errors.Is(err, client.ErrExists) {
		t.Fatalf("AddMember retried, the set not showing it = %v; want ErrExists", err)
	}
}
