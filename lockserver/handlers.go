package lockserver

import (
	"context"
	"errors"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/session"
)

// dispatch answers one request. Every request is validated here, before
// anything is proposed; the reply is the request's reply type or a
// *wire.Error. (wire.Serve refuses every call before a successful Hello.)
func (s *Server) dispatch(ctx context.Context, c namespace.Caller, msg wire.Message) wire.Message {
	switch m := msg.(type) {
	case *wire.Hello:
		return s.hello(m)
	case *wire.OpenSession:
		return s.openSession(ctx, c, m)
	case *wire.CloseSession:
		return s.closeSession(ctx, c, m)
	case *wire.KeepAlive:
		return s.keepAlive(ctx, c, m)
	case *wire.Get, *wire.StatPath, *wire.List, *wire.Walk, *wire.GetACL,
		*wire.CheckSequencer, *wire.ListLocks, *wire.ListSessions:
		return s.read(ctx, c, m.(wire.Request))
	case *wire.Put:
		return s.put(ctx, c, m)
	case *wire.Delete:
		return s.delete(ctx, c, m)
	case *wire.SetACL:
		return s.setACL(ctx, c, m)
	case *wire.Acquire:
		return s.acquire(ctx, c, m)
	case *wire.Release:
		return s.release(ctx, c, m)
	case *wire.Cancel:
		return s.cancelRequest(ctx, c, m)
	case *wire.Watch:
		return s.watch(ctx, c, m)
	case *wire.Unwatch:
		return s.unwatch(ctx, c, m)
	case *wire.Txn:
		return s.txn(ctx, c, m)
	case *wire.Status:
		return s.statusReply()
	case *wire.MemberList:
		return s.memberList(ctx, m)
	case *wire.MemberChange:
		return s.memberChange(ctx, c, m)
	}
	return wire.Errorf(wire.BadRequest, "%v is not a request", msg.Type())
}

// hello fills in the Welcome; wire.Serve has checked the versions and sets
// the one chosen.
func (s *Server) hello(h *wire.Hello) wire.Message {
	leader, _ := s.leaderAddr()
	return &wire.Welcome{
		Version:  min(h.MaxVersion, wire.Version),
		ServerID: strconv.FormatUint(s.cfg.ID, 10),
		Leader:   leader,
		IsLeader: s.IsLeader(),
		Limits:   s.cfg.limits(),
	}
}

// closing is the answer to a call cut short because its connection is
// closing: Unavailable (retry elsewhere) when the server shuts down, else
// Canceled (the client went away and will not read it anyway).
func (s *Server) closing() *wire.Error {
	if s.ctx.Err() != nil {
		return wire.Errorf(wire.Unavailable, "server shutting down; retry at another replica")
	}
	return wire.Errorf(wire.Canceled, "connection closing")
}

// Validation helpers. Each returns nil or the error to answer with.

func (s *Server) checkPath(p string) *wire.Error {
	if err := s.cfg.Namespace.ValidatePath(p); err != nil {
		return nsError(err)
	}
	return nil
}

func (s *Server) checkContent(b []byte) *wire.Error {
	if len(b) > s.cfg.Namespace.MaxContent {
		return wire.Errorf(wire.TooLarge, "content of %d bytes; the limit is %d", len(b), s.cfg.Namespace.MaxContent)
	}
	return nil
}

// checkSession checks that sid is a live session opened by c's principal
// (so a session cannot be used from a connection that authenticated as
// someone else). With optional, 0 (no session) is allowed too. A "no" from
// the local state is trusted only after a read barrier on the leader: the
// state may lag an OpenSession (on a follower, or on a new leader that has
// not applied its whole log yet).
func (s *Server) checkSession(ctx context.Context, c namespace.Caller, sid uint64, optional bool) *wire.Error {
	if sid == 0 {
		if optional {
			return nil
		}
		return wire.Errorf(wire.BadRequest, "the call needs a session")
	}
	var principal string
	lookup := func() error {
		var err error
		s.fsm.read(func(t *namespace.Tree) { principal, err = t.SessionPrincipal(sid) })
		return err
	}
	err := lookup()
	if err != nil {
		if werr := s.readable(ctx, false); werr != nil {
			return werr
		}
		if err = lookup(); err != nil {
			return nsError(err)
		}
	}
	return checkOwner(c, sid, principal)
}

