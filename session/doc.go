// Package session keeps the leader's side of client sessions: lease expiry,
// the KeepAlive long poll, per-session event queues, and the routing of
// namespace events to the sessions that watch them.
//
// It decides, it does not act: when a lease runs out, [Manager.Tick] reports
// the session once, and the lockserver proposes an "expire session" command
// through Paxos. Expiry is always a logged command; this package never
// touches the namespace, the network or the log, and takes its clock as a
// parameter.
//
// # Lifecycle (driven by the lockserver)
//
//  1. On becoming leader: [New], then [Manager.Failover] with every session
//     in the namespace. Each gets a fresh full lease and a Failover event,
//     because a new leader does not know when the old one last heard from
//     them (Chubby §2.9).
//  2. When an OpenSession command applies: [Manager.Open]. When a close or
//     expire command applies: [Manager.Remove].
//  3. For each KeepAlive request: [Manager.KeepAlive], which renews the lease
//     and blocks (the long poll) until events are ready or the lease is close
//     to its end.
//  4. While applying commands: [Manager.Route] to find the watchers of each
//     event's path, and [Manager.Deliver] to queue it for them. Deliver never
//     blocks on a client.
//  5. Periodically (every 50–100 ms): [Manager.Tick], or let [Manager.Run]
//     do it; propose an expire command for each id it returns.
//  6. On losing leadership: [Manager.Close]; pending KeepAlives return
//     [ErrClosed] so that clients go to the new leader.
//
// # Time
//
// All leases and long-poll deadlines sit in one timer structure per shard
// (an indexed min-heap) driven by Tick: there is no goroutine and no
// time.Timer per session or per waiting KeepAlive. An idle session costs a
// table entry and a heap slot, and a held KeepAlive costs only its caller's
// goroutine. Deadlines therefore have the resolution of the Tick interval.
//
// # Concurrency and locking
//
// A Manager is safe for concurrent use by many request goroutines, the apply
// goroutine and the ticking goroutine. Sessions are sharded by id; each shard
// has one mutex guarding its sessions, their event queues, their waiters and
// the shard's heap. The watch index has its own RWMutex: Route takes it for
// reading only. Lock order is shard, then watch index; no method holds a lock
// while blocking or while calling back into the caller. Deliver and Route
// take at most one lock each, briefly, and never wait for a client.
package session
