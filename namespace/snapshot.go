package namespace

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Snapshot format (version 3), a stream of msgpack values:
//
//	header   [magic, version, index, now, nextInstance, nextSession, #sessions, #nodes, #locks]
//	sessions #sessions x [id, timeout, createdIndex, createdTime, client, [result...]]   by id
//	         or [id, timeout, createdIndex, createdTime, client, principal, access, [result...]]
//	nodes    #nodes x [key, meta, content] or [key, meta, content, reader, writer, changer]  in key order
//
// where meta is a bin of varints (instance, contentGen, lockGen, aclGen,
// createdIndex, createdTime, modifiedIndex, modifiedTime, owner, seq) and
// the 8-byte little-endian content checksum: one value instead of eleven
// makes restoring a million nodes several times cheaper.
//	locks    #locks x [path, mode, delayUntil, [[session, delay]...], [[session, request, mode, delay]...]]  by path
//	trailer  ["end", crc32c of every byte before the trailer]
//
// A session is written in the longer form only when it has a principal or
// its access is not 0 (1 restricted, 2 superuser). Version 2 is the same without the longer form, version 1
// also without the sessions' client names; Restore reads all three (their
// sessions have no principal and are not restricted, as they were).
//
// Node keys are depth byte + path, so parents come before their children.
// Derived state (child counts, the sessions' lists of ephemerals, held and
// awaited locks, the lock-delay heaps) is rebuilt on restore. Everything is
// written in a deterministic order, so identical states give identical bytes.

const (
	snapshotMagic   = "latch-namespace"
	snapshotVersion = 3
	// snapshotV1 is the oldest version Restore reads: sessions without
	// client names.
	snapshotV1      = 1
	snapshotTrailer = "end"
	maxMeta         = 11*binary.MaxVarintLen64 + 8
	// nodeSlab is how many restored nodes share one allocation: fewer
	// mallocs, at the price that a block lives while any of its nodes does
	// (siblings are neighbours in key order, so blocks tend to die together).
	nodeSlab     = 128
	resultFields = 22
)

