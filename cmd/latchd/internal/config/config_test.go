package config

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

const good = `{
  "nodes": [
    {"id": 1, "peer": "10.0.0.1:7001", "client": "10.0.0.1:7101", "http": "10.0.0.1:7201"},
    {"id": 2, "peer": "10.0.0.2:7001", "client": "10.0.0.2:7101", "http": "10.0.0.2:7201"},
    {"id": 3, "peer": "10.0.0.3:7001", "client": "10.0.0.3:7101"}
  ],
  "myid": 2,
  "dataDir": "/var/lib/latch",
  "lease": "3s",
  "heartbeat": "100ms",
  "sessionLease": "12s",
  "grace": "45s",
  "lockDelayCap": "60s",
  "groups": 1
}`

func TestParseGood(t *testing.T) {
	f, err := Parse(strings.NewReader(good))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c, err := f.Resolve()
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if c.MyID != 2 || len(c.Nodes) != 3 || c.DataDir != "/var/lib/latch" {
		t.Errorf("Resolve = %+v", c)
	}
	if c.Lease != 3*time.Second || c.Heartbeat != 100*time.Millisecond || c.ElectionTimeout != 4500*time.Millisecond {
		t.Errorf("timings = lease %v heartbeat %v election %v; want 3s 100ms 4.5s", c.Lease, c.Heartbeat, c.ElectionTimeout)
	}
	if c.LockDelay != DefaultLockDelay || c.LockDelayCap != time.Minute || c.Grace != 45*time.Second {
		t.Errorf("lock-delay %v cap %v grace %v", c.LockDelay, c.LockDelayCap, c.Grace)
	}
	if got := c.Self(); got.Peer != "10.0.0.2:7001" {
		t.Errorf("Self() = %+v; want node 2", got)
	}
	sc, err := c.Server(nil)
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	if sc.ID != 2 || sc.Members[3].Client != "10.0.0.3:7101" || sc.Members[1].HTTP != "10.0.0.1:7201" {
		t.Errorf("Server() = id %d members %+v", sc.ID, sc.Members)
	}
	if sc.Replica.LeaseDuration != 3*time.Second || sc.Replica.HeartbeatInterval != 100*time.Millisecond ||
		sc.Session.Lease != 12*time.Second || sc.Namespace.MaxLockDelay != time.Minute {
		t.Errorf("Server() timings: %+v %+v", sc.Replica, sc.Session)
	}
	if !sc.Replica.RebuildEmpty {
		t.Errorf("Server().Replica.RebuildEmpty = false without NewCell; want true (an empty dataDir is a lost disk)")
	}
	c.NewCell = true
	if sc, _ := c.Server(nil); sc.Replica.RebuildEmpty {
		t.Errorf("Server().Replica.RebuildEmpty = true with NewCell; want false (a founding member)")
	}
}

func TestDefaultsAreValid(t *testing.T) {
	c := Default()
	c.Nodes = []Node{{ID: 1, Peer: "127.0.0.1:7201", Client: "127.0.0.1:7101"}}
	c.MyID, c.DataDir = 1, t.TempDir()
	if _, err := c.Server(nil); err != nil {
		t.Fatalf("Default().Server: %v", err)
	}
	f := File{Nodes: c.Nodes, MyID: 1, DataDir: c.DataDir}
	r, err := f.Resolve()
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if r.Lease != c.Lease || r.ElectionTimeout != c.ElectionTimeout || r.SessionLease != c.SessionLease {
		t.Errorf("Resolve of an empty file = %+v; want the defaults %+v", r, c)
	}
	// The defaults agree with lockserver's.
	d := lockserver.DefaultConfig()
	if d.Replica.LeaseDuration != c.Lease || d.Replica.HeartbeatInterval != c.Heartbeat ||
		d.Replica.ElectionTimeout != c.ElectionTimeout || d.Session.Lease != c.SessionLease ||
		d.Namespace.DefaultLockDelay != c.LockDelay || d.Namespace.MaxLockDelay != c.LockDelayCap {
		t.Errorf("config defaults drifted from lockserver.DefaultConfig")
	}
}

