package namespace

import (
	"fmt"
	"hash/crc64"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// model is a reference implementation of the namespace written only for the
// property tests: plain maps and slices, whole-state scans, no radix tree,
// no heaps, no cached counts. It follows docs/namespace.md, not tree.go.
type model struct {
	cfg          Config
	nodes        map[string]*mNode
	locks        map[string]*mLock
	sessions     map[uint64]*mSession
	index        uint64
	now          int64
	nextInstance uint64
	nextSession  uint64
	events       []Event
}

type mNode struct {
	content                               string
	acl                                   ACL
	instance, contentGen, lockGen, aclGen uint64
	cIndex, mIndex                        uint64
	cTime, mTime                          int64
	owner                                 uint64
	seq                                   uint64
}

type mHolder struct {
	session uint64
	delay   time.Duration
}

type mWaiter struct {
	session, request uint64
	mode             Mode
	delay            time.Duration
}

type mLock struct {
	mode       Mode
	holders    []mHolder
	waiters    []mWaiter
	delayUntil int64 // 0 or a pending end
}

type mSession struct {
	timeout    time.Duration
	client     string
	principal  string
	restricted bool // FlagRestricted
	superuser  bool // FlagSuperuser
	cIndex     uint64
	cTime      int64
	results    [][2]any // {request uint64, Result}, oldest first
}

func newModel(cfg Config) *model {
	m := &model{cfg: cfg, nodes: map[string]*mNode{}, locks: map[string]*mLock{}, sessions: map[uint64]*mSession{},
		nextInstance: 2, nextSession: 1}
	m.nodes["/"] = &mNode{instance: 1, contentGen: 1, aclGen: 1}
	return m
}

func mErr(c Code) Result { return Result{Err: &Error{Code: c, Msg: c.String()}} }

func parentOf(p string) string {
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/"
	}
	return p[:i]
}

func nameOf(p string) string { return p[strings.LastIndex(p, "/")+1:] }

func (m *model) children(p string) []string {
	var out []string
	for q := range m.nodes {
		if q != "/" && parentOf(q) == p {
			out = append(out, nameOf(q))
		}
	}
	sort.Strings(out)
	return out
}

func (m *model) stat(p string) Stat {
	n := m.nodes[p]
	var sum uint64
	if n.content != "" {
		sum = crc64.Checksum([]byte(n.content), crc64.MakeTable(crc64.ECMA))
	}
	return Stat{Instance: n.instance, ContentGen: n.contentGen, LockGen: n.lockGen, ACLGen: n.aclGen,
		Checksum: sum, Size: len(n.content), CreatedIndex: n.cIndex, CreatedTime: n.cTime,
		ModifiedIndex: n.mIndex, ModifiedTime: n.mTime, EphemeralOwner: n.owner, Children: len(m.children(p))}
}

// emit records e with the reader ACL name of the node at its path as it
// stands (Event.Reader).
func (m *model) emit(e Event) {
	if n := m.nodes[e.Path]; n != nil {
		e.Reader = n.acl.Reader
	}
	m.events = append(m.events, e)
}

func (m *model) sessionErr(id uint64) Result {
	if id != 0 && id < m.nextSession {
		return mErr(CodeSessionExpired)
	}
	return mErr(CodeSessionUnknown)
}

func (m *model) apply(index uint64, c Command) (Result, []Event) {
	m.events = nil
	m.index = max(m.index, index)
	m.now = max(m.now, c.Time)
	// Lock-delays that have ended, by (end, path).
	var due []string
	for p, l := range m.locks {
		if l.delayUntil != 0 && l.delayUntil <= m.now {
			due = append(due, p)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := m.locks[due[i]].delayUntil, m.locks[due[j]].delayUntil
		return a < b || a == b && due[i] < due[j]
	})
	for _, p := range due {
		m.locks[p].delayUntil = 0
		m.promote(p)
	}
	s := m.sessions[c.Session]
	if s != nil && c.Request != 0 {
		for _, e := range s.results {
			if e[0].(uint64) == c.Request {
				return e[1].(Result), m.takeEvents()
			}
		}
	}
	r := m.do(c, s)
	// Looked up again: a txn may have swapped in a copy of the session.
	if s := m.sessions[c.Session]; s != nil && c.Request != 0 && m.cfg.Results > 0 {
		// The window keeps a txn's outcome, not its sub-ops' results.
		kept := r
		kept.Txn = nil
		s.results = append(s.results, [2]any{c.Request, kept})
		if len(s.results) > m.cfg.Results {
			s.results = s.results[1:]
		}
	}
	return r, m.takeEvents()
}

