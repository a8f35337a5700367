package lockserver

import (
	"testing"

	"github.com/latchd/latch/replica/paxos"
)

// Event sequence numbers keep increasing across terms whatever the ballots
// of their leaders, also two leaders of one round (the later preempted the
// earlier, as at a contested start: 1.2, 1.3, 2.2, ...): an acknowledgement
// from an earlier term acknowledges nothing in a later one, and one from a
// later term marks the earlier's leader stale.
func TestEventSeqsGrowAcrossTerms(t *testing.T) {
	for _, members := range [][]uint64{{1, 2, 3}, {7, 200, 10, 3, 99}} {
		var ballots []paxos.Ballot
		for round := range uint64(4) {
			for _, id := range members {
				ballots = append(ballots, paxos.Ballot{Round: round + 1, ID: id})
			}
		}
		for _, b1 := range ballots {
			for _, b2 := range ballots {
				if b1.Compare(b2) >= 0 {
					continue
				}
				t1 := &term{epoch: termEpoch(b1, members)}
				t2 := &term{epoch: termEpoch(b2, members)}
				if ack, ok := t2.ackFor(t1.wireSeq(100)); ack != 0 || !ok {
					t.Errorf("members %v: term %v acknowledges event 100 of the earlier term %v as %d, %v; want nothing", members, b2, b1, ack, ok)
				}
				if _, ok := t1.ackFor(t2.wireSeq(1)); ok {
					t.Errorf("members %v: term %v takes an acknowledgement from the later term %v", members, b1, b2)
				}
				if t1.wireSeq(1<<seqBits-1) >= t2.wireSeq(1) {
					t.Errorf("members %v: the last seq of term %v is not below the first of %v", members, b1, b2)
				}
			}
		}
	}
}
