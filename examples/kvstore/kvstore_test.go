package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/latchd/latch/replica"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}

func TestStoreSnapshotRestore(t *testing.T) {
	a := NewStore()
	a.Apply(1, putCmd("b", []byte("2")))
	a.Apply(2, putCmd("a", []byte("1")))
	a.Apply(3, putCmd("c", nil))
	if got := string(a.Apply(4, deleteCmd("c"))); got != "1" {
		t.Fatalf("delete existing = %q; want 1", got)
	}
	if got := string(a.Apply(5, deleteCmd("zz"))); got != "0" {
		t.Fatalf("delete missing = %q; want 0", got)
	}
	if got := string(a.Apply(6, []byte{'P'})); !strings.HasPrefix(got, "ERR") {
		t.Fatalf("malformed command = %q; want ERR", got)
	}
	var s1, s2 bytes.Buffer
	if err := a.Snapshot(&s1); err != nil {
		t.Fatal(err)
	}
	b := NewStore()
	if err := b.Restore(bytes.NewReader(s1.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := b.Snapshot(&s2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1.Bytes(), s2.Bytes()) {
		t.Fatal("snapshot(restore(snapshot)) differs from snapshot")
	}
	if v, ok := b.Get("a"); !ok || string(v) != "1" {
		t.Fatalf("Get(a) after restore = %q, %v; want 1, true", v, ok)
	}
	if err := b.Restore(bytes.NewReader([]byte{5, 1})); err == nil {
		t.Fatal("Restore(garbage) = nil error")
	}
}

// usedPorts holds the addresses freePort has returned: the listener that
// proved an address free is closed before the address is used, so the
// kernel may offer it again.
var usedPorts struct {
	sync.Mutex
	addrs map[string]bool
}

// freePort returns a free loopback address it has not returned before.
func freePort(t *testing.T) string {
	t.Helper()
	usedPorts.Lock()
	defer usedPorts.Unlock()
	if usedPorts.addrs == nil {
		usedPorts.addrs = map[string]bool{}
	}
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !usedPorts.addrs[addr] {
			usedPorts.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("no fresh loopback port")
	return ""
}

// TestThreeReplicas runs three kvstore servers over loopback TCP, the way
// README.md runs three processes, and uses them over HTTP.
func TestThreeReplicas(t *testing.T) {
	peers, clients := map[uint64]string{}, map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		peers[id], clients[id] = freePort(t), freePort(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	root := t.TempDir()
	for id := uint64(1); id <= 3; id++ {
		cfg := replica.DefaultConfig()
		cfg.ID, cfg.Members, cfg.Groups = id, peers, []uint32{group}
		cfg.DataDir = filepath.Join(root, fmt.Sprint(id))
		cfg.TickInterval, cfg.HeartbeatInterval = 5*time.Millisecond, 25*time.Millisecond
		cfg.LeaseDuration, cfg.ElectionTimeout = 250*time.Millisecond, 400*time.Millisecond
		ready := make(chan string, 1)
		go func() { errs <- serve(ctx, cfg, clients, ready) }()
		<-ready
	}
	defer func() {
		cancel()
		for range 3 {
			if err := <-errs; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}()

	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, addr, path, body string) (int, string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
			resp, err := client.Do(req) // follows 307 to the leader
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					return resp.StatusCode, string(b)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s: no answer but 503/errors until the deadline (last err %v)", method, path, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Write through every replica: followers redirect to the leader.
	for id := uint64(1); id <= 3; id++ {
		if code, body := do("PUT", clients[id], fmt.Sprintf("/kv/k%d", id), fmt.Sprint("v", id)); code != 200 || body != "OK\n" {
			t.Fatalf("PUT via replica %d = %d %q; want 200 OK", id, code, body)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		for k := uint64(1); k <= 3; k++ {
			code, body := do("GET", clients[id], fmt.Sprintf("/kv/k%d", k), "")
			if code != 200 || body != fmt.Sprint("v", k) {
				t.Fatalf("GET k%d via replica %d = %d %q; want 200 v%d", k, id, code, body, k)
			}
		}
	}
	if code, _ := do("DELETE", clients[2], "/kv/k2", ""); code != 200 {
		t.Fatalf("DELETE k2 = %d; want 200", code)
	}
	if code, _ := do("GET", clients[3], "/kv/k2", ""); code != 404 {
		t.Fatalf("GET k2 after delete = %d; want 404", code)
	}
	if code, _ := do("DELETE", clients[1], "/kv/k2", ""); code != 404 {
		t.Fatalf("DELETE k2 again = %d; want 404", code)
	}
	if code, _ := do("GET", clients[1], "/status", ""); code != 200 {
		t.Fatalf("GET /status = %d; want 200", code)
	}
}

func TestParseAddrs(t *testing.T) {
	got, err := parseAddrs("1=a:1, 2=b:2")
	if err != nil || len(got) != 2 || got[1] != "a:1" || got[2] != "b:2" {
		t.Fatalf("parseAddrs = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1", "x=a:1", "0=a:1", "1=a:1,1=b:2", "1="} {
		if _, err := parseAddrs(bad); err == nil {
			t.Errorf("parseAddrs(%q) = nil error", bad)
		}
	}
}
