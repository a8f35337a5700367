package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/lockserver"
)

func TestRole(t *testing.T) {
	tests := []struct {
		r    ReplicaJSON
		want string
	}{
		{ReplicaJSON{}, "follower"},
		{ReplicaJSON{Leader: true}, "leader"},
		{ReplicaJSON{Rebuilding: true}, "rebuilding"},
	}
	for _, tt := range tests {
		if got := role(tt.r); got != tt.want {
			t.Errorf("role(%+v) = %q; want %q", tt.r, got, tt.want)
		}
	}
}

// TestStatusShowsRebuilding: a replica that starts on an empty data dir as
// a member of an existing cell rebuilds its lost state, and status and
// members say so. Alone it never finishes (nobody can fence it), so the
// test sees it rebuilding for as long as it looks.
func TestStatusShowsRebuilding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 1, DataDir: t.TempDir(), Tune: func(cfg *lockserver.Config) {
		cfg.Replica.RebuildEmpty = true
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	inv := invocation{ctx: ctx, endpoints: c.Endpoints()}

	r := inv.run(t, "status")
	r.failed(t, ExitUnavailable, "no replica knows a leader")
	if !strings.Contains(r.out, " rebuilding ") {
		t.Errorf("status stdout =\n%s\nwant the role rebuilding", r.out)
	}
	doc := decode[CellJSON](t, inv.run(t, "-o", "json", "status"))
	if len(doc.Replicas) != 1 || !doc.Replicas[0].Rebuilding || !doc.Replicas[0].Reachable {
		t.Errorf("status -o json replicas = %+v; want one reachable, rebuilding", doc.Replicas)
	}

	r = inv.run(t, "members").ok(t)
	if !strings.Contains(r.out, " rebuilding ") {
		t.Errorf("members stdout =\n%s\nwant the role rebuilding", r.out)
	}
	reps := decode[MembersJSON](t, inv.run(t, "-o", "json", "members").ok(t)).Members
	if len(reps) != 1 || !reps[0].Rebuilding {
		t.Errorf("members -o json = %+v; want one replica, rebuilding", reps)
	}
}