// Snapshot writes the whole state to w as a versioned msgpack stream.
func (t *Tree) Snapshot(w io.Writer) error {
	hw := &hashWriter{w: w}
	bw := bufio.NewWriterSize(hw, 64<<10)
	e := fieldEncoder{enc: msgpack.NewEncoder(bw)}

	ids := t.sessionIDs()
	lockPaths := make([]string, 0, len(t.locks))
	for p := range t.locks {
		lockPaths = append(lockPaths, p)
	}
	slices.Sort(lockPaths)

	e.arrayLen(9)
	e.string(snapshotMagic)
	e.uint(snapshotVersion)
	e.uint(t.index)
	e.int(t.now)
	e.uint(t.nextInstance)
	e.uint(t.nextSession)
	e.uint(uint64(len(ids)))
	e.uint(uint64(t.nodes.Len()))
	e.uint(uint64(len(lockPaths)))

	for _, id := range ids {
		s := t.sessions[id]
		long := s.principal != "" || s.access != accessUnchecked
		if long {
			e.arrayLen(8)
		} else {
			e.arrayLen(6)
		}
		e.uint(s.id)
		e.int(int64(s.timeout))
		e.uint(s.cIndex)
		e.int(s.cTime)
		e.string(s.client)
		if long {
			e.string(s.principal)
			e.uint(uint64(s.access))
		}
		entries := s.results.ordered()
		e.arrayLen(len(entries))
		for _, sr := range entries {
			encodeResult(&e, sr.request, sr.result)
		}
	}

	var meta []byte
	t.nodes.Walk(func(key string, v any) bool {
		n := v.(*node)
		if n.acl == nil {
			e.arrayLen(3)
		} else {
			e.arrayLen(6)
		}
		e.string(key)
		meta = n.appendMeta(meta[:0])
		e.bytes(meta)
		e.string(n.content)
		if n.acl != nil {
			e.string(n.acl.Reader)
			e.string(n.acl.Writer)
			e.string(n.acl.Changer)
		}
		return e.err != nil
	})

	for _, p := range lockPaths {
		ls := t.locks[p]
		e.arrayLen(5)
		e.string(ls.path)
		e.uint(uint64(ls.mode))
		e.int(ls.delayUntil)
		e.arrayLen(len(ls.holders))
		for _, h := range ls.holders {
			e.arrayLen(2)
			e.uint(h.session)
			e.int(int64(h.delay))
		}
		e.arrayLen(len(ls.waiters))
		for _, w := range ls.waiters {
			e.arrayLen(4)
			e.uint(w.session)
			e.uint(w.request)
			e.uint(uint64(w.mode))
			e.int(int64(w.delay))
		}
	}

	if e.err != nil {
		return fmt.Errorf("namespace: snapshot: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("namespace: snapshot: %w", err)
	}
	sum := hw.crc
	e.arrayLen(2)
	e.string(snapshotTrailer)
	e.uint(uint64(sum))
	if e.err == nil {
		e.err = bw.Flush()
	}
	if e.err != nil {
		return fmt.Errorf("namespace: snapshot: %w", e.err)
	}
	return nil
}

func encodeResult(e *fieldEncoder, request uint64, r Result) {
	code, msg := CodeOK, ""
	if r.Err != nil {
		code, msg = CodeOf(r.Err), r.Err.Error()
	}
	st := r.Stat
	e.arrayLen(resultFields)
	e.uint(request)
	e.uint(uint64(code))
	e.string(msg)
	e.string(r.Path)
	e.uint(st.Instance)
	e.uint(st.ContentGen)
	e.uint(st.LockGen)
	e.uint(st.ACLGen)
	e.uint(st.Checksum)
	e.int(int64(st.Size))
	e.uint(st.CreatedIndex)
	e.int(st.CreatedTime)
	e.uint(st.ModifiedIndex)
	e.int(st.ModifiedTime)
	e.uint(st.EphemeralOwner)
	e.int(int64(st.Children))
	e.uint(r.Session)
	e.string(r.Sequencer.Path)
	e.uint(uint64(r.Sequencer.Mode))
	e.uint(r.Sequencer.LockGen)
	e.uint(r.Sequencer.Instance)
	e.arrayLen(2)
	e.bool(r.Queued)
	e.int(int64(r.Deleted))
}

// Restore replaces the whole state with the snapshot read from r. On error
// the tree is unchanged. Restore may read past the end of the snapshot (it
// buffers).
func (t *Tree) Restore(r io.Reader) error {
	rd := &snapshotReader{t: &Tree{cfg: t.cfg}, hr: newHashReader(r)}
	rd.t.reset(0)
	rd.d = fieldDecoder{dec: msgpack.NewDecoder(rd.hr), wrap: ErrBadSnapshot}
	if err := rd.read(); err != nil {
		return err
	}
	nt := rd.t
	*t = Tree{
		cfg: t.cfg, nodes: nt.nodes, byPath: nt.byPath, sessions: nt.sessions, locks: nt.locks,
		delayed: nt.delayed, blocked: nt.blocked, index: nt.index, now: nt.now,
		nextInstance: nt.nextInstance, nextSession: nt.nextSession,
	}
	return nil
}

// snapshotReader decodes a snapshot into a fresh tree, checking it.
type snapshotReader struct {
	t       *Tree
	version uint64
	hr      *hashReader
	d       fieldDecoder
	lastACL *ACL
}

func (rd *snapshotReader) bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
}

