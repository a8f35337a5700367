package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// fetchBackup takes a backup from the cell's leader with GET /backup on
// its admin HTTP address, as docs/operations.md says, and writes it to
// file. It asks again (up to 30 s) while the replica it asked does not say
// X-Latch-Leader: true (leadership moved meanwhile), and returns the
// backup's X-Latch-Instance.
func (c *procCell) fetchBackup(ctx context.Context, file string) uint64 {
	c.t.Helper()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		leader := c.leader(ctx)
		body, h, err := httpGet(ctx, "http://"+leader.admin+"/backup")
		if err != nil {
			last = err
			continue
		}
		if h.Get("X-Latch-Leader") != "true" {
			last = fmt.Errorf("latchd %d: X-Latch-Leader %q", leader.id, h.Get("X-Latch-Leader"))
			continue
		}
		instance, err1 := strconv.ParseUint(h.Get("X-Latch-Instance"), 10, 64)
		index, err2 := strconv.ParseUint(h.Get("X-Latch-Index"), 10, 64)
		if err := errors.Join(err1, err2); err != nil || instance == 0 || index == 0 || len(body) == 0 {
			c.t.Fatalf("GET /backup of latchd %d: instance %q, index %q, %d bytes (%v); want numbers above 0 and a body",
				leader.id, h.Get("X-Latch-Instance"), h.Get("X-Latch-Index"), len(body), err)
		}
		if err := os.WriteFile(file, body, 0o600); err != nil {
			c.t.Fatal(err)
		}
		return instance
	}
	c.t.Fatalf("no backup from the leader within 30 s: %v", last)
	return 0
}

// httpGet fetches url and returns the body and headers of a 200 answer.
func httpGet(ctx context.Context, url string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, resp.Header, nil
}

// TestBackupRestoreNewCell: a backup taken from the leader's /backup
// starts a new cell on other addresses (`latchd restore` into each
// replica's empty data dir, then latchd without --new-cell). The new cell
// holds the persistent nodes with their contents but none of the old
// cell's sessions: the old session's ephemeral node is gone, its
// sequencer does not check, and the next grant of its lock is numbered
// above anything the old cell handed out (lockserver.RestoreRenumber).
// `latchd restore` refuses a data dir of the running new cell.
func TestBackupRestoreNewCell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old := startProcCell(t, ctx, cellOptions{})
	c := old.dial(ctx)
	persistent := map[string]string{"/config/a": "one", "/config/b": "two", "/svc/db/primary": "10.0.0.7:5432"}
	for path, val := range persistent {
		if _, err := c.Put(ctx, path, []byte(val), client.CreateParents()); err != nil {
			t.Fatalf("Put(%q): %v", path, err)
		}
	}
	if _, err := c.Put(ctx, "/svc/db/me", []byte("here"), client.Ephemeral()); err != nil {
		t.Fatalf("Put ephemeral: %v", err)
	}
	// A short lock-delay: the restore releases the lock with it.
	l, err := c.Lock(ctx, "/config/lock", client.LockDelay(time.Second))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	seq, oldSession := l.Sequencer(), c.SessionID()

	file := filepath.Join(t.TempDir(), "cell.backup")
	instance := old.fetchBackup(ctx, file)

	cell := newProcCell(t, cellOptions{})
	for _, n := range cell.nodes {
		out, errOut, code := run(t, ctx, cell.latchd, nil, "", "restore", "--from", file, "--config", n.config, n.data)
		want := fmt.Sprintf("restored %s: instance %d, ", n.data, instance)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Fatalf("latchd restore into %s: exit %d, stdout %q, stderr %q; want exit 0 and %q...", n.data, code, out, errOut, want)
		}
	}
	for _, n := range cell.nodes {
		cell.start(n)
	}
	cell.leader(ctx)
	for _, n := range cell.nodes {
		if out := n.p.out.String(); strings.Contains(out, "no durable state: rebuilding") {
			t.Fatalf("latchd %d of the restored cell rebuilds:\n%s", n.id, tail(out, 2000))
		}
	}

	look, err := client.Dial(ctx, client.Config{Endpoints: cell.endpoints, NoSession: true})
	if err != nil {
		t.Fatalf("Dial NoSession: %v", err)
	}
	defer look.Close()
	for path, want := range persistent {
		n, err := look.Get(ctx, path)
		if err != nil || string(n.Data) != want {
			t.Errorf("restored Get(%q) = %q, %v; want %q", path, n.Data, err, want)
		}
	}
	if n, err := look.Get(ctx, "/svc/db/me"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the old session's ephemeral node after the restore: %q, %v; want ErrNotFound", n.Data, err)
	}
	if ss, err := look.Sessions(ctx); err != nil || len(ss) != 0 {
		t.Errorf("Sessions() after the restore = %+v, %v; want none", ss, err)
	}
	if ok, err := look.CheckSequencer(ctx, seq); err != nil || ok {
		t.Errorf("CheckSequencer(%v) of the old cell = %v, %v; want false", seq, ok, err)
	}

	nc := cell.dial(ctx)
	if sid := nc.SessionID(); sid <= oldSession+lockserver.RestoreRenumber {
		t.Errorf("a new session's id %d; want above %d (the old session's %d + RestoreRenumber)", sid, oldSession+lockserver.RestoreRenumber, oldSession)
	}
	// Lock waits out the old holder's lock-delay; the bound is a hang guard.
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	defer lcancel()
	nl, err := nc.Lock(lctx, "/config/lock")
	if err != nil {
		t.Fatalf("Lock of the restored cell: %v", err)
	}
	if got := nl.Sequencer().LockGen; got <= seq.LockGen+lockserver.RestoreRenumber {
		t.Errorf("lock generation %d after the restore; want above %d (the old %d + RestoreRenumber)", got, seq.LockGen+lockserver.RestoreRenumber, seq.LockGen)
	}
	if _, err := nc.Put(ctx, "/config/c", []byte("three")); err != nil {
		t.Errorf("Put to the restored cell: %v", err)
	}

	// Restore refuses the data dirs of the new cell and writes nothing: a
	// running replica's (its store is locked: in use), and a stopped
	// one's, which holds state.
	n := cell.nodes[1]
	restore := func() (string, string, int) {
		return run(t, ctx, cell.latchd, nil, "", "restore", "--from", file, "--config", n.config, n.data)
	}
	if out, errOut, code := restore(); code != 1 || !strings.Contains(errOut, "in use") {
		t.Errorf("latchd restore into the running latchd %d's data dir: exit %d, stdout %q, stderr %q; want exit 1 and 'in use'", n.id, code, out, errOut)
	}
	if code := n.p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("latchd %d exit %d after SIGTERM; want 0", n.id, code)
	}
	if out, errOut, code := restore(); code != 1 || !strings.Contains(errOut, "holds state") {
		t.Errorf("latchd restore into the stopped latchd %d's data dir: exit %d, stdout %q, stderr %q; want exit 1 and 'holds state'", n.id, code, out, errOut)
	}
	cell.start(n)
	cell.caughtUp(ctx, n)
	if got, err := nc.Get(ctx, "/config/c"); err != nil || string(got.Data) != "three" {
		t.Errorf("Get(/config/c) after the refused restores = %q, %v; want \"three\"", got.Data, err)
	}
	if out := n.p.out.String(); strings.Contains(out, "no durable state: rebuilding") {
		t.Errorf("latchd %d rebuilds after the refused restore:\n%s", n.id, tail(out, 2000))
	}
}
