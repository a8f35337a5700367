package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/latchd/latch/client"
)

// This file holds the process-level disk faults of
// ../shared/notes/reliability.md §7.3: a replica's disk full (S17) and a
// disk that fails every write and fsync (S18). Each replica's data dir is
// on a small ext4 filesystem of its own, an image file loop-mounted in the
// test's temporary directory, so the tests need root and loop devices;
// without them they skip and say why.

// diskSize is the size of each replica's filesystem: room for its LevelDB
// (a journal grows up to the 16 MiB write buffer) and a filler file.
const diskSize = 48 << 20

// smallDisk is an ext4 filesystem in an image file, loop-mounted on dir.
type smallDisk struct {
	img, dir string
	filler   string
}

// mountSmallDisk makes and mounts a filesystem of size bytes, unmounted at
// the end of the test (lazily if a process still holds it). It skips the
// test, saying why, where that is not possible.
func mountSmallDisk(t *testing.T, size int64) *smallDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: each replica's data dir is on a loop-mounted ext4 image")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s for a loop-mounted ext4 image: %v", tool, err)
		}
	}
	base := t.TempDir()
	d := &smallDisk{img: filepath.Join(base, "disk.img"), dir: filepath.Join(base, "mnt")}
	d.filler = filepath.Join(d.dir, "filler")
	if err := os.Mkdir(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.img)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	// -m 0: no blocks reserved for root, which latchd runs as here.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", d.img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4 failed, no small filesystem for the data dir: %v: %s", err, out)
	}
	d.mount(t, true)
	t.Cleanup(func() { d.unmount(t) })
	return d
}

// mount mounts the image on dir; orSkip skips the test if that fails (no
// loop devices), otherwise it fails the test.
func (d *smallDisk) mount(t *testing.T, orSkip bool) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "loop", d.img, d.dir).CombinedOutput()
	switch {
	case err != nil && orSkip:
		t.Skipf("cannot loop-mount an ext4 image (no loop devices or mount privileges?): %v: %s", err, out)
	case err != nil:
		t.Fatalf("mount -o loop %s %s: %v: %s", d.img, d.dir, err, out)
	}
}

// unmount unmounts dir, lazily if it is busy.
func (d *smallDisk) unmount(t *testing.T) {
	t.Helper()
	out, err := exec.Command("umount", d.dir).CombinedOutput()
	if err == nil {
		return
	}
	if out2, err2 := exec.Command("umount", "-l", d.dir).CombinedOutput(); err2 != nil {
		t.Errorf("umount %s: %v: %s; umount -l: %v: %s", d.dir, err, out, err2, out2)
	}
}

