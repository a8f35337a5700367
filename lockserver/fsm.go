package lockserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
)

// fsm makes the namespace a replica.StateMachine: it decodes log commands,
// applies them to the tree, and hands their consequences to the leader's
// session manager (watch events, session bookkeeping) and to the requests
// waiting for a lock grant.
//
// Concurrency: Apply, Snapshot and Restore run on the replica's apply
// goroutine. Request goroutines read the tree under mu.RLock. The leader's
// term is installed and removed under mu, so no Apply runs between reading
// the session table and handing it to a new term's manager.
type fsm struct {
	mu   sync.RWMutex
	tree *namespace.Tree
	term *term // the leader's duties; nil on a follower. Guarded by mu.

	waits *waitTable
	opens openTable // recent OpenSession nonces; replicated state, guarded by mu
	// sessions counts the live sessions (for Status), kept from the
	// session events. Guarded by mu.
	sessions int
	// restored counts Restores, so the leader restarts its term when the
	// state under it was replaced.
	restored atomic.Uint64
	// applied is the largest command time applied (the tree's Now), the
	// floor of the server's command time (cellClock). Written under mu.
	applied atomic.Int64

	// Owned by the apply goroutine.
	dec *commandDecoder
	cmd namespace.Command
	buf []byte
}

var _ replica.StateMachine = (*fsm)(nil)

func newFSM(cfg namespace.Config) *fsm {
	return &fsm{tree: namespace.New(cfg), waits: newWaitTable(), dec: newCommandDecoder()}
}

// Apply implements replica.StateMachine.
func (f *fsm) Apply(index uint64, b []byte) []byte {
	f.cmd = namespace.Command{}
	k, err := f.dec.decode(b, &f.cmd)
	if err != nil {
		code := namespace.CodeInvalidCommand
		if errors.Is(err, ErrCommandVersion) {
			code = namespace.CodeUnknownVersion
		}
		r := namespace.Result{Err: &namespace.Error{Code: code, Msg: err.Error()}}
		return appendResult(nil, index, &r)
	}
	f.mu.Lock()
	if k == kindPut {
		f.resolvePut(&f.cmd)
	}
	var res namespace.Result
	var evs []namespace.Event
	nonce := f.openNonce(&f.cmd)
	if sid, ok := f.opens.get(nonce); ok {
		res = namespace.Result{Session: sid} // a retried OpenSession
	} else {
		res, evs = f.tree.Apply(index, &f.cmd)
		if nonce != 0 && res.Err == nil {
			f.opens.put(nonce, res.Session)
		}
	}
	if len(evs) > 0 {
		f.fanout(index, &f.cmd, evs)
	}
	f.noteTime()
	f.mu.Unlock()
	f.buf = appendResult(f.buf[:0], index, &res)
	// The result is handed to another goroutine: give it its own copy.
	return append([]byte(nil), f.buf...)
}

// noteTime publishes the tree's command time in applied, which only
// grows. Called under mu.
func (f *fsm) noteTime() {
	if now := f.tree.Now(); now > f.applied.Load() {
		f.applied.Store(now)
	}
}

// openNonce returns the client's nonce of an OpenSession command (its
// request id, which the client draws at random), or 0.
func (f *fsm) openNonce(cmd *namespace.Command) uint64 {
	if cmd.Op != namespace.OpOpenSession || cmd.Session != 0 {
		return 0
	}
	return cmd.Request
}

// resolvePut turns an unconditional write into a set-content when the node
// exists, at this point of the log. A retry of the same request reaches the
// namespace's idempotence table whichever op it became. Called under mu.
func (f *fsm) resolvePut(cmd *namespace.Command) {
	st, err := f.tree.Stat(cmd.Path)
	if err != nil || !namespace.PutSets(st, cmd.Session, cmd.Flags) {
		return // create it (or let create report the bad path, or ErrExists)
	}
	set := namespace.NewSetContent(cmd.Path, cmd.Content, 0)
	set.Time, set.Session, set.Request = cmd.Time, cmd.Session, cmd.Request
	set.Flags, set.Principal = cmd.Flags&namespace.FlagRestricted, cmd.Principal
	*cmd = set
}

