// Package admin is latchd's admin HTTP server: /healthz, /readyz, /status,
// /metrics, /backup, /resign and /debug/pprof for one replica.
//
// /status and /metrics read the replica's lockserver.Status and Metrics.
// /status also asks every other member of the cell for its position in the
// log (over the client protocol, with a short timeout), so it can show each
// peer's lag behind the leader. /backup serves lockserver.Server.Backup;
// POST /resign, lockserver.Server.TransferLeadership.
//
// With Options.Superusers, /backup (the whole namespace, ACLs aside),
// /resign and /debug/pprof answer only superusers' verified client
// certificates; without, whoever reaches the server may use them. The rest
// is open: /status and /metrics tell counts, positions and addresses, never
// a node's name or content.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/cellstat"
	"github.com/latchd/latch/lockserver"
	"github.com/latchd/latch/replica"
)

// Server is what the admin endpoints read from a replica
// (*lockserver.Server satisfies it).
type Server interface {
	Status() lockserver.Status
	Metrics() *lockserver.Metrics
	Done() <-chan struct{}
	Backup(ctx context.Context, w io.Writer) (replica.BackupMeta, error)
	TransferLeadership(ctx context.Context) (uint64, error)
}

// PeerStatus asks the replica at a client address for its status; it is
// client.StatusOf outside tests.
type PeerStatus func(ctx context.Context, addr string) (client.Status, error)

// Options configure the handler.
type Options struct {
	// Peers answers /status's question to each other member; nil means
	// client.StatusOf.
	Peers PeerStatus
	// PeerTimeout bounds that question (default 500 ms).
	PeerTimeout time.Duration
	// Info is added to /status as is (for example the configured timings).
	Info map[string]any
	// Logger receives errors serving requests; nil discards them.
	Logger *slog.Logger
	// Superusers, if any, are the only principals (CNs of verified client
	// certificates, so the server must require them: tls.clientCertAuth)
	// that may use /backup (every node's content), /resign and
	// /debug/pprof; anyone else gets 403. Without superusers they are
	// open to whoever reaches the admin address.
	Superusers []string
}

