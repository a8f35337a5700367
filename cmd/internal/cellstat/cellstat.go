// Package cellstat holds what latchd's /status and the latch CLI's
// `members` and `status` compute alike from the replicas' answers: how far
// each one lags behind the leader.
package cellstat

// Lags returns, for each replica, how many log instances it has applied
// fewer than the leader. applied[i] and reachable[i] describe replica i;
// leader is the leader's index, or -1 if unknown. When the leader is unknown
// or unreachable, lags are counted from the most advanced reachable replica.
// Unreachable replicas, and replicas ahead of the reference, get 0.
func Lags(applied []uint64, reachable []bool, leader int) []uint64 {
	var top uint64
	if leader >= 0 && leader < len(applied) && reachable[leader] {
		top = applied[leader]
	} else {
		for i, a := range applied {
			if reachable[i] {
				top = max(top, a)
			}
		}
	}
	out := make([]uint64, len(applied))
	for i, a := range applied {
		if reachable[i] && a < top {
			out[i] = top - a
		}
	}
	return out
}
