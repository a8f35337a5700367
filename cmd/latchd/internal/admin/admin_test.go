package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/lockserver"
	"github.com/latchd/latch/replica"
)

func TestCumulative(t *testing.T) {
	per := make([]uint64, len(lockserver.LatencyBuckets)+1)
	per[0], per[2], per[len(per)-1] = 1, 2, 4
	count, b := cumulative(per)
	if count != 7 {
		t.Errorf("count = %d; want 7", count)
	}
	if b[0.00025] != 1 || b[0.0005] != 1 || b[0.001] != 3 || b[1] != 3 {
		t.Errorf("buckets = %v", b)
	}
	if len(b) != len(lockserver.LatencyBuckets) {
		t.Errorf("%d buckets; want %d (+Inf is implied by the count)", len(b), len(lockserver.LatencyBuckets))
	}
}

// fakeServer is a replica whose status is fixed and whose backup is
// backup (or backupErr).
type fakeServer struct {
	st        lockserver.Status
	m         lockserver.Metrics
	done      chan struct{}
	backup    []byte
	backupErr error
	resignTo  uint64 // TransferLeadership's answer, with resignErr
	resignErr error
}

func (f *fakeServer) TransferLeadership(ctx context.Context) (uint64, error) {
	return f.resignTo, f.resignErr
}

func (f *fakeServer) Status() lockserver.Status    { return f.st }
func (f *fakeServer) Metrics() *lockserver.Metrics { return &f.m }
func (f *fakeServer) Done() <-chan struct{}        { return f.done }
func (f *fakeServer) Backup(ctx context.Context, w io.Writer) (replica.BackupMeta, error) {
	if f.backupErr != nil {
		return replica.BackupMeta{}, f.backupErr
	}
	_, err := w.Write(f.backup)
	return replica.BackupMeta{Group: 1, Instance: 7, Index: 12, Size: int64(len(f.backup))}, err
}

