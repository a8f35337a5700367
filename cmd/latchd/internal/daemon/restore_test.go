package daemon

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/latchd/internal/admin"
	"github.com/latchd/latch/lockserver"
)

// backupFile runs a cell, writes /kept to it, and returns the path of a
// backup taken from its leader.
func backupFile(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cell, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 3, DataDir: t.TempDir(), Tune: lockserver.FastTimings})
	if err != nil {
		t.Fatalf("StartCell: %v", err)
	}
	defer cell.Close()
	c, err := client.Dial(ctx, client.Config{Endpoints: cell.Endpoints()})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/kept", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	leader, err := cell.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	var buf bytes.Buffer
	if _, err := cell.Server(leader).Backup(ctx, &buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	file := filepath.Join(t.TempDir(), "cell.backup")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestRestoreCommand(t *testing.T) {
	backup := backupFile(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.backup")
	os.WriteFile(garbage, []byte("not a backup at all"), 0o644)
	badConfig := filepath.Join(dir, "bad.json")
	os.WriteFile(badConfig, []byte(`{"lease": "soon"}`), 0o644)
	used := filepath.Join(dir, "used")
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"restore", "--from", backup, used}, &out, io.Discard); code != ExitOK {
		t.Fatalf("latchd restore into %s: exit code %d", used, code)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string // part of the one-line error
	}{
		{"no --from", []string{dir + "/a"}, ExitConfig, "--from FILE is required"},
		{"no data dir", []string{"--from", backup}, ExitConfig, "name at least one DATADIR"},
		{"bad config", []string{"--from", backup, "--config", badConfig, dir + "/a"}, ExitConfig, "lease: bad duration"},
		{"missing file", []string{"--from", filepath.Join(dir, "nope"), dir + "/a"}, ExitError, "no such file"},
		{"not a backup", []string{"--from", garbage, dir + "/a"}, ExitError, "not a valid backup"},
		{"dir holds state", []string{"--from", backup, dir + "/a", used}, ExitError, used + ": replica: the data dir already holds state"},
		{"dir named twice", []string{"--from", backup, dir + "/a", dir + "/a/"}, ExitError, "named twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append([]string{"restore"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("latchd restore %q: exit code %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.want)
			}
			// Nothing was restored anywhere: the dirs are checked first.
			if has, err := lockserver.HasState(dir + "/a"); has || err != nil {
				t.Errorf("HasState(%s/a) = %v, %v after a failed restore; want false", dir, has, err)
			}
		})
	}

	t.Run("success", func(t *testing.T) {
		dirs := []string{filepath.Join(dir, "r1"), filepath.Join(dir, "r2")}
		var out, errb bytes.Buffer
		if code := Main(context.Background(), append([]string{"restore", "--from", backup}, dirs...), &out, &errb); code != ExitOK {
			t.Fatalf("latchd restore: exit code %d, stderr %q", code, errb.String())
		}
		for _, d := range dirs {
			if !regexp.MustCompile(`(?m)^restored ` + regexp.QuoteMeta(d) + `: instance [1-9]\d*, index [1-9]\d*, [1-9]\d* bytes$`).MatchString(out.String()) {
				t.Errorf("output lacks the line for %s:\n%s", d, out.String())
			}
			if has, err := lockserver.HasState(d); !has || err != nil {
				t.Errorf("HasState(%s) = %v, %v after restore; want true", d, has, err)
			}
		}
	})
}

// TestDevRestore takes a backup of a `latchd dev` cell over its admin HTTP
// and starts another dev cell from it, which serves what the first held.
func TestDevRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dev := startDev(t)
	out := dev.out.String()
	endpoints := strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(out)[1], ",")
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Put(ctx, "/restored/hello", []byte("world"), client.CreateParents()); err != nil {
		t.Fatalf("Put: %v", err)
	}
	c.Close()

	// The backup, from the leader.
	var st admin.StatusDoc
	getJSON(t, "http://"+regexp.MustCompile(`admin http://(\S+)`).FindStringSubmatch(out)[1]+"/status", &st)
	var leaderHTTP string
	for _, m := range st.Members {
		if m.ID == st.Leader {
			leaderHTTP = m.HTTP
		}
	}
	if leaderHTTP == "" {
		t.Fatalf("/status names no leader's admin address: %+v", st)
	}
	resp, err := http.Get("http://" + leaderHTTP + "/backup")
	if err != nil {
		t.Fatalf("GET /backup: %v", err)
	}
	backup, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.HasPrefix(backup, []byte("LTBK")) {
		t.Fatalf("GET /backup = %s, %d bytes starting %q, %v; want 200 and a backup", resp.Status, len(backup), backup[:min(len(backup), 8)], err)
	}
	if resp.Header.Get("X-Latch-Leader") != "true" || resp.Header.Get("X-Latch-Instance") == "" {
		t.Errorf("GET /backup from the leader: headers %v", resp.Header)
	}
	dev.stop()
	file := filepath.Join(t.TempDir(), "cell.backup")
	if err := os.WriteFile(file, backup, 0o644); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	dev = startDev(t, "--restore", file, "--data-dir", dataDir, "-v")
	if n := strings.Count(dev.out.String(), "restored "+dataDir+"/r"); n != 3 {
		t.Errorf("output has %d restored lines; want 3:\n%s", n, dev.out.String())
	}
	endpoints = strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(dev.out.String())[1], ",")
	c, err = client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("Dial the restored cell: %v", err)
	}
	if n, err := c.Get(ctx, "/restored/hello"); err != nil || string(n.Data) != "world" {
		t.Errorf("Get(/restored/hello) in the restored cell = %q, %v; want world", n.Data, err)
	}
	c.Close()
	dev.stop()
	if strings.Contains(dev.errb.String(), "rebuilding") {
		t.Errorf("a replica of the restored cell rebuilds:\n%s", dev.errb.String())
	}

	// Its data dirs now hold state: dev --restore refuses them, before it
	// starts anything (ended is already done, so a dev that went on to
	// start the cell would stop at once instead of running on).
	ended, end := context.WithCancel(context.Background())
	end()
	var errb bytes.Buffer
	code := Main(ended, []string{"dev", "--base-port", "0", "--restore", file, "--data-dir", dataDir}, io.Discard, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "already holds state") {
		t.Errorf("latchd dev --restore into a cell's data dir: exit code %d, stderr %q; want %d and already holds state", code, errb.String(), ExitError)
	}
}
