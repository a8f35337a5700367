package session

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	radix "github.com/armon/go-radix"
)

// Target is one session to notify of an event, with the ids of its watches
// that matched (in increasing order).
type Target struct {
	Session uint64
	Watches []uint64
}

// watchSpec is one watch as its session remembers it.
type watchSpec struct {
	path      string
	recursive bool
}

// watcher is one (session, watch) pair in the index.
type watcher struct {
	session, watch uint64
}

// watchIndex maps paths to their watchers: exact watches in a map keyed by
// path, recursive ones in a radix tree keyed by the path with a trailing
// '/', so that the keys that are prefixes of an event's path (plus '/') are
// exactly the recursive watches covering it. Route costs one map lookup and
// one walk down the tree, whatever the number of sessions.
type watchIndex struct {
	mu    sync.RWMutex
	exact map[string][]watcher
	tree  *radix.Tree // key → *[]watcher
	// exacts and subtrees count the exact and recursive watchers (changed
	// under mu), so route skips the lock, or the tree walk, when there are
	// none: most events of a cell nobody watches cost nothing here.
	exacts, subtrees atomic.Int64
}

func (x *watchIndex) init() {
	x.exact = make(map[string][]watcher)
	x.tree = radix.New()
}

// subtreeKey is the radix key of a recursive watch on path: "/" for the
// root, "path/" otherwise. The same function maps an event's path to the
// string whose prefixes are walked.
func subtreeKey(path string) string {
	if path == "/" {
		return path
	}
	return path + "/"
}

func (x *watchIndex) add(path string, recursive bool, w watcher) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !recursive {
		x.exact[path] = append(x.exact[path], w)
		x.exacts.Add(1)
		return
	}
	x.subtrees.Add(1)
	key := subtreeKey(path)
	if v, ok := x.tree.Get(key); ok {
		list := v.(*[]watcher)
		*list = append(*list, w)
		return
	}
	x.tree.Insert(key, &[]watcher{w})
}

// removeWatcher drops w from list and counts it off n.
func removeWatcher(list []watcher, w watcher, n *atomic.Int64) []watcher {
	if i := slices.Index(list, w); i >= 0 {
		last := len(list) - 1
		list[i] = list[last]
		list = list[:last]
		n.Add(-1)
	}
	return list
}

// removeLocked drops one watcher. Called with x.mu held.
func (x *watchIndex) removeLocked(spec watchSpec, w watcher) {
	if !spec.recursive {
		list := removeWatcher(x.exact[spec.path], w, &x.exacts)
		if len(list) == 0 {
			delete(x.exact, spec.path)
		} else {
			x.exact[spec.path] = list
		}
		return
	}
	key := subtreeKey(spec.path)
	v, ok := x.tree.Get(key)
	if !ok {
		return
	}
	list := v.(*[]watcher)
	*list = removeWatcher(*list, w, &x.subtrees)
	if len(*list) == 0 {
		x.tree.Delete(key)
	}
}

func (x *watchIndex) remove(spec watchSpec, w watcher) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(spec, w)
}

// removeAll drops all the watches of a session.
func (x *watchIndex) removeAll(session uint64, specs map[uint64]watchSpec) {
	if len(specs) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, spec := range specs {
		x.removeLocked(spec, watcher{session: session, watch: id})
	}
}

// route returns the sessions watching path.
func (x *watchIndex) route(path string) []Target {
	if x.exacts.Load() == 0 && x.subtrees.Load() == 0 {
		return nil // a watch added meanwhile is ordered after this event
	}
	x.mu.RLock()
	matched := append([]watcher(nil), x.exact[path]...)
	if x.subtrees.Load() > 0 {
		x.tree.WalkPath(subtreeKey(path), func(_ string, v any) bool {
			matched = append(matched, *v.(*[]watcher)...)
			return false
		})
	}
	x.mu.RUnlock()
	if len(matched) == 0 {
		return nil
	}
	slices.SortFunc(matched, func(a, b watcher) int {
		if c := cmp.Compare(a.session, b.session); c != 0 {
			return c
		}
		return cmp.Compare(a.watch, b.watch)
	})
	var out []Target
	for _, w := range matched {
		if n := len(out); n > 0 && out[n-1].Session == w.session {
			out[n-1].Watches = append(out[n-1].Watches, w.watch)
			continue
		}
		out = append(out, Target{Session: w.session, Watches: []uint64{w.watch}})
	}
	return out
}

// checkWatchPath accepts an absolute, clean path: "/" or "/"-separated
// non-empty names without NUL. The namespace has the full rules (lengths,
// depth); this check only keeps the index's keys unambiguous.
func checkWatchPath(path string) error {
	if path == "/" {
		return nil
	}
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") ||
		strings.Contains(path, "//") || strings.ContainsRune(path, 0) {
		return fmt.Errorf("%w: %q", ErrBadPath, path)
	}
	return nil
}

// Watch registers a watch of session id on path (with recursive, on its whole
// subtree, path included) and returns its id, unique within the session.
// Events are matched to watches by Route. It fails with ErrBadPath,
// ErrUnknown, ErrExpired, ErrLimit (MaxWatches) or ErrClosed.
func (m *Manager[E]) Watch(id uint64, path string, recursive bool) (uint64, error) {
	if err := checkWatchPath(path); err != nil {
		return 0, err
	}
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := sh.live(id, m.now())
	if err != nil {
		return 0, err
	}
	if len(e.watches) >= m.cfg.MaxWatches {
		return 0, fmt.Errorf("%w: session %d has %d watches", ErrLimit, id, len(e.watches))
	}
	if e.watches == nil {
		e.watches = make(map[uint64]watchSpec)
	}
	e.nextW++
	wid := e.nextW
	spec := watchSpec{path: path, recursive: recursive}
	e.watches[wid] = spec
	// Under the shard lock, so that Remove cannot miss a watch being added.
	m.index.add(path, recursive, watcher{session: id, watch: wid})
	return wid, nil
}

// Unwatch removes watch wid of session id. It fails with ErrUnknown or
// ErrNoWatch.
func (m *Manager[E]) Unwatch(id, wid uint64) error {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.sessions[id]
	if !ok {
		return ErrUnknown
	}
	spec, ok := e.watches[wid]
	if !ok {
		return fmt.Errorf("%w: %d", ErrNoWatch, wid)
	}
	delete(e.watches, wid)
	m.index.remove(spec, watcher{session: id, watch: wid})
	return nil
}

// Watches returns the number of watches session id has registered (with
// this Manager, that is: watches do not survive a leader change), or 0 if
// the session is not tracked. For listings; it takes the session's shard
// lock briefly.
func (m *Manager[E]) Watches(id uint64) int {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.sessions[id]; ok {
		return len(e.watches)
	}
	return 0
}

// Route returns the sessions with a watch that covers path (an exact watch
// on path, or a recursive watch on path or an ancestor), in increasing
// session order, each with its matching watch ids. It does not look at
// sessions without watches: its cost is one map lookup and one walk of the
// path's ancestors in a radix tree. The lockserver calls it for each event
// an applied command produces and Delivers the event to each target.
func (m *Manager[E]) Route(path string) []Target {
	return m.index.route(path)
}