// checkOwner refuses the use of session sid, opened by principal, from a
// connection authenticated as another.
func checkOwner(c namespace.Caller, sid uint64, principal string) *wire.Error {
	if principal != c.Principal {
		return wire.Errorf(wire.Permission, "session %d belongs to another principal", sid)
	}
	return nil
}

// checkClientName checks the name an OpenSession gives its client, as the
// namespace will: at most MaxClientNameLen bytes of valid UTF-8.
func (s *Server) checkClientName(name string) *wire.Error {
	switch limit := s.cfg.Namespace.MaxClientNameLen; {
	case len(name) > limit:
		return wire.Errorf(wire.BadRequest, "client name of %d bytes; the limit is %d", len(name), limit)
	case !utf8.ValidString(name):
		return wire.Errorf(wire.BadRequest, "client name %q is not valid UTF-8", name)
	}
	return nil
}

func firstErr(errs ...*wire.Error) *wire.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// write proposes cmd on behalf of a request by c and maps a failed
// outcome. A write without a session from a client that is not a superuser
// is marked restricted, so the namespace checks it as c's principal
// (namespace.FlagRestricted).
func (s *Server) write(ctx context.Context, c namespace.Caller, k kind, cmd *namespace.Command, h *wire.Header) (outcome, *wire.Error) {
	cmd.Session, cmd.Request = h.Session, h.Request
	if h.Session == 0 && !c.Superuser {
		cmd.Flags |= namespace.FlagRestricted
		cmd.Principal = c.Principal
	}
	o, err := s.propose(ctx, k, cmd)
	if err != nil {
		return o, err
	}
	return o, nsError(o.res.Err)
}

// Sessions.

func (s *Server) openSession(ctx context.Context, c namespace.Caller, m *wire.OpenSession) wire.Message {
	if m.Session != 0 {
		return wire.Errorf(wire.BadRequest, "OpenSession from session %d", m.Session)
	}
	to := m.Timeout
	switch {
	case to < 0:
		return wire.Errorf(wire.BadRequest, "negative session timeout %v", to)
	case to == 0:
		to = s.cfg.Session.Lease
	}
	if err := s.checkClientName(m.Client); err != nil {
		return err
	}
	to = min(max(to, s.cfg.MinSessionTimeout), s.cfg.MaxSessionTimeout)
	if t := s.term.Load(); t != nil && t.mgr.Len() >= s.cfg.Session.MaxSessions {
		return wire.Errorf(wire.Limit, "the cell serves %d sessions, its limit", t.mgr.Len())
	}
	cmd := namespace.NewOpenSession(to)
	cmd.Client, cmd.Principal = m.Client, c.Principal
	if c.Superuser {
		cmd.Flags = namespace.FlagSuperuser
	} else {
		cmd.Flags = namespace.FlagRestricted
	}
	// The request id is the client's random nonce: a retry with it gets the
	// session the first attempt opened (see openTable).
	cmd.Request = m.Request
	o, err := s.propose(ctx, kindNamespace, &cmd)
	if err == nil {
		err = nsError(o.res.Err)
	}
	if err != nil {
		return err
	}
	return &wire.SessionOpened{Session: o.res.Session, Timeout: to, Principal: c.Principal, Superuser: c.Superuser}
}

// closeSession ends the caller's session. It is idempotent: closing a
// session that is already closed or expired (a retry whose first reply was
// lost, say) succeeds; only an id that was never issued is refused.
func (s *Server) closeSession(ctx context.Context, c namespace.Caller, m *wire.CloseSession) wire.Message {
	if err := s.checkSession(ctx, c, m.Session, false); err != nil {
		if s.sessionEnded(m.Session) {
			return &wire.Ack{}
		}
		return err
	}
	cmd := namespace.NewCloseSession()
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		if namespace.CodeOf(o.res.Err) == namespace.CodeSessionExpired {
			return &wire.Ack{Index: o.index}
		}
		return err
	}
	return &wire.Ack{Index: o.index}
}

