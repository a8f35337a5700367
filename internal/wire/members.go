package wire

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// The member messages: reading and changing the cell's replicated member
// set (docs/membership.md §7). They are new within version 2, as Txn's
// TxnGet was: a server that predates them answers BadRequest ("unknown
// type"), which the client reports as such.

// MemberList asks for the cell's member set. Without Stale the leader
// answers with the set it has applied; with Stale any replica answers with
// its own, which may lag. Reply: MemberSet.
type MemberList struct {
	Header
	Stale bool `msgpack:"stale,omitempty"`
}

// MemberSet is the cell's replicated member set as of the instance
// Applied on the answering replica (paxos.Members with each member's
// addresses decoded).
type MemberSet struct {
	// Alpha is α: a voter change chosen at instance s takes effect at s+α.
	Alpha uint64 `msgpack:"alpha"`
	// Epoch counts the changes applied so far; a MemberChange may name it
	// (compare and set).
	Epoch   uint64        `msgpack:"epoch"`
	Applied uint64        `msgpack:"applied,omitempty"` // the instance the set is as of
	Leader  uint64        `msgpack:"leader,omitempty"`  // the leader's id, if the answering replica knows it
	Members []MemberEntry `msgpack:"members,omitempty"` // by id
	// Retired lists the ids removed from the cell: never valid again.
	Retired []uint64 `msgpack:"retired,omitempty"`
	// Pending is a voter change chosen and not yet in effect.
	Pending *MemberPending `msgpack:"pending,omitempty"`
}

// MemberEntry is one member of a MemberSet.
type MemberEntry struct {
	ID    uint64 `msgpack:"id"`
	Voter bool   `msgpack:"voter,omitempty"`
	// Bound: a learner that has joined (started and bound its rebuild
	// nonce); only a bound learner can be promoted. Founding voters are
	// reported bound.
	Bound  bool   `msgpack:"bound,omitempty"`
	Peer   string `msgpack:"peer,omitempty"`
	Client string `msgpack:"client,omitempty"`
	HTTP   string `msgpack:"http,omitempty"`
}

// MemberPending is a voter change chosen at At that takes effect at
// At+Alpha, with the voter set from then on.
type MemberPending struct {
	At     uint64   `msgpack:"at"`
	Voters []uint64 `msgpack:"voters,omitempty"`
}

// MemberOp says what a MemberChange does. Values are part of the protocol.
type MemberOp uint8

// The member changes.
const (
	// MemberAdd adds ID as a learner with the addresses given: it
	// receives the log but does not vote until promoted.
	MemberAdd MemberOp = 1
	// MemberPromote makes the learner ID a voter, α instances after the
	// change is chosen. The learner must have joined and caught up.
	MemberPromote MemberOp = 2
	// MemberRemove removes ID: a learner at once, a voter α instances
	// after the change is chosen. Its id is never valid again.
	MemberRemove MemberOp = 3
	// MemberUpdate replaces the addresses of ID, at once.
	MemberUpdate MemberOp = 4
	memberOpEnd  MemberOp = 5
)

var memberOpNames = [...]string{MemberAdd: "add", MemberPromote: "promote", MemberRemove: "remove", MemberUpdate: "update"}

// Valid reports whether o is a known op.
func (o MemberOp) Valid() bool { return o >= MemberAdd && o < memberOpEnd }

// String returns the op's name as the CLI spells it, such as "add".
func (o MemberOp) String() string {
	if o.Valid() {
		return memberOpNames[o]
	}
	return fmt.Sprintf("MemberOp(%d)", uint8(o))
}

// MemberChange changes the cell's member set: leader only, one change at a
// time. Peer and Client (and optionally HTTP) are read by MemberAdd and
// MemberUpdate and must be empty for the others. Reply: MemberChanged.
//
// Header.Request should be random (unique across clients): the leader
// answers a retry with the same request id with the first attempt's
// answer, for as long as it remembers it (in memory, the last 1024
// changes; another leader does not know it, and the retry then meets the
// change already made: a MemberAdd's id already a member is Exists).
// Epoch makes a change conditional (GenerationMismatch if the set moved
// on).
type MemberChange struct {
	Header
	Op     MemberOp `msgpack:"op"`
	ID     uint64   `msgpack:"id"`
	Peer   string   `msgpack:"peer,omitempty"`
	Client string   `msgpack:"client,omitempty"`
	HTTP   string   `msgpack:"http,omitempty"`
	// Epoch, if not 0, is the MemberSet.Epoch the change was made
	// against: the change applies only if the set is still at it.
	Epoch uint64 `msgpack:"epoch,omitempty"`
}

// MemberChanged answers a MemberChange that was chosen and applied.
type MemberChanged struct {
	// Members is the set right after the change.
	Members MemberSet `msgpack:"members"`
	// Instance is where the change was chosen; Effective where it takes
	// effect: Instance for learners and addresses, Instance+Alpha for a
	// voter change (promote, remove of a voter).
	Instance  uint64 `msgpack:"instance"`
	Effective uint64 `msgpack:"effective"`
}

// Role is a member's role in s: "voter", "learner", "pending+" (a learner
// being promoted), "pending-" (a voter being removed), or "" if id is not
// a member.
func (s *MemberSet) Role(id uint64) string {
	for _, m := range s.Members {
		if m.ID != id {
			continue
		}
		inPending := false
		if s.Pending != nil {
			for _, v := range s.Pending.Voters {
				inPending = inPending || v == id
			}
		}
		switch {
		case m.Voter && s.Pending != nil && !inPending:
			return "pending-"
		case m.Voter:
			return "voter"
		case inPending:
			return "pending+"
		}
		return "learner"
	}
	return ""
}

// CheckAddr checks that addr is host:port with a non-empty host and a port
// in 1..65535, as a member's addresses must be (other replicas and clients
// dial them), and returns it in a normal form for comparisons.
func CheckAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errors.New("empty host: other replicas and clients must be able to reach it")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}
