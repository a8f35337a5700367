package lockserver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
	"github.com/latchd/latch/replica/paxos"
)

// memberSet is what the member handlers need of the replica: its
// replicated member set and the leader's way to change it
// (replica.Replica; a fake in tests).
type memberSet interface {
	// ChangeMembers proposes c on the leader and waits until it is chosen
	// and applied: the set after it and the instance where it was chosen.
	ChangeMembers(ctx context.Context, group uint32, c paxos.MemberChange) (paxos.Members, uint64, error)
	// Members is the set as this replica has applied it.
	Members(group uint32) (paxos.Members, error)
}

// ErrRemoved is returned by Run when this replica was removed from the
// cell (a member change retired it): it stopped, and its data dir is of
// no further use.
var ErrRemoved = errors.New("lockserver: this replica was removed from the cell")

// Removed is closed once this replica is retired from the cell
// (replica.Replica.Removed).
func (s *Server) Removed() <-chan struct{} { return s.rep.Removed() }

// encodeAddrs is a member's paxos.Member.Meta (replica.MemberAddrs).
func encodeAddrs(m Member) []byte {
	return replica.MemberAddrs{Peer: m.Peer, Client: m.Client, HTTP: m.HTTP}.Encode()
}

// decodeAddrs reads a member's paxos.Member.Meta.
func decodeAddrs(b []byte) (Member, error) {
	a, err := replica.DecodeMemberAddrs(b)
	return Member{Peer: a.Peer, Client: a.Client, HTTP: a.HTTP}, err
}

var _ memberSet = (*replica.Replica)(nil)

// addrsOf returns the addresses of member x: those its Meta carries
// (members added by a change), else the configuration's (the founding
// members carry none in the set).
func (s *Server) addrsOf(x paxos.Member) Member {
	if len(x.Meta) > 0 {
		if a, err := decodeAddrs(x.Meta); err == nil {
			return a
		}
	}
	return s.cfg.Members[x.ID]
}

// memberAddrs returns the addresses of member id, from the replicated set
// if it has the member, else from the configuration.
func (s *Server) memberAddrs(id uint64) (Member, bool) {
	if ms, err := s.members.Members(group); err == nil {
		if x, ok := ms.Member(id); ok {
			return s.addrsOf(x), true
		}
	}
	m, ok := s.cfg.Members[id]
	return m, ok
}

// memberSetOf is ms on the wire, with every member's addresses.
func (s *Server) memberSetOf(ms paxos.Members) wire.MemberSet {
	out := wire.MemberSet{Alpha: ms.Alpha, Epoch: ms.Epoch, Retired: slices.Clone(ms.Retired)}
	if id, _, ok := s.rep.Leader(group); ok {
		out.Leader = id
	}
	for _, x := range ms.Members {
		e := wire.MemberEntry{ID: x.ID, Voter: x.Voter, Bound: x.Voter || x.Nonce != 0}
		a := s.addrsOf(x)
		e.Peer, e.Client, e.HTTP = a.Peer, a.Client, a.HTTP
		if x.ID == s.cfg.ID {
			e.Client = s.ClientAddr()
		}
		out.Members = append(out.Members, e)
	}
	if p := ms.Pending; p != nil {
		out.Pending = &wire.MemberPending{At: p.At, Voters: slices.Clone(p.Voters)}
	}
	return out
}

// memberList answers MemberList: the leader's applied set after a read
// barrier (so a change acknowledged by any earlier leader is in it), or
// with Stale this replica's own.
func (s *Server) memberList(ctx context.Context, m *wire.MemberList) wire.Message {
	if werr := s.readable(ctx, m.Stale); werr != nil {
		return werr
	}
	ms, err := s.members.Members(group)
	if err != nil {
		return s.memberError(ctx, err)
	}
	out := s.memberSetOf(ms)
	if st, err := s.rep.Status(ctx, group); err == nil {
		out.Applied = st.Applied
	}
	return &out
}

// checkMemberChange checks the request alone, before anything is asked of
// the replica.
func (s *Server) checkMemberChange(c namespace.Caller, m *wire.MemberChange) *wire.Error {
	if len(s.cfg.Superusers) > 0 && !c.Superuser {
		who := c.Principal
		if who == "" {
			who = "an anonymous client"
		}
		return wire.Errorf(wire.Permission, "member changes need a superuser of the cell (config: superusers); %s is not one", who)
	}
	if !m.Op.Valid() {
		return wire.Errorf(wire.BadRequest, "unknown member op %d", uint8(m.Op))
	}
	if m.ID == 0 {
		return wire.Errorf(wire.BadRequest, "member id 0: ids are positive integers")
	}
	addrs := m.Op == wire.MemberAdd || m.Op == wire.MemberUpdate
	if !addrs {
		if m.Peer != "" || m.Client != "" || m.HTTP != "" {
			return wire.Errorf(wire.BadRequest, "member %s takes no addresses", m.Op)
		}
		return nil
	}
	for _, a := range []struct {
		name, addr string
		optional   bool
	}{{"peer", m.Peer, false}, {"client", m.Client, false}, {"http", m.HTTP, true}} {
		if a.addr == "" {
			if a.optional {
				continue
			}
			return wire.Errorf(wire.BadRequest, "member %s needs a %s address", m.Op, a.name)
		}
		if _, err := wire.CheckAddr(a.addr); err != nil {
			return wire.Errorf(wire.BadRequest, "bad %s address %q: %v", a.name, a.addr, err)
		}
	}
	return nil
}