func (m *model) takeEvents() []Event {
	ev := m.events
	m.events = nil
	return ev
}

func (m *model) do(c Command, s *mSession) Result {
	allowed := map[Op]Flags{OpOpenSession: FlagRestricted | FlagSuperuser,
		OpCreate:     FlagEphemeral | FlagParents | FlagSequential | FlagRestricted,
		OpSetContent: FlagRestricted, OpSetACL: FlagRestricted,
		OpDelete: FlagRecursive | FlagRestricted, OpAcquire: FlagWait, OpTxn: FlagRestricted}
	restrictedWrite := c.Op != OpOpenSession && c.Flags&FlagRestricted != 0
	switch {
	case c.Version != CommandVersion:
		return mErr(CodeUnknownVersion)
	case c.Op == OpInvalid || c.Op >= opEnd:
		return mErr(CodeUnknownOp)
	case c.Session != 0 && s == nil:
		return m.sessionErr(c.Session)
	case c.Flags&^allowed[c.Op] != 0:
		return mErr(CodeInvalidCommand)
	case restrictedWrite && (c.Session != 0 || len(c.Principal) > m.cfg.MaxClientNameLen || !utf8.ValidString(c.Principal)):
		return mErr(CodeInvalidCommand)
	}
	switch c.Op {
	case OpTick:
		return Result{}
	case OpOpenSession:
		if c.Session != 0 || c.Timeout <= 0 || len(c.Client) > m.cfg.MaxClientNameLen || !utf8.ValidString(c.Client) ||
			len(c.Principal) > m.cfg.MaxClientNameLen || !utf8.ValidString(c.Principal) ||
			c.Flags == FlagRestricted|FlagSuperuser {
			return mErr(CodeInvalidCommand)
		}
		id := m.nextSession
		m.nextSession++
		m.sessions[id] = &mSession{timeout: c.Timeout, client: c.Client, principal: c.Principal,
			restricted: c.Flags == FlagRestricted, superuser: c.Flags == FlagSuperuser, cIndex: m.index, cTime: m.now}
		m.emit(Event{Kind: EventSessionOpened, Session: id})
		return Result{Session: id}
	case OpCloseSession:
		if s == nil {
			return mErr(CodeInvalidCommand)
		}
		m.end(c.Session, false)
		return Result{}
	case OpExpireSession:
		if c.Session != 0 {
			return mErr(CodePermission)
		}
		if m.sessions[c.Target] == nil {
			return m.sessionErr(c.Target)
		}
		m.end(c.Target, true)
		return Result{}
	case OpCreate:
		return m.create(c)
	case OpSetContent:
		return m.setContent(c)
	case OpDelete:
		return m.delete(c)
	case OpSetACL:
		return m.setACL(c)
	case OpAcquire:
		return m.acquire(c)
	case OpCancel:
		return m.cancel(c)
	case OpRelease:
		return m.release(c)
	case OpTxn:
		return m.txn(c)
	case OpCheckExists, OpCheckMissing, OpCheckSequencer, OpPut:
		return mErr(CodeInvalidCommand)
	}
	panic("unreachable")
}

func (m *model) pathErr(p string) (Result, bool) {
	if err := m.cfg.ValidatePath(p); err != nil {
		return Result{Err: err}, true
	}
	return Result{}, false
}