// fanout passes the events of one command to the lock waiters and, on the
// leader, to the session manager. It never blocks. Called under mu.
func (f *fsm) fanout(index uint64, cmd *namespace.Command, evs []namespace.Event) {
	t := f.term
	for i := range evs {
		e := &evs[i]
		switch e.Kind {
		case namespace.EventSessionOpened:
			f.sessions++
		case namespace.EventSessionClosed, namespace.EventSessionExpired:
			f.sessions--
		case namespace.EventLockAcquired:
			f.waits.finish(e.Session, e.Path, waitResult{seq: e.Sequencer})
		case namespace.EventWaitCanceled:
			f.waits.finish(e.Session, e.Path, waitResult{err: waitError(e)})
		}
		if t != nil {
			t.route(f.tree, index, cmd, e)
		}
	}
}

// waitError is the error a waiting Acquire gets when its wait is dropped.
func waitError(e *namespace.Event) *wire.Error {
	switch e.Reason {
	case namespace.ReasonCanceled:
		return wire.Errorf(wire.Canceled, "acquire of %q canceled", e.Path)
	case namespace.ReasonSessionClosed, namespace.ReasonSessionExpired:
		return wire.Errorf(wire.SessionExpired, "session %d ended (%s) while waiting for %q", e.Session, e.Reason, e.Path)
	case namespace.ReasonNodeDeleted:
		return wire.Errorf(wire.NotFound, "%q was deleted while waiting for its lock", e.Path)
	}
	return wire.Errorf(wire.Canceled, "wait for %q dropped (%s)", e.Path, e.Reason)
}

// snapshotMagic starts every snapshot this package writes; the byte after
// it is the snapshot format version.
const snapshotMagic = "latch-lockserver"

const snapshotVersion = 1

// Snapshot implements replica.StateMachine: a header, the OpenSession
// nonce table, then the namespace's own versioned snapshot.
func (f *fsm) Snapshot(w io.Writer) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if _, err := io.WriteString(w, snapshotMagic+string(rune(snapshotVersion))); err != nil {
		return err
	}
	if _, err := w.Write(f.opens.appendTo(nil)); err != nil {
		return err
	}
	return f.tree.Snapshot(w)
}

// Restore implements replica.StateMachine.
func (f *fsm) Restore(r io.Reader) error {
	hdr := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("%w: snapshot header: %w", ErrBadCommand, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a lockserver snapshot", ErrBadCommand)
	}
	if v := hdr[len(snapshotMagic)]; v != snapshotVersion {
		return fmt.Errorf("%w: snapshot version %d", ErrCommandVersion, v)
	}
	var opens openTable
	if err := opens.readFrom(r); err != nil {
		return err
	}
	f.mu.Lock()
	err := f.tree.Restore(r)
	if err == nil {
		f.opens = opens
		f.sessions = len(f.tree.Sessions())
		f.noteTime()
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.restored.Add(1)
	// The waits may refer to requests the restored state has settled in
	// ways this replica did not see: let their clients ask again.
	f.waits.failAll(wire.Errorf(wire.Unavailable, "replica state restored from a snapshot; retry"))
	return nil
}

// read runs fn with the tree under the read lock.
func (f *fsm) read(fn func(t *namespace.Tree)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.tree)
}

// waitKey names the lock a session waits for. A session has at most one
// queued acquire per lock, so this is enough to match a grant.
type waitKey struct {
	session uint64
	path    string
}

// waitResult ends a wait: a grant, or an error.
type waitResult struct {
	seq namespace.Sequencer
	err *wire.Error
}

