package lockserver

import (
	"context"
	"errors"

	"github.com/latchd/latch/replica"
	"github.com/latchd/latch/replica/paxos"
)

// TEMPORARY (branch mserve, until branch mwire is merged): the replica
// does not have ChangeMembers, Members, Removed, Config.Join and
// MemberAddrs yet. This file is the one place that binds to them; after
// the rebase onto mwire it becomes the three one-line adapters below
// bound to the replica's own methods.

var errNotWired = errors.New("lockserver: member changes are not wired into the replica yet")

// replicaMembers is the replica as the member handlers see it.
func replicaMembers(r *replica.Replica) memberSet { return notWired{} }

// replicaRemoved is closed once the replica is retired from the cell.
func replicaRemoved(r *replica.Replica) <-chan struct{} { return nil }

// setJoin starts the replica as a learner joining an existing cell.
func setJoin(rc *replica.Config, join bool) {}

type notWired struct{}

func (notWired) ChangeMembers(context.Context, uint32, paxos.MemberChange) (paxos.Members, uint64, error) {
	return paxos.Members{}, 0, errNotWired
}

func (notWired) Members(uint32) (paxos.Members, error) { return paxos.Members{}, errNotWired }

// encodeAddrs is a member's paxos.Member.Meta (replica.MemberAddrs).
func encodeAddrs(m Member) []byte {
	return []byte(m.Peer + "\x00" + m.Client + "\x00" + m.HTTP)
}

// decodeAddrs reads a member's paxos.Member.Meta.
func decodeAddrs(b []byte) (Member, error) {
	var parts [3]string
	k := 0
	for _, c := range b {
		if c == 0 {
			if k++; k > 2 {
				return Member{}, errors.New("lockserver: bad member addresses")
			}
			continue
		}
		parts[k] += string(c)
	}
	return Member{Peer: parts[0], Client: parts[1], HTTP: parts[2]}, nil
}