// mOperator: no session and not restricted.
func mOperator(c Command) bool { return c.Session == 0 && c.Flags&FlagRestricted == 0 }

func (m *model) maySet(n *mNode, c Command) bool {
	return n.owner == 0 || mOperator(c) || c.Session != 0 && n.owner == c.Session
}

// allowed reports whether c may exercise r on the node at p, as
// docs/namespace.md says: operators (session 0 without FlagRestricted) and
// sessions that are not restricted always; else (a restricted session, or a
// restricted sessionless write, as Command.Principal) when the node names
// no ACL for r, or names one whose file /acl/NAME has a line (trimmed, not
// a comment) that is "*" or the non-empty principal.
func (m *model) allowed(p string, r Right, c Command) bool {
	principal := c.Principal
	if c.Session != 0 {
		s := m.sessions[c.Session]
		if !s.restricted {
			return true
		}
		principal = s.principal
	} else if mOperator(c) {
		return true
	}
	acl := m.nodes[p].acl
	name := map[Right]string{RightRead: acl.Reader, RightWrite: acl.Writer, RightChange: acl.Changer}[r]
	if name == "" {
		return true
	}
	f := m.nodes["/acl/"+name]
	if f == nil {
		return false
	}
	for _, line := range strings.Split(f.content, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "#") && (line == "*" || line != "" && line == principal) {
			return true
		}
	}
	return false
}

func (m *model) badACL(a ACL) bool {
	for _, n := range []string{a.Reader, a.Writer, a.Changer} {
		if n != "" && (len(n) > m.cfg.MaxNameLen || strings.ContainsAny(n, "/\x00") || n == "." || n == ".." || !utf8.ValidString(n)) {
			return true
		}
	}
	return false
}

func (m *model) create(c Command) Result {
	eph := c.Flags&FlagEphemeral != 0
	seq := c.Flags&FlagSequential != 0
	if eph && c.Session == 0 {
		return mErr(CodeInvalidCommand)
	}
	p := c.Path
	if seq {
		p += "0000000000"
	}
	if r, bad := m.pathErr(p); bad {
		return r
	}
	if p == "/" {
		return mErr(CodeExists)
	}
	if len(c.Content) > m.cfg.MaxContent {
		return mErr(CodeTooLarge)
	}
	if m.badACL(c.ACL) {
		return mErr(CodeInvalidCommand)
	}
	var missing []string
	anc := parentOf(p)
	for m.nodes[anc] == nil {
		if c.Flags&FlagParents == 0 {
			return mErr(CodeNotFound)
		}
		missing = append([]string{anc}, missing...)
		anc = parentOf(anc)
	}
	if m.nodes[anc].owner != 0 || !m.allowed(anc, RightWrite, c) {
		return mErr(CodePermission)
	}
	if seq {
		var next uint64
		if par := m.nodes[parentOf(p)]; par != nil {
			if par.seq == 1<<32-1 {
				return mErr(CodeSequenceExhausted)
			}
			next = par.seq
		}
		p = fmt.Sprintf("%s%010d", strings.TrimSuffix(p, "0000000000"), next)
	}
	if m.nodes[p] != nil {
		return mErr(CodeExists)
	}
	if len(m.children(anc)) >= m.cfg.MaxChildren {
		return mErr(CodeTooManyChildren)
	}
	if eph && len(m.ephemerals(c.Session)) >= m.cfg.MaxEphemerals {
		return mErr(CodeTooManyEphemerals)
	}
	acl := m.nodes[anc].acl
	for _, mp := range missing {
		m.add(mp, "", acl, 0)
	}
	if !c.ACL.IsZero() {
		acl = c.ACL
	}
	if seq {
		m.nodes[parentOf(p)].seq++
	}
	var owner uint64
	if eph {
		owner = c.Session
	}
	m.add(p, string(c.Content), acl, owner)
	return Result{Path: p, Stat: m.stat(p)}
}

