package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the kvstore command: with KVSTORE_CHILD set it
// runs main's run() on the arguments after "--" instead of the tests.
func init() {
	if os.Getenv("KVSTORE_CHILD") == "" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "kvstore child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// TestKill9 runs three kvstore processes, writes through them while the
// leader is killed with SIGKILL and restarted (three times), and checks
// that every write that was acknowledged is on every replica afterwards.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	var peers, clients []string
	for id := 1; id <= 3; id++ {
		peers = append(peers, fmt.Sprintf("%d=%s", id, freePort(t)))
		clients = append(clients, fmt.Sprintf("%d=%s", id, freePort(t)))
	}
	httpAddr := map[int]string{}
	for id, c := range clients {
		httpAddr[id+1] = strings.SplitN(c, "=", 2)[1]
	}
	root := t.TempDir()
	procs := map[int]*proc{}
	start := func(id int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$", "--",
			"-id", fmt.Sprint(id), "-peers", strings.Join(peers, ","), "-clients", strings.Join(clients, ","),
			"-data", filepath.Join(root, fmt.Sprint(id)))
		cmd.Env = append(os.Environ(), "KVSTORE_CHILD=1")
		logf, err := os.Create(filepath.Join(root, fmt.Sprintf("log-%d-%d.txt", id, time.Now().UnixNano())))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); logf.Close(); close(p.done) }()
		procs[id] = p
	}
	kill := func(id int) {
		p := procs[id]
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	for id := 1; id <= 3; id++ {
		start(id)
	}
	defer func() {
		for id, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				kill(id)
			}
		}
	}()

	client := &http.Client{Timeout: 3 * time.Second}
	put := func(via int, key, val string) bool {
		req, _ := http.NewRequest("PUT", "http://"+httpAddr[via]+"/kv/"+key, strings.NewReader(val))
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	leader := func() int {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for id := 1; id <= 3; id++ {
				resp, err := client.Get("http://" + httpAddr[id] + "/status")
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(b), `"Role":"leader"`) {
					return id
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("no leader within 20s")
		return 0
	}

	acked := map[string]string{}
	n := 0
	// write puts count keys, each retried (a put is idempotent) for a while
	// through leader changes; only those answered 200 count as acknowledged.
	write := func(count int) {
		for range count {
			n++
			key, val := fmt.Sprint("k", n), fmt.Sprint("v", n)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if put(1+n%3, key, val) {
					acked[key] = val
					break
				}
			}
		}
	}
	leader()
	for round := range 3 {
		write(40)
		l := leader()
		// Kill while writes are in flight.
		stop := make(chan struct{})
		bg := map[string]string{}
		go func() {
			defer close(stop)
			for i := range 20 {
				key := fmt.Sprint("bg", round, "-", i)
				if put(1+i%3, key, "x") {
					bg[key] = "x"
				}
			}
		}()
		time.Sleep(20 * time.Millisecond)
		kill(l)
		<-stop
		for k, v := range bg {
			acked[k] = v // acknowledged around the kill
		}
		start(l)
		write(40)
	}
	// Wait until every replica has the last acknowledged write.
	final := "final"
	deadline := time.Now().Add(30 * time.Second)
	for !put(1, final, "done") {
		if time.Now().After(deadline) {
			t.Fatal("cannot write after the kills")
		}
		time.Sleep(50 * time.Millisecond)
	}
	acked[final] = "done"
	for id := 1; id <= 3; id++ {
		for key, val := range acked {
			var got string
			for {
				resp, err := client.Get("http://" + httpAddr[id] + "/kv/" + key + "?stale=1")
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got = string(b)
				}
				if got == val || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got != val {
				t.Fatalf("replica %d: acknowledged %s=%s is %q after three SIGKILLs of the leader", id, key, val, got)
			}
		}
	}
	if len(acked) < 3*80 {
		t.Fatalf("only %d of %d writes were acknowledged", len(acked), 3*80+1)
	}
	t.Logf("%d acknowledged writes survived three SIGKILLs of the leader on all replicas", len(acked))
}
