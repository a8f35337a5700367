// Package logdb is the durable acceptor state and Paxos log of a replica,
// kept in one goleveldb database shared by every Paxos group of the process.
//
// # What is stored
//
// For each group, under a key prefix of its own (so groups never see each
// other's keys):
//
//   - the promised ballot: the highest ballot this acceptor has promised;
//   - the accepted entry of each instance (ballot and value), keyed by the
//     instance in big-endian order so iteration is in instance order;
//   - the chosen mark: every instance at or below it is known to be chosen;
//   - the snapshot meta: the instance the latest durable snapshot covers, its
//     size and checksum. The snapshot bytes live in a file of their own under
//     dir/snapshots, written to a temporary name, synced, renamed and the
//     directory synced before the meta that names it is written.
//
// A format-version key is checked on Open; a database written by another
// format is refused with ErrFormat. Every stored value carries a CRC-32C of
// its own, so a flipped bit is reported as ErrCorrupt instead of being
// replayed.
//
// # Durability contract
//
//  1. The database is opened with opt.StrictAll, so a damaged journal or
//     manifest makes Open fail (ErrCorrupt) instead of silently dropping the
//     damaged records, which for an acceptor would mean forgetting a promise.
//     The one exception is a torn tail: the newest journal ending in the
//     middle of its last record (a crash while appending a record that was
//     therefore never synced). Open cuts that record off, logs a warning and
//     opens the database; damage anywhere else is an error.
//  2. Log.Write stores one Update (promise, accepted entries, chosen mark) as
//     ONE leveldb batch written with Sync: true. When it returns nil, all of
//     it is on disk; the caller may then reveal it (send Promise/Accepted).
//  3. Any write or sync error is fatal: the DB records it, fails every later
//     call with an error wrapping ErrFailed and the original error, and never
//     retries. The owner must stop the replica and recover from disk
//     (after a failed fsync the kernel may have dropped the dirty pages, so a
//     retry that "succeeds" can hide lost data).
//  4. A snapshot is durable before its meta is recorded, and Truncate never
//     deletes entries above the recorded snapshot, so after any crash the
//     log plus the snapshot cover every instance.
//
// # Concurrency
//
// A DB is safe for concurrent use. Each *Log is meant to be used by the one
// goroutine that drives its group; Log methods are nevertheless safe to call
// concurrently (leveldb serialises writes and merges concurrent synced
// batches of different groups into one journal write and one fsync).
package logdb
