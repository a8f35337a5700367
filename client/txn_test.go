package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/latchd/latch/client"
)

// Txn end to end: all or nothing, the failing op named, fencing by a lock.
func TestTxn(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)

	if _, err := c.Put(ctx, "/cfg", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Txn(ctx,
		client.IfExists("/cfg", client.IfGeneration(1)),
		client.IfMissing("/jobs"),
		client.OpPut("/cfg", []byte("v2")),
		client.OpCreate("/jobs/q-", nil, client.CreateParents(), client.Sequential()),
		client.OpDelete("/cfg/none-such", client.Recursive()),
	)
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Txn deleting a missing node = %v, %v; want ErrNotFound", res, err)
	}
	var te *client.TxnError
	if !errors.As(err, &te) || te.Op != 4 {
		t.Fatalf("Txn error %v; want a *TxnError at op 4", err)
	}
	if n, err := c.Get(ctx, "/cfg"); err != nil || string(n.Data) != "v1" {
		t.Fatalf("after a failed Txn: /cfg = %q, %v; want v1 (nothing applied)", n.Data, err)
	}
	if _, err := c.Stat(ctx, "/jobs"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after a failed Txn /jobs exists: %v", err)
	}

	res, err = c.Txn(ctx,
		client.IfExists("/cfg", client.IfGeneration(1)),
		client.OpPut("/cfg", []byte("v2")),
		client.OpCreate("/jobs/q-", nil, client.CreateParents(), client.Sequential()),
	)
	if err != nil || len(res) != 3 {
		t.Fatalf("Txn = %+v, %v", res, err)
	}
	if res[1].Stat.ContentGen != 2 || !strings.HasPrefix(res[2].Path, "/jobs/q-") || res[2].Path == "/jobs/q-" {
		t.Fatalf("Txn results %+v", res)
	}

	// A write fenced by a lock.
	l, err := c.Lock(ctx, "/cfg")
	if err != nil {
		t.Fatal(err)
	}
	seq := l.Sequencer()
	if _, err := c.Txn(ctx, client.IfHeld(seq), client.OpPut("/cfg", []byte("fenced"))); err != nil {
		t.Fatalf("fenced write while holding the lock: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Txn(ctx, client.IfHeld(seq), client.OpPut("/cfg", []byte("late"))); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("fenced write after Unlock = %v; want ErrNotHolder", err)
	}

	// Bad arguments are refused before anything is sent.
	for _, tc := range []struct {
		name string
		ops  []client.TxnOp
		at   int
	}{
		{"bad path", []client.TxnOp{client.IfMissing("/ok"), client.OpPut("relative", nil)}, 1},
		{"bad option", []client.TxnOp{client.OpDelete("/a", client.Sequential())}, 0},
		{"zero op", []client.TxnOp{{}}, 0},
	} {
		_, err := c.Txn(ctx, tc.ops...)
		if !errors.As(err, &te) || te.Op != tc.at {
			t.Errorf("%s: %v; want a *TxnError at op %d", tc.name, err, tc.at)
		}
	}
	if _, err := c.Txn(ctx); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("empty Txn = %v; want ErrInvalid", err)
	}
}
