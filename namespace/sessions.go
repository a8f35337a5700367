package namespace

import (
	"time"
	"unicode/utf8"
)

// session is one client session. Its slices are sorted paths; paths share
// memory with the tree keys.
type session struct {
	id         uint64
	timeout    time.Duration
	client     string // the client's name, free text
	principal  string // the authenticated name it was opened with
	access     access
	cIndex     uint64
	cTime      int64
	ephemerals []string // owned ephemeral nodes
	held       []string // locks held
	waiting    []string // locks with a queued acquire of this session
	results    resultRing
}

// storedResult is one entry of the idempotence table.
type storedResult struct {
	request uint64
	result  Result
}

// resultRing keeps the most recent results of a session, oldest first from
// next once full. Request ids live in their own slice so a lookup scans a
// few cache lines, not the results.
type resultRing struct {
	requests []uint64
	results  []Result
	next     int // index of the oldest entry once len(requests) == limit
}

func (r *resultRing) find(request uint64) int {
	for i, q := range r.requests {
		if q == request {
			return i
		}
	}
	return -1
}

func (r *resultRing) get(request uint64) (Result, bool) {
	if i := r.find(request); i >= 0 {
		return r.results[i], true
	}
	return Result{}, false
}

// put records a result, evicting the oldest when limit entries are kept.
func (r *resultRing) put(request uint64, res Result, limit int) {
	switch {
	case limit <= 0:
		return
	case len(r.requests) < limit:
		r.requests = append(r.requests, request)
		r.results = append(r.results, res)
	default:
		r.requests[r.next], r.results[r.next] = request, res
		r.next = (r.next + 1) % len(r.requests)
	}
}

// update replaces the stored result of request, if it is still kept.
func (r *resultRing) update(request uint64, res Result) {
	if i := r.find(request); i >= 0 {
		r.results[i] = res
	}
}

// ordered returns the entries oldest first.
func (r *resultRing) ordered() []storedResult {
	out := make([]storedResult, 0, len(r.requests))
	for k := range r.requests {
		i := (r.next + k) % len(r.requests)
		out = append(out, storedResult{r.requests[i], r.results[i]})
	}
	return out
}

// openSession applies OpOpenSession: the id is the next of a counter kept in
// the replicated state, so ids are never reused.
func (t *Tree) openSession(cmd *Command) Result {
	switch {
	case cmd.Session != 0:
		return fail(errorf(CodeInvalidCommand, "open-session from session %d", cmd.Session))
	case cmd.Timeout <= 0:
		return fail(errorf(CodeInvalidCommand, "session timeout %v <= 0", cmd.Timeout))
	}
	if err := t.cfg.checkClientName("client", cmd.Client); err != nil {
		return fail(err)
	}
	if err := t.cfg.checkClientName("principal", cmd.Principal); err != nil {
		return fail(err)
	}
	acc := accessUnchecked
	switch cmd.Flags & (FlagRestricted | FlagSuperuser) {
	case FlagRestricted:
		acc = accessRestricted
	case FlagSuperuser:
		acc = accessSuperuser
	case FlagRestricted | FlagSuperuser:
		return fail(errorf(CodeInvalidCommand, "a session is either restricted or a superuser's"))
	}
	id := t.nextSession
	t.nextSession++
	t.sessions[id] = &session{id: id, timeout: cmd.Timeout, client: cmd.Client, principal: cmd.Principal,
		access: acc, cIndex: t.index, cTime: t.now}
	t.emit(Event{Kind: EventSessionOpened, Session: id})
	return Result{Session: id}
}

// checkClientName validates the client name or principal (what) of an
// open-session: at most MaxClientNameLen bytes of valid UTF-8 (empty is
// fine).
func (c *Config) checkClientName(what, name string) *Error {
	switch {
	case len(name) > c.MaxClientNameLen:
		return errorf(CodeInvalidCommand, "%s name of %d bytes; the limit is %d", what, len(name), c.MaxClientNameLen)
	case !utf8.ValidString(name):
		return errorf(CodeInvalidCommand, "%s name %s is not valid UTF-8", what, quote(name))
	}
	return nil
}

// closeSession applies OpCloseSession for the command's own session.
func (t *Tree) closeSession(s *session) Result {
	if s == nil {
		return fail(errorf(CodeInvalidCommand, "close-session without a session"))
	}
	t.endSession(s, false)
	return Result{}
}

// expireSession applies OpExpireSession; only the leader (session 0) may.
func (t *Tree) expireSession(cmd *Command) Result {
	if cmd.Session != 0 {
		return fail(errorf(CodePermission, "only the leader expires sessions"))
	}
	s := t.sessions[cmd.Target]
	if s == nil {
		return fail(t.sessionError(cmd.Target))
	}
	t.endSession(s, true)
	return Result{}
}

// endSession removes s: the session event, then its queued acquires are
// dropped, its locks released (entering lock-delay if expired), and its
// ephemeral nodes deleted, each in path order and with events.
func (t *Tree) endSession(s *session, expired bool) {
	kind, reason := EventSessionClosed, ReasonSessionClosed
	if expired {
		kind, reason = EventSessionExpired, ReasonSessionExpired
	}
	t.emit(Event{Kind: kind, Session: s.id})
	for _, p := range append([]string(nil), s.waiting...) {
		t.dropWaiter(t.locks[p], s, reason)
	}
	for _, p := range append([]string(nil), s.held...) {
		t.dropHolder(t.locks[p], s, reason, expired)
	}
	for _, p := range append([]string(nil), s.ephemerals...) {
		depth := pathDepth(p)
		t.deleteNode(p, depth, t.lookup(p))
	}
	delete(t.sessions, s.id)
}

func (s *session) info() SessionInfo {
	return SessionInfo{
		ID:           s.id,
		Timeout:      s.timeout,
		Client:       s.client,
		Principal:    s.principal,
		Restricted:   s.access == accessRestricted,
		Superuser:    s.access == accessSuperuser,
		CreatedIndex: s.cIndex,
		CreatedTime:  s.cTime,
		Ephemerals:   append([]string{}, s.ephemerals...),
		Locks:        append([]string{}, s.held...),
		Waiting:      append([]string{}, s.waiting...),
	}
}
