package e2e

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
	"github.com/latchd/latch/internal/testcerts"
)

// node is one replica of the process-level cell.
type node struct {
	id                  int
	peer, client, admin string
	config              string
	data                string // its dataDir
	p                   *proc
}

// procCell is a cell of latchd processes (three, or as many as asked)
// started from config files, as an operator runs one, and the binaries that
// drive it.
type procCell struct {
	t             *testing.T
	latchd, latch string
	nodes         []*node
	endpoints     []string
	env           []string // LATCH_ENDPOINTS for the CLI
	// links holds, in a cell started with proxied links, the proxy that
	// carries the connection between replicas i < j, at links[[2]int{i, j}]
	// (ids).
	links map[[2]int]*linkProxy
	// extra is the config fields every replica's config has beyond the
	// nodes, ids and timings (TLS, cellOptions.extra); join gives them to
	// a joiner's.
	extra string
	// spares are nodes drawn for members added at run time, not started
	// yet (drawSpares).
	spares []*node
	// In a cell started with TLS: the CA and the directory of its files;
	// clientTLS is what the test's Go clients and HTTP requests dial
	// with (the operator's certificate, a superuser of the cell); nil
	// without TLS.
	ca        *testcerts.CA
	certDir   string
	clientTLS *tls.Config
	// logDir, if set (cellOptions.logDir), receives every latchd process's
	// whole output at the end of the test; starts numbers them.
	logDir string
	starts int
}

// cellOptions shape a procCell.
type cellOptions struct {
	// extra is more JSON fields for every config, e.g. `"sessionLease": "3s"`.
	extra string
	// proxied routes each replica-to-replica connection through a
	// linkProxy of the test, so that links can be cut (partitions).
	proxied bool
	// replicas is the size of the cell (3 if 0).
	replicas int
	// tls runs the cell with TLS on the client port and the admin HTTP,
	// client certificates required, mutual TLS between the replicas, and
	// "operator" as a superuser; the CLI (env) and the test's clients
	// (dial, adminGetJSON) use the operator's certificate.
	tls bool
	// dataDir, if set, gives the data dir of replica id (instead of one
	// in the cell's temporary directory), e.g. on a filesystem of its own.
	dataDir func(id int) string
	// logDir, if set, is where each latchd process's output is written at
	// the end of the test, as latchd-ID.K.log for its Kth start.
	logDir string
}

// startProcCell writes a config file per replica (newProcCell), starts
// the latchd processes of a new cell and returns once one of them leads.
func startProcCell(t *testing.T, ctx context.Context, opts cellOptions) *procCell {
	t.Helper()
	c := newProcCell(t, opts)
	for _, n := range c.nodes {
		c.start(n, "--new-cell")
	}
	c.leader(ctx)
	return c
}

