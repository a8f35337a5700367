package replica

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/latchd/latch/replica/logdb"
)

// Snapshot transfer. A peer that asks for instances this replica has
// truncated gets the stored snapshot in chunks of Config.SnapshotChunk
// bytes, one at a time: the sender waits for each chunk's ack (which names
// the next offset wanted) and resends after snapAckTimeout, giving up after
// snapMaxTries silent timeouts. The receiver streams chunks into a logdb
// SnapshotWriter, checks size and CRC, commits it durably, and only then has
// the apply goroutine restore the state machine from it.
//
// Two kinds of failure end a receive, and they are handled apart. What the
// peer sends (a chunk lost or cut off with its connection, out of order, too
// long, or a whole that fails its size or CRC) is never an error of ours:
// the receiver answers with the offset it needs or aborts, and the sender
// starts again. Storing it (creating, writing, syncing or renaming the
// temporary file, recording its meta) fails only on this replica's own disk,
// and that is fatal, as every other failed write to the data dir is
// (storeFailed).

const snapMaxTries = 5

func (g *group) snapAckTimeout() time.Duration {
	return max(time.Second, 2*g.r.cfg.ElectionTimeout)
}

// startTransfer starts sending the snapshot to peer unless a transfer to it
// is already running (loop goroutine).
func (g *group) startTransfer(peer uint64) {
	if _, ok := g.transfers[peer]; ok {
		return
	}
	acks := make(chan snapAck, 16)
	g.transfers[peer] = acks
	g.aux.Add(1)
	go g.sendSnapshot(peer, acks)
}

// sendSnapshot is a transfer goroutine: it lives until the peer acks the
// whole snapshot, gives up, or the replica stops.
func (g *group) sendSnapshot(peer uint64, acks <-chan snapAck) {
	defer g.aux.Done()
	defer g.event(func() { delete(g.transfers, peer) })
	r, err := g.openForSend()
	switch {
	case errors.Is(err, errNoSnapshot):
		g.log.Warn("cannot send a snapshot", "peer", peer, "err", err)
		return
	case err != nil:
		g.r.fatal(fmt.Errorf("group %d: sending a snapshot to replica %d: %w", g.id, peer, err))
		return
	}
	defer r.Close()
	meta := r.Meta()
	g.log.Info("sending snapshot", "peer", peer, "instance", meta.Instance, "bytes", meta.Size)
	buf := make([]byte, g.r.cfg.SnapshotChunk)
	timer := time.NewTimer(g.snapAckTimeout())
	defer timer.Stop()
	var off int64
	for tries := 0; tries < snapMaxTries; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), meta.Size-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == meta.Size) {
			// The file was read whole a moment ago: its storage failed.
			g.r.fatal(fmt.Errorf("group %d: reading snapshot %d to send to replica %d: %w", g.id, meta.Instance, peer, err))
			return
		}
		payload, err := encodePeer(kindSnapChunk, &snapChunk{
			Instance: meta.Instance, Offset: off, Size: meta.Size, CRC: meta.CRC, Data: buf[:n],
		})
		if err != nil {
			g.log.Error("encoding a snapshot chunk", "err", err)
			return
		}
		g.sendPayload(peer, payload)
		timer.Reset(g.snapAckTimeout())
	wait:
		for {
			select {
			case ack := <-acks:
				if ack.Instance != meta.Instance {
					continue // an ack of an older transfer
				}
				switch {
				case ack.Done:
					g.stats.snapsSent.Add(1)
					g.log.Info("snapshot sent", "peer", peer, "instance", meta.Instance)
					return
				case ack.Abort:
					// It failed the checksum there, or the peer is
					// receiving another replica's snapshot.
					g.log.Warn("peer aborted the snapshot transfer", "peer", peer, "instance", meta.Instance)
					return
				case ack.Next < 0 || ack.Next > meta.Size:
					g.log.Warn("peer acked an impossible offset", "peer", peer, "next", ack.Next)
					return
				}
				off, tries = ack.Next, 0
				break wait
			case <-timer.C:
				tries++
				break wait
			case <-g.r.stop:
				return
			case <-g.r.fatalC:
				return
			}
		}
	}
	g.log.Warn("snapshot transfer timed out", "peer", peer, "instance", meta.Instance)
}

// errNoSnapshot: there is no snapshot to send, and none could be taken
// (nothing applied yet, or the replica is stopping).
var errNoSnapshot = errors.New("no snapshot to send")

// openForSend opens the stored snapshot for a transfer, taking one first if
// none is stored (a joiner asks for a snapshot in every case, as it has no
// member set), and reads it whole to check it against its checksum (transfer
// goroutine). Any error it returns but errNoSnapshot is this replica's own
// storage failing and is fatal, as a failed write is: a receiver would abort a corrupt
// snapshot on its checksum and ask again for ever while this replica went
// on leading, and the replica would fail the same way at its next start,
// restoring it. A snapshot taken meanwhile may replace the one whose meta
// OpenSnapshot read (the old file is removed once the new one is recorded),
// so a file gone missing is looked up again.
func (g *group) openForSend() (*logdb.SnapshotReader, error) {
	for try := 1; ; try++ {
		r, err := g.ldb.OpenSnapshot()
		if errors.Is(err, logdb.ErrNoSnapshot) {
			// The apply goroutine stops the replica itself if storing
			// the snapshot fails.
			if err := g.snapshotNow(); err != nil {
				return nil, fmt.Errorf("%w: %w", errNoSnapshot, err)
			}
			r, err = g.ldb.OpenSnapshot()
		}
		if errors.Is(err, fs.ErrNotExist) && try < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := r.Verify(); err != nil {
			r.Close()
			return nil, err
		}
		return r, nil
	}
}