func (m *model) add(p, content string, acl ACL, owner uint64) {
	m.nodes[p] = &mNode{content: content, acl: acl, instance: m.nextInstance, contentGen: 1, aclGen: 1,
		cIndex: m.index, mIndex: m.index, cTime: m.now, mTime: m.now, owner: owner}
	m.nextInstance++
	m.emit(Event{Kind: EventNodeCreated, Path: p, Instance: m.nodes[p].instance})
	m.emit(Event{Kind: EventChildAdded, Path: parentOf(p), Instance: m.nodes[parentOf(p)].instance, Name: nameOf(p)})
}

func (m *model) setContent(c Command) Result {
	if r, bad := m.pathErr(c.Path); bad {
		return r
	}
	if len(c.Content) > m.cfg.MaxContent {
		return mErr(CodeTooLarge)
	}
	n := m.nodes[c.Path]
	switch {
	case n == nil:
		return mErr(CodeNotFound)
	case c.Path == "/" || !m.maySet(n, c) || !m.allowed(c.Path, RightWrite, c):
		return mErr(CodePermission)
	case c.Generation != 0 && c.Generation != n.contentGen:
		return mErr(CodeGenerationMismatch)
	}
	n.content = string(c.Content)
	n.contentGen++
	n.mIndex, n.mTime = m.index, m.now
	m.emit(Event{Kind: EventContentChanged, Path: c.Path, Instance: n.instance})
	return Result{Stat: m.stat(c.Path)}
}

func (m *model) setACL(c Command) Result {
	if r, bad := m.pathErr(c.Path); bad {
		return r
	}
	if m.badACL(c.ACL) {
		return mErr(CodeInvalidCommand)
	}
	n := m.nodes[c.Path]
	switch {
	case n == nil:
		return mErr(CodeNotFound)
	case c.Path == "/" && !mOperator(c) && (c.Session == 0 || !m.sessions[c.Session].superuser) || !m.maySet(n, c) ||
		!m.allowed(c.Path, RightChange, c):
		return mErr(CodePermission)
	case c.Generation != 0 && c.Generation != n.aclGen:
		return mErr(CodeGenerationMismatch)
	}
	n.acl = c.ACL
	n.aclGen++
	m.emit(Event{Kind: EventACLChanged, Path: c.Path, Instance: n.instance})
	return Result{Stat: m.stat(c.Path)}
}

func (m *model) delete(c Command) Result {
	if r, bad := m.pathErr(c.Path); bad {
		return r
	}
	if c.Path == "/" {
		return mErr(CodePermission)
	}
	n := m.nodes[c.Path]
	switch {
	case n == nil:
		return mErr(CodeNotFound)
	case !m.maySet(n, c) || !m.allowed(c.Path, RightWrite, c):
		return mErr(CodePermission)
	case c.Generation != 0 && c.Generation != n.contentGen:
		return mErr(CodeGenerationMismatch)
	case len(m.children(c.Path)) > 0 && c.Flags&FlagRecursive == 0:
		return mErr(CodeNotEmpty)
	}
	var sub []string
	for q := range m.nodes {
		if strings.HasPrefix(q, c.Path+"/") {
			sub = append(sub, q)
		}
	}
	sort.Slice(sub, func(i, j int) bool {
		di, dj := strings.Count(sub[i], "/"), strings.Count(sub[j], "/")
		return di > dj || di == dj && sub[i] < sub[j]
	})
	for _, q := range sub {
		if !m.maySet(m.nodes[q], c) || !m.allowed(q, RightWrite, c) {
			return mErr(CodePermission)
		}
	}
	for _, q := range append(sub, c.Path) {
		m.remove(q)
	}
	return Result{Deleted: len(sub) + 1}
}

