package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// TestSessionsShowsClientAndWatches: `latch sessions` (table and -o json)
// shows the name each client gave and the watches it holds, both for a
// library client (Config.Name) and for the CLI's own session (--name).
func TestSessionsShowsClientAndWatches(t *testing.T) {
	fresh(t, "/sesstest")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := client.DefaultConfig(cell.Endpoints()...)
	cfg.Name = "sesstest-watcher"
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"/sesstest", "/sesstest/a"} {
		if _, err := c.Watch(ctx, p, client.Recursive()); err != nil {
			t.Fatalf("Watch(%s): %v", p, err)
		}
	}
	var out, errb syncBuffer
	wait := invocation{}.start(ctx, &out, &errb, "--name", "sesstest-locker", "-o", "json", "lock", "/sesstest/held")
	waitFor(t, 20*time.Second, "the lock to be held", func() bool { return strings.Contains(errb.String(), "holding /sesstest/held") })
	grant := decode[GrantJSON](t, result{out: out.String()})

	want := map[uint64]SessionJSON{
		c.SessionID(): {Client: "sesstest-watcher", Watches: 2},
		grant.Session: {Client: "sesstest-locker", Locks: 1},
	}
	found := 0
	for _, s := range decode[[]SessionJSON](t, latch(t, "-o", "json", "sessions").ok(t)) {
		w, ok := want[s.ID]
		if !ok {
			continue
		}
		found++
		if s.Client != w.Client || s.Watches != w.Watches || s.Locks != w.Locks {
			t.Errorf("sessions -o json: session %d = %+v; want client %q, %d watches, %d locks", s.ID, s, w.Client, w.Watches, w.Locks)
		}
	}
	if found != len(want) {
		t.Errorf("sessions -o json lists %d of the test's %d sessions", found, len(want))
	}

	// The table: ID TIMEOUT LOCKS EPHEMERALS WATCHES AGE PRINCIPAL CLIENT.
	table := latch(t, "sessions").ok(t).out
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	if h := rows["ID"]; len(h) != 8 || h[4] != "WATCHES" || h[6] != "PRINCIPAL" || h[7] != "CLIENT" {
		t.Fatalf("sessions header %q; want ID ... WATCHES AGE PRINCIPAL CLIENT", h)
	}
	for id, w := range want {
		r := rows[fmt.Sprint(id)]
		if len(r) != 8 || r[2] != fmt.Sprint(w.Locks) || r[4] != fmt.Sprint(w.Watches) || r[6] != "-" || r[7] != w.Client {
			t.Errorf("sessions row of %d = %q; want %d locks, %d watches, client %s\n%s", id, r, w.Locks, w.Watches, w.Client, table)
		}
	}

	cancel() // Ctrl-C: the locker releases and exits 0.
	if code := wait(); code != 0 {
		t.Errorf("lock exit %d after interrupt; stderr %q", code, errb.String())
	}
}

// A --name over the cell's limit is refused with the reason.
func TestNameTooLong(t *testing.T) {
	latch(t, "--name", strings.Repeat("n", 257), "put", "/sesstest/x", "v").
		failed(t, ExitRejected, "client name of 257 bytes; the limit is 256")
}