// fill allocates a filler file that leaves about leave bytes free.
func (d *smallDisk) fill(t *testing.T, leave int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		t.Fatal(err)
	}
	n := int64(st.Bavail)*st.Bsize - leave
	if n <= 0 {
		t.Fatalf("%s has only %d bytes free", d.dir, int64(st.Bavail)*st.Bsize)
	}
	f, err := os.Create(d.filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		t.Fatalf("fallocate %d bytes: %v", n, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// free deletes the filler file, as an operator frees space.
func (d *smallDisk) free(t *testing.T) {
	t.Helper()
	if err := os.Remove(d.filler); err != nil {
		t.Fatal(err)
	}
}

// ext4IOCShutdown is EXT4_IOC_SHUTDOWN, _IOR('X', 125, __u32); with
// ext4GoingNoLogFlush the filesystem stops at once, as a disk that died:
// every later write, fsync and read fails with EIO, and what was not
// synced is lost.
const (
	ext4IOCShutdown     = 0x8004587d
	ext4GoingNoLogFlush = 2
)

// fail shuts the filesystem down: from now on it answers EIO.
func (d *smallDisk) fail(t *testing.T) {
	t.Helper()
	f, err := os.Open(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags := uint32(ext4GoingNoLogFlush)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ext4IOCShutdown, uintptr(unsafe.Pointer(&flags))); errno != 0 {
		t.Skipf("EXT4_IOC_SHUTDOWN on %s: %v (kernel without it?)", d.dir, errno)
	}
}

// replace unmounts the failed filesystem and mounts it again: the
// filesystem's journal is replayed, and what was synced before the
// failure is there, as on a disk that was repaired or moved to a new
// controller.
func (d *smallDisk) replace(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("umount", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", d.dir, err, out)
	}
	d.mount(t, false)
}

// startDiskCell starts a cell whose replicas each have their data dir on
// a small disk of their own; disks[i] is replica i+1's.
func startDiskCell(t *testing.T, ctx context.Context) (*procCell, []*smallDisk) {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test: skipped with -short")
	}
	disks := make([]*smallDisk, 3)
	for i := range disks {
		disks[i] = mountSmallDisk(t, diskSize)
	}
	c := newProcCell(t, cellOptions{dataDir: func(id int) string { return filepath.Join(disks[id-1].dir, "data") }})
	for _, n := range c.nodes {
		c.start(n, "--new-cell")
	}
	c.leader(ctx)
	return c, disks
}

// diskFault is one disk fault of a replica: what breaks its disk, what the
// replica must say when it stops, and what mends the disk.
type diskFault struct {
	name   string
	breaks func(*smallDisk, *testing.T)
	says   string // in the replica's last words
	mend   func(*smallDisk, *testing.T)
	// majority also breaks two replicas' disks, one after the other: the
	// cell must stop acknowledging writes, and come back once they are
	// mended.
	majority bool
}

// runDiskFaults breaks a follower's disk and then the leader's, under
// writers, and checks each time that the replica stops with an error
// naming the cause and its data dir, that the other two go on (electing
// a new leader in the second case), and that the replica, restarted on
// the same data dir once the disk is mended, starts, catches up and holds
// every acknowledged write.
func runDiskFaults(t *testing.T, f diskFault) {
	// A bound on the whole run, not a measure: about 90 s on a quiet
	// machine, 125 s in a CI run beside simulation sweeps (load 9), which
	// once ran out of a 2-minute bound in the final reads.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cell, disks := startDiskCell(t, ctx)
	c := cell.dial(ctx)
	w := startWriters(ctx, c, 8, "/disk-", 10*time.Second)
	w.progress(t, "writes before the fault")

	for _, who := range []string{"follower", "leader"} {
		leader := cell.leader(ctx)
		victim := leader
		if who == "follower" {
			victim = cell.other(leader)
		}
		disk := disks[victim.id-1]
		f.breaks(disk, t)
		stopped(t, victim, who+" with its disk "+f.name, f.says)
		if who == "leader" {
			cell.leaderOtherThan(ctx, victim)
		}
		w.progress(t, fmt.Sprintf("writes while the %s latchd %d is down (%s)", who, victim.id, f.name))
		// Restarted before the disk is mended (as a supervisor does), it
		// must fail again, as clearly, and leave its data dir usable.
		cell.start(victim)
		stopped(t, victim, "restarted with its disk still "+f.name, f.says)

		f.mend(disk, t)
		cell.start(victim)
		cell.caughtUp(ctx, victim)
		out := victim.p.out.String()
		if strings.Contains(out, "no durable state: rebuilding") {
			t.Errorf("latchd %d rebuilt from its peers after the disk was mended: its data dir was lost", victim.id)
		}
		if strings.Contains(out, "dropped the torn tail") {
			t.Logf("latchd %d dropped the torn tail of its journal on restart", victim.id)
		}
		w.progress(t, fmt.Sprintf("writes after latchd %d's restart", victim.id))
	}
	if f.majority {
		majorityDiskFault(t, ctx, cell, disks, c, w, f)
	}
	w.verifyEverywhere(t, ctx, cell, c)
}

// majorityDiskFault breaks a follower's disk and, once it stopped, the
// leader's. With one replica of three left the cell must be unavailable
// rather than unsafe: a Put is not acknowledged. Once both disks are
// mended and both replicas started again, writes must go on and both must
// catch up.
func majorityDiskFault(t *testing.T, ctx context.Context, cell *procCell, disks []*smallDisk, c *client.Client, w *writers, f diskFault) {
	t.Helper()
	leader := cell.leader(ctx)
	victims := []*node{cell.other(leader), leader}
	for _, v := range victims {
		f.breaks(disks[v.id-1], t)
		stopped(t, v, "one of two with their disk "+f.name, f.says)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.Put(pctx, "/disk-majority-down", []byte("x"))
	cancel()
	if err == nil {
		t.Errorf("a Put was acknowledged with the disks of latchd %d and %d %s", victims[0].id, victims[1].id, f.name)
	}
	for _, v := range victims {
		f.mend(disks[v.id-1], t)
		cell.start(v)
	}
	w.progress(t, fmt.Sprintf("writes after latchd %d and %d restarted on mended disks", victims[0].id, victims[1].id))
	for _, v := range victims {
		cell.caughtUp(ctx, v)
	}
}

// stopped waits for n to exit after a disk fault (when says) and checks
// that it failed (exit 1) without a panic, its last words naming the cause
// (says) and its data dir.
func stopped(t *testing.T, n *node, when, says string) {
	t.Helper()
	begin := time.Now()
	code := n.p.wait(t, 30*time.Second)
	out := n.p.out.String()
	last := lastWords(out)
	t.Logf("latchd %d, %s: exit %d within %v: %s", n.id, when, code, time.Since(begin).Round(time.Millisecond), last)
	if strings.Contains(out, "dropped the torn tail") {
		t.Logf("latchd %d dropped the torn tail of its journal on the way", n.id)
	}
	if code != 1 {
		t.Errorf("latchd %d, %s: exit %d; want 1 (the server failed)", n.id, when, code)
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("latchd %d panicked, %s:\n%s", n.id, when, tail(out, 4000))
	}
	if !strings.Contains(last, says) || !strings.Contains(last, n.data) {
		t.Errorf("latchd %d, %s: its last words do not name the cause (%q) and the data dir %s:\n%s", n.id, when, says, n.data, last)
	}
}

// lastWords returns what latchd printed on its way out: its stderr line
// "latchd: ..." (the error that stopped it), or the tail of its output.
func lastWords(out string) string {
	if i := strings.LastIndex(out, "\nlatchd: "); i >= 0 {
		return strings.TrimSpace(out[i+1:])
	}
	return tail(out, 1000)
}

// TestDiskFull (S17): a follower's disk fills up under writers, then the
// leader's, then a follower's and the leader's (a majority). The replica must stop with an error that says "no space left
// on device" and names its data dir (never a panic or a hang, and never an
// acknowledgement of what it could not sync); the other two go on, a new
// leader elected when it was the leader. Once the operator frees space and
// starts it again on the same data dir, it must start (its LevelDB intact
// after the failed writes) and catch up, and every acknowledged write must
// be readable, on every replica.
func TestDiskFull(t *testing.T) {
	runDiskFaults(t, diskFault{
		name:     "full",
		breaks:   func(d *smallDisk, t *testing.T) { d.fill(t, 64<<10) },
		says:     "no space left on device",
		mend:     (*smallDisk).free,
		majority: true,
	})
}

// TestDiskFailure (S18): a follower's filesystem stops at once (ext4's
// shutdown ioctl without a log flush: every later write, fsync and read
// fails with EIO and what was not synced is lost, as when a disk dies),
// then the leader's. The replica must stop with an error that says
// "input/output error" and names its data dir, not retry and go on; the
// other two go on. Once the filesystem is mounted again (its journal
// replayed), the replica must start on what it had synced, catch up, and
// every acknowledged write must be readable, on every replica.
func TestDiskFailure(t *testing.T) {
	runDiskFaults(t, diskFault{
		name:   "failing",
		breaks: (*smallDisk).fail,
		says:   "input/output error",
		mend:   (*smallDisk).replace,
	})
}