// newProcCell picks the addresses of a cell and writes a config file per
// replica (lease 1s, heartbeat 50ms, plus opts.extra), with the data dirs
// not created yet; it starts no process.
func newProcCell(t *testing.T, opts cellOptions) *procCell {
	t.Helper()
	latchd, latch := build(t)
	dir := t.TempDir()
	size := cmp.Or(opts.replicas, 3)
	addrs := freeAddrs(t, 3*size)
	c := &procCell{t: t, latchd: latchd, latch: latch, nodes: make([]*node, size), links: map[[2]int]*linkProxy{}, logDir: opts.logDir}
	for i := range c.nodes {
		n := &node{id: i + 1, peer: addrs[3*i], client: addrs[3*i+1], admin: addrs[3*i+2]}
		c.nodes[i] = n
		c.endpoints = append(c.endpoints, n.client)
	}
	if opts.proxied {
		// The lower id dials the higher (replica/transport), so replica i
		// is told that replica j > i listens on the proxy of link (i, j).
		for _, a := range c.nodes {
			for _, b := range c.nodes[a.id:] {
				c.links[[2]int{a.id, b.id}] = startLinkProxy(t, b.peer)
			}
		}
	}
	extra := opts.extra
	if opts.tls {
		extra = strings.TrimPrefix(extra+", "+c.setupTLS(dir), ", ")
	}
	if extra != "" {
		extra = ", " + extra
	}
	c.extra = extra
	for _, n := range c.nodes {
		var jsonNodes []string
		for _, m := range c.nodes {
			peer := m.peer
			if l := c.links[[2]int{n.id, m.id}]; l != nil {
				peer = l.addr()
			}
			jsonNodes = append(jsonNodes, fmt.Sprintf(`{"id": %d, "peer": %q, "client": %q, "http": %q}`, m.id, peer, m.client, m.admin))
		}
		n.config = filepath.Join(dir, fmt.Sprintf("latchd-%d.json", n.id))
		n.data = filepath.Join(dir, fmt.Sprintf("data-%d", n.id))
		if opts.dataDir != nil {
			n.data = opts.dataDir(n.id)
		}
		cfg := fmt.Sprintf(`{"nodes": [%s], "myid": %d, "dataDir": %q, "lease": "1s", "heartbeat": "50ms"%s}`,
			strings.Join(jsonNodes, ",\n  "), n.id, n.data, extra)
		if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.env = []string{"LATCH_ENDPOINTS=" + strings.Join(c.endpoints, ",")}
	if opts.tls {
		cert, key := c.ca.Issue(t, "operator").Write(t, c.certDir, "operator")
		c.env = append(c.env, "LATCH_CACERT="+c.caFile(), "LATCH_CERT="+cert, "LATCH_KEY="+key)
		c.clientTLS = c.ca.ClientConfig(t, "operator")
	}
	return c
}

// setupTLS makes the cell's CA and the replicas' certificate in dir and
// returns the config fields that use them.
func (c *procCell) setupTLS(dir string) string {
	c.ca, c.certDir = testcerts.NewCA(c.t, "latch"), dir
	cert, key := c.ca.Issue(c.t, "replica").Write(c.t, dir, "replica")
	ca := c.caFile()
	return fmt.Sprintf(`"tls": {"certFile": %q, "keyFile": %q, "caFile": %q, "clientCertAuth": true}, `+
		`"peerTLS": {"certFile": %q, "keyFile": %q, "caFile": %q}, "superusers": ["operator"]`, cert, key, ca, cert, key, ca)
}

// caFile is the path of the TLS cell's CA certificate.
func (c *procCell) caFile() string { return c.ca.WriteCA(c.t, c.certDir, "ca.crt") }

// adminGetJSON gets an admin HTTP path of n as JSON, over HTTPS with the
// operator's certificate in a TLS cell.
func (c *procCell) adminGetJSON(ctx context.Context, n *node, path string) (map[string]any, error) {
	if c.clientTLS == nil {
		return httpGetJSON(ctx, http.DefaultClient, "http://"+n.admin+path)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.clientTLS}}
	defer hc.CloseIdleConnections()
	return httpGetJSON(ctx, hc, "https://"+n.admin+path)
}

// start starts (or restarts) the latchd process of n on its data dir, with
// more flags if given. As an operator would, the cell's first start passes
// --new-cell and restarts do not: a replica restarted on an empty data dir
// rebuilds it from its peers.
func (c *procCell) start(n *node, flags ...string) {
	args := append([]string{"--config", n.config, "-v"}, flags...)
	n.p = start(c.t, fmt.Sprintf("latchd %d", n.id), c.latchd, nil, args...)
	if c.logDir != "" {
		c.starts++
		p, file := n.p, filepath.Join(c.logDir, fmt.Sprintf("latchd-%d.%d.log", n.id, c.starts))
		c.t.Cleanup(func() {
			if err := os.WriteFile(file, []byte(p.out.String()), 0o644); err != nil {
				c.t.Errorf("keeping the log of %s: %v", p.name, err)
			}
		})
	}
}

// leader waits up to 30 s for a replica that `latch status` names as the
// leader, and returns it.
func (c *procCell) leader(ctx context.Context) *node {
	c.t.Helper()
	return c.leaderOtherThan(ctx, nil)
}

