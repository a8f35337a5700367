package lockserver

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
)

// Status describes this replica and what it knows of the cell, for the
// admin server and `latch status`.
type Status struct {
	ID       uint64
	Leader   uint64 // 0 if unknown
	IsLeader bool   // this replica leads and serves sessions
	// Role is the Paxos role ("leader", "follower", "candidate").
	Role string
	// Ballot is the ballot this replica leads or campaigns with.
	Ballot string
	// LeaseValid: this replica is the leader and holds its master lease.
	LeaseValid bool
	// Chosen and Applied are Paxos instances: every instance up to Chosen
	// is known chosen; Applied is the last one applied to the namespace.
	Chosen, Applied uint64
	// Snapshot is the instance the last stored snapshot covers.
	Snapshot uint64
	// Rebuilding: this replica lost its state and learns it again from
	// its peers; it does not vote until a leader fenced it
	// (replica.Config.RebuildEmpty).
	Rebuilding bool
	// Index is the last command index applied to the namespace (commands,
	// not instances: one instance carries a batch).
	Index uint64
	// Nodes and Sessions count the namespace's nodes and live sessions;
	// LocksHeld the locks with holders, LockWaiters the acquires queued.
	Nodes, Sessions, LocksHeld, LockWaiters int
	// Tracked is the number of sessions the leader's manager tracks, and
	// HeldKeepAlives the long polls it holds (0 off the leader).
	Tracked, HeldKeepAlives int
	// Members lists the cell. Only this replica's Applied is known here.
	Members []MemberStatus
	// Replica counts the Paxos group's work.
	Proposals, Batches, Writes, Dropped uint64
	// SyncedWrites counts the log writes with fsync, SyncTime their total
	// time; SnapshotBytes is the size of the stored snapshot.
	SyncedWrites  uint64
	SyncTime      time.Duration
	SnapshotBytes int64
	// BatchSizes and ApplyLatency are the replica's histograms
	// (replica.Stats, replica.BatchSizeBuckets and ApplyLatencyBuckets);
	// ApplyTime is the total of the latter.
	BatchSizes, ApplyLatency []uint64
	BatchCommands            uint64
	ApplyTime                time.Duration
	// Peers is the leader's view of each follower: the last instance it
	// reported chosen and how long ago it last acknowledged (empty off the
	// leader).
	Peers []replica.PeerStatus
}

// MemberStatus is one member of the cell as this replica sees it.
type MemberStatus struct {
	ID      uint64
	Peer    string
	Client  string
	HTTP    string
	Applied uint64 // known for this replica only
	// Role is "voter", "learner", "pending+" (being promoted) or
	// "pending-" (being removed); "" when the replicated set is unknown.
	Role string
}

// Status returns this replica's view of the cell. It asks the replica's
// protocol goroutine, so it waits behind work queued there (bounded by one
// second; then the Paxos fields are left zero).
func (s *Server) Status() Status {
	out := Status{ID: s.cfg.ID, IsLeader: s.IsLeader()}
	if id, _, ok := s.rep.Leader(group); ok {
		out.Leader = id
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	if st, err := s.rep.Status(ctx, group); err == nil {
		out.Role = st.Role.String()
		out.Ballot = st.Ballot.String()
		out.LeaseValid = st.LeaseValid
		out.Chosen, out.Applied, out.Snapshot = st.Chosen, st.Applied, st.Snapshot
		out.Rebuilding = st.Rebuilding
		out.Proposals, out.Batches, out.Writes, out.Dropped = st.Stats.Proposals, st.Stats.Batches, st.Stats.Writes, st.Stats.Dropped
		out.SyncedWrites, out.SyncTime, out.SnapshotBytes = st.Stats.SyncedWrites, st.Stats.SyncTime, st.SnapshotBytes
		out.BatchSizes, out.ApplyLatency, out.ApplyTime = st.Stats.BatchSizes, st.Stats.ApplyLatency, st.Stats.ApplyTime
		out.BatchCommands = st.Stats.BatchCommands
		out.Peers = st.Peers
	}
	s.fsm.read(func(t *namespace.Tree) {
		out.Index = t.AppliedIndex()
		out.Nodes = t.Len()
		out.Sessions = s.fsm.sessions
		out.LocksHeld, out.LockWaiters = t.LockCounts()
	})
	if t := s.term.Load(); t != nil {
		out.Tracked = t.mgr.Len()
		out.HeldKeepAlives = t.mgr.Held()
	}
	ids := slices.Sorted(maps.Keys(s.cfg.Members))
	var set *wire.MemberSet
	if ps, err := s.members.Members(group); err == nil && len(ps.Members) > 0 {
		// The replicated set wins over the configuration: it has the
		// members added and lacks those removed.
		ws := s.memberSetOf(ps)
		set, ids = &ws, nil
		for _, x := range ps.Members {
			ids = append(ids, x.ID)
		}
	}
	for _, id := range ids {
		m, _ := s.memberAddrs(id)
		ms := MemberStatus{ID: id, Peer: m.Peer, Client: m.Client, HTTP: m.HTTP}
		if set != nil {
			ms.Role = set.Role(id)
		}
		if id == s.cfg.ID {
			ms.Client = s.ClientAddr()
			ms.Peer = s.PeerAddr()
			ms.Applied = out.Applied
		}
		out.Members = append(out.Members, ms)
	}
	return out
}