// Handler returns the admin HTTP handler for one replica.
func Handler(s Server, opts Options) http.Handler {
	if opts.Peers == nil {
		opts.Peers = client.StatusOf
	}
	if opts.PeerTimeout <= 0 {
		opts.PeerTimeout = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(s),
	)
	h := &handler{s: s, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /status", h.status)
	mux.HandleFunc("GET /backup", h.superuser(h.backup))
	mux.HandleFunc("POST /resign", h.superuser(h.resign))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogErrorLog{opts.Logger}}))
	mux.HandleFunc("GET /debug/pprof/", h.superuser(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", h.superuser(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", h.superuser(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", h.superuser(pprof.Symbol))
	mux.HandleFunc("POST /debug/pprof/symbol", h.superuser(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", h.superuser(pprof.Trace))
	mux.HandleFunc("GET /{$}", h.index)
	return mux
}

type handler struct {
	s    Server
	opts Options
}

// superuser guards next: with Options.Superusers set, only a request over
// TLS whose verified client certificate's CN is one of them gets through.
func (h *handler) superuser(next http.HandlerFunc) http.HandlerFunc {
	if len(h.opts.Superusers) == 0 {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		cn := lockserver.CertPrincipal(r.TLS)
		if cn == "" || !slices.Contains(h.opts.Superusers, cn) {
			who := "an anonymous client"
			if cn != "" {
				who = fmt.Sprintf("principal %q", cn)
			}
			http.Error(w, fmt.Sprintf("forbidden: %s is not a superuser of this cell (config: superusers)", who), http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("latchd admin: /healthz /readyz /status /metrics /backup /resign (POST) /debug/pprof/\n"))
}

// stopped reports whether the replica has stopped.
func (h *handler) stopped() bool {
	select {
	case <-h.s.Done():
		return true
	default:
		return false
	}
}

// healthz answers 200 while the replica runs (liveness).
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.s.Done():
		http.Error(w, "stopped", http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}
}

// readyz answers 200 when the replica runs and knows a leader, so clients
// it serves can be answered (readiness).
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.stopped() {
		http.Error(w, "stopped", http.StatusServiceUnavailable)
		return
	}
	st := h.s.Status()
	if st.Leader == 0 {
		http.Error(w, "no leader known", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok: leader " + strconv.FormatUint(st.Leader, 10) + "\n"))
}

// backup serves the replica's Backup as a file download, with what it
// holds in X-Latch-Instance and X-Latch-Index, and in X-Latch-Leader
// whether this replica led when asked (a follower's backup may lag). The
// backup is taken into memory first, so that its headers, and an error
// status if it fails, come before the body.
func (h *handler) backup(w http.ResponseWriter, r *http.Request) {
	if h.stopped() {
		http.Error(w, "stopped: no backup", http.StatusServiceUnavailable)
		return
	}
	leader := h.s.Status().IsLeader
	var buf bytes.Buffer
	meta, err := h.s.Backup(r.Context(), &buf)
	if err != nil {
		code := http.StatusInternalServerError
		if h.stopped() {
			code = http.StatusServiceUnavailable
		}
		h.opts.Logger.Warn("admin: backup failed", "err", err)
		http.Error(w, "backup failed: "+err.Error(), code)
		return
	}
	inst := strconv.FormatUint(meta.Instance, 10)
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Disposition", `attachment; filename="latch-`+inst+`.backup"`)
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("X-Latch-Instance", inst)
	hd.Set("X-Latch-Index", strconv.FormatUint(meta.Index, 10))
	hd.Set("X-Latch-Leader", strconv.FormatBool(leader))
	h.opts.Logger.Info("admin: backup taken", "instance", meta.Instance, "index", meta.Index, "bytes", buf.Len(), "leader", leader)
	if _, err := buf.WriteTo(w); err != nil {
		h.opts.Logger.Warn("admin: writing /backup", "err", err)
	}
}

// resignTimeout bounds a POST /resign's wait for the new leader.
const resignTimeout = 10 * time.Second

// ResignDoc is the JSON document POST /resign answers with.
type ResignDoc struct {
	Leader uint64 `json:"leader"` // the new leader
}

// resign hands the leadership to another replica (TransferLeadership):
// 200 with the new leader; 409 if this replica does not lead (the body
// names the leader it knows); 503 if it stopped or no new leader was known
// in time.
func (h *handler) resign(w http.ResponseWriter, r *http.Request) {
	if h.stopped() {
		http.Error(w, "stopped", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resignTimeout)
	defer cancel()
	leader, err := h.s.TransferLeadership(ctx)
	switch {
	case errors.Is(err, lockserver.ErrNotLeading):
		http.Error(w, fmt.Sprintf("not the leader: the leader is replica %d", h.s.Status().Leader), http.StatusConflict)
		return
	case err != nil:
		h.opts.Logger.Warn("admin: resign failed", "err", err)
		http.Error(w, "resign failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.opts.Logger.Info("admin: leadership transferred", "leader", leader)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ResignDoc{Leader: leader})
}

// StatusDoc is the JSON document /status serves.
type StatusDoc struct {
	ID         uint64 `json:"id"`
	Leader     uint64 `json:"leader"` // 0 if unknown
	IsLeader   bool   `json:"isLeader"`
	Role       string `json:"role"`
	Ballot     string `json:"ballot"`
	LeaseValid bool   `json:"leaseValid"`
	// Groups has one entry per Paxos group this replica hosts (the lock
	// server runs one).
	Groups          []GroupDoc     `json:"groups"`
	Index           uint64         `json:"index"`
	Nodes           int            `json:"nodes"`
	Sessions        int            `json:"sessions"`
	TrackedSessions int            `json:"trackedSessions"`
	HeldKeepAlives  int            `json:"heldKeepAlives"`
	Members         []MemberDoc    `json:"members"`
	Info            map[string]any `json:"info,omitempty"`
}

// GroupDoc is one Paxos group's position and counters.
type GroupDoc struct {
	Group      uint32 `json:"group"`
	Chosen     uint64 `json:"chosen"`
	Applied    uint64 `json:"applied"`
	Snapshot   uint64 `json:"snapshot"`
	Rebuilding bool   `json:"rebuilding"` // lost its state: learning it again, not voting until fenced
	Proposals  uint64 `json:"proposals"`
	Batches    uint64 `json:"batches"`
	Writes     uint64 `json:"writes"`
	Dropped    uint64 `json:"dropped"`
}

// MemberDoc is one member of the cell with its lag behind the leader.
type MemberDoc struct {
	ID     uint64 `json:"id"`
	Client string `json:"client"`
	Peer   string `json:"peer"`
	HTTP   string `json:"http,omitempty"`
	// Role is the member's place in the replicated member set: voter,
	// learner, pending+ (being promoted), pending- (being removed).
	Role      string `json:"role,omitempty"`
	Self      bool   `json:"self"`
	Leader    bool   `json:"leader"`
	Reachable bool   `json:"reachable"`
	Applied   uint64 `json:"applied"`
	// Lag is how many instances the member has applied fewer than the
	// leader (the most advanced member if the leader did not answer).
	Lag   uint64 `json:"lag"`
	Error string `json:"error,omitempty"`
	// Seen is the leader's own view of the member, on the leader only
	// (nil elsewhere, and for the leader itself).
	Seen *SeenDoc `json:"seenByLeader,omitempty"`
}

// SeenDoc is what the leader knows of a follower from its acknowledgements,
// without asking it: it shows a follower the leader cannot reach even when
// /status itself can.
type SeenDoc struct {
	// Chosen is the last instance the follower reported it knows chosen;
	// ChosenLag the leader's Chosen minus it.
	Chosen    uint64 `json:"chosen"`
	ChosenLag uint64 `json:"chosenLag"`
	// LastAckMs is how long ago it last acknowledged the leader, in
	// milliseconds; -1 if not since the leader took office.
	LastAckMs int64 `json:"lastAckMs"`
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	doc := h.statusDoc(r.Context())
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		h.opts.Logger.Warn("admin: writing /status", "err", err)
	}
}

// statusDoc builds /status: this replica's Status, and each peer's applied
// position asked over the client protocol.
func (h *handler) statusDoc(ctx context.Context) StatusDoc {
	st := h.s.Status()
	doc := StatusDoc{
		ID: st.ID, Leader: st.Leader, IsLeader: st.IsLeader, Role: st.Role, Ballot: st.Ballot,
		LeaseValid: st.LeaseValid, Index: st.Index, Nodes: st.Nodes, Sessions: st.Sessions,
		TrackedSessions: st.Tracked, HeldKeepAlives: st.HeldKeepAlives, Info: h.opts.Info,
		Groups: []GroupDoc{{
			Group: 1, Chosen: st.Chosen, Applied: st.Applied, Snapshot: st.Snapshot, Rebuilding: st.Rebuilding,
			Proposals: st.Proposals, Batches: st.Batches, Writes: st.Writes, Dropped: st.Dropped,
		}},
	}
	doc.Members = make([]MemberDoc, len(st.Members))
	var wg sync.WaitGroup
	for i, m := range st.Members {
		d := &doc.Members[i]
		*d = MemberDoc{ID: m.ID, Client: m.Client, Peer: m.Peer, HTTP: m.HTTP, Role: m.Role, Self: m.ID == st.ID, Leader: m.ID == st.Leader}
		if ps, ok := peerOf(st.Peers, m.ID); ok {
			d.Seen = seenDoc(ps, st.Chosen)
		}
		if d.Self {
			d.Reachable, d.Applied = true, st.Applied
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, h.opts.PeerTimeout)
			defer cancel()
			ps, err := h.opts.Peers(pctx, m.Client)
			if err != nil {
				d.Error = err.Error()
				return
			}
			d.Reachable, d.Applied = true, ps.Applied
		})
	}
	wg.Wait()
	FillLag(doc.Members)
	return doc
}

// peerOf finds member id among the leader's peers.
func peerOf(peers []replica.PeerStatus, id uint64) (replica.PeerStatus, bool) {
	for _, p := range peers {
		if p.ID == id {
			return p, true
		}
	}
	return replica.PeerStatus{}, false
}

// seenDoc is the leader's view of a follower, against its own chosen mark.
func seenDoc(p replica.PeerStatus, chosen uint64) *SeenDoc {
	d := &SeenDoc{Chosen: p.Chosen, LastAckMs: -1}
	if chosen > p.Chosen {
		d.ChosenLag = chosen - p.Chosen
	}
	if p.LastAck >= 0 {
		d.LastAckMs = p.LastAck.Milliseconds()
	}
	return d
}

// FillLag sets each reachable member's Lag behind the leader's applied
// position, or behind the most advanced member's if the leader is not among
// the reachable ones.
func FillLag(ms []MemberDoc) {
	lags := cellstat.Lags(len(ms), func(i int) cellstat.Replica {
		return cellstat.Replica{Applied: ms[i].Applied, Reachable: ms[i].Reachable, Leader: ms[i].Leader}
	})
	for i, lag := range lags {
		ms[i].Lag = lag
	}
}

// slogErrorLog adapts a slog.Logger to promhttp's error logger.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) { s.l.Warn("admin: /metrics", "err", v) }
