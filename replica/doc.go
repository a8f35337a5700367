// Package replica is latch's Multi-Paxos service: a durable, replicated log
// of opaque commands that a program embeds. Submit a command to a group with
// Propose; once it is chosen, every replica applies it, in the same order, to
// the StateMachine the program supplied for that group.
//
//	sm := mystate.New()                       // implements replica.StateMachine
//	r, err := replica.New(cfg, map[uint32]replica.StateMachine{1: sm}, nil)
//	go r.Run(ctx)                             // or Start / Close
//	res, err := r.Propose(ctx, 1, cmd)        // on the leader: chosen + applied
//	err = r.ReadBarrier(ctx, 1)               // then read sm: linearizable
//
// A replica hosts one or more independent Paxos groups (Config.Groups), each
// with its own log keyspace, leader, goroutines and StateMachine, sharing one
// network endpoint and one LevelDB database. The protocol core is package
// paxos; the durable log is package logdb; peers talk through package
// transport (or MemNetwork in tests).
//
// What a caller can rely on:
//   - Propose returns the state machine's result once the command is chosen
//     and applied on this replica; a command is chosen only when a majority
//     has it durably (synced) on disk.
//   - Only the leader proposes. Elsewhere Propose and ReadBarrier return a
//     *NotLeaderError naming the leader when known.
//   - After ReadBarrier returns nil, the local state reflects every write
//     acknowledged anywhere before the call. It costs no log round while the
//     leader holds its master lease.
//   - Resign, before Close, hands a group's leadership off at once: this
//     replica stops serving lease reads before any peer hears of it, and
//     the others need not wait out its lease.
//   - A replica killed at any instant restarts from its data dir with every
//     promise and accepted value it acknowledged; an fsync or write error
//     stops the replica (Err wraps ErrFatal) instead of being retried.
//
// docs/replica.md describes the configuration, batching, snapshots and
// catch-up, and the durability order; docs/threads.md lists the goroutines
// and what each owns.
package replica
