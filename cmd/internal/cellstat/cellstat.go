// Package cellstat holds what latchd's /status and the latch CLI's
// `members` and `status` compute alike from the replicas' answers: how far
// each one lags behind the leader.
package cellstat

// Replica is what Lags needs to know of one replica.
type Replica struct {
	Applied   uint64 // the last log instance it applied
	Reachable bool   // it answered
	Leader    bool   // it leads the cell
}

// Lags returns, for each of n replicas (at(i) describes replica i), how many
// log instances it has applied fewer than the leader. When no reachable
// replica leads, lags are counted from the most advanced reachable one.
// Unreachable replicas, and replicas ahead of the reference, get 0.
func Lags(n int, at func(i int) Replica) []uint64 {
	rs := make([]Replica, n)
	var top, most uint64
	leader := false
	for i := range rs {
		rs[i] = at(i)
		if !rs[i].Reachable {
			continue
		}
		most = max(most, rs[i].Applied)
		if rs[i].Leader {
			top, leader = rs[i].Applied, true
		}
	}
	if !leader {
		top = most
	}
	out := make([]uint64, n)
	for i, r := range rs {
		if r.Reachable && r.Applied < top {
			out[i] = top - r.Applied
		}
	}
	return out
}
