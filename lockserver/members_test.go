package lockserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/replica/paxos"
)

// fakeMembers is a replicated member set without a replica: changes are
// applied with paxos.Members.Apply (the pure function every replica
// runs), one instance each. One fake serves every replica of a test
// cell, as if the set were replicated at once.
type fakeMembers struct {
	mu      sync.Mutex
	set     paxos.Members
	inst    uint64
	errs    []error // returned by the next ChangeMembers calls, in order
	changes []paxos.MemberChange
	hold    chan struct{} // if set, ChangeMembers waits for it to close
}

func newFakeMembers(voters ...uint64) *fakeMembers {
	return &fakeMembers{set: paxos.Bootstrap(voters, 16), inst: 100}
}

func (f *fakeMembers) ChangeMembers(ctx context.Context, g uint32, c paxos.MemberChange) (paxos.Members, uint64, error) {
	f.mu.Lock()
	f.changes = append(f.changes, c)
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return paxos.Members{}, 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return paxos.Members{}, 0, err
		}
	}
	f.inst++
	n, err := f.set.Apply(f.inst, c)
	f.set = n
	return n.Clone(), f.inst, err
}

func (f *fakeMembers) Members(uint32) (paxos.Members, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set.Clone(), nil
}

// apply applies c as the leader's own change would (a Bind), or the
// passing of instances (a pending change taking effect).
func (f *fakeMembers) apply(t testing.TB, c *paxos.MemberChange, through uint64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inst += through
	f.set = f.set.Through(f.inst)
	if c != nil {
		f.inst++
		n, err := f.set.Apply(f.inst, *c)
		if err != nil {
			t.Fatalf("fake Apply(%+v): %v", *c, err)
		}
		f.set = n
	}
}

func (f *fakeMembers) failNext(errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, errs...)
}

func (f *fakeMembers) proposed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.changes)
}

func memberCell(t *testing.T, f *fakeMembers, tune ...func(*Config)) *Cell {
	return testCell(t, append([]func(*Config){func(cfg *Config) { cfg.members = f }}, tune...)...)
}

func wantCode(t *testing.T, what string, err error, code wire.Code, substr string) {
	t.Helper()
	if codeOf(err) != code {
		t.Fatalf("%s: err = %v; want %v", what, err, code)
	}
	if substr != "" && !strings.Contains(err.Error(), substr) {
		t.Fatalf("%s: err = %v; want it to say %q", what, err, substr)
	}
}