func TestHandler(t *testing.T) {
	f := &fakeServer{done: make(chan struct{}), st: lockserver.Status{
		ID: 2, Leader: 1, Role: "follower", Applied: 40, Chosen: 41, Rebuilding: true,
		Members: []lockserver.MemberStatus{{ID: 1, Client: "a:1"}, {ID: 2, Client: "b:1"}, {ID: 3, Client: "c:1"}},
	}}
	peers := func(ctx context.Context, addr string) (client.Status, error) {
		switch addr {
		case "a:1":
			return client.Status{Applied: 50}, nil
		}
		return client.Status{}, errors.New("connection refused")
	}
	h := Handler(f, Options{Peers: peers})
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if doc.ID != 2 || doc.Leader != 1 || doc.Groups[0].Chosen != 41 || !doc.Groups[0].Rebuilding {
		t.Errorf("/status = %+v", doc)
	}
	m := doc.Members
	if !m[0].Leader || m[0].Applied != 50 || m[1].Lag != 10 || !m[1].Self || m[2].Reachable || !strings.Contains(m[2].Error, "refused") {
		t.Errorf("/status members = %+v", m)
	}

	if resp, _ := http.Get(srv.URL + "/readyz"); resp.StatusCode != 200 {
		t.Errorf("/readyz with a leader = %s", resp.Status)
	}
	f.st.Leader = 0
	if resp, _ := http.Get(srv.URL + "/readyz"); resp.StatusCode != 503 {
		t.Errorf("/readyz without a leader = %s; want 503", resp.Status)
	}
	if resp, _ := http.Get(srv.URL + "/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz = %s", resp.Status)
	}
	close(f.done)
	if resp, _ := http.Get(srv.URL + "/healthz"); resp.StatusCode != 503 {
		t.Errorf("/healthz after stop = %s; want 503", resp.Status)
	}
	f.m.ProposeLatency[3].Add(2)
	f.m.ProposeNanos.Add(3e6)
	f.m.TLSHandshakeErrors.Add(5)
	f.st.LocksHeld, f.st.LockWaiters, f.st.SnapshotBytes = 4, 2, 1234
	f.st.SyncedWrites, f.st.SyncTime = 10, 5*time.Millisecond
	f.st.BatchSizes = make([]uint64, len(replica.BatchSizeBuckets)+1)
	f.st.BatchSizes[0], f.st.BatchSizes[3], f.st.BatchCommands = 3, 1, 10 // three of 1, one of 7
	f.st.ApplyLatency = make([]uint64, len(replica.ApplyLatencyBuckets)+1)
	f.st.ApplyLatency[1], f.st.ApplyTime = 4, 80*time.Microsecond
	f.st.Chosen, f.st.Peers = 41, []replica.PeerStatus{{ID: 1, Chosen: 38, LastAck: 20 * time.Millisecond}, {ID: 3, LastAck: -1}}
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"latch_propose_duration_seconds_sum 0.003", "latch_propose_duration_seconds_count 2",
		"latch_locks_held 4", "latch_lock_waiters 2", "latch_paxos_snapshot_bytes 1234",
		"latch_paxos_synced_writes_total 10", "latch_paxos_sync_seconds_total 0.005",
		`latch_paxos_batch_commands_bucket{le="1"} 3`, `latch_paxos_batch_commands_bucket{le="8"} 4`,
		"latch_paxos_batch_commands_sum 10", "latch_paxos_batch_commands_count 4",
		`latch_apply_duration_seconds_bucket{le="1e-05"} 0`, `latch_apply_duration_seconds_bucket{le="5e-05"} 4`,
		"latch_apply_duration_seconds_sum 8e-05", "latch_apply_duration_seconds_count 4",
		`latch_peer_chosen_lag_instances{peer="1"} 3`, `latch_peer_chosen_lag_instances{peer="3"} 41`,
		`latch_peer_last_ack_seconds{peer="1"} 0.02`, "latch_client_tls_handshake_errors_total 5"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), `latch_peer_last_ack_seconds{peer="3"}`) {
		t.Errorf("/metrics has a last ack for a peer that never acknowledged")
	}
	// /status shows the leader's view of a member it knows.
	resp, err = http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var doc2 StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc2); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := doc2.Members[0].Seen; s == nil || s.Chosen != 38 || s.ChosenLag != 3 || s.LastAckMs != 20 || doc2.Members[1].Seen != nil {
		t.Errorf("/status seenByLeader: member 1 %+v, member 2 %+v", doc2.Members[0].Seen, doc2.Members[1].Seen)
	}
	if resp, _ := http.Post(srv.URL+"/status", "text/plain", nil); resp.StatusCode != 405 {
		t.Errorf("POST /status = %s; want 405", resp.Status)
	}
}

func TestBackup(t *testing.T) {
	f := &fakeServer{done: make(chan struct{}), backup: []byte("LTBK\x01 the rest"), st: lockserver.Status{ID: 1, Leader: 1, IsLeader: true}}
	srv := httptest.NewServer(Handler(f, Options{}))
	defer srv.Close()
	get := func() (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/backup")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	resp, body := get()
	if resp.StatusCode != 200 || body != string(f.backup) || !strings.HasPrefix(body, "LTBK") {
		t.Errorf("GET /backup = %s %q; want 200 %q", resp.Status, body, f.backup)
	}
	for k, want := range map[string]string{
		"Content-Type":        "application/octet-stream",
		"Content-Disposition": `attachment; filename="latch-7.backup"`,
		"X-Latch-Instance":    "7",
		"X-Latch-Index":       "12",
		"X-Latch-Leader":      "true",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET /backup: %s = %q; want %q", k, got, want)
		}
	}

	f.st.IsLeader = false
	if resp, _ := get(); resp.Header.Get("X-Latch-Leader") != "false" {
		t.Errorf("GET /backup of a follower: X-Latch-Leader = %q; want false", resp.Header.Get("X-Latch-Leader"))
	}
	if resp, _ := http.Post(srv.URL+"/backup", "text/plain", nil); resp.StatusCode != 405 {
		t.Errorf("POST /backup = %s; want 405", resp.Status)
	}

	f.backupErr = errors.New("replica: nothing applied yet: no backup to take")
	resp, body = get()
	if resp.StatusCode != 500 || !strings.Contains(body, "backup failed: replica: nothing applied yet") || resp.Header.Get("X-Latch-Instance") != "" {
		t.Errorf("GET /backup failing = %s %q (X-Latch-Instance %q); want 500 with the error and no X-Latch headers",
			resp.Status, body, resp.Header.Get("X-Latch-Instance"))
	}

	close(f.done)
	if resp, body := get(); resp.StatusCode != 503 {
		t.Errorf("GET /backup after stop = %s %q; want 503", resp.Status, body)
	}
}

