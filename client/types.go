package client

import (
	"fmt"
	"slices"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Stat is the metadata of one node (Chubby §2.3).
type Stat struct {
	// Instance is new for each creation of the path: a node deleted and
	// created again has a greater Instance.
	Instance uint64
	// ContentGen counts content writes: 1 after creation, +1 per write. Use
	// it with IfGeneration for compare-and-swap.
	ContentGen uint64
	// LockGen counts lock grants from free: the fencing number in sequencers.
	LockGen uint64
	// ACLGen counts SetACL calls.
	ACLGen uint64
	// Checksum is a checksum of the content.
	Checksum uint64
	// Size is the content's length in bytes.
	Size uint64
	// CreatedIndex and ModifiedIndex are the log indexes of the command that
	// created the node and of its last change.
	CreatedIndex, ModifiedIndex uint64
	// Created and Modified are the command time of those commands: the
	// leader's wall clock when its term began, run on from there by its
	// monotonic clock, and never going backwards (docs/server.md, "Time").
	Created, Modified time.Time
	// EphemeralOwner is the session that owns an ephemeral node; 0 for a
	// persistent one.
	EphemeralOwner uint64
	// Children is the number of children.
	Children int
}

// Ephemeral reports whether the node belongs to a session.
func (s Stat) Ephemeral() bool { return s.EphemeralOwner != 0 }

func statFromWire(w wire.Stat) Stat {
	return Stat{
		Instance:       w.Instance,
		ContentGen:     w.ContentGen,
		LockGen:        w.LockGen,
		ACLGen:         w.ACLGen,
		Checksum:       w.Checksum,
		Size:           w.Size,
		CreatedIndex:   w.CreatedIndex,
		ModifiedIndex:  w.ModifiedIndex,
		Created:        unixTime(w.CreatedTime),
		Modified:       unixTime(w.ModifiedTime),
		EphemeralOwner: w.EphemeralOwner,
		Children:       int(w.Children),
	}
}

// unixTime converts Unix nanoseconds to a time; 0 stays the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Node is a node's content and metadata, read atomically.
type Node struct {
	Path string
	Data []byte
	Stat Stat
}

// Entry is one node of a listing: a child's name (List) or a full path
// (Walk), with its metadata.
type Entry struct {
	Name string
	Stat Stat
}

func entriesFromWire(ws []wire.Entry) []Entry {
	out := make([]Entry, len(ws))
	for i, w := range ws {
		out[i] = Entry{Name: w.Name, Stat: statFromWire(w.Stat)}
	}
	return out
}

// ACL names the ACL files that say who may read a node, write it (content,
// children, locks), and change its ACL: each list holds at most one name N,
// standing for the principals listed in the content of /acl/N (one per
// line; "*" for everyone). An empty list means anyone.
type ACL struct {
	Read, Write, Admin []string
}

func (a ACL) toWire() wire.ACL {
	return wire.ACL{Read: slices.Clone(a.Read), Write: slices.Clone(a.Write), Admin: slices.Clone(a.Admin)}
}

func aclFromWire(w wire.ACL) ACL {
	return ACL{Read: w.Read, Write: w.Write, Admin: w.Admin}
}

// LockMode is the mode of a lock: Exclusive (one writer) or Shared (any
// number of readers).
type LockMode uint8

// Lock modes (the wire protocol's values).
const (
	Exclusive LockMode = 1
	Shared    LockMode = 2
)

// String returns "ex", "sh", or "mode(n)".
func (m LockMode) String() string { return wire.LockMode(m).String() }

// Sequencer is the fencing token of a lock grant (Chubby §2.4): the lock's
// path, the mode granted, the lock generation and the node's instance. Pass
// its String form to the servers you act on; they check it with
// CheckSequencer, or against the newest one they have seen (a greater
// LockGen for the same Path and Instance supersedes a smaller one).
type Sequencer struct {
	Path     string
	Mode     LockMode
	LockGen  uint64
	Instance uint64
}

// String returns the printable form, for example
// "latch-seq:v1:ex:12:3:/ls/prod/leader". ParseSequencer is its inverse.
func (s Sequencer) String() string { return s.toWire().String() }

// IsZero reports whether s is the zero Sequencer.
func (s Sequencer) IsZero() bool { return s == Sequencer{} }

// ParseSequencer parses the printable form written by Sequencer.String. An
// error wraps ErrBadSequencer.
func ParseSequencer(text string) (Sequencer, error) {
	w, err := wire.ParseSequencer(text)
	if err != nil {
		return Sequencer{}, fmt.Errorf("%w: %w", ErrBadSequencer, err)
	}
	return seqFromWire(w), nil
}

func (s Sequencer) toWire() wire.Sequencer {
	return wire.Sequencer{Path: s.Path, Mode: wire.LockMode(s.Mode), LockGen: s.LockGen, Instance: s.Instance}
}

func seqFromWire(w wire.Sequencer) Sequencer {
	return Sequencer{Path: w.Path, Mode: LockMode(w.Mode), LockGen: w.LockGen, Instance: w.Instance}
}

// LockInfo describes one lock that is held, has waiters, or is in
// lock-delay.
type LockInfo struct {
	Path     string
	Mode     LockMode // of the current holders; 0 if free
	LockGen  uint64
	Instance uint64
	Holders  []uint64 // holder session ids
	Waiters  int      // queued requests
	// DelayUntil is the end of a pending lock-delay (in command time, as
	// Stat.Created), or the zero time.
	DelayUntil time.Time
}

// SessionInfo describes one open session of the cell.
type SessionInfo struct {
	ID         uint64
	Client     string // the name the client gave (Config.Name)
	Timeout    time.Duration
	Locks      int
	Ephemerals int
	Watches    int
	Opened     time.Time
	// Principal is who opened it (the CN of its TLS client certificate; ""
	// if anonymous), and Superuser whether the cell counts it a
	// superuser's session, which no ACL restricts.
	Principal string
	Superuser bool
}

// Status describes the cell as seen by the replica that answered.
type Status struct {
	Server   string // the answering replica's id
	Addr     string // the address this client reached it at
	Leader   string // the leader's client address, if known
	IsLeader bool
	// Applied is the last Paxos instance the answering replica applied.
	// Instances carry batches of commands, so this does not count in the
	// same units as Stat's CreatedIndex and ModifiedIndex (which count
	// commands); compare Applied only with other Applied values.
	Applied uint64
	// Rebuilding: the answering replica lost its state (its data dir was
	// wiped) and is learning it again from its peers; it does not vote
	// until the leader fenced it. Always false from servers that predate it.
	Rebuilding bool
	Members    []Member
}

// Member describes one replica of the cell.
type Member struct {
	ID         string
	ClientAddr string
	PeerAddr   string
	Leader     bool
	// Reachable: the member answered (Members), or the answering replica
	// can reach it (Status).
	Reachable bool
	// Applied is the last Paxos instance the member applied (see
	// Status.Applied), 0 if unknown (Status knows only the answering
	// replica's; Members asks each).
	Applied uint64
	// Lag is how many instances the member has applied fewer than the
	// leader; 0 for the leader or when either position is unknown.
	Lag uint64
	// Rebuilding: the member is rebuilding lost state (see
	// Status.Rebuilding); false if unknown (Status knows only the
	// answering replica's; Members asks each).
	Rebuilding bool
}

func statusFromWire(addr string, r *wire.StatusReply) Status {
	s := Status{Server: r.ServerID, Addr: addr, Leader: r.Leader, IsLeader: r.IsLeader, Applied: r.Applied,
		Rebuilding: r.Rebuilding}
	for _, m := range r.Members {
		s.Members = append(s.Members, Member{ID: m.ID, ClientAddr: m.ClientAddr, PeerAddr: m.PeerAddr,
			Leader: m.Leader, Reachable: m.Reachable, Applied: m.Applied,
			Rebuilding: m.ID == r.ServerID && r.Rebuilding})
	}
	setLag(s.Members)
	return s
}

// setLag fills in each member's Lag behind the leader, where both applied
// positions are known.
func setLag(ms []Member) {
	var leader uint64
	for _, m := range ms {
		if m.Leader {
			leader = m.Applied
		}
	}
	for i := range ms {
		if m := &ms[i]; leader != 0 && m.Applied != 0 && leader > m.Applied {
			m.Lag = leader - m.Applied
		}
	}
}
