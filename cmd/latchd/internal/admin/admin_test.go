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

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
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

// fakeServer is a replica whose status is fixed.
type fakeServer struct {
	st   lockserver.Status
	m    lockserver.Metrics
	done chan struct{}
}

func (f *fakeServer) Status() lockserver.Status    { return f.st }
func (f *fakeServer) Metrics() *lockserver.Metrics { return &f.m }
func (f *fakeServer) Done() <-chan struct{}        { return f.done }

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
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"latch_propose_duration_seconds_sum 0.003", "latch_propose_duration_seconds_count 2"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, _ := http.Post(srv.URL+"/status", "text/plain", nil); resp.StatusCode != 405 {
		t.Errorf("POST /status = %s; want 405", resp.Status)
	}
}
