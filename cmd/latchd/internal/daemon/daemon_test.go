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
	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/replica/logdb"
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
	badTLS := filepath.Join(dir, "bad-tls.json")
	os.WriteFile(badTLS, []byte(`{"nodes": [{"id": 1, "peer": "127.0.0.1:1", "client": "127.0.0.1:2"}], "myid": 1, "dataDir": "/x",
		"tls": {"certFile": "/nope.crt", "keyFile": "/nope.key", "clientCertAuth": true}}`), 0o644)
	one := filepath.Join(dir, "one.json")
	os.WriteFile(one, []byte(`{"nodes": [{"id": 4, "peer": "127.0.0.1:1", "client": "127.0.0.1:2"}], "myid": 4, "dataDir": "/x"}`), 0o644)
	two := filepath.Join(dir, "two.json")
	os.WriteFile(two, []byte(`{"nodes": [{"id": 1, "peer": "127.0.0.1:3", "client": "127.0.0.1:4"}, {"id": 4, "peer": "127.0.0.1:1", "client": "127.0.0.1:2"}], "myid": 4, "dataDir": "/x"}`), 0o644)
	tests := []struct {
		name string
		args []string
		want []string // parts of the one-line error
	}{
		{"join without a seed", []string{"--config", one, "--join"}, []string{"nodes: --join needs at least one replica"}},
		{"join and new cell", []string{"--config", two, "--join", "--new-cell"}, []string{"--join: a joining replica is not a founding member"}},
		{"bad tls", []string{"--config", badTLS}, []string{"tls.certFile: open /nope.crt", "tls.clientCertAuth: needs tls.caFile"}},
		{"bad tls flag", []string{"--config", badTLS, "--cert-file", "/other.crt"}, []string{"tls.certFile: open /other.crt"}},
		{"bad peer tls flag", []string{"--config", badTLS, "--peer-trusted-ca-file", "/ca.crt"}, []string{"peerTLS.caFile: open /ca.crt", "peerTLS.certFile: missing"}},
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
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "latchd: ") || strings.HasPrefix(msg, "latchd: latchd:") {
				t.Errorf("stderr = %q; want one line starting latchd: (once)", msg)
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

// devProc is a `latchd dev` run by a test.
type devProc struct {
	t         *testing.T
	out, errb testutil.SyncBuffer
	cancel    context.CancelFunc
	done      chan int
}

// startDev runs `latchd dev` with args (and free ports) and returns once it
// printed the whole ready message, whose last line is "Ctrl-C stops the
// cell." (the lines are separate writes: waiting for the export line alone
// let TestDevTLS read the output before the curl line under load).
func startDev(t *testing.T, args ...string) *devProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devProc{t: t, cancel: cancel, done: make(chan int, 1)}
	t.Cleanup(cancel)
	go func() { d.done <- Main(ctx, append([]string{"dev", "--base-port", "0"}, args...), &d.out, &d.errb) }()
	testutil.WaitFor(t, 30*time.Second, "the ready message", func() bool { return strings.Contains(d.out.String(), "Ctrl-C stops the cell.") })
	return d
}

// stop stops the cell as Ctrl-C would and fails the test unless it exits 0.
func (d *devProc) stop() {
	d.t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		if code != ExitOK {
			d.t.Errorf("exit code %d; want 0 (stderr %s)", code, d.errb.String())
		}
	case <-time.After(30 * time.Second):
		d.t.Fatal("latchd dev did not stop")
	}
}

// TestDev runs `latchd dev` on free ports, uses the cell and its admin
// endpoints, and stops it as Ctrl-C would.
func TestDev(t *testing.T) {
	ctx := context.Background()
	dev := startDev(t)
	out := &dev.out

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
	for _, want := range []string{"latch_paxos_applied_instance", "latch_paxos_rebuilding 0", "latch_requests_total", "go_goroutines", "process_cpu_seconds_total", "latch_propose_duration_seconds_bucket"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s (status %d)", want, code)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ = %d", code)
	}

	dev.stop()
	if !strings.Contains(out.String(), "latchd dev: stopped") {
		t.Errorf("output lacks the stop line:\n%s", out.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data dir %s still there (%v)", dataDir, err)
	}
}

// replicas are three replicas run from one config file in one process, as
// three machines would run them.
type replicas struct {
	t                *testing.T
	endpoints, https []string // client and admin addresses
	errs             [3]testutil.SyncBuffer
	cancel           context.CancelFunc
	done             chan int
}

