package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// MemberSet is the cell's replicated member set: who votes, who learns,
// and the voter change under way (docs/membership.md).
type MemberSet struct {
	// Alpha is α: a voter change chosen at instance s takes effect at s+α.
	Alpha uint64
	// Epoch counts the changes applied so far (IfEpoch compares with it).
	Epoch uint64
	// Applied is the instance the set is as of on the replica that
	// answered; Leader the leader's id if it knew one (0 otherwise).
	Applied, Leader uint64
	Members         []SetMember // by id
	// Retired are the ids removed from the cell; never valid again.
	Retired []uint64
	// Pending is a voter change chosen and not yet in effect, or nil.
	Pending *PendingChange
}

// SetMember is one member of a MemberSet.
type SetMember struct {
	ID   uint64
	Role MemberRole
	// Joined: the member has started and bound itself to the cell (a
	// learner must have joined before it can be promoted); true for
	// voters.
	Joined bool
	Addrs  MemberAddrs
}

// MemberAddrs are the addresses of a member: peers (Paxos), clients, and
// the optional admin HTTP.
type MemberAddrs struct {
	Peer, Client, HTTP string
}

// PendingChange is a voter change chosen at At that takes effect at
// Effective (At+Alpha), with the voters Voters from then on.
type PendingChange struct {
	At, Effective uint64
	Voters        []uint64
}

// MemberRole is a member's role in a MemberSet.
type MemberRole string

// The roles.
const (
	RoleVoter     MemberRole = "voter"    // votes
	RoleLearner   MemberRole = "learner"  // receives the log, never counted
	RolePromoting MemberRole = "pending+" // a learner whose promotion is chosen, not yet in effect
	RoleRemoving  MemberRole = "pending-" // a voter whose removal is chosen, not yet in effect
)

// Member returns the member id of s, if it is one.
func (s MemberSet) Member(id uint64) (SetMember, bool) {
	for _, m := range s.Members {
		if m.ID == id {
			return m, true
		}
	}
	return SetMember{}, false
}

// MemberChange is the outcome of a member change: the set right after it,
// the instance where it was chosen, and the instance where it takes effect
// (the same for a learner or an address; α later for a voter change).
// Instance and Effective are 0 when a call found the change made after
// its answer was lost, and the set does not say where (a learner or an
// address change, or a voter change already in effect).
type MemberChange struct {
	Members   MemberSet
	Instance  uint64
	Effective uint64
}

func memberSetFromWire(w *wire.MemberSet) MemberSet {
	s := MemberSet{Alpha: w.Alpha, Epoch: w.Epoch, Applied: w.Applied, Leader: w.Leader, Retired: w.Retired}
	for _, m := range w.Members {
		s.Members = append(s.Members, SetMember{ID: m.ID, Role: MemberRole(w.Role(m.ID)), Joined: m.Bound,
			Addrs: MemberAddrs{Peer: m.Peer, Client: m.Client, HTTP: m.HTTP}})
	}
	if p := w.Pending; p != nil {
		s.Pending = &PendingChange{At: p.At, Effective: p.At + w.Alpha, Voters: p.Voters}
	}
	return s
}

// MemberSet returns the cell's member set as the leader has applied it
// (after a read barrier: every change acknowledged before the call is in
// it). Options: Stale (any replica answers with its own set, which may
// lag). No session is needed.
func (c *Client) MemberSet(ctx context.Context, opts ...Option) (MemberSet, error) {
	o, err := parseOptions("MemberSet", optStale, opts)
	if err != nil {
		return MemberSet{}, err
	}
	m, err := c.do(ctx, "MemberSet", &wire.MemberList{Header: wire.Header{Request: c.rid.Add(1)}, Stale: o.stale}, callOpts{})
	if err != nil {
		return MemberSet{}, err
	}
	r, ok := m.(*wire.MemberSet)
	if !ok {
		return MemberSet{}, fmt.Errorf("MemberSet: %w: answered with %s", ErrProtocol, m.Type())
	}
	return memberSetFromWire(r), nil
}

// MemberSetOf asks the replica at addr alone for the member set, as
// StatusOf asks for its status (a connection of its own, no retries, tc as
// Config.TLS). Without stale only the leader answers (a follower:
// ErrUnavailable, naming the leader in the message).
func MemberSetOf(ctx context.Context, addr string, tc *tls.Config, stale bool) (MemberSet, error) {
	m, err := callOne(ctx, "MemberSetOf", addr, tc, &wire.MemberList{Header: wire.Header{Request: uint64(time.Now().UnixNano()) | 1}, Stale: stale})
	if err != nil {
		return MemberSet{}, err
	}
	r, ok := m.(*wire.MemberSet)
	if !ok {
		return MemberSet{}, fmt.Errorf("MemberSetOf: %w: answered with %s", ErrProtocol, m.Type())
	}
	return memberSetFromWire(r), nil
}