// planMemberChange turns m into the core's change against the current set
// cur, or says why the cell would refuse it, with the code the client
// maps to its sentinel. The core checks again when the change is applied
// (paxos.Members.Apply): this is for clear errors, not for safety.
func (s *Server) planMemberChange(cur paxos.Members, m *wire.MemberChange) (paxos.MemberChange, *wire.Error) {
	pc := paxos.MemberChange{ID: m.ID, Epoch: m.Epoch}
	x, isMember := cur.Member(m.ID)
	if m.Epoch != 0 && m.Epoch != cur.Epoch {
		return pc, wire.Errorf(wire.GenerationMismatch, "the member set is at epoch %d, not %d", cur.Epoch, m.Epoch)
	}
	if !isMember && m.Op != wire.MemberAdd {
		if cur.IsRetired(m.ID) {
			return pc, wire.Errorf(wire.NotFound, "member %d was removed from the cell", m.ID)
		}
		return pc, wire.Errorf(wire.NotFound, "%d is not a member of the cell", m.ID)
	}
	pending := cur.Pending != nil
	switch m.Op {
	case wire.MemberAdd:
		switch {
		case isMember:
			return pc, wire.Errorf(wire.Exists, "%d is already a member of the cell", m.ID)
		case cur.IsRetired(m.ID):
			return pc, wire.Errorf(wire.BadRequest, "id %d was removed from the cell and is never valid again: give the new member a new id", m.ID)
		case len(cur.Members) >= paxos.MaxPeers:
			return pc, wire.Errorf(wire.Limit, "the cell has %d members, the most it can have", len(cur.Members))
		}
		pc.Op = paxos.OpAddLearner
	case wire.MemberUpdate:
		pc.Op = paxos.OpSetMeta
	case wire.MemberPromote:
		switch {
		case x.Voter:
			return pc, wire.Errorf(wire.BadRequest, "member %d is a voter already", m.ID)
		case pending:
			return pc, wire.Errorf(wire.ChangePending, "a voter change chosen at instance %d is still pending; retry once it took effect", cur.Pending.At)
		case x.Nonce == 0:
			return pc, wire.Errorf(wire.NotCaughtUp, "learner %d has not joined yet: start it with --join and an empty data dir", m.ID)
		}
		pc.Op = paxos.OpPromote
	case wire.MemberRemove:
		pc.Op = paxos.OpRemoveLearner
		inPending := pending && slices.Contains(cur.Pending.Voters, m.ID)
		if x.Voter || inPending {
			switch {
			case pending:
				return pc, wire.Errorf(wire.ChangePending, "a voter change chosen at instance %d is still pending; retry once it took effect", cur.Pending.At)
			case len(cur.Voters()) < 2:
				return pc, wire.Errorf(wire.BadRequest, "member %d is the last voter", m.ID)
			}
			pc.Op = paxos.OpRemoveVoter
		}
	}
	if pc.Op == paxos.OpAddLearner || pc.Op == paxos.OpSetMeta {
		a := Member{Peer: m.Peer, Client: m.Client, HTTP: m.HTTP}
		if werr := s.checkAddrsFree(cur, m.ID, a); werr != nil {
			return pc, werr
		}
		pc.Meta = encodeAddrs(a)
	}
	return pc, nil
}

// checkAddrsFree refuses addresses another member uses: two members on one
// address would take each other's traffic.
func (s *Server) checkAddrsFree(cur paxos.Members, id uint64, a Member) *wire.Error {
	for _, x := range cur.Members {
		if x.ID == id {
			continue
		}
		o, _ := s.memberAddrs(x.ID)
		for _, mine := range []string{a.Peer, a.Client, a.HTTP} {
			if mine == "" {
				continue
			}
			n, _ := wire.CheckAddr(mine)
			for _, theirs := range []string{o.Peer, o.Client, o.HTTP} {
				if t, err := wire.CheckAddr(theirs); err == nil && t == n {
					return wire.Errorf(wire.BadRequest, "address %s is member %d's", mine, x.ID)
				}
			}
		}
	}
	return nil
}

// changeLog remembers the member changes this replica answered as leader,
// by request id, so that a client's retry of a change (same request id:
// its first attempt timed out or its connection broke) gets the answer of
// the change it made rather than the error a second proposal would meet
// (the change is not a namespace command, with no stored outcome). A
// retry that arrives while the first attempt still runs waits for it. It
// lives in memory, so a retry that reaches another leader is not
// recognised; the client then checks the set itself (client.changeMember).
type changeLog struct {
	mu      sync.Mutex
	entries map[uint64]*changeEntry
	order   []uint64 // request ids, oldest first, at most maxChangeLog
}

