package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/cmd/internal/testutil"
)

// bins holds the binaries built once for the package's tests.
var bins struct {
	once          sync.Once
	dir           string
	latchd, latch string
	err           error
}

// build builds cmd/latchd and cmd/latch once (skipping with -short).
func build(t *testing.T) (latchd, latch string) {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test: skipped with -short")
	}
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "latch-e2e-bin-")
		if bins.err != nil {
			return
		}
		bins.latchd = filepath.Join(bins.dir, "latchd")
		bins.latch = filepath.Join(bins.dir, "latch")
		for bin, pkg := range map[string]string{bins.latchd: "../../latchd", bins.latch: "../../latch"} {
			out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
			if err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.latchd, bins.latch
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// proc is a process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
	err  error // Wait's, once done is closed
}

// start runs bin with args; its stdout and stderr go to one buffer. The
// process is killed at the end of the test if it still runs.
func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// signal sends sig to the process and, unless it is SIGKILL, waits for it
// to exit and returns its exit code.
func (p *proc) stop(t *testing.T, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v after %v", p.name, within, sig)
	}
	return p.cmd.ProcessState.ExitCode()
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v", p.name, within)
	}
	return -1
}

// run runs bin to its end and returns its stdout, stderr and exit code.
func run(t *testing.T, ctx context.Context, bin string, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("running %s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// handedOut holds every port freeAddrs has returned in this test binary.
// The listeners that proved a port free are closed before the port is used,
// so without it a later call (a link proxy's, say) could draw a port a
// replica was given but has not bound yet.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freeAddrs returns n free loopback addresses, drawn below the usual
// ephemeral port range so that no outgoing connection takes one while a
// replica is down, and never one it returned before.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 100000 {
			t.Fatalf("no %d free loopback ports left in 20000-31999", n)
		}
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		handedOut.ports[port] = true
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}

// freeBase returns a base port such that base+i, base+100+i and base+200+i
// (i < 3) are free: what `latchd dev --base-port` needs.
func freeBase(t *testing.T) int {
	t.Helper()
	offsets := []int{0, 1, 2, 100, 101, 102, 200, 201, 202}
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 100 {
		base := 20000 + rand.IntN(11000)
		var lns []net.Listener
		ok := true
		for _, off := range offsets {
			if handedOut.ports[base+off] {
				ok = false
				break
			}
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			for _, off := range offsets {
				handedOut.ports[base+off] = true
			}
			return base
		}
	}
	t.Fatal("no free base port found")
	return 0
}

// httpGetJSON fetches a JSON object.
func httpGetJSON(ctx context.Context, hc *http.Client, url string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
