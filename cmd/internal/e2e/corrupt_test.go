package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
)

// This file holds the rest of S20 (bit rot), beside TestCorruptLogRefused
// in faults_test.go: a bit flipped in a stopped follower's snapshot file,
// and one in a data block of its LevelDB table. The way back from each is
// the one for a lost disk: delete the data dir and start the replica.

// TestCorruptSnapshotRefused (S20): a follower rebuilt from an empty data
// dir holds the snapshot its peer sent it (how a rebuild learns the member
// set), and its log only above it. One bit of that snapshot file is
// flipped while the follower is stopped. Started again, it must refuse to
// run on it, with an error that says the data is corrupt and names the
// file, before its state machine takes in a byte of it; the other two go
// on; deleted, the data dir is rebuilt from the peers, and every
// acknowledged write is readable on every replica.
func TestCorruptSnapshotRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/snap-", 10*time.Second)
	w.progress(t, "writes before the wipe")
	victim := cell.other(cell.leader(ctx))
	cell.wipe(victim)
	cell.start(victim)
	cell.rebuilt(ctx, victim)
	cell.caughtUp(ctx, victim)
	w.progress(t, "writes after the rebuild")
	if code := victim.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("latchd %d exit %d after SIGTERM", victim.id, code)
	}
	snap := flipSnapshot(t, victim)
	cell.start(victim)
	refused(t, victim, "restarted on a flipped snapshot", snap)
	if _, err := c.Put(ctx, "/after-corruption", []byte("x")); err != nil {
		t.Errorf("Put on the two healthy replicas: %v", err)
	}
	rebuildAndVerify(t, ctx, cell, c, w, victim)
}

// TestCorruptTableRefused (S20): a stopped follower's Paxos journal is
// turned into a LevelDB table by starting it once (goleveldb writes the
// journal it recovers to a level-0 table on Open); stopped again, one bit
// in the middle of the table's data blocks is flipped. Started again, the
// replica reads every entry above its snapshot (it has none yet: far fewer
// instances than a snapshot waits for) and so reads the flipped block: it
// must refuse to run, saying the data is corrupt and naming the table and
// its directory, without a panic; the other two go on; deleted, the data
// dir is rebuilt from the peers, and every acknowledged write is readable
// on every replica.
func TestCorruptTableRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/table-", 10*time.Second)
	victim := cell.other(cell.leader(ctx))
	ldbDir := filepath.Join(victim.data, "paxos", "leveldb")
	// Enough entries for a table of many 4 KiB blocks. (A running
	// replica's journal is no measure: logdb keeps zeros preallocated
	// ahead of its end, and cuts them when it closes it.)
	testutil.WaitFor(t, 60*time.Second, "2,000 acknowledged writes", func() bool { return w.count() >= 2000 })
	if code := victim.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("latchd %d exit %d after SIGTERM", victim.id, code)
	}
	cell.start(victim)
	cell.caughtUp(ctx, victim)
	// Entries below a snapshot are never read again, so a flip among them
	// could go unseen: this test wants none.
	if snap := groupStatus(t, ctx, cell, victim, "snapshot"); snap != float64(0) {
		t.Fatalf("latchd %d took a snapshot (instance %v): the flipped block may hold only truncated entries", victim.id, snap)
	}
	if code := victim.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("latchd %d exit %d after SIGTERM", victim.id, code)
	}
	table, dataEnd := largestTable(t, ldbDir)
	t.Logf("flipping a bit in the middle of the data blocks of %s (%d bytes of them)", table, dataEnd)
	flipBit(t, table, dataEnd/2)

	cell.start(victim)
	refused(t, victim, "restarted on a flipped table", ldbDir, filepath.Base(table))
	if _, err := c.Put(ctx, "/after-corruption", []byte("x")); err != nil {
		t.Errorf("Put on the two healthy replicas: %v", err)
	}
	rebuildAndVerify(t, ctx, cell, c, w, victim)
}

// TestCorruptLeaderSnapshotStopsIt (S20, the leader's snapshot): in a cell
// of five, a follower is wiped and rebuilt, so the leader takes a snapshot
// to send it. One bit of that file is flipped while the leader runs; then
// another follower is wiped and asks for a snapshot. The leader must stop
// (exit 1, "corrupt", the file named) rather than send it, or be asked
// again for ever while it leads; another replica leads, sends its own
// snapshot and takes writes. Started again, the old leader refuses its
// snapshot too. The wiped follower learns but cannot rebuild meanwhile: a
// fence needs the promise of every voter not rebuilding itself
// (replica/paxos/rebuild.go), and the old leader is down. Once its data
// dir is deleted and it is started, both rebuild together, and every
// acknowledged write is readable on every replica.
func TestCorruptLeaderSnapshotStopsIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cell := startProcCell(t, ctx, cellOptions{replicas: 5})
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/lsnap-", 20*time.Second)
	w.progress(t, "writes before the first wipe")
	leader := cell.leader(ctx)
	first := cell.other(leader)
	cell.wipe(first)
	cell.start(first)
	cell.rebuilt(ctx, first)
	snap := flipSnapshot(t, leader)

	second := cell.other(leader, first)
	cell.wipe(second)
	cell.start(second)
	refused(t, leader, "asked for its flipped snapshot", snap)
	cell.leaderOtherThan(ctx, leader)
	w.progress(t, fmt.Sprintf("writes after latchd %d stopped", leader.id))

	cell.start(leader)
	refused(t, leader, "restarted on its flipped snapshot", snap)
	if err := os.RemoveAll(leader.data); err != nil {
		t.Fatal(err)
	}
	cell.start(leader)
	cell.rebuilt(ctx, second)
	cell.rebuilt(ctx, leader)
	w.verifyEverywhere(t, ctx, cell, c)
}