// sessionEnded reports whether sid was issued and has ended (closed or
// expired), as opposed to never issued.
func (s *Server) sessionEnded(sid uint64) bool {
	var err error
	s.fsm.read(func(t *namespace.Tree) { _, err = t.Session(sid) })
	return namespace.CodeOf(err) == namespace.CodeSessionExpired
}

// keepAlive is the long poll: held by the leader's session manager until
// events are ready or the hold ends. Before it answers, the server confirms
// it still leads (a read barrier under its Paxos lease), so a lease it
// promises cannot outlive its leadership.
//
// The session manager holds the call up to lease − margin, as in Chubby;
// its Tick ends the holds that are due, so the replies of many sessions
// leave together rather than each on a timer of its own (an idle cell
// wakes once per tick, not once per session). The reply says how long the
// call was held (Held, on this server's monotonic clock, from its arrival
// to the moment TTL is counted from), so the client can count TTL from its send
// plus Held instead of from its send alone: without Held, two holds and a
// margin would have to fit in one lease, and an idle session would cost
// twice the KeepAlives.
func (s *Server) keepAlive(ctx context.Context, c namespace.Caller, m *wire.KeepAlive) wire.Message {
	if m.Session == 0 {
		return wire.Errorf(wire.BadRequest, "KeepAlive needs a session")
	}
	// Only the session's own principal keeps it alive and takes its
	// events, checked before the manager is asked: a session this replica
	// does not know yet is looked up again after a barrier (checkSession),
	// never handed to the manager unchecked, since the next id, easily
	// guessed, may be opened by another principal in the meantime.
	if err := s.checkSession(ctx, c, m.Session, false); err != nil {
		return err
	}
	arrived := s.steady.Now()
	t, werr := s.leaderTerm(ctx)
	if werr != nil {
		return werr
	}
	ack, ok := t.ackFor(m.Acked)
	if !ok {
		return wire.Errorf(wire.Unavailable, "the client has heard from a newer leader than this one; retry")
	}
	rep, err := t.mgr.KeepAlive(ctx, m.Session, ack)
	if errors.Is(err, session.ErrUnknown) {
		// The term may have started before this replica applied the
		// session's opening: look again once the state is fresh.
		if werr := s.readable(ctx, false); werr != nil {
			return werr
		}
		rep, err = t.mgr.KeepAlive(ctx, m.Session, ack)
	}
	if err != nil {
		if ctx.Err() != nil {
			return s.closing()
		}
		return sessionError(err)
	}
	// The reply promises a lease: this replica must still lead under its
	// master lease.
	if _, err := s.barrier.wait(ctx); err != nil {
		return s.replicaError(ctx, err)
	}
	if s.term.Load() != t {
		return s.notLeader()
	}
	// Count TTL from now, after the barrier: the lease promised never
	// reaches past the manager's expiry, and Held never past the moment TTL
	// is counted from.
	now := s.steady.Now()
	out := &wire.KeepAliveReply{TTL: rep.Expiry.Sub(now), Held: now.Sub(arrived)}
	if out.TTL <= 0 {
		return sessionError(session.ErrExpired)
	}
	if len(rep.Items) > 0 {
		out.Events = make([]wire.Event, len(rep.Items))
		for i, it := range rep.Items {
			ev := &out.Events[i]
			switch it.Kind {
			case session.KindEvent:
				*ev = it.Event
			case session.KindFailover:
				ev.Type = wire.Failover
			default:
				ev.Type = wire.EventsLost
			}
			ev.Seq = t.wireSeq(it.Seq)
		}
	}
	return out
}

// Reads.

// readable makes a read linearizable unless it asks for a stale one: only
// the leader answers, after a read barrier.
func (s *Server) readable(ctx context.Context, stale bool) *wire.Error {
	if stale {
		return nil
	}
	if id, _, ok := s.rep.Leader(group); !ok || id != s.cfg.ID {
		return s.notLeader()
	}
	leased, err := s.barrier.wait(ctx)
	if err != nil {
		return s.replicaError(ctx, err)
	}
	if leased {
		s.metrics.LeaseReads.Add(1)
	}
	s.metrics.ReadBarriers.Add(1)
	return nil
}