// TestMemberChangeGrowAndShrink walks a learner through add, join,
// promote and removal on the leader, and checks what each answer and the
// Status of the cell show.
func TestMemberChangeGrowAndShrink(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f)
	cl := newClient(t, c)

	add := &wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "127.0.0.1:1", Client: "127.0.0.1:2", HTTP: "127.0.0.1:3"}
	got := cl.must(add).(*wire.MemberChanged)
	if got.Instance != 101 || got.Effective != 101 || got.Members.Role(4) != "learner" || got.Members.Epoch != 1 {
		t.Fatalf("add = %+v; want learner 4 at instance 101, effective at once, epoch 1", got)
	}
	e := got.Members.Members[3]
	if e.ID != 4 || e.Peer != "127.0.0.1:1" || e.Client != "127.0.0.1:2" || e.HTTP != "127.0.0.1:3" || e.Bound {
		t.Fatalf("member 4 = %+v; want its addresses, not bound", e)
	}
	if e := got.Members.Members[0]; e.Client != c.Endpoints()[0] || !e.Voter || !e.Bound {
		t.Fatalf("founding member 1 = %+v; want the configured addresses", e)
	}
	// A retry of the same add meets the change it made.
	_, err := cl.do(&wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "127.0.0.1:1", Client: "127.0.0.1:2"})
	wantCode(t, "add again", err, wire.Exists, "already a member")

	_, err = cl.do(&wire.MemberChange{Op: wire.MemberPromote, ID: 4})
	wantCode(t, "promote before it joined", err, wire.NotCaughtUp, "not joined")

	f.apply(t, &paxos.MemberChange{Op: paxos.OpBind, ID: 4, Nonce: 77}, 0)
	got = cl.must(&wire.MemberChange{Op: wire.MemberPromote, ID: 4}).(*wire.MemberChanged)
	if got.Effective != got.Instance+16 || got.Members.Role(4) != "pending+" || got.Members.Pending == nil {
		t.Fatalf("promote = %+v; want 4 pending+, effective α=16 later", got)
	}
	_, err = cl.do(&wire.MemberChange{Op: wire.MemberRemove, ID: 2})
	wantCode(t, "remove while a change is pending", err, wire.ChangePending, "pending")

	// Status shows the replicated set, with roles.
	st := c.Server(0).Status()
	if len(st.Members) != 4 || st.Members[3].ID != 4 || st.Members[3].Role != "pending+" || st.Members[3].Client != "127.0.0.1:2" {
		t.Fatalf("Status().Members = %+v; want 4 members, 4 pending+ at its addresses", st.Members)
	}

	f.apply(t, nil, 16) // the promotion takes effect
	got = cl.must(&wire.MemberChange{Op: wire.MemberRemove, ID: 2}).(*wire.MemberChanged)
	if got.Members.Role(2) != "pending-" || got.Effective != got.Instance+16 {
		t.Fatalf("remove voter 2 = %+v; want pending-", got)
	}
	f.apply(t, nil, 16)
	list := cl.must(&wire.MemberList{}).(*wire.MemberSet)
	if list.Role(2) != "" || len(list.Retired) != 1 || list.Retired[0] != 2 || list.Role(4) != "voter" || list.Leader == 0 {
		t.Fatalf("MemberList = %+v; want 2 retired, 4 a voter, a leader", list)
	}
	_, err = cl.do(&wire.MemberChange{Op: wire.MemberAdd, ID: 2, Peer: "127.0.0.1:5", Client: "127.0.0.1:6"})
	wantCode(t, "add a retired id", err, wire.BadRequest, "never valid again")
	_, err = cl.do(&wire.MemberChange{Op: wire.MemberRemove, ID: 2})
	wantCode(t, "remove a retired id", err, wire.NotFound, "was removed")

	got = cl.must(&wire.MemberChange{Op: wire.MemberUpdate, ID: 4, Peer: "127.0.0.1:7", Client: "127.0.0.1:8"}).(*wire.MemberChanged)
	if e := got.Members.Members[len(got.Members.Members)-1]; e.Peer != "127.0.0.1:7" || e.HTTP != "" || got.Effective != got.Instance {
		t.Fatalf("update = %+v; want 4 at its new addresses at once", got)
	}
}

func TestMemberChangeBadRequests(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f)
	cl := newClient(t, c)
	f.apply(t, &paxos.MemberChange{Op: paxos.OpAddLearner, ID: 9, Meta: encodeAddrs(Member{Peer: "127.0.0.1:91", Client: "127.0.0.1:92"})}, 0)
	f.apply(t, &paxos.MemberChange{Op: paxos.OpBind, ID: 9, Nonce: 5}, 0)
	tests := []struct {
		name string
		req  wire.MemberChange
		code wire.Code
		says string
	}{
		{"unknown op", wire.MemberChange{Op: 9, ID: 4}, wire.BadRequest, "unknown member op 9"},
		{"id 0", wire.MemberChange{Op: wire.MemberRemove}, wire.BadRequest, "id 0"},
		{"add without peer", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Client: "h:1"}, wire.BadRequest, "needs a peer address"},
		{"add without client", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "h:1"}, wire.BadRequest, "needs a client address"},
		{"no port", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "h", Client: "h:1"}, wire.BadRequest, `bad peer address "h"`},
		{"no host", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: ":80", Client: "h:1"}, wire.BadRequest, "empty host"},
		{"port 0", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "h:1", Client: "h:0"}, wire.BadRequest, "1..65535"},
		{"bad http", wire.MemberChange{Op: wire.MemberUpdate, ID: 1, Peer: "h:1", Client: "h:2", HTTP: "h:x"}, wire.BadRequest, "bad http address"},
		{"promote with addresses", wire.MemberChange{Op: wire.MemberPromote, ID: 9, Peer: "h:1"}, wire.BadRequest, "takes no addresses"},
		{"another member's address", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "127.0.0.1:91", Client: "h:2"}, wire.BadRequest, "is member 9's"},
		{"a founding member's address", wire.MemberChange{Op: wire.MemberAdd, ID: 4, Peer: "h:1", Client: c.Endpoints()[1]}, wire.BadRequest, "is member 2's"},
		{"remove unknown", wire.MemberChange{Op: wire.MemberRemove, ID: 40}, wire.NotFound, "40 is not a member"},
		{"promote unknown", wire.MemberChange{Op: wire.MemberPromote, ID: 40}, wire.NotFound, "not a member"},
		{"update unknown", wire.MemberChange{Op: wire.MemberUpdate, ID: 40, Peer: "h:1", Client: "h:2"}, wire.NotFound, "not a member"},
		{"promote a voter", wire.MemberChange{Op: wire.MemberPromote, ID: 2}, wire.BadRequest, "a voter already"},
		{"stale epoch", wire.MemberChange{Op: wire.MemberPromote, ID: 9, Epoch: 1}, wire.GenerationMismatch, "epoch 2, not 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			_, err := cl.do(&req)
			wantCode(t, tt.name, err, tt.code, tt.says)
		})
	}
	if n := f.proposed(); n != 0 {
		t.Fatalf("%d changes proposed; want none for bad requests", n)
	}
	// The core's refusals map to the same codes.
	for _, tt := range []struct {
		err  error
		code wire.Code
	}{
		{fmt.Errorf("replica: %w", paxos.ErrChangePending), wire.ChangePending},
		{fmt.Errorf("replica: %w", paxos.ErrNotCaughtUp), wire.NotCaughtUp},
		{fmt.Errorf("replica: %w: not a learner", paxos.ErrInvalidChange), wire.BadRequest},
	} {
		f.failNext(tt.err)
		_, err := cl.do(&wire.MemberChange{Op: wire.MemberPromote, ID: 9})
		wantCode(t, tt.err.Error(), err, tt.code, "")
	}
	// Phase 1 not covering the change yet is waited out.
	f.failNext(paxos.ErrPhase1Pending, paxos.ErrPhase1Pending)
	got := cl.must(&wire.MemberChange{Op: wire.MemberPromote, ID: 9}).(*wire.MemberChanged)
	if got.Members.Role(9) != "pending+" {
		t.Fatalf("promote after Phase 1 caught up = %+v", got)
	}
}

