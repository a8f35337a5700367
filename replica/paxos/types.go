package paxos

import (
	"errors"
	"fmt"
)

// Errors returned by the core. Test with errors.Is.
var (
	// ErrNotLeader: Propose or ReadBarrier on a replica that is not the
	// leader in Phase 2. Leader() names the known leader (0 if unknown).
	ErrNotLeader = errors.New("paxos: not the leader")
	// ErrWindowFull: Window instances are already in flight; propose
	// again after Ready/Advance has made progress.
	ErrWindowFull = errors.New("paxos: proposal window full")
	// ErrValueTooLarge: the value is larger than Config.MaxBatchBytes.
	ErrValueTooLarge = errors.New("paxos: value too large")
	// ErrEmptyValue: a proposed value must not be empty (empty means no-op).
	ErrEmptyValue = errors.New("paxos: empty value")
	// ErrInvalidConfig wraps every Config.Validate failure.
	ErrInvalidConfig = errors.New("paxos: invalid config")
	// ErrInvalidState wraps every inconsistency in the State given to New.
	ErrInvalidState = errors.New("paxos: invalid recovered state")
	// ErrInvalidMessage wraps every malformed message given to Step.
	ErrInvalidMessage = errors.New("paxos: invalid message")
	// ErrReadyPending: Ready was called again, or RestoreSnapshot was
	// called, before Advance acknowledged the previous Ready.
	ErrReadyPending = errors.New("paxos: previous Ready not advanced")
	// ErrNoReady: Advance without a preceding Ready.
	ErrNoReady = errors.New("paxos: Advance without Ready")
	// ErrBadInstance: Compact or RestoreSnapshot with an instance the
	// core cannot accept (beyond what is applied, or not beyond it).
	ErrBadInstance = errors.New("paxos: bad instance")
)

// Ballot is a proposal number: (Round, ID) compared lexicographically. ID is
// the proposing replica, so two replicas never use the same ballot; a
// replica picks the smallest Round larger than any round it has seen.
// The zero Ballot is lower than every ballot a replica can use.
type Ballot struct {
	Round uint64
	ID    uint64
}

// Compare returns -1, 0 or +1 as b is lower than, equal to or higher than o.
func (b Ballot) Compare(o Ballot) int {
	switch {
	case b.Round < o.Round:
		return -1
	case b.Round > o.Round:
		return 1
	case b.ID < o.ID:
		return -1
	case b.ID > o.ID:
		return 1
	}
	return 0
}

// Less reports whether b is lower than o.
func (b Ballot) Less(o Ballot) bool { return b.Compare(o) < 0 }

// IsZero reports whether b is the zero ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// String formats b as "round.id".
func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Round, b.ID) }

// Entry is one instance of the replicated log: the value accepted (or
// chosen) for Instance under Ballot. Value is opaque to the core; the core
// never modifies the bytes of a Value it was given. Noop marks the filler
// value a new leader proposes for an instance nobody reported (Value is then
// nil and the state machine must skip it). Conf marks a member change: Value
// is an encoded MemberChange, which the core applies to its member set and
// the state machine skips (docs/membership.md).
type Entry struct {
	Instance uint64
	Ballot   Ballot
	Value    []byte
	Noop     bool
	Conf     bool
}

// MessageType says what a Message is.
type MessageType uint8