func (rd *snapshotReader) read() error {
	t, d := rd.t, &rd.d
	d.expectArray("header", 9)
	magic := d.string("magic")
	if d.err == nil && magic != snapshotMagic {
		return rd.bad("magic %q", magic)
	}
	rd.version = d.uint("version", math.MaxUint64)
	if d.err == nil && (rd.version < snapshotV1 || rd.version > snapshotVersion) {
		return fmt.Errorf("%w: snapshot version %d", ErrUnknownVersion, rd.version)
	}
	t.index = d.uint("index", math.MaxUint64)
	t.now = d.int("now")
	t.nextInstance = d.uint("next instance", math.MaxUint64)
	t.nextSession = d.uint("next session", math.MaxUint64)
	nSessions := d.uint("sessions", math.MaxInt32)
	nNodes := d.uint("nodes", math.MaxInt64)
	nLocks := d.uint("locks", math.MaxInt32)
	if d.err != nil {
		return d.err
	}
	for i := uint64(0); i < nSessions; i++ {
		if err := rd.session(); err != nil {
			return err
		}
	}
	if nNodes == 0 {
		return rd.bad("no root")
	}
	t.byPath = make(map[string]*node, int(min(nNodes, 1<<21)))
	if err := rd.nodes(nNodes); err != nil {
		return err
	}
	prev := ""
	for i := uint64(0); i < nLocks; i++ {
		p, err := rd.lock(prev)
		if err != nil {
			return err
		}
		prev = p
	}
	for _, id := range t.sessionIDs() {
		s := t.sessions[id]
		slices.Sort(s.ephemerals)
		slices.Sort(s.held)
		slices.Sort(s.waiting)
	}
	sum := rd.hr.sum()
	d.expectArray("trailer", 2)
	if end := d.string("trailer"); d.err == nil && end != snapshotTrailer {
		return rd.bad("trailer %q", end)
	}
	if got := d.uint("checksum", math.MaxUint32); d.err == nil && uint32(got) != sum {
		return rd.bad("checksum %#x, computed %#x", got, sum)
	}
	return d.err
}

func (rd *snapshotReader) session() error {
	t, d := rd.t, &rd.d
	fields := d.arrayLen("session")
	var ok bool
	switch rd.version {
	case snapshotV1:
		ok = fields == 5
	case 2:
		ok = fields == 6
	default:
		ok = fields == 6 || fields == 8
	}
	if d.err == nil && !ok {
		return rd.bad("session of %d fields in a version-%d snapshot", fields, rd.version)
	}
	s := &session{
		id:      d.uint("session id", math.MaxUint64),
		timeout: time.Duration(d.int("timeout")),
		cIndex:  d.uint("session index", math.MaxUint64),
		cTime:   d.int("session time"),
	}
	if rd.version != snapshotV1 {
		s.client = d.string("client")
	}
	if fields == 8 {
		s.principal = d.string("principal")
		s.access = access(d.uint("access", uint64(accessEnd-1)))
	}
	n := d.arrayLen("results")
	if d.err != nil {
		return d.err
	}
	if s.id == 0 || s.id >= t.nextSession || t.sessions[s.id] != nil {
		return rd.bad("session id %d", s.id)
	}
	// Like paths, the name is checked for form but not against the
	// configured limit, so a cell may lower it without stranding snapshots.
	if !utf8.ValidString(s.client) {
		return rd.bad("session %d: client name %s is not valid UTF-8", s.id, quote(s.client))
	}
	if !utf8.ValidString(s.principal) {
		return rd.bad("session %d: principal %s is not valid UTF-8", s.id, quote(s.principal))
	}
	for i := 0; i < n; i++ {
		req, res := rd.result()
		if d.err != nil {
			return d.err
		}
		s.results.put(req, res, t.cfg.Results)
	}
	t.sessions[s.id] = s
	return nil
}

func (rd *snapshotReader) result() (uint64, Result) {
	d := &rd.d
	d.expectArray("result", resultFields)
	req := d.uint("request", math.MaxUint64)
	code := Code(d.uint("code", uint64(codeEnd-1)))
	msg := d.string("message")
	var r Result
	if code != CodeOK {
		r.Err = &Error{Code: code, Msg: msg}
	}
	r.Path = d.string("result path")
	r.Stat = Stat{
		Instance:       d.uint("instance", math.MaxUint64),
		ContentGen:     d.uint("content gen", math.MaxUint64),
		LockGen:        d.uint("lock gen", math.MaxUint64),
		ACLGen:         d.uint("acl gen", math.MaxUint64),
		Checksum:       d.uint("checksum", math.MaxUint64),
		Size:           int(d.int("size")),
		CreatedIndex:   d.uint("created index", math.MaxUint64),
		CreatedTime:    d.int("created time"),
		ModifiedIndex:  d.uint("modified index", math.MaxUint64),
		ModifiedTime:   d.int("modified time"),
		EphemeralOwner: d.uint("owner", math.MaxUint64),
		Children:       int(d.int("children")),
	}
	r.Session = d.uint("result session", math.MaxUint64)
	r.Sequencer = Sequencer{
		Path:     d.string("sequencer path"),
		Mode:     Mode(d.uint("sequencer mode", uint64(ModeShared))),
		LockGen:  d.uint("sequencer lock gen", math.MaxUint64),
		Instance: d.uint("sequencer instance", math.MaxUint64),
	}
	d.expectArray("result flags", 2)
	r.Queued = d.bool("queued")
	r.Deleted = int(d.int("deleted"))
	return req, r
}

