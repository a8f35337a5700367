package lockserver

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
	"github.com/latchd/latch/replica"
)

// A backup of a running cell starts a new cell with the same namespace,
// which then takes writes of its own; a damaged file is refused.
func TestBackupAndRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := testCell(t)
	cl := newClient(t, c)
	cl.must(&wire.Put{Path: "/config/a", Content: []byte("one"), Parents: true})
	cl.must(&wire.Put{Path: "/config/b", Content: []byte("two")})
	// A session of the old cell with an ephemeral node and a lock.
	cl.open(time.Minute)
	cl.must(&wire.Put{Path: "/eph", Ephemeral: true})
	cl.must(&wire.Put{Path: "/config/lock"})
	seq := cl.must(&wire.Acquire{Path: "/config/lock", Mode: wire.Exclusive}).(*wire.AcquireReply).Sequencer
	var buf bytes.Buffer
	meta, err := c.Server(leaderIndex(t, c)).Backup(ctx, &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if meta.Instance == 0 || meta.Size == 0 {
		t.Fatalf("Backup meta %+v", meta)
	}
	for name, in := range map[string][]byte{
		"garbage":   []byte("not a backup at all, just some bytes"),
		"truncated": buf.Bytes()[:buf.Len()/2],
	} {
		if _, err := Restore(t.TempDir(), bytes.NewReader(in), DefaultConfig().Namespace); !errors.Is(err, replica.ErrBadBackup) {
			t.Errorf("Restore(%s) = %v; want ErrBadBackup", name, err)
		}
	}
	restored := testCell(t, func(cfg *Config) {
		if _, err := Restore(cfg.DataDir, bytes.NewReader(buf.Bytes()), cfg.Namespace); err != nil {
			t.Fatalf("Restore(%s): %v", cfg.DataDir, err)
		}
	})
	cl2 := newClient(t, restored)
	for path, want := range map[string]string{"/config/a": "one", "/config/b": "two"} {
		if g := cl2.must(&wire.Get{Path: path}).(*wire.GetReply); string(g.Content) != want {
			t.Errorf("restored %s = %q; want %q", path, g.Content, want)
		}
	}
	// The old cell's session is gone, with its ephemeral node and its lock;
	// its sequencer matches nothing, and the next grant is numbered above
	// everything the old cell could have handed out.
	if m, err := cl2.do(&wire.Get{Path: "/eph"}); codeOf(err) != wire.NotFound {
		t.Errorf("the old session's ephemeral node after the restore: %v, %v; want NotFound", m, err)
	}
	if ss := cl2.must(&wire.ListSessions{}).(*wire.SessionsReply); len(ss.Sessions) != 0 {
		t.Errorf("sessions after the restore: %+v; want none", ss.Sessions)
	}
	if v := cl2.must(&wire.CheckSequencer{Sequencer: seq}).(*wire.CheckReply); v.Valid {
		t.Errorf("the old cell's sequencer %+v is valid after the restore", seq)
	}
	cl2.open(time.Minute)
	waitFor(t, 10*time.Second, "the old lock's lock-delay to end", func() bool {
		m, err := cl2.do(&wire.Acquire{Path: "/config/lock", Mode: wire.Exclusive})
		if err != nil {
			return false
		}
		if got := m.(*wire.AcquireReply).Sequencer; got.LockGen <= seq.LockGen+RestoreRenumber {
			t.Fatalf("lock generation %d after the restore; want above %d", got.LockGen, seq.LockGen+RestoreRenumber)
		}
		return true
	})
	cl2.must(&wire.Put{Path: "/config/c", Content: []byte("three")})
	if g := cl2.must(&wire.Get{Path: "/config/c"}).(*wire.GetReply); string(g.Content) != "three" {
		t.Errorf("a write after the restore reads %q", g.Content)
	}
}
