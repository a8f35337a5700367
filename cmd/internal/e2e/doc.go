// Package e2e holds process-level tests of the latchd and latch binaries:
// they are built with `go build` into a temporary directory and run as
// separate processes on loopback, as an operator would run them (a cell of
// three latchd processes from config files, with TLS or without, a leader
// killed with SIGKILL under load and restarted, the README's quick start).
//
// It also runs the fault scenarios of the reliability plan that need no
// privileges (../shared/notes/reliability.md §7.3): replicas paused with
// SIGSTOP beyond their lease (S10), a lock holder paused beyond its session
// (S11), the whole cell killed at once (S4, unsynced data kept), and
// partitions (S5, S6): each replica-to-replica link runs through a proxy of
// the test (replica i is told that replica j listens on the proxy), which
// can cut it, blackhole it, or blackhole one direction (S8) while clients
// still reach every replica; partitions of any shape (a bridge, a ring of
// majorities: S7) are made of cut links. Histories of Puts and
// linearizable Gets, and of Lock, CheckSequencer and Unlock on one lock
// through a partition, a pause and a kill of the leader (S2), are checked
// with porcupine. A rolling restart (S13), with SIGTERM and then SIGKILL,
// must keep a client's session, lock and ephemeral node; a replica whose
// journal, snapshot or LevelDB table has a bit flipped must refuse to
// start, saying its data is corrupt, and a leader must stop rather than
// send a flipped snapshot (S20); a replica whose data dir was deleted
// must rebuild it from its peers before it votes (S21), and in a cell of
// five two such replicas must rebuild together. A backup taken
// from the leader's /backup must start a new cell with `latchd restore`.
// The bank (Jepsen's bank test) moves money between accounts with
// transactions through a partition and a kill of the leader: the total
// must hold, every acknowledged transfer must be logged, and the log must
// replay to every balance and content generation. In a TLS cell a
// principal's rights are revoked, and later granted again, right before
// the leader is killed (S25): no write of his sent after the revocation may
// be applied, nor any of /app's events shown to him.
// TestSoak (opt-in, -soak=D) strings random faults together for as long as
// it is given.
//
// The disk faults need root and loop devices: each replica's data dir is on
// a small ext4 filesystem of its own, loop-mounted from an image file. A
// full disk (S17) and a disk that fails every write and fsync (S18) must
// stop the replica with an error naming the cause and its data dir while
// the others go on, and once the disk is mended it must start on its data
// dir and catch up. A slow disk (S18 again: fsyncs of about 100 ms, a
// cgroup's block I/O throttle on a replica's loop device) must not stop
// the cell while a majority syncs fast, nor lose an acknowledged write.
// Without root, loop devices or the throttle they skip, saying why.
//
// The tests are skipped with -short. The package has no code of its own.
package e2e