// validName reports whether name is a valid path element, ignoring the
// configured limits (a cell may change its limits without stranding old
// snapshots).
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") && utf8.ValidString(name)
}

func (rd *snapshotReader) nodes(count uint64) error {
	t, d := rd.t, &rd.d
	var (
		prevKey    string
		lastParent *node
		lastPPath  string
	)
	buf := make([]byte, maxMeta)
	var slab []node // nodes are allocated nodeSlab at a time
	for i := uint64(0); i < count; i++ {
		fields := d.arrayLen("node")
		if d.err == nil && fields != 3 && fields != 6 {
			return rd.bad("node with %d fields", fields)
		}
		key := d.string("key")
		if len(slab) == 0 {
			slab = make([]node, min(count-i, nodeSlab))
		}
		n := &slab[0]
		slab = slab[1:]
		if meta := d.smallBytes("meta", buf); d.err == nil && !n.parseMeta(meta) {
			return rd.bad("node %q: bad meta", key)
		}
		n.content = d.string("content")
		var acl ACL
		if fields == 6 {
			acl = ACL{Reader: d.string("reader"), Writer: d.string("writer"), Changer: d.string("changer")}
			if acl.IsZero() {
				return rd.bad("node %q: empty ACL record", key)
			}
		}
		if d.err != nil {
			return d.err
		}
		if len(key) < 2 || key <= prevKey {
			return rd.bad("node key %q out of order", key)
		}
		prevKey = key
		// The parent is checked below (it must exist), so only the last
		// name needs checking here.
		p := keyPath(key)
		depth := keyDepth(key)
		if p[0] != '/' || pathDepth(p) != depth {
			return rd.bad("node key %q", key)
		}
		pp, name := "", ""
		if depth > 0 {
			pp, name = splitPath(p)
		}
		if depth > 0 && (!validName(name) || pp == "/" && len(p) != len(name)+1) {
			return rd.bad("node key %q", key)
		}
		if n.instance == 0 || n.instance >= t.nextInstance || n.contentGen == 0 || n.aclGen == 0 {
			return rd.bad("node %s: bad instance or generation", quote(p))
		}
		if checksum(n.content) != n.checksum {
			return rd.bad("node %s: content checksum mismatch", quote(p))
		}
		if !acl.IsZero() {
			n.acl = rd.internACL(acl)
		}
		if n.owner != 0 {
			s := t.sessions[n.owner]
			if s == nil {
				return rd.bad("node %s: owner %d is not a session", quote(p), n.owner)
			}
			s.ephemerals = append(s.ephemerals, p)
		}
		if depth == 0 {
			if i != 0 || n.owner != 0 {
				return rd.bad("root")
			}
		} else {
			if lastParent == nil || pp != lastPPath {
				lastParent, lastPPath = t.lookup(pp), pp
			}
			if lastParent == nil || lastParent.owner != 0 {
				return rd.bad("node %s: no parent, or an ephemeral one", quote(p))
			}
			lastParent.children++
		}
		t.nodes.Insert(key, n)
		t.byPath[p] = n
	}
	return nil
}

// internACL shares one *ACL between nodes with the same names. Linear in the
// distinct ACLs seen recently is enough: nodes inherit, so equal ACLs cluster.
func (rd *snapshotReader) internACL(a ACL) *ACL {
	if rd.lastACL != nil && *rd.lastACL == a {
		return rd.lastACL
	}
	p := &a
	rd.lastACL = p
	return p
}