// startReplicas writes a config file of three nodes with the extra fields
// (JSON, "" for none) and runs each replica i (1-based) with args(i) on top
// of --config, --id, --data-dir and --new-cell.
func startReplicas(t *testing.T, extra string, args func(i int) []string) *replicas {
	t.Helper()
	dir := t.TempDir()
	addrs := freePorts(t, 9)
	var nodes []string
	for i := range 3 {
		nodes = append(nodes, fmt.Sprintf(`{"id": %d, "peer": %q, "client": %q, "http": %q}`, i+1, addrs[3*i], addrs[3*i+1], addrs[3*i+2]))
	}
	cfgFile := filepath.Join(dir, "latchd.json")
	os.WriteFile(cfgFile, []byte(`{"nodes": [`+strings.Join(nodes, ",")+`], "myid": 1, "dataDir": "unused"`+extra+`}`), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &replicas{t: t, cancel: cancel, done: make(chan int, 3)}
	for i := range 3 {
		a := append([]string{"--config", cfgFile, "--id", fmt.Sprint(i + 1), "--data-dir", filepath.Join(dir, fmt.Sprint(i+1)), "--new-cell"}, args(i+1)...)
		go func() { r.done <- Main(ctx, a, io.Discard, &r.errs[i]) }()
		r.endpoints = append(r.endpoints, addrs[3*i+1])
		r.https = append(r.https, addrs[3*i+2])
	}
	return r
}

// stop stops the replicas as SIGTERM would and checks that each exits 0.
func (r *replicas) stop() {
	r.t.Helper()
	r.cancel()
	for range 3 {
		select {
		case code := <-r.done:
			if code != ExitOK {
				r.t.Errorf("exit code %d; want 0\nreplica logs:\n%s\n%s\n%s", code, r.errs[0].String(), r.errs[1].String(), r.errs[2].String())
			}
		case <-time.After(30 * time.Second):
			r.t.Fatal("a replica did not stop")
		}
	}
}

// TestReplicasFromConfig runs three replicas from config files in one
// process, as three machines would, and stops them.
func TestReplicasFromConfig(t *testing.T) {
	r := startReplicas(t, "", func(int) []string { return []string{"--log-format", "json", "-v"} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: r.endpoints})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Put(ctx, "/cfg", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	c.Close()
	for i := range 3 {
		var st admin.StatusDoc
		getJSON(t, "http://"+r.https[i]+"/status", &st)
		if st.ID != uint64(i+1) || st.Leader == 0 {
			t.Errorf("replica %d /status = id %d leader %d", i+1, st.ID, st.Leader)
		}
	}
	r.stop()
	// -v with --log-format json: JSON lines with the replica's id.
	line, _, _ := strings.Cut(r.errs[0].String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["replica"] == nil {
		t.Errorf("first log line %q is not JSON with a replica (%v)", line, err)
	}
	for i := range 3 {
		checkLogKeys(t, r.errs[i].String(), "replica", "component")
	}
	if !strings.Contains(r.errs[0].String(), "latchd: stopped") {
		t.Errorf("replica 1 did not log its stop:\n%s", r.errs[0].String())
	}
	if strings.Contains(r.errs[0].String(), "rebuilding") {
		t.Errorf("replica 1 of a new cell rebuilds:\n%s", r.errs[0].String())
	}
}

// TestReplicasWithTLS runs three replicas with TLS from the file's "tls"
// and "peerTLS" sections (the CA and clientCertAuth) and the flags (each
// replica's certificate and key): a client with a certificate writes, the
// admin HTTPS server requires one too, and /status reaches every member
// over TLS.
func TestReplicasWithTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "latch")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	extra := fmt.Sprintf(`, "tls": {"caFile": %q, "clientCertAuth": true}, "peerTLS": {"caFile": %q}`, caFile, caFile)
	r := startReplicas(t, extra, func(i int) []string {
		cert, key := ca.Issue(t, fmt.Sprintf("replica %d", i)).Write(t, dir, fmt.Sprintf("r%d", i))
		return []string{"--cert-file", cert, "--key-file", key, "--peer-cert-file", cert, "--peer-key-file", key}
	})
	defer r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: r.endpoints, TLS: ca.ClientConfig(t, "alice")})
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/tls", []byte("x")); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, "operator")}}
	resp, err := https.Get("https://" + r.https[0] + "/status")
	if err != nil {
		t.Fatalf("GET /status over HTTPS: %v", err)
	}
	var st admin.StatusDoc
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Leader == 0 || len(st.Members) != 3 {
		t.Fatalf("/status = %+v, %v; want a leader and three members", st, err)
	}
	for _, m := range st.Members {
		if !m.Reachable {
			t.Errorf("/status: member %d unreachable over TLS: %s", m.ID, m.Error)
		}
	}
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(t, "")}}
	if resp, err := anonymous.Get("https://" + r.https[0] + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /healthz without a client certificate: %s; want it refused", resp.Status)
	}
}