func (s *Server) page(limit uint32) int {
	if limit == 0 || int(limit) > s.cfg.MaxPage {
		return s.cfg.MaxPage
	}
	return int(limit)
}

func (s *Server) read(ctx context.Context, c namespace.Caller, req wire.Request) wire.Message {
	path, stale, err := readArgs(req)
	if err != nil {
		return err
	}
	if err := s.checkPath(path); err != nil {
		return err
	}
	if err := s.readable(ctx, stale); err != nil {
		return err
	}
	return s.readNow(c, req)
}

// readNow answers a read by c from the tree as it stands.
func (s *Server) readNow(c namespace.Caller, req wire.Request) wire.Message {
	var out wire.Message
	s.fsm.read(func(t *namespace.Tree) { out = s.readTree(t, c, req) })
	return out
}

// readArgs returns the path a read request names and whether it allows a
// stale answer.
func readArgs(req wire.Request) (path string, stale bool, err *wire.Error) {
	switch m := req.(type) {
	case *wire.Get:
		return m.Path, m.Stale, nil
	case *wire.StatPath:
		return m.Path, m.Stale, nil
	case *wire.List:
		return m.Path, m.Stale, nil
	case *wire.Walk:
		return m.Path, m.Stale, nil
	case *wire.GetACL:
		return m.Path, m.Stale, nil
	case *wire.CheckSequencer:
		if !m.Sequencer.Mode.Valid() {
			return "", false, wire.Errorf(wire.BadRequest, "sequencer mode %v", m.Sequencer.Mode)
		}
		return m.Sequencer.Path, m.Stale, nil
	case *wire.ListLocks:
		return m.Path, m.Stale, nil
	case *wire.ListSessions:
		return "/", m.Stale, nil
	}
	return "", false, wire.Errorf(wire.BadRequest, "%v is not a read", req.Type())
}

// serveQuick answers a small read by c on the connection's reader
// goroutine, without handing it to a call goroutine, when it needs no
// wait: a stale read, or a linearizable one on the leader while its lease
// holds (replica.LeaseRead). Anything else, including a read that needs a
// barrier round or is malformed, it leaves to ServeWire
// (wire.QuickHandler).
func (s *Server) serveQuick(c namespace.Caller, req wire.Message) (wire.Message, bool) {
	switch m := req.(type) {
	case *wire.Get, *wire.StatPath, *wire.List, *wire.GetACL, *wire.CheckSequencer:
	case *wire.Txn:
		return s.serveQuickTxn(c, m)
	default:
		return nil, false // Walk and the listings can be long: not on the reader
	}
	r := req.(wire.Request)
	path, stale, err := readArgs(r)
	if err != nil || s.checkPath(path) != nil {
		return nil, false // ServeWire answers with the error
	}
	if !stale && !s.leaseReadable() {
		return nil, false
	}
	s.metrics.request(req.Type())
	reply := s.readNow(c, r)
	s.metrics.reply(reply)
	return reply, true
}

// serveQuickTxn is serveQuick for a Txn: a short read-only one while the
// lease holds.
func (s *Server) serveQuickTxn(c namespace.Caller, m *wire.Txn) (wire.Message, bool) {
	if len(m.Ops) == 0 || len(m.Ops) > quickTxnOps || !readOnly(m.Ops) {
		return nil, false
	}
	conds, err := s.readTxnConds(m.Ops)
	if err != nil || !s.leaseReadable() {
		return nil, false // ServeWire answers with the error, or after a barrier
	}
	s.metrics.request(m.Type())
	reply := s.readTxnNow(c, m.Ops, conds)
	s.metrics.reply(reply)
	return reply, true
}

// leaseReadable reports whether this replica leads and may answer a
// linearizable read from its state at once (replica.LeaseRead), counting
// the read if so.
func (s *Server) leaseReadable() bool {
	if id, _, ok := s.rep.Leader(group); !ok || id != s.cfg.ID || !s.rep.LeaseRead(group) {
		return false
	}
	s.metrics.LeaseReads.Add(1)
	s.metrics.ReadBarriers.Add(1)
	return true
}

