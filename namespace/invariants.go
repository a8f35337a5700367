package namespace

import (
	"fmt"
	"slices"
)

// CheckInvariants verifies the internal consistency of the whole tree and
// returns the first violation found: every node's parent exists and is not
// ephemeral, child counts match, instances are unique and below the counter,
// checksums match, every ephemeral owner, holder and waiter is a live
// session, the sessions' records agree with the nodes and locks, no lock is
// idle, no compatible waiter is left queued while no lock-delay is pending,
// and the lock-delay heaps hold exactly the delayed locks. It is O(state)
// and meant for tests, fuzzing and debugging.
func (t *Tree) CheckInvariants() error {
	if err := t.checkNodes(); err != nil {
		return err
	}
	if err := t.checkSessions(); err != nil {
		return err
	}
	return t.checkLocks()
}

func (t *Tree) checkNodes() error {
	if t.lookup("/") == nil {
		return fmt.Errorf("no root")
	}
	children := make(map[string]uint32)
	instances := make(map[uint64]string)
	var err error
	t.nodes.Walk(func(key string, v any) bool {
		p, n := keyPath(key), v.(*node)
		depth := keyDepth(key)
		switch {
		case pathDepth(p) != depth:
			err = fmt.Errorf("node %s under depth %d", p, depth)
		case n.instance == 0 || n.instance >= t.nextInstance:
			err = fmt.Errorf("node %s: instance %d not below %d", p, n.instance, t.nextInstance)
		case instances[n.instance] != "":
			err = fmt.Errorf("node %s: instance %d also used by %s", p, n.instance, instances[n.instance])
		case checksum(n.content) != n.checksum:
			err = fmt.Errorf("node %s: checksum mismatch", p)
		}
		if err != nil {
			return true
		}
		instances[n.instance] = p
		if depth > 0 {
			pp, _ := splitPath(p)
			parent := t.lookup(pp)
			if parent == nil || parent.owner != 0 {
				err = fmt.Errorf("node %s: parent missing or ephemeral", p)
				return true
			}
			children[pp]++
		}
		if n.owner != 0 {
			s := t.sessions[n.owner]
			if s == nil {
				err = fmt.Errorf("node %s: owner %d is not a live session", p, n.owner)
				return true
			}
			if _, ok := slices.BinarySearch(s.ephemerals, p); !ok {
				err = fmt.Errorf("node %s: missing from session %d's ephemerals", p, n.owner)
				return true
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	if len(t.byPath) != t.nodes.Len() {
		return fmt.Errorf("path index has %d nodes, tree %d", len(t.byPath), t.nodes.Len())
	}
	t.nodes.Walk(func(key string, v any) bool {
		if t.byPath[keyPath(key)] != v.(*node) {
			err = fmt.Errorf("node %s: path index disagrees", keyPath(key))
			return true
		}
		if n := v.(*node); n.children != children[keyPath(key)] {
			err = fmt.Errorf("node %s: child count %d, has %d", keyPath(key), n.children, children[keyPath(key)])
		}
		return err != nil
	})
	return err
}

func (t *Tree) checkSessions() error {
	for _, id := range t.sessionIDs() {
		s := t.sessions[id]
		if s.id != id || id == 0 || id >= t.nextSession {
			return fmt.Errorf("session %d: bad id %d", id, s.id)
		}
		lists := [][]string{s.ephemerals, s.held, s.waiting}
		for _, l := range lists {
			if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
				return fmt.Errorf("session %d: unsorted or duplicate paths", id)
			}
		}
		for _, p := range s.ephemerals {
			if n := t.lookup(p); n == nil || n.owner != id {
				return fmt.Errorf("session %d: ephemeral %s not owned", id, p)
			}
		}
		for _, p := range s.held {
			if ls := t.locks[p]; ls == nil || ls.holderIndex(id) < 0 {
				return fmt.Errorf("session %d: does not hold %s", id, p)
			}
		}
		for _, p := range s.waiting {
			if ls := t.locks[p]; ls == nil || ls.waiterIndex(id) < 0 {
				return fmt.Errorf("session %d: does not wait for %s", id, p)
			}
		}
		if n := len(s.results.requests); n > max(t.cfg.Results, 0) || n != len(s.results.results) {
			return fmt.Errorf("session %d: %d results kept", id, n)
		}
	}
	return nil
}

func (t *Tree) checkLocks() error {
	var delayed, blocked int
	for _, info := range t.Locks() {
		p := info.Path
		ls := t.locks[p]
		if n := t.lookup(p); n == nil || n != ls.node {
			return fmt.Errorf("lock %s: node missing or stale", p)
		}
		if (len(ls.holders) == 0) != (ls.mode == ModeNone) || len(ls.holders) > 1 && ls.mode != ModeShared {
			return fmt.Errorf("lock %s: mode %s with %d holders", p, ls.mode, len(ls.holders))
		}
		ids := make([]uint64, 0, len(ls.holders)+len(ls.waiters))
		for _, h := range ls.holders {
			ids = append(ids, h.session)
		}
		for _, w := range ls.waiters {
			ids = append(ids, w.session)
		}
		seen := make(map[uint64]bool, len(ids))
		for i, id := range ids {
			s := t.sessions[id]
			if s == nil || seen[id] {
				return fmt.Errorf("lock %s: holder or waiter %d dead or repeated", p, id)
			}
			list := s.held
			if i >= len(ls.holders) {
				list = s.waiting
			}
			if _, ok := slices.BinarySearch(list, p); !ok {
				return fmt.Errorf("lock %s: session %d does not record it", p, id)
			}
			seen[id] = true
		}
		inDelay := ls.delayUntil > t.now
		if ls.delayUntil != 0 && !inDelay {
			return fmt.Errorf("lock %s: lock-delay ended at %d but not cleared", p, ls.delayUntil)
		}
		if !inDelay && len(ls.holders) == 0 && len(ls.waiters) == 0 {
			return fmt.Errorf("lock %s: idle state kept", p)
		}
		if !inDelay && len(ls.waiters) > 0 &&
			(len(ls.holders) == 0 || ls.mode == ModeShared && ls.waiters[0].mode == ModeShared) {
			return fmt.Errorf("lock %s: grantable waiter left queued", p)
		}
		if (ls.heapIdx[0] >= 0) != inDelay || (ls.heapIdx[1] >= 0) != (inDelay && len(ls.waiters) > 0) {
			return fmt.Errorf("lock %s: heap membership wrong", p)
		}
		if inDelay {
			delayed++
		}
		if inDelay && len(ls.waiters) > 0 {
			blocked++
		}
	}
	if delayed != len(t.delayed.items) || blocked != len(t.blocked.items) {
		return fmt.Errorf("heaps hold %d and %d locks, want %d and %d", len(t.delayed.items), len(t.blocked.items), delayed, blocked)
	}
	for _, h := range []*lockHeap{&t.delayed, &t.blocked} {
		for i, ls := range h.items {
			if ls.heapIdx[h.slot] != i || i > 0 && h.Less(i, (i-1)/2) {
				return fmt.Errorf("heap %d broken at %d", h.slot, i)
			}
		}
	}
	return nil
}
