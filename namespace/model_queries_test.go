package namespace

import (
	"slices"
	"sort"
)

// Queries, in the shapes the Tree returns.

func (m *model) get(p string) (Node, bool) {
	n := m.nodes[p]
	if n == nil {
		return Node{}, false
	}
	return Node{Path: p, Content: []byte(n.content), ACL: n.acl, Stat: m.stat(p)}, true
}

func (m *model) walk(p string) []string {
	out := []string{p}
	for _, name := range m.children(p) {
		out = append(out, m.walk(joinPath(p, name))...)
	}
	return out
}

func (m *model) lockInfos() []LockInfo {
	var paths []string
	for p := range m.locks {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out := make([]LockInfo, 0, len(paths))
	for _, p := range paths {
		l := m.locks[p]
		info := LockInfo{Path: p, Instance: m.nodes[p].instance, Mode: l.mode, LockGen: m.nodes[p].lockGen, DelayUntil: l.delayUntil}
		for _, h := range l.holders {
			info.Holders = append(info.Holders, h.session)
		}
		for _, w := range l.waiters {
			info.Waiters = append(info.Waiters, Waiter{Session: w.session, Request: w.request, Mode: w.mode})
		}
		out = append(out, info)
	}
	return out
}

func (m *model) sessionInfos() []SessionInfo {
	var ids []uint64
	for id := range m.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]SessionInfo, 0, len(ids))
	for _, id := range ids {
		s := m.sessions[id]
		out = append(out, SessionInfo{ID: id, Timeout: s.timeout, Client: s.client, Principal: s.principal,
			Restricted: s.restricted, Superuser: s.superuser, CreatedIndex: s.cIndex, CreatedTime: s.cTime,
			Ephemerals: append([]string{}, m.ephemerals(id)...), Locks: append([]string{}, m.lockPaths(id, false)...),
			Waiting: append([]string{}, m.lockPaths(id, true)...)})
	}
	return out
}

func (m *model) nextDeadline() (int64, bool) {
	best, ok := int64(0), false
	for _, l := range m.locks {
		if l.delayUntil != 0 && len(l.waiters) > 0 && (!ok || l.delayUntil < best) {
			best, ok = l.delayUntil, true
		}
	}
	return best, ok
}

func (m *model) checkSequencer(s Sequencer) bool {
	n, l := m.nodes[s.Path], m.locks[s.Path]
	return n != nil && l != nil && n.instance == s.Instance && n.lockGen == s.LockGen && len(l.holders) > 0 && l.mode == s.Mode
}