// readTree answers a read by c from the tree (under the fsm's read lock).
// Every read but CheckSequencer and ListSessions needs the read right on
// the node it names; Walk and ListLocks leave out the nodes c may not read.
func (s *Server) readTree(t *namespace.Tree, c namespace.Caller, req wire.Request) wire.Message {
	switch req.(type) {
	case *wire.StatPath, *wire.GetACL, *wire.List, *wire.Walk, *wire.ListLocks:
		path, _, _ := readArgs(req)
		if err := t.Permits(path, namespace.RightRead, c); err != nil {
			return nsError(err)
		}
	}
	switch m := req.(type) {
	case *wire.Get:
		// The hot read: the node carries its ACL names, so a node without
		// a reader ACL (the usual case) costs no second lookup.
		n, err := t.Get(m.Path)
		if err == nil && n.ACL.Reader != "" {
			err = t.Permits(m.Path, namespace.RightRead, c)
		}
		if err != nil {
			return nsError(err)
		}
		return &wire.GetReply{Content: n.Content, Stat: wireStat(n.Stat)}
	case *wire.StatPath:
		st, err := t.Stat(m.Path)
		if err != nil {
			return nsError(err)
		}
		return &wire.StatReply{Stat: wireStat(st)}
	case *wire.GetACL:
		n, err := t.Get(m.Path)
		if err != nil {
			return nsError(err)
		}
		return &wire.ACLReply{ACL: wireACL(n.ACL), Stat: wireStat(n.Stat)}
	case *wire.List:
		ents, more, err := t.List(m.Path, m.After, s.page(m.Limit))
		if err != nil {
			return nsError(err)
		}
		// The names are the directory's, but each child's stat is its own:
		// a child c may not read is listed with a zero Stat (its checksum
		// and size would tell much of a short content).
		out := &wire.ListReply{Entries: make([]wire.Entry, len(ents)), More: more}
		for i, e := range ents {
			out.Entries[i].Name = e.Name
			if t.Permits(path.Join(m.Path, e.Name), namespace.RightRead, c) == nil {
				out.Entries[i].Stat = wireStat(e.Stat)
			}
		}
		return out
	case *wire.Walk:
		return s.walk(t, c, m)
	case *wire.CheckSequencer:
		return &wire.CheckReply{Valid: t.CheckSequencer(nsSequencer(m.Sequencer))}
	case *wire.ListLocks:
		return s.listLocks(t, c, m)
	case *wire.ListSessions:
		return s.listSessions(t, m)
	}
	return wire.Errorf(wire.Internal, "unhandled read %v", req.Type())
}

func (s *Server) walk(t *namespace.Tree, c namespace.Caller, m *wire.Walk) wire.Message {
	limit := s.page(m.Limit)
	out := &wire.WalkReply{}
	err := t.Walk(m.Path, func(p string, st namespace.Stat) bool {
		if m.After != "" && !walkLess(m.After, p) || t.Permits(p, namespace.RightRead, c) != nil {
			return true
		}
		if len(out.Entries) == limit {
			out.More = true
			return false
		}
		out.Entries = append(out.Entries, wire.Entry{Name: p, Stat: wireStat(st)})
		return true
	})
	if err != nil {
		return nsError(err)
	}
	return out
}

func (s *Server) listLocks(t *namespace.Tree, c namespace.Caller, m *wire.ListLocks) wire.Message {
	limit := s.page(m.Limit)
	out := &wire.LocksReply{}
	for _, l := range t.Locks() {
		if !under(l.Path, m.Path) || m.After != "" && l.Path <= m.After || t.Permits(l.Path, namespace.RightRead, c) != nil {
			continue
		}
		if len(out.Locks) == limit {
			out.More = true
			break
		}
		out.Locks = append(out.Locks, wire.LockInfo{
			Path: l.Path, Mode: wireMode(l.Mode), LockGen: l.LockGen, Instance: l.Instance,
			Holders: l.Holders, Waiters: uint32(len(l.Waiters)), DelayUntil: l.DelayUntil,
		})
	}
	return out
}