// TestMemberRequestsNeedTheLeader: a follower answers NotLeader naming the
// leader's client address (which the client follows), except a stale
// MemberList, which it answers itself.
func TestMemberRequestsNeedTheLeader(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f)
	lead := leaderIndex(t, c)
	fol := (lead + 1) % c.N()
	rc := dialRaw(t, c.Endpoints()[fol])
	for _, req := range []wire.Message{
		&wire.MemberChange{Header: wire.Header{Request: 1}, Op: wire.MemberRemove, ID: 3},
		&wire.MemberList{Header: wire.Header{Request: 2}},
	} {
		_, err := rc.call(req)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.NotLeader || we.Leader != c.Endpoints()[lead] {
			t.Fatalf("%v at a follower: %v; want NotLeader naming %s", req.Type(), err, c.Endpoints()[lead])
		}
	}
	m, err := rc.call(&wire.MemberList{Header: wire.Header{Request: 3}, Stale: true})
	if err != nil || len(m.(*wire.MemberSet).Members) != 3 {
		t.Fatalf("stale MemberList at a follower = %v, %v; want the 3 members", m, err)
	}
	if n := f.proposed(); n != 0 {
		t.Fatalf("%d changes proposed by a follower", n)
	}
}

// TestMemberChangeNeedsSuperuser: with superusers configured, only they may
// change members (as the admin HTTP's guarded endpoints); anyone may list.
func TestMemberChangeNeedsSuperuser(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f, func(cfg *Config) { cfg.Superusers = []string{"admin"} })
	s := c.Server(leaderIndex(t, c))
	ctx := context.Background()
	reply := s.serve(ctx, s.callerFor("alice"), &wire.MemberChange{Op: wire.MemberRemove, ID: 3})
	if we, ok := reply.(*wire.Error); !ok || we.Code != wire.Permission || !strings.Contains(we.Message, "alice is not one") {
		t.Fatalf("remove by alice = %v; want Permission", reply)
	}
	reply = s.serve(ctx, s.callerFor(""), &wire.MemberChange{Op: wire.MemberRemove, ID: 3})
	if we, ok := reply.(*wire.Error); !ok || we.Code != wire.Permission || !strings.Contains(we.Message, "anonymous") {
		t.Fatalf("remove by an anonymous client = %v; want Permission", reply)
	}
	if reply := s.serve(ctx, s.callerFor("alice"), &wire.MemberList{}); reply.Type() != wire.TypeMemberSet {
		t.Fatalf("MemberList by alice = %v; want the set", reply)
	}
	reply = s.serve(ctx, s.callerFor("admin"), &wire.MemberChange{Op: wire.MemberRemove, ID: 3})
	if got, ok := reply.(*wire.MemberChanged); !ok || got.Members.Role(3) != "pending-" {
		t.Fatalf("remove by admin = %v; want 3 pending-", reply)
	}
}