type changeEntry struct {
	req   wire.MemberChange // the first attempt's request, header aside
	done  chan struct{}     // closed once reply is set
	reply wire.Message
}

// maxChangeLog bounds the changes a changeLog remembers.
const maxChangeLog = 1024

// begin returns the entry of request m: a new one that the caller must
// finish, or (first false) the one of an earlier attempt with the same
// request id. A request id reused for another change is refused.
func (l *changeLog) begin(m *wire.MemberChange) (e *changeEntry, first bool, werr *wire.Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	req := *m
	req.Header = wire.Header{}
	if e := l.entries[m.Request]; e != nil {
		if e.req != req {
			return nil, false, wire.Errorf(wire.BadRequest, "request id %d was used for another member change", m.Request)
		}
		return e, false, nil
	}
	if l.entries == nil {
		l.entries = make(map[uint64]*changeEntry)
	}
	e = &changeEntry{req: req, done: make(chan struct{})}
	l.entries[m.Request] = e
	l.order = append(l.order, m.Request)
	if len(l.order) > maxChangeLog {
		delete(l.entries, l.order[0])
		l.order = l.order[1:]
	}
	return e, true, nil
}

// finish records the first attempt's reply. An error that says nothing of
// the change's fate (the leader lost, a timeout) is forgotten instead, so
// that a retry asks again.
func (l *changeLog) finish(id uint64, e *changeEntry, reply wire.Message) {
	e.reply = reply
	close(e.done)
	if we, ok := reply.(*wire.Error); ok && (we.Code.Retryable() || we.Code == wire.Canceled) {
		l.mu.Lock()
		if l.entries[id] == e {
			delete(l.entries, id)
		}
		l.mu.Unlock()
	}
}

// memberChange answers MemberChange: leader only (NotLeader elsewhere,
// which the client follows); the change is checked against the current
// set, proposed, and answered once chosen and applied on this replica. A
// retry of a change this leader answered gets the same answer (changeLog).
func (s *Server) memberChange(ctx context.Context, c namespace.Caller, m *wire.MemberChange) wire.Message {
	if werr := s.checkMemberChange(c, m); werr != nil {
		return werr
	}
	if _, werr := s.leaderTerm(ctx); werr != nil {
		return werr
	}
	if m.Request == 0 {
		return s.changeMembers(ctx, m)
	}
	e, first, werr := s.changes.begin(m)
	if werr != nil {
		return werr
	}
	if !first {
		select {
		case <-e.done:
			return e.reply
		case <-ctx.Done():
			return s.closing()
		}
	}
	reply := s.changeMembers(ctx, m)
	s.changes.finish(m.Request, e, reply)
	return reply
}

// changeMembers plans m against the current set, proposes it and waits
// for it to be applied.
func (s *Server) changeMembers(ctx context.Context, m *wire.MemberChange) wire.Message {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	for {
		cur, err := s.members.Members(group)
		if err != nil {
			return s.memberError(ctx, err)
		}
		pc, werr := s.planMemberChange(cur, m)
		if werr != nil {
			return werr
		}
		ms, at, err := s.members.ChangeMembers(ctx, group, pc)
		if errors.Is(err, paxos.ErrPhase1Pending) {
			// The leader's promisers do not cover the change's voter sets
			// yet (R6); a heartbeat round brings their acknowledgements.
			select {
			case <-ctx.Done():
				return s.unavailable("the leader could not confirm the voters' promises in time; retry")
			case <-time.After(2 * s.cfg.Replica.HeartbeatInterval):
			}
			continue
		}
		if err != nil {
			return s.memberError(ctx, err)
		}
		s.log.Info("member change applied", "op", m.Op.String(), "member", m.ID, "instance", at, "epoch", ms.Epoch)
		eff := at
		if pc.Op.VoterChange() {
			eff = at + ms.Alpha
		}
		return &wire.MemberChanged{Members: s.memberSetOf(ms), Instance: at, Effective: eff}
	}
}

// memberError maps an error of ChangeMembers or Members to the wire.
func (s *Server) memberError(ctx context.Context, err error) *wire.Error {
	switch {
	case errors.Is(err, paxos.ErrChangePending):
		return wire.Errorf(wire.ChangePending, "%v", err)
	case errors.Is(err, paxos.ErrNotCaughtUp):
		return wire.Errorf(wire.NotCaughtUp, "%v", err)
	case errors.Is(err, paxos.ErrInvalidChange):
		return wire.Errorf(wire.BadRequest, "%v", err)
	case errors.Is(err, replica.ErrNoMembers):
		return s.unavailable("this replica is joining the cell and does not know its members yet; ask another")
	case errors.Is(err, replica.ErrLeadershipLost), errors.Is(err, context.DeadlineExceeded):
		return s.unavailable("the member change may or may not have been made (%v): the client checks the set before it retries", err)
	}
	if _, ok := errors.AsType[*replica.NotLeaderError](err); ok {
		return s.notLeader()
	}
	return s.replicaError(ctx, err)
}