// listSessions answers ListSessions from the tree, and the watch counts from
// the leader's session manager: watches live only there, so a replica that
// does not lead (answering a stale read) reports none.
func (s *Server) listSessions(t *namespace.Tree, m *wire.ListSessions) wire.Message {
	limit := s.page(m.Limit)
	out := &wire.SessionsReply{}
	lead := s.term.Load()
	for _, si := range t.Sessions() {
		if si.ID <= m.After {
			continue
		}
		if len(out.Sessions) == limit {
			out.More = true
			break
		}
		info := wire.SessionInfo{
			ID: si.ID, Client: si.Client, Timeout: si.Timeout, Locks: uint32(len(si.Locks)),
			Ephemerals: uint32(len(si.Ephemerals)), OpenedTime: si.CreatedTime,
			Principal: si.Principal, Superuser: si.Superuser,
		}
		if lead != nil {
			info.Watches = uint32(lead.mgr.Watches(si.ID))
		}
		out.Sessions = append(out.Sessions, info)
	}
	return out
}

// Writes.

func (s *Server) put(ctx context.Context, c namespace.Caller, m *wire.Put) wire.Message {
	w := putWrite{m.Path, m.Content, m.IfGen, m.Create, m.Ephemeral, m.Parents, m.Sequential}
	how, flags, err := s.planPut(w)
	if err = firstErr(err, s.checkSession(ctx, c, m.Session, !m.Ephemeral)); err != nil {
		return err
	}
	var cmd namespace.Command
	k := kindNamespace
	switch how {
	case putCreate:
		cmd = namespace.NewCreate(m.Path, m.Content, flags)
	case putSet:
		cmd = namespace.NewSetContent(m.Path, m.Content, m.IfGen)
	default:
		cmd = namespace.NewCreate(m.Path, m.Content, flags)
		k = kindPut
	}
	o, err := s.write(ctx, c, k, &cmd, &m.Header)
	if err != nil {
		return err
	}
	p := o.res.Path
	if p == "" {
		p = m.Path
	}
	return &wire.PutReply{Path: p, Stat: wireStat(o.res.Stat)}
}

// putWrite is what a Put, or a put op of a Txn, asks for.
type putWrite struct {
	path                                   string
	content                                []byte
	ifGen                                  uint64
	create, ephemeral, parents, sequential bool
}

// putHow is the write a putWrite turns into.
type putHow uint8

const (
	putCreate putHow = iota // create; Exists if the node exists
	putSet                  // set the content at a generation
	putUpsert               // create or set, decided in log order
)

// planPut checks a put as a request and says which write it is, with the
// namespace flags of a create.
func (s *Server) planPut(w putWrite) (putHow, namespace.Flags, *wire.Error) {
	if err := firstErr(s.checkPath(w.path), s.checkContent(w.content)); err != nil {
		return 0, 0, err
	}
	switch {
	case w.ifGen != 0 && (w.create || w.sequential):
		return 0, 0, wire.Errorf(wire.BadRequest, "IfGen cannot be combined with Create or Sequential")
	case w.path == "/" && (w.create || w.sequential || w.ephemeral):
		return 0, 0, wire.Errorf(wire.Exists, "the root always exists")
	}
	var flags namespace.Flags
	if w.ephemeral {
		flags |= namespace.FlagEphemeral
	}
	if w.parents {
		flags |= namespace.FlagParents
	}
	if w.sequential {
		flags |= namespace.FlagSequential
	}
	switch {
	case w.create || w.sequential:
		return putCreate, flags, nil
	case w.ifGen != 0:
		return putSet, flags, nil
	}
	return putUpsert, flags, nil
}

func (s *Server) delete(ctx context.Context, c namespace.Caller, m *wire.Delete) wire.Message {
	if err := firstErr(s.checkPath(m.Path), s.checkSession(ctx, c, m.Session, true)); err != nil {
		return err
	}
	cmd := namespace.NewDelete(m.Path, m.Recursive, m.IfGen)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		return err
	}
	return &wire.Ack{Index: o.index}
}

func (s *Server) setACL(ctx context.Context, c namespace.Caller, m *wire.SetACL) wire.Message {
	acl, err := nsACL(m.ACL)
	if err = firstErr(s.checkPath(m.Path), err, s.checkSession(ctx, c, m.Session, true)); err != nil {
		return err
	}
	cmd := namespace.NewSetACL(m.Path, acl, m.IfGen)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		return err
	}
	return &wire.StatReply{Stat: wireStat(o.res.Stat)}
}

// Locks.