// The message types. See docs/paxos.md for the fields each one uses.
const (
	// MsgPrepare is Phase 1a: Ballot, and Instance = first instance covered
	// (the proposer's first unchosen instance; Phase 1 covers all above),
	// Lease = the proposer's Config.Incarnation, Last = the first instance
	// to report: Instance in a new Prepare (the proposer takes a report
	// split over several Promises; 0, from an older version: it does
	// not), above it when the proposer asks a promiser of this ballot for
	// the rest of its report.
	MsgPrepare MessageType = iota + 1
	// MsgPromise is Phase 1b: Ballot promised, Instance as in the Prepare,
	// Entries = the entries the acceptor holds from the Prepare's Last (or
	// Instance) on, Commit = acceptor's first unchosen instance (entries
	// below it are chosen values), Snapshot = acceptor's snapshot
	// instance, Lease = the Prepare's incarnation, echoed. Last = 0: the
	// report is complete; else it did not fit in MaxMessageBytes and
	// covers only the instances through Last.
	MsgPromise
	// MsgAccept is Phase 2a: Ballot, Entries (contiguous instances, all
	// with Ballot), Commit (leader's first unchosen instance), Lease
	// (leader's lease round).
	MsgAccept
	// MsgAccepted is Phase 2b: Ballot, Instance..Last acknowledged
	// (inclusive), Lease echoed, Commit = acceptor's first unchosen.
	MsgAccepted
	// MsgHeartbeat: Ballot, Commit, Lease round. Sent every HeartbeatTicks.
	MsgHeartbeat
	// MsgHeartbeatAck: Ballot, Lease echoed, Commit = acceptor's first
	// unchosen instance.
	MsgHeartbeatAck
	// MsgReject: the receiver refused a Prepare, Accept or Heartbeat.
	// Ballot is the receiver's promised ballot; Instance echoes the
	// refused message's Instance.
	MsgReject
	// MsgCatchUp asks for chosen entries from Instance on.
	MsgCatchUp
	// MsgChosen answers MsgCatchUp: Entries are chosen values (contiguous
	// from the first), Commit = sender's first unchosen instance,
	// Snapshot = sender's snapshot instance. If the instances asked for
	// are below the sender's snapshot, Entries is empty and the sender's
	// driver is asked (Ready.Snapshots) to send a snapshot.
	MsgChosen
	// MsgResign: a leader gives up its leadership and lease (Node.Resign).
	// Ballot is the ballot it led, Commit its first unchosen instance,
	// Last the successor it names (0: none), which campaigns at once. A
	// follower that granted the lease to exactly this ballot releases the
	// grant, so it promises to the successor without waiting it out.
	MsgResign
	// MsgRebuild: a replica that lost its durable state and is rebuilding
	// it (State.Rebuild) answers a leader's Heartbeat. Ballot = the
	// Heartbeat's, Lease = its rebuild nonce, Commit = its first unchosen
	// instance. The leader answers with MsgFenced once a Phase 1 that
	// began after this nonce reached it was promised by every other
	// replica, except those rebuilding since before that Phase 1 too.
	MsgRebuild
	// MsgFenced: the leader's answer to MsgRebuild. Ballot = the leader's
	// ballot, whose Phase 1 every replica but the rebuilding ones promised
	// after the rebuild began; Instance = the first instance that ballot
	// proposed on its own (the no-op after Phase 1); Lease = the nonce.
	MsgFenced
)

var msgTypeNames = [...]string{
	MsgPrepare: "Prepare", MsgPromise: "Promise", MsgAccept: "Accept",
	MsgAccepted: "Accepted", MsgHeartbeat: "Heartbeat", MsgHeartbeatAck: "HeartbeatAck",
	MsgReject: "Reject", MsgCatchUp: "CatchUp", MsgChosen: "Chosen", MsgResign: "Resign",
	MsgRebuild: "Rebuild", MsgFenced: "Fenced",
}