func (rd *snapshotReader) lock(prev string) (string, error) {
	t, d := rd.t, &rd.d
	d.expectArray("lock", 5)
	p := d.string("lock path")
	ls := &lockState{path: p, heapIdx: [2]int{-1, -1}}
	ls.mode = Mode(d.uint("lock mode", uint64(ModeShared)))
	ls.delayUntil = d.int("delay until")
	nh := d.arrayLen("holders")
	for i := 0; i < nh && d.err == nil; i++ {
		d.expectArray("holder", 2)
		ls.holders = append(ls.holders, holder{session: d.uint("holder", math.MaxUint64), delay: time.Duration(d.int("holder delay"))})
	}
	nw := d.arrayLen("waiters")
	for i := 0; i < nw && d.err == nil; i++ {
		d.expectArray("waiter", 4)
		ls.waiters = append(ls.waiters, waiter{
			session: d.uint("waiter", math.MaxUint64),
			request: d.uint("waiter request", math.MaxUint64),
			mode:    Mode(d.uint("waiter mode", uint64(ModeShared))),
			delay:   time.Duration(d.int("waiter delay")),
		})
	}
	if d.err != nil {
		return "", d.err
	}
	if p <= prev {
		return "", rd.bad("lock %s out of order", quote(p))
	}
	if ls.node = t.lookup(p); ls.node == nil {
		return "", rd.bad("lock %s: no node", quote(p))
	}
	if (len(ls.holders) == 0) != (ls.mode == ModeNone) ||
		len(ls.holders) > 1 && ls.mode != ModeShared ||
		ls.delayUntil != 0 && ls.delayUntil <= t.now ||
		len(ls.holders) == 0 && len(ls.waiters) == 0 && ls.delayUntil == 0 {
		return "", rd.bad("lock %s: inconsistent holders", quote(p))
	}
	seen := make(map[uint64]bool, len(ls.holders)+len(ls.waiters))
	for _, h := range ls.holders {
		s := t.sessions[h.session]
		if s == nil || seen[h.session] {
			return "", rd.bad("lock %s: holder %d", quote(p), h.session)
		}
		seen[h.session] = true
		s.held = append(s.held, ls.path)
	}
	for _, w := range ls.waiters {
		s := t.sessions[w.session]
		if s == nil || seen[w.session] || w.mode == ModeNone {
			return "", rd.bad("lock %s: waiter %d", quote(p), w.session)
		}
		seen[w.session] = true
		s.waiting = append(s.waiting, ls.path)
	}
	t.locks[p] = ls
	t.settle(ls)
	return p, nil
}

// appendMeta appends the node's numbers in the snapshot's meta encoding.
func (n *node) appendMeta(b []byte) []byte {
	for _, v := range [...]uint64{n.instance, n.contentGen, n.lockGen, n.aclGen, n.cIndex} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendVarint(b, n.cTime)
	b = binary.AppendUvarint(b, n.mIndex)
	b = binary.AppendVarint(b, n.mTime)
	b = binary.AppendUvarint(b, n.owner)
	b = binary.AppendUvarint(b, uint64(n.seq))
	return binary.LittleEndian.AppendUint64(b, n.checksum)
}

// parseMeta reads what appendMeta wrote; false if b is malformed.
func (n *node) parseMeta(b []byte) bool {
	var u [10]uint64
	for i := range u {
		var k int
		if i == 5 || i == 7 {
			var v int64
			v, k = binary.Varint(b)
			u[i] = uint64(v)
		} else {
			u[i], k = binary.Uvarint(b)
		}
		if k <= 0 {
			return false
		}
		b = b[k:]
	}
	if len(b) != 8 || u[9] > math.MaxUint32 {
		return false
	}
	n.instance, n.contentGen, n.lockGen, n.aclGen, n.cIndex = u[0], u[1], u[2], u[3], u[4]
	n.cTime, n.mIndex, n.mTime, n.owner, n.seq = int64(u[5]), u[6], int64(u[7]), u[8], uint32(u[9])
	n.checksum = binary.LittleEndian.Uint64(b)
	return true
}