// AddMember adds id to the cell as a learner reached at addrs (Peer and
// Client required, HTTP optional): it receives the log but does not vote.
// Start its replica with an empty data dir and Join (latchd --join), then
// PromoteMember it. Options: IfEpoch. Errors: ErrExists (id is a member),
// ErrBadRequest (a retired id, a bad address or one another member uses),
// ErrPermission (the cell has superusers and this client is none).
//
// A change is retried like any call when an answer is lost; the leader
// answers a retry with the change's own answer, and if the retry reached
// another leader, which refuses it, the call looks whether the member set
// shows the change made and then returns success (with Instance 0 if the
// instance is not known).
func (c *Client) AddMember(ctx context.Context, id uint64, addrs MemberAddrs, opts ...Option) (MemberChange, error) {
	return c.changeMember(ctx, "AddMember", &wire.MemberChange{Op: wire.MemberAdd, ID: id,
		Peer: addrs.Peer, Client: addrs.Client, HTTP: addrs.HTTP}, opts)
}

// PromoteMember makes the learner id a voter, α instances after the change
// is chosen (MemberChange.Effective). Options: IfEpoch. Errors:
// ErrNotCaughtUp (it has not joined, or lags: retry), ErrChangePending
// (another voter change is pending: retry once it took effect),
// ErrUnknownMember.
func (c *Client) PromoteMember(ctx context.Context, id uint64, opts ...Option) (MemberChange, error) {
	return c.changeMember(ctx, "PromoteMember", &wire.MemberChange{Op: wire.MemberPromote, ID: id}, opts)
}

// RemoveMember removes id from the cell: a learner at once, a voter α
// instances after the change is chosen (a leader that removes itself hands
// over; the removed replica's latchd exits). The id is never valid again.
// Options: IfEpoch. Errors: ErrUnknownMember, ErrChangePending,
// ErrBadRequest (the last voter).
func (c *Client) RemoveMember(ctx context.Context, id uint64, opts ...Option) (MemberChange, error) {
	return c.changeMember(ctx, "RemoveMember", &wire.MemberChange{Op: wire.MemberRemove, ID: id}, opts)
}

// UpdateMember replaces the addresses of member id, at once. Options:
// IfEpoch. Errors: ErrUnknownMember, ErrBadRequest.
func (c *Client) UpdateMember(ctx context.Context, id uint64, addrs MemberAddrs, opts ...Option) (MemberChange, error) {
	return c.changeMember(ctx, "UpdateMember", &wire.MemberChange{Op: wire.MemberUpdate, ID: id,
		Peer: addrs.Peer, Client: addrs.Client, HTTP: addrs.HTTP}, opts)
}

func (c *Client) changeMember(ctx context.Context, op string, req *wire.MemberChange, opts []Option) (MemberChange, error) {
	o, err := parseOptions(op, optEpoch, opts)
	if err != nil {
		return MemberChange{}, err
	}
	if req.ID == 0 {
		return MemberChange{}, fmt.Errorf("%s: %w: member id 0: ids are positive integers", op, ErrInvalid)
	}
	// A random request id: the leader answers a retry of this change
	// (the same id) with the change's own answer, and ids of different
	// clients must not meet.
	req.Header = wire.Header{Request: rand.Uint64() | 1}
	req.Epoch = o.epoch
	sent := 0
	m, err := c.do(ctx, op, req, callOpts{sent: &sent})
	if err != nil && sent > 1 {
		// An attempt whose answer was lost may have made the change, and
		// a leader that did not see it refuses the retry (an add: the id
		// is a member). Look whether the change is made.
		if res, ok := c.changeMade(ctx, req); ok {
			return res, nil
		}
	}
	if errors.Is(err, ErrNotFound) {
		return MemberChange{}, alsoErr{err, ErrUnknownMember}
	}
	if err != nil {
		return MemberChange{}, err
	}
	r, ok := m.(*wire.MemberChanged)
	if !ok {
		return MemberChange{}, fmt.Errorf("%s: %w: answered with %s", op, ErrProtocol, m.Type())
	}
	return MemberChange{Members: memberSetFromWire(&r.Members), Instance: r.Instance, Effective: r.Effective}, nil
}

// changeMade reports whether the member set shows req made, and the
// MemberChange to return then: for a voter change still pending its
// instances, else Instance and Effective 0 (not known).
func (c *Client) changeMade(ctx context.Context, req *wire.MemberChange) (MemberChange, bool) {
	s, err := c.MemberSet(ctx)
	if err != nil {
		return MemberChange{}, false
	}
	m, isMember := s.Member(req.ID)
	addrs := MemberAddrs{Peer: req.Peer, Client: req.Client, HTTP: req.HTTP}
	var made bool
	switch req.Op {
	case wire.MemberAdd, wire.MemberUpdate:
		made = isMember && m.Addrs == addrs
	case wire.MemberPromote:
		made = isMember && (m.Role == RoleVoter || m.Role == RolePromoting)
	case wire.MemberRemove:
		made = slices.Contains(s.Retired, req.ID) || isMember && m.Role == RoleRemoving
	}
	if !made {
		return MemberChange{}, false
	}
	res := MemberChange{Members: s}
	voterChange := req.Op == wire.MemberPromote || req.Op == wire.MemberRemove
	if p := s.Pending; p != nil && voterChange && (m.Role == RolePromoting || m.Role == RoleRemoving) {
		res.Instance, res.Effective = p.At, p.Effective
	}
	return res, true
}

// alsoErr is err, matching the sentinel also too (errors.Is), with err's
// message.
type alsoErr struct{ err, also error }

func (e alsoErr) Error() string   { return e.err.Error() }
func (e alsoErr) Unwrap() []error { return []error{e.err, e.also} }