// snapshotNow has the apply goroutine take a snapshot if none is stored
// (transfer goroutine).
func (g *group) snapshotNow() error {
	done := make(chan error, 1)
	select {
	case g.applyc <- applyItem{snap: done}:
	case <-g.r.stop:
		return g.r.stoppedErr()
	case <-g.r.fatalC:
		return g.r.stoppedErr()
	}
	select {
	case err := <-done:
		return err
	case <-g.r.stop:
		return g.r.stoppedErr()
	case <-g.r.fatalC:
		return g.r.stoppedErr()
	}
}

// snapReceiver is an incoming snapshot being written (owned by the loop).
type snapReceiver struct {
	from     uint64
	instance uint64
	size     int64
	crc      uint32
	next     int64
	last     time.Time // when a chunk of it last arrived
	w        *logdb.SnapshotWriter
}

func (g *group) ackSnap(to uint64, a snapAck) {
	payload, err := encodePeer(kindSnapAck, &a)
	if err != nil {
		g.log.Error("encoding a snapshot ack", "err", err)
		return
	}
	g.sendPayload(to, payload)
}

// receiveChunk handles one incoming snapshot chunk (loop goroutine).
func (g *group) receiveChunk(from uint64, c *snapChunk) {
	if c.Instance <= max(g.applier.appliedIndex(), g.node.Status().Applied) {
		g.ackSnap(from, snapAck{Instance: c.Instance, Done: true})
		return
	}
	rv := g.recv
	if rv != nil && rv.from != from && time.Since(rv.last) < g.snapAckTimeout() {
		// Another replica's transfer is under way: let it finish. Two
		// senders (the leader and a follower both answering a catch-up)
		// used to take the receive from each other at every chunk, one
		// asked to start again from 0 and the other aborted when it did,
		// for as long as both went on (the member soak, Session 14: 4,788
		// restarts in a minute, the replica never caught up). This one
		// stops; a catch-up asks again if the other fails.
		g.ackSnap(from, snapAck{Instance: c.Instance, Abort: true})
		return
	}
	if rv == nil || rv.from != from || rv.instance != c.Instance || rv.size != c.Size || rv.crc != c.CRC {
		if c.Offset != 0 {
			g.ackSnap(from, snapAck{Instance: c.Instance, Next: 0})
			return
		}
		if rv != nil {
			rv.w.Abort()
			g.recv = nil
		}
		w, err := g.ldb.CreateSnapshot(c.Instance)
		if errors.Is(err, logdb.ErrStaleSnapshot) {
			g.ackSnap(from, snapAck{Instance: c.Instance, Done: true})
			return
		}
		if err != nil {
			g.storeFailed(from, c.Instance, err)
			return
		}
		g.log.Info("receiving snapshot", "from", from, "instance", c.Instance, "bytes", c.Size)
		rv = &snapReceiver{from: from, instance: c.Instance, size: c.Size, crc: c.CRC, w: w}
		g.recv = rv
	}
	rv.last = time.Now()
	if c.Offset != rv.next || rv.next+int64(len(c.Data)) > rv.size {
		g.ackSnap(from, snapAck{Instance: c.Instance, Next: rv.next})
		return
	}
	if _, err := rv.w.Write(c.Data); err != nil {
		g.recv = nil
		rv.w.Abort()
		g.storeFailed(from, c.Instance, err)
		return
	}
	rv.next += int64(len(c.Data))
	if rv.next < rv.size {
		g.ackSnap(from, snapAck{Instance: c.Instance, Next: rv.next})
		return
	}
	g.recv = nil
	if size, crc := rv.w.Sum(); size != rv.size || crc != rv.crc {
		rv.w.Abort()
		g.log.Warn("received snapshot fails its checksum", "from", from, "instance", rv.instance)
		g.ackSnap(from, snapAck{Instance: c.Instance, Abort: true})
		return
	}
	if _, err := rv.w.Commit(); err != nil {
		if errors.Is(err, logdb.ErrStaleSnapshot) {
			g.ackSnap(from, snapAck{Instance: c.Instance, Done: true})
			return
		}
		g.storeFailed(from, c.Instance, err)
		return
	}
	g.ackSnap(from, snapAck{Instance: c.Instance, Done: true})
	select {
	case g.applyc <- applyItem{restore: rv.instance}:
	case <-g.r.stop:
	case <-g.r.fatalC:
	}
}

// storeFailed ends a receive whose storing failed. Only this replica's own
// files fail here (what the peer sent was checked above), so the error is
// fatal like any other failed write to the data dir: a replica that aborted
// and asked again would stay behind for good on a full or broken disk,
// logging warnings, instead of stopping with the cause and the file named
// (logdb's errors name both). The sender's transfer times out.
func (g *group) storeFailed(from, instance uint64, err error) {
	g.r.fatal(fmt.Errorf("group %d: storing snapshot %d received from replica %d: %w", g.id, instance, from, err))
}
