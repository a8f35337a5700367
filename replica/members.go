package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/latchd/latch/replica/paxos"
)

// The member set of a running cell (docs/membership.md §7). Each group's
// apply goroutine keeps the member set in lockstep with its state machine
// (applier.members): it applies the chosen member changes, which the state
// machine never sees, and publishes the set. The replica then derives the
// peers' addresses from it (MemberAddrs in each member's Meta), tells the
// network, and records it in the cell record, so that a restart finds the
// replicated set even where the configuration lists another one.

// ErrNoMembers is returned by Members and ChangeMembers on a replica that
// joins (Config.Join) and has not yet received a snapshot with the member
// set.
var ErrNoMembers = errors.New("replica: the member set is not known yet (joining)")

// MemberAddrs is the Meta of a paxos.Member in a latch cell: the member's
// addresses (peer, client and HTTP).
type MemberAddrs struct{ Peer, Client, HTTP string }

// memberAddrsVersion is the first byte of an encoded MemberAddrs.
const memberAddrsVersion = 1

// Encode returns the versioned binary encoding of a: a version byte, then
// each address as a uvarint length and its bytes.
func (a MemberAddrs) Encode() []byte {
	b := []byte{memberAddrsVersion}
	for _, s := range []string{a.Peer, a.Client, a.HTTP} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// DecodeMemberAddrs decodes what MemberAddrs.Encode wrote. Garbage, an
// unknown version or trailing bytes give an error wrapping ErrMalformed.
func DecodeMemberAddrs(b []byte) (MemberAddrs, error) {
	bad := func(format string, args ...any) (MemberAddrs, error) {
		return MemberAddrs{}, fmt.Errorf("%w: member addresses: "+format, append([]any{ErrMalformed}, args...)...)
	}
	if len(b) == 0 {
		return bad("empty")
	}
	if b[0] != memberAddrsVersion {
		return bad("version %d; this build reads version %d", b[0], memberAddrsVersion)
	}
	rest := b[1:]
	var s [3]string
	for i := range s {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return bad("address %d cut short", i+1)
		}
		s[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	if len(rest) > 0 {
		return bad("%d bytes after the addresses", len(rest))
	}
	return MemberAddrs{Peer: s[0], Client: s[1], HTTP: s[2]}, nil
}

// changeWaiter is a ChangeMembers call waiting for its instance to be
// applied (shared by the loop, which registers it, and the apply goroutine,
// which completes it, under group.pendMu).
type changeWaiter struct {
	value []byte // the encoded change proposed
	done  chan changeResult
}

type changeResult struct {
	members paxos.Members
	err     error
}

// ChangeMembers proposes c in group and waits until it is chosen and
// applied on this replica. It returns the member set right after it and
// the instance where it was chosen. Only the leader proposes: elsewhere it
// returns a *NotLeaderError, as Propose does. The core's refusals are
// returned wrapped (errors.Is works): paxos.ErrChangePending (a voter
// change pending, or a voter rebuilding), paxos.ErrPhase1Pending (retry
// after a heartbeat), paxos.ErrNotCaughtUp (Promote of a learner that has
// not caught up or not acknowledged this leader lately) and
// paxos.ErrInvalidChange (also for a change that was chosen but found
// invalid when applied: it then changed nothing). A voter change (Promote,
// RemoveVoter) takes effect α instances after the returned one
// (Members.Pending); the leader pads the log with no-ops meanwhile.
//
// If ctx ends first the change may still be chosen, as with Propose;
// ErrLeadershipLost says another value was chosen at its instance.
func (r *Replica) ChangeMembers(ctx context.Context, group uint32, c paxos.MemberChange) (paxos.Members, uint64, error) {
	g, err := r.group(group)
	if err != nil {
		return paxos.Members{}, 0, err
	}
	if g.members.Load() == nil {
		return paxos.Members{}, 0, ErrNoMembers
	}
	type answer struct {
		instance uint64
		w        *changeWaiter
		err      error
	}
	ch := make(chan answer, 1)
	propose := func() {
		if g.role != paxos.Leader {
			ch <- answer{err: g.notLeader()}
			return
		}
		inst, err := g.node.ProposeChange(c)
		switch {
		case errors.Is(err, paxos.ErrNotLeader):
			ch <- answer{err: g.notLeader()}
			return
		case err != nil:
			ch <- answer{err: fmt.Errorf("replica: group %d: %v %d: %w", g.id, c.Op, c.ID, err)}
			return
		}
		w := &changeWaiter{value: c.Encode(), done: make(chan changeResult, 1)}
		g.pendMu.Lock()
		g.changes[inst] = w
		g.nChanges.Store(int32(len(g.changes)))
		g.pendMu.Unlock()
		g.log.Info("member change proposed", "op", c.Op, "id", c.ID, "instance", inst)
		ch <- answer{instance: inst, w: w}
	}
	var a answer
	for {
		a, err = askLoop(ctx, g, propose, ch)
		if err != nil {
			return paxos.Members{}, 0, err
		}
		if !errors.Is(a.err, paxos.ErrWindowFull) {
			break
		}
		// The window is full of commands in flight: it moves within a
		// round trip.
		select {
		case <-time.After(r.cfg.HeartbeatInterval):
		case <-ctx.Done():
			return paxos.Members{}, 0, ctx.Err()
		}
	}
	if a.err != nil {
		return paxos.Members{}, 0, a.err
	}
	select {
	case res := <-a.w.done:
		return res.members, a.instance, res.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-r.done:
		err = r.stoppedErr()
	}
	g.pendMu.Lock()
	if g.changes[a.instance] == a.w {
		delete(g.changes, a.instance)
		g.nChanges.Store(int32(len(g.changes)))
	}
	g.pendMu.Unlock()
	return paxos.Members{}, a.instance, err
}

// Members returns group's member set as of the last instance applied on
// this replica (ErrNoMembers while a joiner has none yet). A restarted
// replica returns, from New on, the set as of the end of the chosen log it
// recovered, which its state machine replays after Start.
func (r *Replica) Members(group uint32) (paxos.Members, error) {
	g := r.groups[group]
	if g == nil {
		return paxos.Members{}, fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	m := g.members.Load()
	if m == nil {
		return paxos.Members{}, ErrNoMembers
	}
	return m.Clone(), nil
}

// Removed is closed once this replica's id is retired in the member set of
// every hosted group (paxos Ready.Removed), or once a member refuses its
// connection because it applied that removal (the replica lagged behind
// it: retiredBy): it is no longer a member of the cell, and the program
// should Close it. Until then it keeps answering
// as an acceptor, which a remaining voter that lags behind may still need
// (docs/membership.md §11): a daemon does well to wait an election timeout
// or two before it closes.
func (r *Replica) Removed() <-chan struct{} { return r.removedC }

// groupRemoved records that group's core reported this replica removed
// (loop goroutine) and closes Removed once every group did.
func (r *Replica) groupRemoved(g *group) {
	g.removedSeen.Store(true)
	for _, o := range r.groups {
		if !o.removedSeen.Load() {
			return
		}
	}
	r.removedOnce.Do(func() {
		r.log.Warn("removed from the cell in every group: stop this replica")
		close(r.removedC)
	})
}

// retiredBy records a peer's answer that this replica was removed from
// the cell (transport.Config.OnRetired, on a dial goroutine) and closes
// Removed. It is how a replica that lagged behind its removal learns it:
// the members' cores drop its messages once the removal is in effect, and
// their transports forget it two election timeouts later
// (membersChanged), so no Accept tells it. The answer is authoritative: a
// member's transport refuses an id as removed only after that member
// applied a chosen member set that retired it (ids are never reused), and
// only to a dialer of its own cell that meant to reach it. By then the
// removal is in effect, and no remaining voter needs this replica as an
// acceptor.
func (r *Replica) retiredBy(by uint64) {
	r.removedOnce.Do(func() {
		r.log.Warn("a member reports this replica removed from the cell: stop this replica", "by", by)
		close(r.removedC)
	})
}

// peerOf returns the peer address x's Meta carries (MemberAddrs), "" if
// it carries none: a founder's comes from configuration.
func peerOf(x paxos.Member) (string, error) {
	if len(x.Meta) == 0 {
		return "", nil
	}
	a, err := DecodeMemberAddrs(x.Meta)
	return a.Peer, err
}

// peerAddr returns the peer address of replica id as this replica knows
// it, "" if unknown.
func (r *Replica) peerAddr(id uint64) string {
	if p := r.addrs.Load(); p != nil {
		if a, ok := (*p)[id]; ok {
			return a
		}
	}
	return r.cfg.Members[id]
}

// memberView is the union of the hosted groups' member sets: every member
// with its peer address, and the retired ids.
type memberView struct {
	addrs   map[uint64]string // members (and, before a set is known, the configured ones)
	retired []uint64
	known   bool // at least one group knows its member set
}

// view computes the memberView. A member's address is its MemberAddrs.Peer
// if its Meta has one (an added or moved member), else the address the
// cell record or Config.Members gives (a founding member).
func (r *Replica) view() memberView {
	v := memberView{addrs: make(map[uint64]string)}
	for _, id := range r.groupIDs {
		g := r.groups[id]
		if g == nil {
			continue // New is still recovering the groups
		}
		m := g.members.Load()
		if m == nil {
			continue
		}
		v.known = true
		for _, x := range m.Members {
			if _, ok := v.addrs[x.ID]; ok {
				continue
			}
			addr := r.fallbackAddrs[x.ID]
			if peer, err := peerOf(x); err != nil {
				r.log.Warn("member with undecodable addresses", "member", x.ID, "err", err)
			} else if peer != "" {
				addr = peer
			}
			v.addrs[x.ID] = addr
		}
		v.retired = append(v.retired, m.Retired...)
	}
	if !v.known {
		maps.Copy(v.addrs, r.cfg.Members) // a joiner: its seeds
	}
	slices.Sort(v.retired)
	v.retired = slices.Compact(v.retired)
	return v
}

// membersChanged brings the peer addresses, the network and the cell
// record up to date with the groups' member sets. Any goroutine may call
// it; calls are serialised.
func (r *Replica) membersChanged() {
	r.mu.Lock()
	link := r.link // set by Start before any apply goroutine runs
	r.mu.Unlock()
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	v := r.view()
	old := r.addrs.Load()
	if old != nil && maps.Equal(*old, v.addrs) && slices.Equal(r.retired, v.retired) {
		return
	}
	r.warnConfiguredMembers(v)
	r.addrs.Store(&v.addrs)
	var newly []uint64
	for _, id := range v.retired {
		if _, ok := slices.BinarySearch(r.retired, id); !ok {
			newly = append(newly, id)
		}
	}
	r.retired = v.retired
	if link != nil {
		link.SetPeers(v.addrs, nil)
		if db, ok := link.(dialBacker); ok && r.dialsBack() {
			// A replica rebuilt from an empty disk started without a
			// member set, so without dialing back; a lower id that knows
			// only founders removed since reaches it only this way (the
			// soak: two joiners wiped one after the other, the second
			// waited for the first's promise for ever).
			db.DialBack()
		}
		if len(newly) > 0 {
			// A removed replica learns that its removal took effect from
			// the leader's next Accept (nudge): forget it a little later.
			time.AfterFunc(2*r.cfg.ElectionTimeout, func() { link.SetPeers(nil, newly) })
		}
	}
	if !v.known {
		return
	}
	rec := r.cell
	rec.Members, rec.Changed = nil, true
	for _, id := range slices.Sorted(maps.Keys(v.addrs)) {
		rec.Members = append(rec.Members, cellMember{ID: id, Peer: v.addrs[id]})
	}
	if slices.Equal(rec.Members, r.cell.Members) {
		return
	}
	if err := writeCellRecord(r.cellPath(), rec); err != nil {
		// The record is a hint for the next start; the member set itself
		// is in the log and snapshots.
		r.log.Warn("cannot record the member set in the cell record", "err", err)
		return
	}
	r.cell = rec
}

// warnConfiguredMembers logs, the first time the member set this process
// knows (from the data dir, or applied since) differs from Config.Members,
// how it differs: the replicated set wins (docs/membership.md §7). The
// caller holds viewMu (or is New).
func (r *Replica) warnConfiguredMembers(v memberView) {
	if !v.known || r.configWarned {
		return
	}
	var missing, extra []uint64
	for id := range v.addrs {
		if _, ok := r.cfg.Members[id]; !ok {
			missing = append(missing, id)
		}
	}
	for id := range r.cfg.Members {
		if _, ok := v.addrs[id]; !ok {
			extra = append(extra, id)
		}
	}
	var moved []uint64
	for id, a := range v.addrs {
		if c, ok := r.cfg.Members[id]; ok && c != a && a != "" && id != r.cfg.ID {
			moved = append(moved, id)
		}
	}
	if len(missing)+len(extra)+len(moved) == 0 {
		return
	}
	r.configWarned = true
	slices.Sort(missing)
	slices.Sort(extra)
	slices.Sort(moved)
	r.log.Warn("the configured members differ from the replicated member set, which wins",
		"members", slices.Sorted(maps.Keys(v.addrs)), "not configured", missing, "configured, not members", extra,
		"configured at another address", moved)
}

// nudge has the leader propose an empty batch where a voter change or a
// removal needs one on an idle cell (loop goroutine). A voter change takes
// effect once an instance at or past At+α is applied, and the core's
// padding stops at At+α−1: so while it is pending and nothing is in
// flight, the leader proposes up to At+α. And a removed replica learns that
// its removal is in effect only from an Accept that carries a commit past
// the instance where it took effect (a new proposal's Accept goes to every
// position the core still holds; heartbeats go to members only): so once
// such an instance is applied (lastEffect, also a RemoveLearner, which
// retires a learner at once) and nothing is in flight, the leader proposes
// once more. Only a proposal made after that instance was applied carries
// a commit past it: one proposed earlier does not, however far the log
// moved (a new leader's first no-op, proposed before it learned the
// removal chosen, did not tell the removed learner).
func (g *group) nudge() {
	if g.role != paxos.Leader || g.writing || len(g.queued) > 0 {
		return
	}
	m := g.members.Load()
	effect := g.lastEffect.Load()
	if m == nil || m.Pending == nil && effect <= g.nudgedFor {
		return
	}
	st := g.node.Status()
	if st.InFlight > 0 || m.Pending != nil && st.Next > m.Pending.At+m.Alpha {
		return
	}
	g.nextBatch++
	if _, err := g.node.Propose(appendBatch(nil, g.r.cfg.ID, g.nextBatch, nil)); err != nil {
		g.log.Debug("no empty batch for a member change", "instance", st.Next, "err", err)
		return
	}
	if m.Pending == nil {
		g.nudgedFor = effect
	}
}

// completeChange completes the ChangeMembers waiting for instance e, if
// any, with the member set after it (apply goroutine).
func (g *group) completeChange(e *paxos.Entry, m paxos.Members, applyErr error) {
	g.pendMu.Lock()
	w := g.changes[e.Instance]
	delete(g.changes, e.Instance)
	g.nChanges.Store(int32(len(g.changes)))
	g.pendMu.Unlock()
	if w == nil {
		return
	}
	res := changeResult{members: m.Clone(), err: applyErr}
	if !e.Conf || !bytes.Equal(e.Value, w.value) {
		res = changeResult{err: fmt.Errorf("%w (group %d): another value was chosen at instance %d", ErrLeadershipLost, g.id, e.Instance)}
	} else if applyErr != nil {
		res.err = fmt.Errorf("replica: group %d: chosen at %d: %w", g.id, e.Instance, applyErr)
	}
	w.done <- res
}

// failChanges fails the ChangeMembers waiting for instances through
// instance: a snapshot covered them, so this replica does not learn their
// values (apply goroutine).
func (g *group) failChanges(instance uint64) {
	g.pendMu.Lock()
	var ws []*changeWaiter
	for i, w := range g.changes {
		if i <= instance {
			ws = append(ws, w)
			delete(g.changes, i)
		}
	}
	g.nChanges.Store(int32(len(g.changes)))
	g.pendMu.Unlock()
	for _, w := range ws {
		w.done <- changeResult{err: fmt.Errorf("%w (group %d): a snapshot through %d covered the change; check Members", ErrLeadershipLost, g.id, instance)}
	}
}