// TestTermEpochRanksAmongTheReplicatedSet: a member added by a change (in
// no configuration) counts in the rank of a term's epoch, so a leader with
// a higher id of the same round gets a higher epoch on every replica.
func TestTermEpochRanksAmongTheReplicatedSet(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f)
	s := c.Server(0)
	f.apply(t, &paxos.MemberChange{Op: paxos.OpAddLearner, ID: 2000, Meta: encodeAddrs(Member{Peer: "h:1", Client: "h:2"})}, 0)
	f.apply(t, &paxos.MemberChange{Op: paxos.OpAddLearner, ID: 1000, Meta: encodeAddrs(Member{Peer: "h:3", Client: "h:4"})}, 0)
	ids := s.memberIDs()
	if len(ids) != 5 {
		t.Fatalf("memberIDs() = %v; want the 5 ids of the replicated set", ids)
	}
	b := func(id uint64) paxos.Ballot { return paxos.Ballot{Round: 7, ID: id} }
	if e1, e2 := termEpoch(b(1000), ids), termEpoch(b(2000), ids); e1 >= e2 || termEpoch(b(3), ids) >= e1 {
		t.Fatalf("epochs of round 7: id 3 %d, 1000 %d, 2000 %d; want increasing", termEpoch(b(3), ids), e1, e2)
	}
}

// TestMemberChangeRetries: a retry of a change (same request id) gets the
// first attempt's answer, also while the first attempt still runs, and
// proposes nothing; the same id for another change is refused.
func TestMemberChangeRetries(t *testing.T) {
	f := newFakeMembers(1, 2, 3)
	c := memberCell(t, f)
	lead := c.Endpoints()[leaderIndex(t, c)]
	add := func(rid uint64, id uint64) *wire.MemberChange {
		return &wire.MemberChange{Header: wire.Header{Request: rid}, Op: wire.MemberAdd, ID: id,
			Peer: fmt.Sprintf("127.0.0.1:%d", 100+id), Client: fmt.Sprintf("127.0.0.1:%d", 200+id)}
	}
	a, b := dialRaw(t, lead), dialRaw(t, lead)
	first, err := a.call(add(77, 4))
	if err != nil {
		t.Fatalf("add 4: %v", err)
	}
	again, err := b.call(add(77, 4))
	if err != nil || again.(*wire.MemberChanged).Instance != first.(*wire.MemberChanged).Instance {
		t.Fatalf("retry of add 4 = %+v, %v; want the first answer %+v", again, err, first)
	}
	_, err = b.call(add(77, 5))
	wantCode(t, "another change with the same request id", err, wire.BadRequest, "used for another member change")
	if n := f.proposed(); n != 1 {
		t.Fatalf("%d changes proposed; want 1", n)
	}

	// A retry while the first attempt still runs waits for its answer.
	f.mu.Lock()
	f.hold = make(chan struct{})
	hold := f.hold
	f.mu.Unlock()
	firstC, retryC := make(chan error, 1), make(chan error, 1)
	var firstR, retryR wire.Message
	go func() { var err error; firstR, err = a.call(add(78, 5)); firstC <- err }()
	defer func() {
		f.mu.Lock()
		if f.hold != nil {
			close(f.hold) // a failed test must not leave the handler waiting
			f.hold = nil
		}
		f.mu.Unlock()
	}()
	waitFor(t, 10*time.Second, "the first attempt to reach the replica", func() bool { return f.proposed() == 2 })
	go func() { var err error; retryR, err = b.call(add(78, 5)); retryC <- err }()
	time.Sleep(50 * time.Millisecond) // let the retry arrive; it must wait either way
	f.mu.Lock()
	f.hold = nil
	f.mu.Unlock()
	close(hold)
	if err := <-firstC; err != nil {
		t.Fatalf("add 5: %v", err)
	}
	if err := <-retryC; err != nil || retryR.(*wire.MemberChanged).Instance != firstR.(*wire.MemberChanged).Instance {
		t.Fatalf("retry of add 5 while it ran = %+v, %v; want %+v", retryR, err, firstR)
	}
	if n := f.proposed(); n != 2 {
		t.Fatalf("%d changes proposed; want 2", n)
	}
}