// TestBadConfig checks that each mistake is reported on the field it is in.
func TestBadConfig(t *testing.T) {
	const nodes = `"nodes": [{"id": 1, "peer": "127.0.0.1:7001", "client": "127.0.0.1:7101"},
		{"id": 2, "peer": "127.0.0.1:7002", "client": "127.0.0.1:7102"}]`
	tests := []struct {
		name   string
		json   string
		field  string // the FieldError's Field
		reason string // a part of the reason
	}{
		{"missing myid", `{` + nodes + `, "dataDir": "/d"}`, "myid", "missing"},
		{"myid not in nodes", `{` + nodes + `, "myid": 9, "dataDir": "/d"}`, "myid", "not the id of any"},
		{"no nodes", `{"myid": 1, "dataDir": "/d"}`, "nodes", "no nodes"},
		{"duplicate ids", `{"nodes": [{"id": 1, "peer": "a:1", "client": "a:2"}, {"id": 1, "peer": "b:1", "client": "b:2"}], "myid": 1, "dataDir": "/d"}`,
			"nodes[1].id", "duplicate id 1"},
		{"zero id", `{"nodes": [{"id": 0, "peer": "a:1", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].id", "missing or 0"},
		{"missing data dir", `{` + nodes + `, "myid": 1}`, "dataDir", "missing"},
		{"missing peer", `{"nodes": [{"id": 1, "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].peer", "missing address"},
		{"missing client", `{"nodes": [{"id": 1, "peer": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].client", "missing address"},
		{"address without port", `{"nodes": [{"id": 1, "peer": "10.0.0.1", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].peer", "bad address"},
		{"address with bad port", `{"nodes": [{"id": 1, "peer": "a:70000", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].peer", "1..65535"},
		{"address with port 0", `{"nodes": [{"id": 1, "peer": "a:0", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].peer", "1..65535"},
		{"address without host", `{"nodes": [{"id": 1, "peer": ":7001", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].peer", "empty host"},
		{"bad http address", `{"nodes": [{"id": 1, "peer": "a:1", "client": "a:2", "http": "nope"}], "myid": 1, "dataDir": "/d"}`, "nodes[0].http", "bad address"},
		{"address used twice", `{"nodes": [{"id": 1, "peer": "a:1", "client": "a:2"}, {"id": 2, "peer": "a:1", "client": "b:2"}], "myid": 1, "dataDir": "/d"}`,
			"nodes[1].peer", "also used by nodes[0].peer"},
		{"bad duration", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lease": "3 seconds"}`, "lease", "bad duration"},
		{"negative duration", `{` + nodes + `, "myid": 1, "dataDir": "/d", "sessionLease": "-12s"}`, "sessionLease", "must be positive"},
		{"zero heartbeat", `{` + nodes + `, "myid": 1, "dataDir": "/d", "heartbeat": "0s"}`, "heartbeat", "must be positive"},
		{"duration as number", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lease": 3}`, "lease", "want string"},
		{"lease not above heartbeat", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lease": "1s", "heartbeat": "1s"}`, "lease", "longer than heartbeat"},
		{"election not above lease", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lease": "2s", "electionTimeout": "2s"}`, "electionTimeout", "longer than lease"},
		{"session lease too short", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lease": "3s", "sessionLease": "4s"}`, "sessionLease", "twice lease"},
		{"grace below session lease", `{` + nodes + `, "myid": 1, "dataDir": "/d", "grace": "5s"}`, "grace", "at least sessionLease"},
		{"lock-delay over its cap", `{` + nodes + `, "myid": 1, "dataDir": "/d", "lockDelay": "90s"}`, "lockDelay", "must not exceed lockDelayCap"},
		{"groups", `{` + nodes + `, "myid": 1, "dataDir": "/d", "groups": 4}`, "groups", "only 1"},
		{"content larger than a client's message", `{` + nodes + `, "myid": 1, "dataDir": "/d", "maxContent": 1048576}`, "maxContent", "is more than 1040384"},
		{"content far too large", `{` + nodes + `, "myid": 1, "dataDir": "/d", "maxContent": 1099511627776}`, "maxContent", "is more than"},
		{"unknown field", `{` + nodes + `, "myid": 1, "dataDir": "/d", "leese": "3s"}`, "leese", "unknown field"},
		{"new cell in the file", `{` + nodes + `, "myid": 1, "dataDir": "/d", "newCell": true}`, "newCell", "--new-cell is a command-line flag only"},
		{"join in the file", `{` + nodes + `, "myid": 1, "dataDir": "/d", "join": true}`, "join", "--join is a command-line flag only"},
		{"unknown node field", `{"nodes": [{"id": 1, "peer": "a:1", "client": "a:2", "adress": "x"}], "myid": 1, "dataDir": "/d"}`, "adress", "unknown field"},
		{"id as string", `{"nodes": [{"id": "1", "peer": "a:1", "client": "a:2"}], "myid": 1, "dataDir": "/d"}`, "nodes.id", "want uint64"},
		{"negative myid", `{` + nodes + `, "myid": -1, "dataDir": "/d"}`, "myid", "want uint64"},
		{"syntax error", `{"nodes": [`, "(file)", "truncated"},
		{"trailing data", `{` + nodes + `, "myid": 1, "dataDir": "/d"} {}`, "(file)", "after the JSON object"},
		{"not an object", `[1, 2]`, "(file)", "want config.File"},
		{"empty", ``, "(file)", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.json))
			if err == nil {
				_, err = f.Resolve()
			}
			if err == nil {
				t.Fatalf("config %s: no error; want one on %s", tt.json, tt.field)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if !hasField(err, tt.field, tt.reason) {
				t.Errorf("error = %v; want a FieldError on %q containing %q", err, tt.field, tt.reason)
			}
		})
	}
}

// hasField reports whether err (possibly joined) holds a FieldError on
// field whose reason contains reason.
func hasField(err error, field, reason string) bool {
	if fe, ok := err.(*FieldError); ok {
		return fe.Field == field && strings.Contains(fe.Reason, reason)
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if hasField(e, field, reason) {
				return true
			}
		}
	}
	return false
}

func TestCheckStart(t *testing.T) {
	two := []Node{{ID: 1, Peer: "a:1", Client: "a:2"}, {ID: 4, Peer: "b:1", Client: "b:2"}}
	tests := []struct {
		name          string
		c             Config
		field, reason string // "" if fine
	}{
		{"plain", Config{Nodes: two[:1]}, "", ""},
		{"new cell", Config{Nodes: two[:1], NewCell: true}, "", ""},
		{"join with a seed", Config{Nodes: two, Join: true}, "", ""},
		{"join and new cell", Config{Nodes: two, Join: true, NewCell: true}, "--join", "drop --new-cell"},
		{"join without a seed", Config{Nodes: two[1:], Join: true}, "nodes", "a seed"},
	}
	for _, tt := range tests {
		err := tt.c.CheckStart()
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: CheckStart() = %v; want nil", tt.name, err)
		case tt.field != "" && (!hasField(err, tt.field, tt.reason) || !errors.Is(err, ErrConfig)):
			t.Errorf("%s: CheckStart() = %v; want a FieldError on %s saying %q", tt.name, err, tt.field, tt.reason)
		}
	}
	c := Config{Nodes: two, MyID: 4, DataDir: "/d", Join: true}
	c.Lease, c.Heartbeat, c.ElectionTimeout, c.SessionLease = time.Second, 50*time.Millisecond, 1500*time.Millisecond, 12*time.Second
	sc, err := c.Server(nil)
	if err != nil || !sc.Join {
		t.Errorf("Server() of a joiner = Join %v, %v; want Join", sc.Join, err)
	}
}

func TestResolveReportsEveryProblem(t *testing.T) {
	f := File{Nodes: []Node{{ID: 1, Peer: "x", Client: "a:1"}}, Lease: "zz"}
	_, err := f.Resolve()
	for _, field := range []string{"nodes[0].peer", "myid", "dataDir", "lease"} {
		if !hasField(err, field, "") {
			t.Errorf("Resolve() = %v; want a problem on %s too", err, field)
		}
	}
}

func TestOverrides(t *testing.T) {
	f, err := Parse(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	id, dir, http := uint64(3), "/tmp/elsewhere", "127.0.0.1:9999"
	g := f.Apply(Overrides{ID: &id, DataDir: &dir, HTTP: &http})
	c, err := g.Resolve()
	if err != nil {
		t.Fatalf("Resolve after overrides: %v", err)
	}
	if c.MyID != 3 || c.DataDir != dir || c.Self().HTTP != http {
		t.Errorf("after overrides: myid %d dataDir %q self %+v", c.MyID, c.DataDir, c.Self())
	}
	if f.Nodes[2].HTTP != "" {
		t.Errorf("Apply changed the original File's nodes")
	}
	// No overrides: unchanged.
	if h := f.Apply(Overrides{}); h.MyID != 2 || h.DataDir != "/var/lib/latch" {
		t.Errorf("Apply(no overrides) = %+v", h)
	}
	// An override can also make a config invalid, and is reported.
	bad := uint64(7)
	if _, err := f.Apply(Overrides{ID: &bad}).Resolve(); !hasField(err, "myid", "not the id") {
		t.Errorf("--id 7: %v; want a myid error", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "latchd.json")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want ErrConfig wrapping ErrNotExist", err)
	}
	if err := os.WriteFile(p, []byte(`{"myid": 1, "x": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) || !hasField(errors.Unwrap(err), "x", "unknown") {
		t.Errorf("Load(unknown field) = %v; want the path and the field", err)
	}
}

// TestExampleFile keeps docs/latchd.example.json valid.
func TestExampleFile(t *testing.T) {
	f, err := Load(filepath.Join("..", "..", "..", "..", "docs", "latchd.example.json"))
	if err != nil {
		t.Fatalf("docs/latchd.example.json: %v", err)
	}
	c, err := f.Resolve()
	if err != nil {
		t.Fatalf("docs/latchd.example.json: %v", err)
	}
	if len(c.Nodes) != 3 {
		t.Errorf("example has %d nodes; want 3", len(c.Nodes))
	}
	if _, err := c.Server(nil); err != nil {
		t.Errorf("example: %v", err)
	}
}

// TestMaxContentLimitFitsAClientMessage: on a cell with maxContent at its
// limit, a client writes a full node under the longest path and reads it
// back (the reply, content with path and metadata, fits a client's frame).
func TestMaxContentLimitFitsAClientMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := Default()
	c.MaxContent = MaxContentLimit
	cell, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 1, Tune: func(sc *lockserver.Config) { Tune(sc, c) }})
	if err != nil {
		t.Fatal(err)
	}
	defer cell.Close()
	if _, err := cell.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(ctx, client.DefaultConfig(cell.Endpoints()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	path := strings.Repeat("/"+strings.Repeat("n", 255), 16) // 4096 bytes, the longest path
	data := bytes.Repeat([]byte{0xa5}, MaxContentLimit)
	if _, err := cl.Put(ctx, path, data, client.CreateParents()); err != nil {
		t.Fatalf("Put of %d bytes: %v", len(data), err)
	}
	n, err := cl.Get(ctx, path)
	if err != nil || !bytes.Equal(n.Data, data) {
		t.Fatalf("Get of the %d-byte node = %d bytes, %v; want it back", len(data), len(n.Data), err)
	}
}