// String returns the type's name, e.g. "Accept".
func (t MessageType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// SendBeforeSync reports whether a message of type t may leave before the
// batch of its Ready is synced (the leader's Accepts then travel while its
// own write is in flight). True for Accept, Heartbeat, CatchUp, Chosen,
// Resign, Rebuild and Fenced: they reveal no acceptor state that a crash
// could take back (a leader counts itself only once its own acceptance is
// durable; a Resign only gives up what the leader claimed). Promise,
// Accepted, HeartbeatAck and Reject must wait for the sync, and so must
// Prepare: a ballot leaves its candidate only once the candidate's own
// promise of it is durable, so no replica ever issues a ballot twice (which
// rebuilding a replica that lost its state relies on; docs/paxos.md).
func (t MessageType) SendBeforeSync() bool {
	switch t {
	case MsgAccept, MsgHeartbeat, MsgCatchUp, MsgChosen, MsgResign, MsgRebuild, MsgFenced:
		return true
	}
	return false
}

// Valid reports whether t is a known message type.
func (t MessageType) Valid() bool { return t >= MsgPrepare && t <= MsgFenced }

// Message is one peer message. It is a plain struct of exported fields (no
// interfaces) so it encodes directly with msgpack; which fields are used
// depends on Type (see the MessageType constants).
type Message struct {
	Type     MessageType
	From     uint64
	To       uint64
	Ballot   Ballot
	Instance uint64
	Last     uint64
	Commit   uint64
	Lease    uint64
	Snapshot uint64
	Entries  []Entry
}

// Role is what a replica is doing.
type Role uint8

// Roles.
const (
	Follower  Role = iota // acceptor and learner only
	Candidate             // running Phase 1
	Leader                // Phase 1 done for its ballot; proposing with Phase 2 only
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// State is what the driver recovered from durable storage at start-up.
type State struct {
	// Promised is the highest ballot this acceptor promised (or accepted in).
	Promised Ballot
	// Entries are the durable log records, in any order, at most one per
	// instance: the accepted (ballot, value) of each instance, or its
	// chosen value once learned. Records at or below Snapshot are ignored.
	Entries []Entry
	// Chosen is the durable chosen mark: every instance <= Chosen is
	// chosen and its record in Entries (or the snapshot) is the chosen
	// value. A mark below Snapshot is taken as Snapshot.
	Chosen uint64
	// Snapshot is the last instance covered by the state machine snapshot
	// the driver restored; the log is truncated through it.
	Snapshot uint64
	// Applied is the last instance already applied to the restored state
	// machine; 0 means Snapshot. The core hands out Chosen entries from
	// Applied+1.
	Applied uint64
	// Rebuild, when non-zero, says this acceptor lost its durable state
	// (an empty or replaced disk) and must rebuild it before it votes
	// again: it is the nonce the driver drew (at random, non-zero) when it
	// found the state missing, and stays durable until a Ready reports
	// Rebuilt. A rebuilding replica learns the chosen log from its peers
	// but promises, accepts and campaigns for nothing until the leader
	// fenced every ballot it may have voted for (MsgFenced). See
	// docs/paxos.md, "Rebuilding a replica that lost its state".
	Rebuild uint64
	// Members is the member set as of Snapshot (the snapshot carries it);
	// the core applies the chosen member changes above it. nil: the
	// bootstrap set of Config.Peers (all voters, Config.Alpha), the set a
	// cell created before member changes has always had.
	Members *Members
}

// Ready is the output of one step of the core: what to persist, send and
// apply, in the order of the numbered loop in doc.go. The slices Accepted,
// Messages, Chosen and Snapshots are reused after Advance; the Messages
// themselves (copied out by value) and their Entries stay valid, so a
// transport may queue them. Value bytes are never modified and may be
// retained.
type Ready struct {
	// Promised, when non-nil, is the new promised ballot to persist.
	Promised *Ballot
	// Accepted are log records to persist, overwriting any record for the
	// same instance: accepted values and chosen values learned from peers.
	Accepted []Entry
	// ChosenMark, when non-zero, is the new durable chosen mark (see
	// State.Chosen). It may be written without sync, in the same batch.
	ChosenMark uint64
	// Rebuilt is true once in the Ready that ends a rebuild (State.Rebuild):
	// persist in this batch, with Promised, that the replica no longer
	// rebuilds. From this Ready on it votes again.
	Rebuilt bool
	// MustSync is true when Promised, Accepted or Rebuilt is set: the batch
	// must be synced before any message of this Ready is sent.
	MustSync bool
	// Messages to send once the batch above is durable.
	Messages []Message
	// Chosen entries to apply, in instance order, with no gaps, continuing
	// where the previous Ready's Chosen ended (Noop entries included: skip
	// them but count them as applied).
	Chosen []Entry
	// Snapshots lists peers that asked for instances this replica has
	// truncated: send each a state machine snapshot (the driver may skip
	// a peer to which a transfer is already running).
	Snapshots []uint64
	// Removed is true while this replica's id is retired in the member set
	// it knows: it is no longer a voter or learner. It keeps answering as
	// an acceptor until every remaining voter knows the change in effect;
	// then the driver stops it (docs/membership.md §6).
	Removed bool
	// Role, Leader and Ballot describe the replica after this step; they
	// are always set (compare with the previous Ready to see changes).
	Role   Role
	Leader uint64
	Ballot Ballot
}

// Status is a snapshot of the core's state for logging and tests.
type Status struct {
	ID         uint64
	Role       Role
	Leader     uint64
	Ballot     Ballot // the ballot this replica leads (or campaigns) with
	Promised   Ballot // highest ballot promised
	Commit     uint64 // first instance not known chosen
	Applied    uint64 // last instance handed out in Ready.Chosen
	Snapshot   uint64 // log truncated through this instance
	Next       uint64 // next instance a leader would assign
	InFlight   int    // instances proposed and not yet chosen (leader)
	Rebuilding bool   // State.Rebuild: not voting until fenced and caught up
	LeaseValid bool
	Now        uint64       // ticks since New
	Members    Members      // the member set as of Commit-1
	Peers      []PeerStatus // the leader's view of each follower (leader only)
}

// PeerStatus is what a leader knows of one follower since it took office.
type PeerStatus struct {
	ID     uint64
	Commit uint64 // the follower's first unchosen instance, as it last reported it
	Acked  bool   // it acknowledged this leader's ballot
	AckAgo uint64 // ticks since its last acknowledgement (if Acked)
}
