package admin

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchd/latch/lockserver"
	"github.com/latchd/latch/replica"
)

// collector exports a replica's lockserver.Metrics and Status to
// Prometheus. It reads them at scrape time; nothing is kept in between.
type collector struct {
	s Server

	requests, errors                          *prometheus.Desc
	conns, connsTotal, connsRejected          *prometheus.Desc
	tlsHandshakeErrors                        *prometheus.Desc
	proposals, proposalErrors, proposeLatency *prometheus.Desc
	terms, expired, events, readBarriers      *prometheus.Desc
	leaseReads                                *prometheus.Desc
	isLeader, leaseValid, rebuilding          *prometheus.Desc
	chosen, applied, snapshot, index          *prometheus.Desc
	nodes, sessions, tracked, held            *prometheus.Desc
	batches, writes, dropped                  *prometheus.Desc
	locksHeld, lockWaiters, snapshotBytes     *prometheus.Desc
	syncedWrites, syncSeconds                 *prometheus.Desc
	batchSize, applyLatency                   *prometheus.Desc
	peerLag, peerLastAck                      *prometheus.Desc
}

func newCollector(s Server) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("latch_"+name, help, labels, nil)
	}
	return &collector{
		s:                  s,
		requests:           d("requests_total", "Client requests received, by message type.", "type"),
		errors:             d("request_errors_total", "Error replies sent to clients, by code.", "code"),
		conns:              d("client_connections", "Open client connections."),
		connsTotal:         d("client_connections_total", "Client connections accepted."),
		connsRejected:      d("client_connections_rejected_total", "Client connections refused (MaxConns)."),
		tlsHandshakeErrors: d("client_tls_handshake_errors_total", "Client connections closed because their TLS handshake failed."),
		proposals:          d("proposals_total", "Commands proposed to the Paxos log."),
		proposalErrors:     d("proposal_errors_total", "Proposals that failed."),
		proposeLatency:     d("propose_duration_seconds", "Time from proposing a command to its result."),
		terms:              d("leader_terms_total", "Leader terms started by this replica."),
		expired:            d("sessions_expired_total", "Session expiries proposed and applied."),
		events:             d("events_delivered_total", "Watch events queued for sessions."),
		readBarriers:       d("read_barriers_total", "Linearizable reads served."),
		leaseReads:         d("lease_reads_total", "Linearizable reads served on the leader's lease alone, without a barrier round."),
		isLeader:           d("is_leader", "1 if this replica leads the cell and serves sessions."),
		leaseValid:         d("leader_lease_valid", "1 if this replica leads and holds its master lease."),
		rebuilding:         d("paxos_rebuilding", "1 while this replica rebuilds lost state: it learns but does not vote (docs/operations.md)."),
		chosen:             d("paxos_chosen_instance", "Every Paxos instance up to this one is known chosen."),
		applied:            d("paxos_applied_instance", "Last Paxos instance applied to the namespace."),
		snapshot:           d("paxos_snapshot_instance", "Instance covered by the last stored snapshot."),
		index:              d("applied_index", "Last command index applied to the namespace."),
		nodes:              d("namespace_nodes", "Nodes in the namespace."),
		sessions:           d("sessions", "Live sessions in the namespace."),
		tracked:            d("sessions_tracked", "Sessions the leader's lease keeper tracks (0 off the leader)."),
		held:               d("keepalives_held", "KeepAlive long polls held (0 off the leader)."),
		batches:            d("paxos_batches_total", "Paxos instances proposed by this replica as leader."),
		writes:             d("paxos_writes_total", "Synced log writes."),
		dropped:            d("paxos_dropped_total", "Peer messages dropped (full inbox)."),
		locksHeld:          d("locks_held", "Locks with at least one holder."),
		lockWaiters:        d("lock_waiters", "Acquires waiting in lock queues."),
		snapshotBytes:      d("paxos_snapshot_bytes", "Size of the stored state machine snapshot."),
		syncedWrites:       d("paxos_synced_writes_total", "Log writes with fsync."),
		syncSeconds:        d("paxos_sync_seconds_total", "Time spent in log writes with fsync (divide by paxos_synced_writes_total for the mean)."),
		batchSize:          d("paxos_batch_commands", "Commands per batch (Paxos instance) this replica proposed as leader."),
		applyLatency:       d("apply_duration_seconds", "Time to apply one chosen instance to the namespace."),
		peerLag:            d("peer_chosen_lag_instances", "On the leader: how many instances a follower knows chosen fewer than the leader, by its last report.", "peer"),
		peerLastAck:        d("peer_last_ack_seconds", "On the leader: time since a follower last acknowledged it (absent until it has).", "peer"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.errors, c.conns, c.connsTotal, c.connsRejected, c.tlsHandshakeErrors,
		c.proposals, c.proposalErrors, c.proposeLatency, c.terms, c.expired, c.events, c.readBarriers, c.leaseReads,
		c.isLeader, c.leaseValid, c.rebuilding, c.chosen, c.applied, c.snapshot, c.index,
		c.nodes, c.sessions, c.tracked, c.held, c.batches, c.writes, c.dropped,
		c.locksHeld, c.lockWaiters, c.snapshotBytes, c.syncedWrites, c.syncSeconds, c.batchSize, c.applyLatency,
		c.peerLag, c.peerLastAck,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.Metrics().Snapshot()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Requests)) {
		counter(c.requests, float64(m.Requests[k]), k)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Errors)) {
		counter(c.errors, float64(m.Errors[k]), k)
	}
	gauge(c.conns, float64(m.Conns))
	counter(c.connsTotal, float64(m.ConnsTotal))
	counter(c.connsRejected, float64(m.ConnsRejected))
	counter(c.tlsHandshakeErrors, float64(m.TLSHandshakeErrors))
	counter(c.proposals, float64(m.Proposals))
	counter(c.proposalErrors, float64(m.ProposalErrors))
	count, buckets := cumulative(m.ProposeLatency)
	ch <- prometheus.MustNewConstHistogram(c.proposeLatency, count, m.ProposeTotal.Seconds(), buckets)
	counter(c.terms, float64(m.Terms))
	counter(c.expired, float64(m.SessionsExpired))
	counter(c.events, float64(m.EventsDelivered))
	counter(c.readBarriers, float64(m.ReadBarriers))
	counter(c.leaseReads, float64(m.LeaseReads))

	st := c.s.Status()
	gauge(c.isLeader, b2f(st.IsLeader))
	gauge(c.leaseValid, b2f(st.LeaseValid))
	gauge(c.rebuilding, b2f(st.Rebuilding))
	gauge(c.chosen, float64(st.Chosen))
	gauge(c.applied, float64(st.Applied))
	gauge(c.snapshot, float64(st.Snapshot))
	gauge(c.index, float64(st.Index))
	gauge(c.nodes, float64(st.Nodes))
	gauge(c.sessions, float64(st.Sessions))
	gauge(c.tracked, float64(st.Tracked))
	gauge(c.held, float64(st.HeldKeepAlives))
	counter(c.batches, float64(st.Batches))
	counter(c.writes, float64(st.Writes))
	counter(c.dropped, float64(st.Dropped))
	gauge(c.locksHeld, float64(st.LocksHeld))
	gauge(c.lockWaiters, float64(st.LockWaiters))
	gauge(c.snapshotBytes, float64(st.SnapshotBytes))
	counter(c.syncedWrites, float64(st.SyncedWrites))
	counter(c.syncSeconds, st.SyncTime.Seconds())
	sizes := make([]float64, len(replica.BatchSizeBuckets))
	for i, b := range replica.BatchSizeBuckets {
		sizes[i] = float64(b)
	}
	if len(st.BatchSizes) > 0 {
		count, buckets := cumulativeBy(st.BatchSizes, sizes)
		ch <- prometheus.MustNewConstHistogram(c.batchSize, count, float64(st.BatchCommands), buckets)
	}
	for _, p := range st.Peers {
		id := strconv.FormatUint(p.ID, 10)
		d := seenDoc(p, st.Chosen)
		ch <- prometheus.MustNewConstMetric(c.peerLag, prometheus.GaugeValue, float64(d.ChosenLag), id)
		if p.LastAck >= 0 {
			ch <- prometheus.MustNewConstMetric(c.peerLastAck, prometheus.GaugeValue, p.LastAck.Seconds(), id)
		}
	}
	if len(st.ApplyLatency) > 0 {
		count, buckets := cumulativeBy(st.ApplyLatency, seconds(replica.ApplyLatencyBuckets[:]))
		ch <- prometheus.MustNewConstHistogram(c.applyLatency, count, st.ApplyTime.Seconds(), buckets)
	}
}

// cumulative turns lockserver's per-bucket latency counts (bucket i: below
// LatencyBuckets[i]; the last: the rest) into Prometheus' cumulative
// buckets keyed by upper bound in seconds, and the total count.
func cumulative(perBucket []uint64) (uint64, map[float64]uint64) {
	return cumulativeBy(perBucket, seconds(lockserver.LatencyBuckets[:]))
}

// cumulativeBy is cumulative for buckets with the given upper bounds (one
// fewer than perBucket: the last bucket is the rest, +Inf).
func cumulativeBy(perBucket []uint64, bounds []float64) (uint64, map[float64]uint64) {
	out := make(map[float64]uint64, len(bounds))
	var sum uint64
	for i, n := range perBucket {
		sum += n
		if i < len(bounds) {
			out[bounds[i]] = sum
		}
	}
	return sum, out
}

// seconds converts durations to seconds.
func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