// leaderOtherThan is leader that waits for a leader other than old.
func (c *procCell) leaderOtherThan(ctx context.Context, old *node) *node {
	c.t.Helper()
	var leader *node
	what := "a leader"
	if old != nil {
		what = fmt.Sprintf("a leader other than latchd %d", old.id)
	}
	testutil.WaitFor(c.t, 30*time.Second, what, func() bool {
		out, _, code := run(c.t, ctx, c.latch, c.env, "", "-o", "json", "--command-timeout", "2s", "status")
		var doc struct {
			Leader string `json:"leader"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
			return false
		}
		for _, n := range c.nodes {
			if n.client == doc.Leader && n != old {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// dial opens a client session on the given endpoints (the cell's if none),
// with a minute of grace so that a fault of a few seconds does not end it;
// it is closed at the end of the test.
func (c *procCell) dial(ctx context.Context, endpoints ...string) *client.Client {
	c.t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.endpoints
	}
	cl, err := client.Dial(ctx, client.Config{Endpoints: endpoints, Grace: time.Minute, TLS: c.clientTLS})
	if err != nil {
		c.t.Fatalf("Dial: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// killAll kills every replica with SIGKILL at once and waits for them to
// exit; start brings each back on its data dir.
func (c *procCell) killAll() {
	c.t.Helper()
	for _, n := range c.nodes {
		n.p.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, n := range c.nodes {
		n.p.wait(c.t, 10*time.Second)
	}
}

// other returns a replica that is none of not.
func (c *procCell) other(not ...*node) *node {
	for _, m := range c.nodes {
		if !slices.Contains(not, m) {
			return m
		}
	}
	return nil
}

// member is one row of `latch members -o json`.
type member struct {
	Endpoint  string `json:"endpoint"`
	Applied   uint64 `json:"applied"`
	Reachable bool   `json:"reachable"`
	Leader    bool   `json:"leader"`
}

// caughtUp waits up to 60 s until the replica n is reachable and has
// applied at least as much as the leader.
func (c *procCell) caughtUp(ctx context.Context, n *node) {
	c.t.Helper()
	testutil.WaitFor(c.t, 60*time.Second, fmt.Sprintf("latchd %d to catch up", n.id), func() bool {
		out, _, code := run(c.t, ctx, c.latch, c.env, "", "-o", "json", "members")
		if code != 0 {
			return false
		}
		var doc struct {
			Members []member `json:"members"`
		}
		json.Unmarshal([]byte(out), &doc)
		var lead, it member
		for _, m := range doc.Members {
			if m.Leader {
				lead = m
			}
			if m.Endpoint == n.client {
				it = m
			}
		}
		return lead.Reachable && it.Reachable && it.Applied > 0 && it.Applied >= lead.Applied
	})
}

// writers Put unique keys through one client, each writer one call at a
// time, and remember every write the cell acknowledged.
type writers struct {
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu    sync.Mutex
	acked map[string]string // key -> value
}

// startWriters starts n writers of keys prefix+"w<writer>-<i>"; each call
// is bounded by callTimeout. halt stops them.
func startWriters(ctx context.Context, c *client.Client, n int, prefix string, callTimeout time.Duration) *writers {
	ctx, stop := context.WithCancel(ctx)
	w := &writers{stop: stop, acked: map[string]string{}}
	for id := range n {
		w.wg.Go(func() {
			for i := 0; i < 100_000 && ctx.Err() == nil; i++ {
				key, val := fmt.Sprintf("%sw%d-%d", prefix, id, i), fmt.Sprintf("v%d-%d", id, i)
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				_, err := c.Put(cctx, key, []byte(val))
				cancel()
				if err == nil {
					w.mu.Lock()
					w.acked[key] = val
					w.mu.Unlock()
				}
			}
		})
	}
	return w
}

// count returns the number of acknowledged writes so far.
func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// progress waits up to 60 s for 100 more acknowledged writes.
func (w *writers) progress(t *testing.T, what string) {
	t.Helper()
	base := w.count()
	testutil.WaitFor(t, 60*time.Second, what, func() bool { return w.count() >= base+100 })
}

// halt stops the writers and waits for them.
func (w *writers) halt() {
	w.stop()
	w.wg.Wait()
}

// verify reads every acknowledged write back through c (linearizable
// reads, unless opts say otherwise) and fails the test at the first one
// missing or different. It returns one acknowledged key and value, for
// checks of other paths.
func (w *writers) verify(t *testing.T, ctx context.Context, c *client.Client, opts ...client.Option) (key, val string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, v := range w.acked {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		n, err := c.Get(rctx, k, opts...)
		cancel()
		if err != nil || string(n.Data) != v {
			t.Fatalf("Get(%q) = %q, %v; want %q (acknowledged)", k, n.Data, err, v)
		}
		key, val = k, v
	}
	return key, val
}

// wipe kills n with SIGKILL and deletes its data dir, as a lost disk does.
func (c *procCell) wipe(n *node) {
	c.t.Helper()
	n.p.stop(c.t, syscall.SIGKILL, 10*time.Second)
	if err := os.RemoveAll(n.data); err != nil {
		c.t.Fatal(err)
	}
}

// rebuilt waits until n, restarted on a wiped data dir, has rebuilt its
// state: its /status says rebuilding false and its log says "rebuilt:",
// which comes once the end of the rebuild is durable (a moment after the
// core, and /status, stopped rebuilding).
func (c *procCell) rebuilt(ctx context.Context, n *node) {
	c.t.Helper()
	testutil.WaitFor(c.t, 60*time.Second, fmt.Sprintf("latchd %d to rebuild (/status rebuilding false, 'rebuilt:' logged)", n.id), func() bool {
		if !strings.Contains(n.p.out.String(), "rebuilt:") {
			return false
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		doc, err := c.adminGetJSON(sctx, n, "/status")
		groups, _ := doc["groups"].([]any)
		if err != nil || len(groups) != 1 {
			return false
		}
		g, _ := groups[0].(map[string]any)
		return g["rebuilding"] == false
	})
	if out := n.p.out.String(); !strings.Contains(out, "no durable state: rebuilding") {
		c.t.Fatalf("latchd %d rebuilt without saying it rebuilds:\n%s", n.id, tail(out, 2000))
	}
}
