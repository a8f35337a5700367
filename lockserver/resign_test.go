package lockserver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// resignWatch is a slog.Handler for one replica's log that reports the
// successor it names when it resigns ("resigning leadership"); it drops
// everything else.
type resignWatch struct {
	id  uint64
	out chan<- [2]uint64 // {replica, successor}
}

func (w resignWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w resignWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w resignWatch) WithGroup(string) slog.Handler            { return w }
func (w resignWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "resigning leadership" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "successor" {
			select {
			case w.out <- [2]uint64{w.id, a.Value.Uint64()}:
			default: // never block a replica's loop
			}
		}
		return true
	})
	return nil
}

// TestCloseResignsLeadership: a leader's Close first hands the leadership
// off (its replica names a successor and tells the others); then the
// remaining two have a leader, and what was acknowledged before is there.
func TestCloseResignsLeadership(t *testing.T) {
	resigned := make(chan [2]uint64, 16)
	c := testCell(t, func(cfg *Config) { cfg.Logger = slog.New(resignWatch{id: cfg.ID, out: resigned}) })
	cl := newClient(t, c)
	cl.open(20 * time.Second)
	cl.must(&wire.Put{Path: "/before", Content: []byte("kept")})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldID := c.Config(old).ID
	if err := c.Stop(old); err != nil {
		t.Fatalf("Stop(%d): %v", old, err)
	}
	select {
	case r := <-resigned:
		if r[0] != oldID || r[1] == 0 || r[1] == oldID {
			t.Fatalf("replica %d resigned naming successor %d; want replica %d naming another", r[0], r[1], oldID)
		}
		t.Logf("replica %d resigned on Close, naming %d", r[0], r[1])
	default:
		t.Fatalf("the leader's Close did not resign (replica %d logged no \"resigning leadership\")", oldID)
	}

	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("no leader after the old one closed: %v", err)
	}
	if lead == old {
		t.Fatalf("leader after Close = %d, the closed replica", lead)
	}
	g := cl.must(&wire.Get{Path: "/before"}).(*wire.GetReply)
	if string(g.Content) != "kept" {
		t.Fatalf("Get(/before) = %q after the hand-off; want %q", g.Content, "kept")
	}
}