// refused waits for n to exit after it was started on corrupt data (when
// says what) and checks that it failed (exit 1) without a panic, its last
// words saying the data is corrupt and naming each of names (the file, or
// its directory and base name).
func refused(t *testing.T, n *node, when string, names ...string) {
	t.Helper()
	select {
	case <-n.p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("latchd %d, %s, still runs after 30 s: it runs on corrupt data:\n%s", n.id, when, tail(n.p.out.String(), 2000))
	}
	code := n.p.cmd.ProcessState.ExitCode()
	out := n.p.out.String()
	last := lastWords(out)
	t.Logf("latchd %d, %s: exit %d: %s", n.id, when, code, last)
	if code == 0 {
		t.Fatalf("latchd %d ran on corrupt data (exit 0), %s:\n%s", n.id, when, tail(out, 2000))
	}
	if code != 1 {
		t.Errorf("latchd %d, %s: exit %d; want 1 (the server failed)", n.id, when, code)
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("latchd %d panicked, %s:\n%s", n.id, when, tail(out, 4000))
	}
	for _, want := range append([]string{"corrupt"}, names...) {
		if !strings.Contains(last, want) {
			t.Errorf("latchd %d, %s: its last words do not say %q:\n%s", n.id, when, want, last)
		}
	}
}

// rebuildAndVerify takes the way back from a corrupt data dir: delete it
// and start n, which rebuilds from its peers and catches up. Then it
// checks every acknowledged write everywhere (verifyEverywhere).
func rebuildAndVerify(t *testing.T, ctx context.Context, cell *procCell, c *client.Client, w *writers, n *node) {
	t.Helper()
	if err := os.RemoveAll(n.data); err != nil {
		t.Fatal(err)
	}
	cell.start(n)
	cell.rebuilt(ctx, n)
	cell.caughtUp(ctx, n)
	w.verifyEverywhere(t, ctx, cell, c)
}

// verifyEverywhere stops the writers and reads every acknowledged write
// back through c and, with stale reads, on every replica alone, once it
// caught up: no replica may have lost or changed one.
func (w *writers) verifyEverywhere(t *testing.T, ctx context.Context, cell *procCell, c *client.Client) {
	t.Helper()
	w.halt()
	w.verify(t, ctx, c)
	for _, n := range cell.nodes {
		cell.caughtUp(ctx, n)
		t.Logf("latchd %d alone (stale reads) holds every acknowledged write?", n.id)
		w.verify(t, ctx, cell.dial(ctx, n.client), client.Stale())
	}
	t.Logf("%d writes acknowledged", w.count())
}

// groupStatus returns field of the one group in n's /status.
func groupStatus(t *testing.T, ctx context.Context, cell *procCell, n *node, field string) any {
	t.Helper()
	doc, err := cell.adminGetJSON(ctx, n, "/status")
	if err != nil {
		t.Fatalf("/status of latchd %d: %v", n.id, err)
	}
	groups, _ := doc["groups"].([]any)
	if len(groups) != 1 {
		t.Fatalf("/status of latchd %d has groups %v; want one", n.id, doc["groups"])
	}
	g, _ := groups[0].(map[string]any)
	return g[field]
}

// largestTable returns the largest LevelDB table in dir and where its data
// blocks end: at the metaindex block, whose offset is the footer's first
// varint (leveldb's table format: data blocks, an optional filter block,
// which logdb configures none of, the metaindex and index blocks, then a
// 48-byte footer).
func largestTable(t *testing.T, dir string) (string, int64) {
	t.Helper()
	tables, _ := filepath.Glob(filepath.Join(dir, "*.ldb"))
	var name string
	var size int64
	for _, f := range tables {
		if st, err := os.Stat(f); err == nil && st.Size() > size {
			name, size = f, st.Size()
		}
	}
	if name == "" {
		t.Fatalf("no LevelDB table in %s", dir)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	end, n := binary.Uvarint(b[len(b)-48:])
	if n <= 0 || end == 0 || end >= uint64(len(b)) {
		t.Fatalf("%s: bad footer", name)
	}
	return name, int64(end)
}

// flipSnapshot flips one bit in the middle of n's snapshot file, which
// must be its only one, and returns the file's path.
func flipSnapshot(t *testing.T, n *node) string {
	t.Helper()
	snaps, _ := filepath.Glob(filepath.Join(n.data, "paxos", "snapshots", "*.snap"))
	if len(snaps) != 1 {
		t.Fatalf("latchd %d holds snapshot files %v; want one", n.id, snaps)
	}
	st, err := os.Stat(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flipping a bit in the middle of latchd %d's %s (%d bytes)", n.id, snaps[0], st.Size())
	flipBit(t, snaps[0], st.Size()/2)
	return snaps[0]
}

// flipBit inverts one bit of the byte at off in file, keeping its size.
func flipBit(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
