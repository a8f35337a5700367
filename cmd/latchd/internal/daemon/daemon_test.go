package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
	"github.com/latchd/latch/cmd/latchd/internal/admin"
)

// freePorts returns n distinct free loopback addresses.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"nodes": [{"id": 1, "peer": "127.0.0.1:1", "client": "127.0.0.1:2"}], "myid": 2, "dataDir": "/x", "lease": "soon"}`), 0o644)
	tests := []struct {
		name string
		args []string
		want []string // parts of the one-line error
	}{
		{"no config", nil, []string{"--config FILE is required"}},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.json")}, []string{"no such file"}},
		{"bad config", []string{"--config", bad}, []string{"myid: 2 is not the id", "lease: bad duration"}},
		{"bad id flag", []string{"--config", bad, "--id", "x"}, []string{"invalid argument"}},
		{"unknown flag", []string{"--nope"}, []string{"unknown flag: --nope"}},
		{"extra args", []string{"--config", bad, "extra"}, []string{"unknown command"}},
		{"bad log format", []string{"--config", bad, "--log-format", "xml"}, []string{"--log-format"}},
		{"dev bad base port", []string{"dev", "--base-port", "70000"}, []string{"--base-port 70000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tt.args, &out, &errb)
			if code != ExitConfig {
				t.Errorf("exit code %d; want %d (stderr %q)", code, ExitConfig, errb.String())
			}
			msg := errb.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "latchd: ") {
				t.Errorf("stderr = %q; want one line starting latchd:", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr = %q; want it to contain %q", msg, w)
				}
			}
		})
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDev runs `latchd dev` on free ports, uses the cell and its admin
// endpoints, and stops it as Ctrl-C would.
func TestDev(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, []string{"dev", "--base-port", "0"}, &out, &errb) }()
	testutil.WaitFor(t, 30*time.Second, "the export line", func() bool { return strings.Contains(out.String(), "export LATCH_ENDPOINTS=") })

	m := regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(out.String())
	endpoints := strings.Split(m[1], ",")
	if len(endpoints) != 3 {
		t.Fatalf("endpoints %q; want 3", m[1])
	}
	admins := regexp.MustCompile(`admin http://(\S+)`).FindAllStringSubmatch(out.String(), -1)
	if len(admins) != 3 {
		t.Fatalf("output has %d admin addresses; want 3:\n%s", len(admins), out.String())
	}
	dataDir := regexp.MustCompile(`data (\S+)/r1`).FindStringSubmatch(out.String())[1]

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Put(ctx, "/dev/hello", []byte("world"), client.CreateParents()); err != nil {
		t.Fatalf("Put: %v", err)
	}
	c.Close()

	base := "http://" + admins[0][1]
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.HasPrefix(body, "ok: leader ") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	var st admin.StatusDoc
	getJSON(t, base+"/status", &st)
	if st.ID != 1 || st.Leader == 0 || len(st.Members) != 3 || len(st.Groups) != 1 || st.Groups[0].Applied == 0 {
		t.Errorf("/status = %+v", st)
	}
	for _, mem := range st.Members {
		if !mem.Reachable {
			t.Errorf("/status member %d unreachable: %s", mem.ID, mem.Error)
		}
	}
	code, metrics := get(t, base+"/metrics")
	for _, want := range []string{"latch_paxos_applied_instance", "latch_requests_total", "go_goroutines", "process_cpu_seconds_total", "latch_propose_duration_seconds_bucket"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s (status %d)", want, code)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ = %d", code)
	}

	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit code %d; want 0 (stderr %s)", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("latchd dev did not stop")
	}
	if !strings.Contains(out.String(), "latchd dev: stopped") {
		t.Errorf("output lacks the stop line:\n%s", out.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s still there (%v)", dataDir, err)
	}
}

// TestReplicasFromConfig runs three replicas from config files in one
// process, as three machines would, and stops them.
func TestReplicasFromConfig(t *testing.T) {
	dir := t.TempDir()
	addrs := freePorts(t, 9)
	var nodes []string
	for i := range 3 {
		nodes = append(nodes, fmt.Sprintf(`{"id": %d, "peer": %q, "client": %q, "http": %q}`, i+1, addrs[3*i], addrs[3*i+1], addrs[3*i+2]))
	}
	cfgFile := filepath.Join(dir, "latchd.json")
	os.WriteFile(cfgFile, []byte(`{"nodes": [`+strings.Join(nodes, ",")+`], "myid": 1, "dataDir": "unused"}`), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 3)
	var errs [3]testutil.SyncBuffer
	for i := range 3 {
		args := []string{"--config", cfgFile, "--id", fmt.Sprint(i + 1), "--data-dir", filepath.Join(dir, fmt.Sprint(i+1)), "--log-format", "json", "-v"}
		go func() { done <- Main(ctx, args, io.Discard, &errs[i]) }()
	}
	endpoints := []string{addrs[1], addrs[4], addrs[7]}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(dctx, client.Config{Endpoints: endpoints})
	dcancel()
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Put(ctx, "/cfg", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	c.Close()
	for i := range 3 {
		var st admin.StatusDoc
		getJSON(t, "http://"+addrs[3*i+2]+"/status", &st)
		if st.ID != uint64(i+1) || st.Leader == 0 {
			t.Errorf("replica %d /status = id %d leader %d", i+1, st.ID, st.Leader)
		}
	}
	cancel()
	for range 3 {
		select {
		case code := <-done:
			if code != ExitOK {
				t.Errorf("exit code %d; want 0", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a replica did not stop")
		}
	}
	// -v with --log-format json: JSON lines with the replica's id.
	line, _, _ := strings.Cut(errs[0].String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["replica"] == nil {
		t.Errorf("first log line %q is not JSON with a replica (%v)", line, err)
	}
	if !strings.Contains(errs[0].String(), "latchd: stopped") {
		t.Errorf("replica 1 did not log its stop:\n%s", errs[0].String())
	}
}
