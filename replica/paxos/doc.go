// Package paxos is the pure Multi-Paxos protocol core of latch: acceptor,
// proposer (leader) and learner of one replicated log of opaque values.
//
// The core is a deterministic state machine. It never reads a clock, touches
// the network or the disk, starts a goroutine or draws randomness of its own
// (election offsets come from Config.Rand, if given). Time enters as Tick,
// messages as Step, proposals as Propose; everything the core wants done
// comes out of Ready. A driver (package replica) owns the I/O; a simulator
// (this package's tests) drives whole cells in one goroutine.
//
// # Protocol
//
// Ballots are (Round, ID) compared lexicographically. A replica that has not
// heard from a leader for ElectionTicks (plus a random offset), and is not
// inside a lease it granted, runs Phase 1 once for every instance from its
// first unchosen one: Prepare(ballot, from) → Promise(all accepted entries ≥
// from; a report larger than MaxMessageBytes comes in parts, and the
// candidate asks for the next part with a Prepare of the same ballot). With
// the complete reports of a majority it re-proposes, for every instance
// any promise reported, the value with the highest ballot (a value a
// promiser knows is chosen wins outright), fills gaps with no-ops, appends
// one no-op of its own, and from then on runs only Phase 2 for new
// instances: Accept(ballot, entries, commit) → Accepted. An instance is
// chosen when a majority accepted it; the leader's first unchosen instance
// rides on every Accept and Heartbeat, and a follower that holds the value
// under that same ballot marks it chosen, or asks for it (CatchUp → Chosen;
// below the peer's snapshot the peer's driver sends a snapshot instead).
//
// Master lease: a follower that accepts an Accept or Heartbeat of ballot b
// refuses Prepares from any other replica for LeaseTicks+1 of its own ticks.
// Every leader message carries a lease round; the leader's lease lasts until
// the start of the latest round a majority acknowledged + LeaseTicks −
// DriftTicks. An acceptor that promises a candidate refuses other
// candidates' Prepares for 2·HeartbeatTicks+1 ticks, or until the
// candidate's first Accept or Heartbeat (a hold, so that a new leader's
// promisers are not taken from it while its first Accepts travel). A
// restarted replica forgets the leases it granted, so it
// neither promises to others nor campaigns for LeaseTicks+1 ticks after New.
// A leader that stops gives its lease up instead of letting it run out:
// Resign ends its lease and leadership in one step and sends Resign, which
// releases the grants made to its ballot and has the successor it names
// campaign at once. See docs/paxos.md for both arguments.
//
// # The driver loop
//
// The driver calls Step, Tick, Propose, Resign, Compact and RestoreSnapshot
// from one goroutine (or under one lock), and runs this loop whenever
// HasReady:
//
//  1. rd, err := n.Ready(). Step, Tick and Propose may be called again
//     before Advance; what they produce goes to the next Ready. Ready may
//     not be called again until Advance.
//  2. Persist rd.Promised, rd.Accepted and rd.ChosenMark in ONE write
//     batch, synced when rd.MustSync. Why: an acceptor must never forget a
//     promise or an accepted value it revealed; the next step reveals them.
//     A sync error must end the process (never retry and continue).
//  3. Send rd.Messages, only after step 2 returned. Why: a Promise or
//     Accepted that leaves before its state is durable can be counted by a
//     proposer and then forgotten by a crash, and two values get chosen.
//     Exception: messages whose Type.SendBeforeSync() is true (Prepare,
//     Accept, Heartbeat, CatchUp, Chosen, Resign) may be sent as soon as Ready
//     returns, so a leader's Accepts travel while its own write is in
//     flight; they reveal no state a crash could take back, because the
//     core counts its own promise and acceptance only after Advance.
//  4. Apply rd.Chosen to the state machine in order, and send a snapshot
//     to each peer in rd.Snapshots. Why after 2: the ChosenMark and the
//     records it covers are then durable together; a chosen value may be
//     applied before its chosen mark is durable (a restart re-learns it),
//     never the reverse: a durable mark must not cover a record that is not
//     the chosen value.
//  5. n.Advance(). Why: the core counts its own acceptance and promise
//     only now that they are durable, and releases the Ready's slices.
//
// A driver that keeps stepping messages while its write is in flight (between
// 1 and 5) may call NewlyChosen to apply what became chosen meanwhile (the
// followers' acknowledgements alone may make a majority), after the
// outstanding Ready's Chosen; later Readies continue after it. A leader may
// also call Accepts there, to send the Accepts of values it proposed since
// the Ready at once instead of with the next Ready: they reveal no acceptor
// state, and the leader counts its own acceptance of those values only at
// the Advance of the Ready that persists them. And Heartbeats, to send the
// heartbeats its ticks queued meanwhile at once, so that a write that
// stalls does not cost the leader its lease.
//
// Reads: a linearizable local read on the leader asks ReadBarrier; if ok, it
// waits until the state machine applied the returned instance, checks
// LeaseValid once more, and then reads. ReadBarrier is ok only while the
// lease holds and once an entry of the leader's own ballot (the no-op it
// appends after Phase 1) is chosen, so everything chosen before it is below
// the barrier. A driver that caches the lease for readers on other
// goroutines (LeaseRead) must drop it after Resign and before the Ready
// that carries the Resign messages is sent: a follower that receives one
// may promise another leader at once.
//
// Snapshots: after the driver has a durable state machine snapshot through
// instance s (s ≤ the last applied instance), it may delete log records
// ≤ some c ≤ s and call Compact(c); the core then answers catch-up requests
// below c with Ready.Snapshots. A driver that receives a snapshot restores
// its state machine, makes the snapshot durable, and calls
// RestoreSnapshot(s) (between Advance and the next Ready).
//
// Proposals: Propose returns the instance the value was assigned. After a
// leader change another value may be chosen in that instance, and the same
// value may be re-proposed by the next leader, so the driver recognises its
// values by content (embed a unique id) as they come out of Ready.Chosen,
// and fails pending proposals as "outcome unknown" when Ready.Role shows it
// is no longer leader.
package paxos