func (s *Server) checkLockDelay(d time.Duration) *wire.Error {
	if d < 0 {
		return wire.Errorf(wire.BadRequest, "negative lock-delay %v", d)
	}
	return nil
}

// acquire takes a lock. A try (no Wait) is one proposal. A waiting acquire
// registers for the grant before it proposes, then holds the call until the
// namespace grants the lock to the session or drops the wait (Cancel, session
// end, node deleted), or this replica stops leading (NotLeader: the wait
// stays queued in the replicated state and the client re-attaches by
// retrying with the same request id at the new leader). A client that gives
// up withdraws the wait with Cancel{Target: request id}; the server does not
// treat a closed stream or connection as a cancel, since a retry may be on
// its way.
func (s *Server) acquire(ctx context.Context, c namespace.Caller, m *wire.Acquire) wire.Message {
	err := firstErr(s.checkPath(m.Path), s.checkLockDelay(m.LockDelay), s.checkSession(ctx, c, m.Session, false))
	if err != nil {
		return err
	}
	if !m.Mode.Valid() {
		return wire.Errorf(wire.BadRequest, "lock mode %v", m.Mode)
	}
	cmd := namespace.NewAcquire(m.Path, nsMode(m.Mode), m.Wait, m.LockDelay)
	if !m.Wait {
		o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
		if err != nil {
			return err
		}
		return &wire.AcquireReply{Sequencer: wireSequencer(o.res.Sequencer)}
	}
	p := s.pending.add(m.Session, m.Request, m.Path)
	defer s.pending.remove(p)
	ch := s.fsm.waits.add(m.Session, m.Path)
	defer s.fsm.waits.remove(m.Session, m.Path, ch)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		return err
	}
	if !o.res.Queued {
		return &wire.AcquireReply{Sequencer: wireSequencer(o.res.Sequencer)}
	}
	t := s.term.Load()
	if t == nil {
		return s.notLeader()
	}
	if p.canceled.Load() {
		// A Cancel arrived before the acquire was queued: withdraw it now.
		if err := s.cancelWait(ctx, m.Session, m.Path); err != nil {
			return err
		}
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		return &wire.AcquireReply{Sequencer: wireSequencer(r.seq)}
	case <-t.ctx.Done():
		return s.notLeader()
	case <-ctx.Done():
		return s.closing()
	}
}

// cancelWait proposes the withdrawal of the session's queued acquire of path.
func (s *Server) cancelWait(ctx context.Context, sid uint64, path string) *wire.Error {
	cmd := namespace.NewCancel(path)
	cmd.Session = sid
	o, err := s.propose(ctx, kindNamespace, &cmd)
	if err != nil {
		return err
	}
	if namespace.CodeOf(o.res.Err) == namespace.CodeNotWaiting {
		return nil // granted or dropped already
	}
	return nsError(o.res.Err)
}

func (s *Server) release(ctx context.Context, c namespace.Caller, m *wire.Release) wire.Message {
	if err := firstErr(s.checkPath(m.Path), s.checkSession(ctx, c, m.Session, false)); err != nil {
		return err
	}
	cmd := namespace.NewRelease(m.Path, m.LockGen)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil {
		return err
	}
	return &wire.Ack{Index: o.index}
}

// cancelRequest withdraws the session's waiting Acquire with request id
// Target, wherever it is: still being proposed on this replica, or queued in
// the namespace. Canceling what is not waiting succeeds and does nothing.
func (s *Server) cancelRequest(ctx context.Context, c namespace.Caller, m *wire.Cancel) wire.Message {
	if err := s.checkSession(ctx, c, m.Session, false); err != nil {
		return err
	}
	// Only the leader, with every earlier write applied, may conclude that
	// nothing waits (a follower's state may lag the Acquire).
	if err := s.readable(ctx, false); err != nil {
		return err
	}
	path := ""
	if p := s.pending.get(m.Session, m.Target); p != nil {
		p.canceled.Store(true)
		path = p.path
	} else {
		s.fsm.read(func(t *namespace.Tree) { path = findWaiting(t, m.Session, m.Target) })
	}
	if path == "" {
		return &wire.Ack{}
	}
	cmd := namespace.NewCancel(path)
	o, err := s.write(ctx, c, kindNamespace, &cmd, &m.Header)
	if err != nil && err.Code != wire.NotHolder {
		return err
	}
	return &wire.Ack{Index: o.index}
}

