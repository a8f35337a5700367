// Package client is the Go client of latch, a Chubby-style lock and naming
// service: the API a service writes against.
//
// A Client holds one session with a cell. Dial opens it; Close ends it.
//
//	c, err := client.Dial(ctx, client.Config{Endpoints: []string{"10.0.0.1:7101", "10.0.0.2:7101", "10.0.0.3:7101"}})
//	if err != nil { ... }
//	defer c.Close()
//
//	l, err := c.Lock(ctx, "/ls/app/leader")   // FIFO; ctx cancels the wait
//	seq := l.Sequencer()                      // pass it to the servers you act on
//	select { case <-l.Lost(): ...; default: } // closed if the session is lost
//	err = l.Unlock(ctx)
//
// # Namespace
//
// Paths are "/"-separated names, like files. Every node has content (a few
// KiB, at most 256 KiB by default), children, and metadata (Stat): an instance
// number, content/lock/ACL generations, a checksum, sizes, times, and the
// owning session of an ephemeral node. Get, Put, Create, Delete, List, Walk
// and Stat read and write it; IfGeneration makes a write a compare-and-swap;
// Ephemeral nodes vanish with their session; Watch reports changes.
//
// # Locks
//
// Any node is a reader/writer lock: Lock and TryLock take it exclusively,
// RLock and TryRLock shared. Waiters queue in FIFO order in the cell's
// replicated state. A grant carries a Sequencer (path, mode, lock generation,
// instance) that other servers check with CheckSequencer to reject a holder
// that lost the lock (fencing). Unlock names the grant's generation, so it
// never frees a later grant. If the session ends while a lock is held, the
// cell keeps the lock from others for the lock-delay (LockDelay), and Lost is
// closed.
//
// # Sessions, jeopardy and grace
//
// The client keeps its session alive with a KeepAlive that the leader holds
// until the lease is near its end (a long poll), and follows the leader
// across replicas. If the local lease runs out without a reply, the session
// is in jeopardy: the client keeps trying every replica for a grace period
// (45 s by default). A reply makes it safe again; the end of the grace period
// (or the cell saying the session is gone) expires it: every held Lock
// reports Lost, every watch channel closes, and every call fails with
// ErrSessionExpired. SessionEvents reports each of these transitions.
//
// # Retries
//
// Every request carries the session and a request id. When a reply is lost
// (a replica fails, the leader moves, the connection drops), the client sends
// the same request again, with the same id, to the leader it finds next; the
// cell applies a request at most once and answers a retry with the stored
// outcome. Calls therefore do not fail because of a fail-over; they fail only
// when their context ends (ErrUnavailable if the cell could not be reached)
// or the session ends.
//
// # Recipes
//
// NewElection runs Chubby's leader election on a lock node; Register and
// Resolve keep a registry of service instances in ephemeral nodes.
//
// docs/client.md describes the model in full: the session state machine,
// retries and idempotence, leader following, events across fail-over, and
// the errors.
package client