// TestNewCellFlag checks that --new-cell is documented in latchd's help.
func TestNewCellFlag(t *testing.T) {
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, &out, io.Discard); code != ExitOK {
		t.Fatalf("latchd --help: exit code %d", code)
	}
	for _, want := range []string{"--new-cell", "first start of a brand-new cell", "holds state ignores it", "--join", "latch members add"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("latchd --help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestNewDevCell(t *testing.T) {
	dir := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("empty/r1")
	mkdir("empty/r2")
	// A replica's Paxos log, opened (as by a cell stopped before it
	// voted), or holding a promise.
	logAt := func(p string, promise bool) {
		db, err := logdb.Open(filepath.Join(dir, p), logdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if promise {
			if err := db.Group(1).Write(logdb.Update{Promised: logdb.Ballot{Round: 1, ID: 2}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	logAt("unvoted/r1/paxos", false)
	logAt("unvoted/r2/paxos", false)
	logAt("used/r2/paxos", true)
	mkdir("file")
	os.WriteFile(filepath.Join(dir, "file", "r1"), []byte("x"), 0o644)
	tests := []struct {
		dataDir string
		want    bool
		err     string
	}{
		{"", true, ""},
		{filepath.Join(dir, "missing"), true, ""},
		{filepath.Join(dir, "empty"), true, ""},
		{filepath.Join(dir, "unvoted"), true, ""},
		{filepath.Join(dir, "used"), false, ""},
		{filepath.Join(dir, "file"), false, "not a directory"},
	}
	for _, tt := range tests {
		got, err := newDevCell(tt.dataDir, 3)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("newDevCell(%q) = %v, %v; want %v, error %q", tt.dataDir, got, err, tt.want, tt.err)
		}
	}
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"dev", "--base-port", "0", "--data-dir", filepath.Join(dir, "file")}, io.Discard, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "--data-dir "+filepath.Join(dir, "file")) {
		t.Errorf("latchd dev on a data dir whose r1 is a file: exit %d, %q; want %d and an error naming --data-dir", code, errb.String(), ExitError)
	}
}

// TestDevWipedReplica runs `latchd dev --data-dir`, stops it, wipes one
// replica's data dir and starts it again: that replica rebuilds its state
// from the other two (not a new cell, since they hold state) and serves
// what was written before.
func TestDevWipedReplica(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	run := func(wiped bool) {
		t.Helper()
		dev := startDev(t, "--data-dir", dir, "-v")
		out := &dev.out
		endpoints := strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(out.String())[1], ",")
		c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		if !wiped {
			if _, err := c.Put(ctx, "/before", []byte("x")); err != nil {
				t.Fatalf("Put: %v", err)
			}
		} else {
			admin2 := regexp.MustCompile(`replica 2 .* admin http://(\S+)`).FindStringSubmatch(out.String())[1]
			testutil.WaitFor(t, 60*time.Second, "replica 2 to rebuild and catch up", func() bool {
				var st admin.StatusDoc
				getJSON(t, "http://"+admin2+"/status", &st)
				return !st.Groups[0].Rebuilding && st.Groups[0].Applied > 0
			})
			if n, err := c.Get(ctx, "/before"); err != nil || string(n.Data) != "x" {
				t.Errorf("Get(/before) after the wipe = %q, %v; want x", n.Data, err)
			}
		}
		c.Close()
		dev.stop()
		logs := dev.errb.String()
		if rebuilt := strings.Contains(logs, "no durable state: rebuilding") && strings.Contains(logs, "rebuilt:"); rebuilt != wiped {
			t.Errorf("a replica rebuilt: %v; want %v. The log:\n%s", rebuilt, wiped, logs)
		}
	}
	run(false)
	if err := os.RemoveAll(filepath.Join(dir, "r2")); err != nil {
		t.Fatal(err)
	}
	run(true)
}