// POST /resign answers the new leader, 409 off the leader, 503 when the
// transfer fails or the replica stopped; GET is not allowed.
func TestResign(t *testing.T) {
	f := &fakeServer{done: make(chan struct{}), st: lockserver.Status{ID: 1, Leader: 1, IsLeader: true}, resignTo: 3}
	srv := httptest.NewServer(Handler(f, Options{}))
	defer srv.Close()
	post := func() (*http.Response, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/resign", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := post(); resp.StatusCode != 200 || !strings.Contains(body, `"leader":3`) {
		t.Errorf("POST /resign = %s %q; want 200 naming leader 3", resp.Status, body)
	}
	f.resignErr, f.st.Leader = lockserver.ErrNotLeading, 2
	if resp, body := post(); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "replica 2") {
		t.Errorf("POST /resign off the leader = %s %q; want 409 naming replica 2", resp.Status, body)
	}
	f.resignErr = context.DeadlineExceeded
	if resp, _ := post(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /resign that timed out = %s; want 503", resp.Status)
	}
	if resp, _ := http.Get(srv.URL + "/resign"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /resign = %s; want 405", resp.Status)
	}
	close(f.done)
	f.resignErr = nil
	if resp, _ := post(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("POST /resign after stop = %s; want 503", resp.Status)
	}
}

// With superusers configured, /backup, /resign and /debug/pprof answer only
// requests whose verified client certificate names one; the rest stays
// open to every client the TLS server lets in.
func TestSuperusersOnly(t *testing.T) {
	ca := testcerts.NewCA(t, "admin-test-ca")
	f := &fakeServer{done: make(chan struct{}), backup: []byte("LTBK\x01"), st: lockserver.Status{ID: 1, Leader: 1, IsLeader: true}, resignTo: 2}
	srv := httptest.NewUnstartedServer(Handler(f, Options{Superusers: []string{"root"}}))
	srv.TLS = ca.ServerConfig(t, "127.0.0.1", true)
	srv.StartTLS()
	defer srv.Close()
	as := func(cn string) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, cn)}}
	}
	for _, c := range []struct {
		cn, method, path string
		want             int
	}{
		{"root", "GET", "/backup", 200},
		{"bob", "GET", "/backup", http.StatusForbidden},
		{"root", "POST", "/resign", 200},
		{"bob", "POST", "/resign", http.StatusForbidden},
		{"bob", "GET", "/debug/pprof/cmdline", http.StatusForbidden},
		{"root", "GET", "/debug/pprof/cmdline", 200},
		{"bob", "GET", "/status", 200},
		{"bob", "GET", "/healthz", 200},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := as(c.cn).Do(req)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", c.method, c.path, c.cn, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s as %s = %s %q; want %d", c.method, c.path, c.cn, resp.Status, body, c.want)
		}
		if c.want == http.StatusForbidden && !strings.Contains(string(body), `principal "bob" is not a superuser`) {
			t.Errorf("%s %s as bob: body %q; want the reason", c.method, c.path, body)
		}
	}
}
