package lockserver

import (
	"sync/atomic"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// Metrics counts what the server does, for the admin HTTP server (which may
// export them to Prometheus) and for tests. Every field is safe to read at
// any time; Snapshot copies them all.
type Metrics struct {
	// Requests counts requests by message type.
	Requests [wire.TypeMemberChanged + 1]atomic.Uint64
	// Errors counts error replies by code.
	Errors [wire.NotCaughtUp + 1]atomic.Uint64
	// Conns is the number of open client connections; ConnsTotal counts
	// connections accepted and ConnsRejected those refused (MaxConns).
	Conns, ConnsTotal, ConnsRejected atomic.Int64
	// TLSHandshakeErrors counts client connections closed because their
	// TLS handshake failed (Config.TLS).
	TLSHandshakeErrors atomic.Uint64
	// Proposals counts commands proposed, ProposalErrors those that failed.
	Proposals, ProposalErrors atomic.Uint64
	// ProposeLatency is a histogram of proposal latencies: bucket i counts
	// proposals that took less than LatencyBuckets[i] (the last: the rest).
	ProposeLatency [len(LatencyBuckets) + 1]atomic.Uint64
	// ProposeNanos is the sum of the proposal latencies, in nanoseconds.
	ProposeNanos atomic.Uint64
	// Terms counts leader terms started; SessionsExpired expiries proposed
	// and applied; EventsDelivered watch events queued for sessions.
	Terms, SessionsExpired, EventsDelivered atomic.Uint64
	// ReadBarriers counts linearizable reads served; LeaseReads those of
	// them served on the leader's lease alone, without a barrier round.
	ReadBarriers, LeaseReads atomic.Uint64
}

// LatencyBuckets are the upper bounds of the ProposeLatency buckets.
var LatencyBuckets = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	time.Second,
}

func newMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) observePropose(d time.Duration, err error) {
	m.Proposals.Add(1)
	if err != nil {
		m.ProposalErrors.Add(1)
	}
	i := 0
	for i < len(LatencyBuckets) && d >= LatencyBuckets[i] {
		i++
	}
	m.ProposeLatency[i].Add(1)
	m.ProposeNanos.Add(uint64(max(d, 0)))
}

func (m *Metrics) request(t wire.Type) {
	if int(t) < len(m.Requests) {
		m.Requests[t].Add(1)
	}
}

func (m *Metrics) reply(msg wire.Message) {
	if e, ok := msg.(*wire.Error); ok && int(e.Code) < len(m.Errors) {
		m.Errors[e.Code].Add(1)
	}
}

// MetricsSnapshot is a copy of Metrics at one moment.
type MetricsSnapshot struct {
	Requests           map[string]uint64 // by message type name
	Errors             map[string]uint64 // by code name
	Conns              int64
	ConnsTotal         int64
	ConnsRejected      int64
	TLSHandshakeErrors uint64
	Proposals          uint64
	ProposalErrors     uint64
	ProposeLatency     []uint64      // per bucket of LatencyBuckets, then the rest
	ProposeTotal       time.Duration // the sum of the proposal latencies
	Terms              uint64
	SessionsExpired    uint64
	EventsDelivered    uint64
	ReadBarriers       uint64
	LeaseReads         uint64
}

// Snapshot copies the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Requests:           map[string]uint64{},
		Errors:             map[string]uint64{},
		Conns:              m.Conns.Load(),
		ConnsTotal:         m.ConnsTotal.Load(),
		ConnsRejected:      m.ConnsRejected.Load(),
		TLSHandshakeErrors: m.TLSHandshakeErrors.Load(),
		Proposals:          m.Proposals.Load(),
		ProposalErrors:     m.ProposalErrors.Load(),
		ProposeTotal:       time.Duration(m.ProposeNanos.Load()),
		Terms:              m.Terms.Load(),
		SessionsExpired:    m.SessionsExpired.Load(),
		EventsDelivered:    m.EventsDelivered.Load(),
		ReadBarriers:       m.ReadBarriers.Load(),
		LeaseReads:         m.LeaseReads.Load(),
	}
	for t := range m.Requests {
		if v := m.Requests[t].Load(); v != 0 {
			s.Requests[wire.Type(t).String()] = v
		}
	}
	for c := range m.Errors {
		if v := m.Errors[c].Load(); v != 0 {
			s.Errors[wire.Code(c).String()] = v
		}
	}
	for i := range m.ProposeLatency {
		s.ProposeLatency = append(s.ProposeLatency, m.ProposeLatency[i].Load())
	}
	return s
}
