package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// TestLockNoOverlap runs competing `latch lock PATH -- CMD`s whose critical
// sections append start and end markers to one file; the markers must never
// interleave.
func TestLockNoOverlap(t *testing.T) {
	file := filepath.Join(t.TempDir(), "log")
	const lockers, rounds = 3, 3
	script := `echo "start $1" >> "$2"; sleep 0.05; echo "end $1" >> "$2"`
	done := make(chan result, lockers*rounds)
	for i := range lockers {
		go func() {
			for range rounds {
				done <- latch(t, "lock", "/locktest/mutex", "--", "sh", "-c", script, "sh", string(rune('a'+i)), file)
			}
		}()
	}
	for range lockers * rounds {
		if r := <-done; r.code != 0 {
			t.Errorf("lock -- sh: exit %d, stderr %q", r.code, r.err)
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*lockers*rounds {
		t.Fatalf("%d marker lines; want %d:\n%s", len(lines), 2*lockers*rounds, b)
	}
	for i := 0; i < len(lines); i += 2 {
		who, ok := strings.CutPrefix(lines[i], "start ")
		if !ok || lines[i+1] != "end "+who {
			t.Fatalf("critical sections overlap at line %d:\n%s", i+1, b)
		}
	}
}

func TestLockRunsCommand(t *testing.T) {
	// The command sees the sequencer; latch exits with its status.
	r := latch(t, "lock", "/locktest/status", "--", "sh", "-c", `echo "$LATCH_SEQUENCER"; exit 7`)
	if r.code != 7 || r.err != "" {
		t.Errorf("exit %d, stderr %q; want 7 and nothing on stderr", r.code, r.err)
	}
	seq, err := client.ParseSequencer(strings.TrimSpace(r.out))
	if err != nil || seq.Path != "/locktest/status" || seq.Mode != client.Exclusive || seq.LockGen == 0 {
		t.Errorf("LATCH_SEQUENCER = %q (%+v, %v)", r.out, seq, err)
	}
	// The lock was released: it can be taken at once.
	latch(t, "lock", "--try", "/locktest/status", "--", "true").ok(t)

	// Shared holders run together.
	r = latch(t, "lock", "--shared", "/locktest/status", "--", "sh", "-c", `echo "$LATCH_SEQUENCER"`).ok(t)
	if !strings.Contains(r.out, ":sh:") {
		t.Errorf("shared sequencer = %q", r.out)
	}
	// A signal that ends the command: 128+N.
	if r := latch(t, "lock", "/locktest/status", "--", "sh", "-c", "kill -TERM $$"); r.code != 128+15 {
		t.Errorf("command killed by SIGTERM: exit %d; want 143", r.code)
	}
	latch(t, "lock", "/locktest/status", "--", "/no/such/command").failed(t, ExitNoCommand, "/no/such/command")
	latch(t, "lock", "/locktest/status", "--", "/").failed(t, ExitCannotRun, "/")
}

func TestLockTimeoutAndTry(t *testing.T) {
	fresh(t, "/locktest")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	wait := invocation{}.start(ctx, &out, &errb, "-o", "json", "lock", "/locktest/held")
	waitFor(t, 20*time.Second, "the lock to be held", func() bool { return strings.Contains(errb.String(), "holding /locktest/held") })
	grant := decode[GrantJSON](t, result{out: out.String()})
	if seq, err := client.ParseSequencer(grant.Sequencer); err != nil || grant.Path != "/locktest/held" || grant.Mode != "ex" ||
		grant.LockGen != seq.LockGen || grant.Session == 0 {
		t.Errorf("lock -o json printed %+v (%v)", grant, err)
	}

	latch(t, "lock", "--try", "/locktest/held", "--", "true").failed(t, ExitLocked, "lock is held")
	latch(t, "lock", "--timeout", "200ms", "/locktest/held", "--", "true").failed(t, ExitLocked, "not granted within 200ms")
	locks := decode[[]LockJSON](t, latch(t, "-o", "json", "locks", "/locktest").ok(t))
	if len(locks) != 1 || locks[0].Path != "/locktest/held" || locks[0].Mode != "ex" || len(locks[0].Holders) != 1 || locks[0].Holders[0] != grant.Session {
		t.Errorf("locks -o json = %+v", locks)
	}
	if r := latch(t, "locks", "/locktest").ok(t); !strings.Contains(r.out, "/locktest/held  ex") {
		t.Errorf("locks =\n%s", r.out)
	}
	sessions := decode[[]SessionJSON](t, latch(t, "-o", "json", "sessions").ok(t))
	holder := false
	for _, s := range sessions {
		holder = holder || (s.ID == locks[0].Holders[0] && s.Locks == 1)
	}
	if !holder {
		t.Errorf("sessions -o json = %+v; want the holder with 1 lock", sessions)
	}
	if r := latch(t, "sessions").ok(t); !strings.Contains(r.out, fmt.Sprint(grant.Session)) || !strings.HasPrefix(r.out, "ID") {
		t.Errorf("sessions =\n%s", r.out)
	}

	cancel() // Ctrl-C: release and exit 0.
	if code := wait(); code != 0 {
		t.Errorf("lock (holding) exit %d after interrupt; stderr %q", code, errb.String())
	}
	latch(t, "lock", "--try", "/locktest/held", "--", "true").ok(t)
}

// TestLockInterruptStopsCommand: SIGINT to latch while CMD runs stops CMD,
// releases the lock, and reports CMD's status.
func TestLockInterruptStopsCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	wait := invocation{}.start(ctx, &out, &errb, "lock", "/locktest/intr", "--", "sh", "-c", `echo running; exec sleep 30`)
	waitFor(t, 20*time.Second, "the command to run", func() bool { return strings.Contains(out.String(), "running") })
	cancel()
	if code := wait(); code != 128+15 {
		t.Errorf("exit %d; want 143 (the command ended by SIGTERM); stderr %q", code, errb.String())
	}
	latch(t, "lock", "--try", "/locktest/intr", "--", "true").ok(t)
}

// TestLockDeletedWhileHeld: the node is deleted (releasing the lock) while
// the command runs; latch finds out at Unlock and exits 5.
func TestLockDeletedWhileHeld(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	flag := filepath.Join(t.TempDir(), "go")
	script := `echo running; while [ ! -e "$1" ]; do sleep 0.02; done`
	wait := invocation{}.start(ctx, &out, &errb, "lock", "/locktest/del", "--", "sh", "-c", script, "sh", flag)
	waitFor(t, 20*time.Second, "the command to run", func() bool { return strings.Contains(out.String(), "running") })
	latch(t, "rm", "/locktest/del").ok(t)
	os.WriteFile(flag, nil, 0o644)
	if code := wait(); code != ExitLocked || !strings.Contains(errb.String(), "was lost before sh ended") {
		t.Errorf("exit %d, stderr %q; want %d and the lock reported lost", code, errb.String(), ExitLocked)
	}
}

// TestDeletedWhileHeldWithoutCommand: lock without a command, and elect
// with and without one, find at release that the node was deleted: exit 5
// (lost), as lock with a command does, not 3. So does elect when someone
// also created the node again (it exists at release, its lock nobody's):
// Resign reports that, whatever the command's status.
func TestDeletedWhileHeldWithoutCommand(t *testing.T) {
	fresh(t, "/locktest/del2", "/elections/deltest", "/elections/deltest2", "/elections/recreated", "/elections/recreated2")
	flags := t.TempDir() // a command case's file is written to end it
	script := `echo running; while [ ! -e "$1" ]; do sleep 0.02; done`
	tests := []struct {
		name, node, started string
		recreate            bool
		args                []string
	}{
		{"lock", "/locktest/del2", "holding /locktest/del2", false, []string{"lock", "/locktest/del2"}},
		{"elect", "/elections/deltest", "elected in /elections/deltest", false, []string{"elect", "deltest", "v"}},
		{"elect with a command", "/elections/deltest2", "elected in /elections/deltest2", false,
			[]string{"elect", "deltest2", "v", "--", "sh", "-c", script, "sh", filepath.Join(flags, "deltest2")}},
		{"elect, node created again", "/elections/recreated", "elected in /elections/recreated", true, []string{"elect", "recreated", "v"}},
		{"elect with a command, node created again", "/elections/recreated2", "elected in /elections/recreated2", true,
			[]string{"elect", "recreated2", "v", "--", "sh", "-c", script, "sh", filepath.Join(flags, "recreated2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			wait := invocation{}.start(ctx, &out, &errb, tt.args...)
			waitFor(t, 20*time.Second, "the grant", func() bool { return strings.Contains(errb.String(), tt.started) })
			latch(t, "rm", tt.node).ok(t)
			if tt.recreate {
				latch(t, "put", tt.node, "someone else's").ok(t)
			}
			if flag := tt.args[len(tt.args)-1]; strings.HasPrefix(flag, flags) {
				os.WriteFile(flag, nil, 0o644) // the command ends
			} else {
				cancel() // interrupted: release
			}
			if code := wait(); code != ExitLocked || !strings.Contains(errb.String(), "lost") {
				t.Errorf("exit %d, stderr %q; want %d and the loss reported", code, errb.String(), ExitLocked)
			}
		})
	}
}

// TestLockLostStopsCommand: the session expires while the command runs
// (every replica stopped); the command gets SIGTERM and latch exits 5.
func TestLockLostStopsCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	own := ownCell(t, ctx)
	var out, errb syncBuffer
	mark := filepath.Join(t.TempDir(), "term")
	script := `trap 'echo term > "$1"; exit 0' TERM; echo running; while :; do sleep 0.05; done`
	wait := invocation{endpoints: own.Endpoints()}.start(ctx, &out, &errb,
		"--session-timeout", "2s", "--grace", "1500ms", "lock", "--kill-after", "5s", "/lost", "--", "sh", "-c", script, "sh", mark)
	waitFor(t, 20*time.Second, "the command to run", func() bool { return strings.Contains(out.String(), "running") })
	for i := range own.N() {
		own.Stop(i)
	}
	if code := wait(); code != ExitLocked {
		t.Errorf("exit %d; want %d (stderr %q)", code, ExitLocked, errb.String())
	}
	if !strings.Contains(errb.String(), "lost while sh ran") {
		t.Errorf("stderr %q; want the loss reported", errb.String())
	}
	if b, err := os.ReadFile(mark); err != nil || string(b) != "term\n" {
		t.Errorf("the command did not get SIGTERM (%q, %v)", b, err)
	}
}