// findWaiting returns the path the session's queued acquire with request id
// req waits for, or "".
func findWaiting(t *namespace.Tree, sid, req uint64) string {
	si, err := t.Session(sid)
	if err != nil {
		return ""
	}
	for _, p := range si.Waiting {
		li, err := t.Lock(p)
		if err != nil {
			continue
		}
		for _, w := range li.Waiters {
			if w.Session == sid && w.Request == req {
				return p
			}
		}
	}
	return ""
}

// Watches.

// watch registers a watch of the session's on a node or subtree. It needs
// the read right on the node if it exists (a watch may wait for a node to
// be created); each event it matches is shown only if the session may read
// the node the event is about (term.route, sessionReads).
func (s *Server) watch(ctx context.Context, c namespace.Caller, m *wire.Watch) wire.Message {
	if err := firstErr(s.checkPath(m.Path), s.checkSession(ctx, c, m.Session, false)); err != nil {
		return err
	}
	t, err := s.leaderTerm(ctx)
	if err != nil {
		return err
	}
	// At the leader after the read barrier, as a read: a new leader that
	// has not yet applied a revoked right must not take the watch (its
	// events would be dropped at routing anyway), and the session, if
	// opened just before, is known to the manager by then.
	if err := s.readable(ctx, false); err != nil {
		return err
	}
	var perr error
	s.fsm.read(func(t *namespace.Tree) { perr = t.Permits(m.Path, namespace.RightRead, c) })
	if namespace.CodeOf(perr) == namespace.CodePermission {
		return nsError(perr)
	}
	id, werr := t.mgr.Watch(m.Session, m.Path, m.Recursive)
	if werr != nil {
		return sessionError(werr)
	}
	return &wire.WatchReply{Watch: id}
}

func (s *Server) unwatch(ctx context.Context, c namespace.Caller, m *wire.Unwatch) wire.Message {
	if err := s.checkSession(ctx, c, m.Session, false); err != nil {
		return err
	}
	t, err := s.leaderTerm(ctx)
	if err != nil {
		return err
	}
	if werr := t.mgr.Unwatch(m.Session, m.Watch); werr != nil {
		return sessionError(werr)
	}
	return &wire.Ack{}
}

// Pending waiting acquires, so a Cancel can find one that is not queued in
// the namespace yet.

type pendingKey struct{ session, request uint64 }

type pendingAcquire struct {
	key      pendingKey
	path     string
	canceled atomic.Bool // a Cancel named it
}

type pendingTable struct {
	mu sync.Mutex
	m  map[pendingKey]*pendingAcquire
}

func (t *pendingTable) add(sid, req uint64, path string) *pendingAcquire {
	p := &pendingAcquire{key: pendingKey{sid, req}, path: path}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[pendingKey]*pendingAcquire)
	}
	if req != 0 {
		t.m[p.key] = p
	}
	return p
}

func (t *pendingTable) remove(p *pendingAcquire) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[p.key] == p {
		delete(t.m, p.key)
	}
}

func (t *pendingTable) get(sid, req uint64) *pendingAcquire {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[pendingKey{sid, req}]
}

// Status.

// statusReply answers a Status call.
func (s *Server) statusReply() wire.Message {
	st := s.Status()
	out := &wire.StatusReply{
		ServerID:   strconv.FormatUint(st.ID, 10),
		IsLeader:   st.IsLeader,
		Applied:    st.Applied,
		Rebuilding: st.Rebuilding,
	}
	if st.Leader != 0 {
		a, _ := s.memberAddrs(st.Leader)
		out.Leader = a.Client
		if st.Leader == s.cfg.ID {
			out.Leader = s.ClientAddr()
		}
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, wire.Member{
			ID: strconv.FormatUint(m.ID, 10), ClientAddr: m.Client, PeerAddr: m.Peer,
			Leader: m.ID == st.Leader, Reachable: m.ID == s.cfg.ID || m.ID == st.Leader,
			Applied: m.Applied,
		})
	}
	return out
}