// remove deletes a childless node, tearing down its lock first.
func (m *model) remove(p string) {
	n := m.nodes[p]
	if l := m.locks[p]; l != nil {
		for _, h := range l.holders {
			m.emit(Event{Kind: EventLockReleased, Path: p, Instance: n.instance, Session: h.session, Reason: ReasonNodeDeleted})
		}
		for _, w := range l.waiters {
			m.emit(Event{Kind: EventWaitCanceled, Path: p, Instance: n.instance, Session: w.session, Request: w.request, Reason: ReasonNodeDeleted})
			m.setResult(w.session, w.request, mErr(CodeNotFound))
		}
		delete(m.locks, p)
	}
	m.emit(Event{Kind: EventNodeDeleted, Path: p, Instance: n.instance})
	delete(m.nodes, p)
	m.emit(Event{Kind: EventChildRemoved, Path: parentOf(p), Instance: m.nodes[parentOf(p)].instance, Name: nameOf(p)})
}

func (m *model) setResult(session, request uint64, r Result) {
	s := m.sessions[session]
	for i := range s.results {
		if s.results[i][0].(uint64) == request {
			s.results[i][1] = r
		}
	}
}

func (m *model) ephemerals(id uint64) []string {
	var out []string
	for p, n := range m.nodes {
		if n.owner == id {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (m *model) lockPaths(id uint64, waiting bool) []string {
	var out []string
	for p, l := range m.locks {
		if !waiting && slices.ContainsFunc(l.holders, func(h mHolder) bool { return h.session == id }) ||
			waiting && slices.ContainsFunc(l.waiters, func(w mWaiter) bool { return w.session == id }) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (m *model) end(id uint64, expired bool) {
	kind, reason := EventSessionClosed, ReasonSessionClosed
	if expired {
		kind, reason = EventSessionExpired, ReasonSessionExpired
	}
	m.emit(Event{Kind: kind, Session: id})
	for _, p := range m.lockPaths(id, true) {
		m.unwait(p, id, reason)
	}
	for _, p := range m.lockPaths(id, false) {
		m.unhold(p, id, reason, expired)
	}
	for _, p := range m.ephemerals(id) {
		m.remove(p)
	}
	delete(m.sessions, id)
}

func (m *model) unwait(p string, id uint64, reason Reason) {
	l := m.locks[p]
	i := slices.IndexFunc(l.waiters, func(w mWaiter) bool { return w.session == id })
	w := l.waiters[i]
	l.waiters = slices.Delete(l.waiters, i, i+1)
	m.emit(Event{Kind: EventWaitCanceled, Path: p, Instance: m.nodes[p].instance, Session: id, Request: w.request, Reason: reason})
	if reason == ReasonCanceled {
		m.setResult(id, w.request, mErr(CodeCanceled))
	}
	m.promote(p)
}

func (m *model) unhold(p string, id uint64, reason Reason, expired bool) {
	l := m.locks[p]
	i := slices.IndexFunc(l.holders, func(h mHolder) bool { return h.session == id })
	h := l.holders[i]
	l.holders = slices.Delete(l.holders, i, i+1)
	if len(l.holders) == 0 {
		l.mode = ModeNone
	}
	m.emit(Event{Kind: EventLockReleased, Path: p, Instance: m.nodes[p].instance, Session: id, Reason: reason})
	if expired && h.delay > 0 {
		l.delayUntil = max(l.delayUntil, m.now+int64(h.delay))
	}
	m.promote(p)
}

func (m *model) seqOf(p string) Sequencer {
	return Sequencer{Path: p, Mode: m.locks[p].mode, LockGen: m.nodes[p].lockGen, Instance: m.nodes[p].instance}
}

func (m *model) give(p string, id, request uint64, mode Mode, delay time.Duration) {
	l := m.locks[p]
	if len(l.holders) == 0 {
		m.nodes[p].lockGen++
		l.mode = mode
	}
	l.holders = append(l.holders, mHolder{id, delay})
	m.emit(Event{Kind: EventLockAcquired, Path: p, Instance: m.nodes[p].instance, Session: id, Request: request, Sequencer: m.seqOf(p)})
}

// promote grants the compatible head of the queue and forgets an idle lock.
func (m *model) promote(p string) {
	l := m.locks[p]
	for l.delayUntil == 0 && len(l.waiters) > 0 {
		w := l.waiters[0]
		if len(l.holders) > 0 && !(l.mode == ModeShared && w.mode == ModeShared) {
			break
		}
		l.waiters = l.waiters[1:]
		m.give(p, w.session, w.request, w.mode, w.delay)
		m.setResult(w.session, w.request, Result{Sequencer: m.seqOf(p)})
	}
	if len(l.holders) == 0 && len(l.waiters) == 0 && l.delayUntil == 0 {
		delete(m.locks, p)
	}
}

func (m *model) lockCheck(c Command) (Result, bool) {
	if c.Session == 0 {
		return mErr(CodeInvalidCommand), true
	}
	if c.Op == OpAcquire && c.Mode != ModeExclusive && c.Mode != ModeShared {
		return mErr(CodeInvalidCommand), true
	}
	if r, bad := m.pathErr(c.Path); bad {
		return r, true
	}
	if m.nodes[c.Path] == nil {
		return mErr(CodeNotFound), true
	}
	return Result{}, false
}

func (m *model) acquire(c Command) Result {
	if r, bad := m.lockCheck(c); bad {
		return r
	}
	if !m.allowed(c.Path, RightWrite, c) {
		return mErr(CodePermission)
	}
	l := m.locks[c.Path]
	if l == nil {
		l = &mLock{}
		m.locks[c.Path] = l
	}
	if slices.ContainsFunc(l.holders, func(h mHolder) bool { return h.session == c.Session }) {
		if l.mode != c.Mode {
			return mErr(CodeLocked)
		}
		return Result{Sequencer: m.seqOf(c.Path)}
	}
	if slices.ContainsFunc(l.waiters, func(w mWaiter) bool { return w.session == c.Session }) {
		return Result{Queued: true}
	}
	delay := c.LockDelay
	switch {
	case delay < 0:
		delay = 0
	case delay == 0:
		delay = m.cfg.DefaultLockDelay
	case delay > m.cfg.MaxLockDelay:
		delay = m.cfg.MaxLockDelay
	}
	free := len(l.holders) == 0 || l.mode == ModeShared && c.Mode == ModeShared
	if l.delayUntil == 0 && len(l.waiters) == 0 && free {
		m.give(c.Path, c.Session, c.Request, c.Mode, delay)
		return Result{Sequencer: m.seqOf(c.Path)}
	}
	for _, h := range l.holders {
		m.emit(Event{Kind: EventLockConflict, Path: c.Path, Instance: m.nodes[c.Path].instance, Session: h.session, By: c.Session})
	}
	if c.Flags&FlagWait == 0 {
		m.promote(c.Path) // forgets the lock if it was created just now
		return mErr(CodeLocked)
	}
	l.waiters = append(l.waiters, mWaiter{c.Session, c.Request, c.Mode, delay})
	return Result{Queued: true}
}

func (m *model) release(c Command) Result {
	if r, bad := m.lockCheck(c); bad {
		return r
	}
	l := m.locks[c.Path]
	if l == nil || !slices.ContainsFunc(l.holders, func(h mHolder) bool { return h.session == c.Session }) {
		return mErr(CodeNotHolder)
	}
	if c.Generation != 0 && c.Generation != m.nodes[c.Path].lockGen {
		return mErr(CodeGenerationMismatch)
	}
	m.unhold(c.Path, c.Session, ReasonReleased, false)
	return Result{}
}

func (m *model) cancel(c Command) Result {
	if r, bad := m.lockCheck(c); bad {
		return r
	}
	l := m.locks[c.Path]
	if l == nil || !slices.ContainsFunc(l.waiters, func(w mWaiter) bool { return w.session == c.Session }) {
		return mErr(CodeNotWaiting)
	}
	m.unwait(c.Path, c.Session, ReasonCanceled)
	return Result{}
}
