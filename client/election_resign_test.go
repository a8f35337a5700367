package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// Resign reports a leadership that was gone before it: another session
// deleted the election node (and so its lock), and maybe created it
// again, while this candidate led. The caller must learn that it did not
// lead all along (latch elect exits 5), not take Resign's success for it.
func TestResignReportsLostLeadership(t *testing.T) {
	cell := startCell(t)
	a, b := dial(t, cell), dial(t, cell)
	ctx := bg(t, 30*time.Second)
	for _, tt := range []struct {
		name     string
		recreate bool
		want     []error // errors.Is must hold for each
	}{
		{"deleted", false, []error{client.ErrNotHolder, client.ErrNotFound}},
		{"deleted and created again", true, []error{client.ErrNotHolder}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := "/ls/resign/" + map[bool]string{false: "deleted", true: "recreated"}[tt.recreate]
			e := client.NewElection(a, path)
			if err := e.Campaign(ctx, "a"); err != nil {
				t.Fatalf("Campaign: %v", err)
			}
			if err := b.Delete(ctx, path); err != nil {
				t.Fatalf("Delete(%q) by another session: %v", path, err)
			}
			if tt.recreate {
				if _, err := b.Put(ctx, path, []byte("someone else's")); err != nil {
					t.Fatalf("Put(%q) by another session: %v", path, err)
				}
			}
			err := e.Resign(ctx)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Resign after the node was %s = %v; want an error matching %v", tt.name, err, w)
				}
			}
			if !e.Sequencer().IsZero() {
				t.Errorf("Sequencer after Resign = %s; want zero", e.Sequencer())
			}
			if err := e.Resign(ctx); err != nil {
				t.Errorf("second Resign = %v; want nil (not the leader)", err)
			}
		})
	}
}