// waitTable holds the Acquire calls blocked on this replica until their
// session is granted the lock (or the wait is dropped). Entries are added
// by request goroutines before they propose, and finished by Apply.
type waitTable struct {
	mu sync.Mutex
	m  map[waitKey][]chan waitResult
	n  atomic.Int64 // entries, so Apply skips the lock when there are none
}

func newWaitTable() *waitTable { return &waitTable{m: make(map[waitKey][]chan waitResult)} }

// add registers a wait and returns its channel (buffered: finish never blocks).
func (w *waitTable) add(sid uint64, path string) chan waitResult {
	ch := make(chan waitResult, 1)
	w.mu.Lock()
	k := waitKey{sid, path}
	w.m[k] = append(w.m[k], ch)
	w.n.Add(1)
	w.mu.Unlock()
	return ch
}

// remove drops a wait that is no longer needed (finished or abandoned).
func (w *waitTable) remove(sid uint64, path string, ch chan waitResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := waitKey{sid, path}
	chs := w.m[k]
	for i, c := range chs {
		if c == ch {
			chs = append(chs[:i], chs[i+1:]...)
			w.n.Add(-1)
			break
		}
	}
	if len(chs) == 0 {
		delete(w.m, k)
	} else {
		w.m[k] = chs
	}
}

// finish ends every wait of session sid for path with r.
func (w *waitTable) finish(sid uint64, path string, r waitResult) {
	if w.n.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := waitKey{sid, path}
	for _, ch := range w.m[k] {
		ch <- r
		w.n.Add(-1)
	}
	delete(w.m, k)
}

// failAll ends every wait with err.
func (w *waitTable) failAll(err *wire.Error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, chs := range w.m {
		for _, ch := range chs {
			ch <- waitResult{err: err}
			w.n.Add(-1)
		}
		delete(w.m, k)
	}
}

// openCap is how many recent OpenSession nonces the state keeps: a retried
// OpenSession within the last openCap opens gets the session the first one
// opened.
const openCap = 4096

// openTable remembers the sessions opened for recent nonces, oldest first
// from next once full. It is part of the replicated state.
type openTable struct {
	nonces []uint64
	sids   []uint64
	next   int
	index  map[uint64]uint64
}

func (o *openTable) get(nonce uint64) (uint64, bool) {
	if nonce == 0 || o.index == nil {
		return 0, false
	}
	sid, ok := o.index[nonce]
	return sid, ok
}

func (o *openTable) put(nonce, sid uint64) {
	if o.index == nil {
		o.index = make(map[uint64]uint64)
	}
	if len(o.nonces) < openCap {
		o.nonces = append(o.nonces, nonce)
		o.sids = append(o.sids, sid)
	} else {
		delete(o.index, o.nonces[o.next])
		o.nonces[o.next], o.sids[o.next] = nonce, sid
		o.next = (o.next + 1) % openCap
	}
	o.index[nonce] = sid
}

// appendTo writes the table oldest first: a count, then (nonce, session)
// pairs, all 8-byte big-endian.
func (o *openTable) appendTo(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(o.nonces)))
	for i := range o.nonces {
		j := (o.next + i) % len(o.nonces)
		b = binary.BigEndian.AppendUint64(b, o.nonces[j])
		b = binary.BigEndian.AppendUint64(b, o.sids[j])
	}
	return b
}

func (o *openTable) readFrom(r io.Reader) error {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("%w: snapshot nonce table: %w", ErrBadCommand, err)
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n > openCap {
		return fmt.Errorf("%w: snapshot nonce table of %d entries", ErrBadCommand, n)
	}
	buf := make([]byte, 16*n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("%w: snapshot nonce table: %w", ErrBadCommand, err)
	}
	*o = openTable{}
	for i := uint64(0); i < n; i++ {
		o.put(binary.BigEndian.Uint64(buf[16*i:]), binary.BigEndian.Uint64(buf[16*i+8:]))
	}
	return nil
}
