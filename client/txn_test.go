package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
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

// A Txn of conditions and gets reads several nodes as of one moment; a get
// may not share a Txn with a write.
func TestTxnRead(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)
	for _, p := range []string{"/r/a", "/r/b"} {
		if _, err := c.Put(ctx, p, []byte(p[3:]), client.CreateParents()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Txn(ctx, client.IfExists("/r/a", client.IfGeneration(1)), client.OpGet("/r/a"),
		client.IfMissing("/r/c"), client.OpGet("/r/b"))
	if err != nil || len(res) != 4 {
		t.Fatalf("read Txn = %+v, %v", res, err)
	}
	if string(res[1].Content) != "a" || res[1].Stat.ContentGen != 1 || string(res[3].Content) != "b" ||
		res[3].Path != "/r/b" || res[0].Stat.Size != 1 || res[0].Content != nil {
		t.Fatalf("read Txn results %+v", res)
	}

	var te *client.TxnError
	if _, err := c.Txn(ctx, client.OpGet("/r/a"), client.OpGet("/r/none")); !errors.Is(err, client.ErrNotFound) ||
		!errors.As(err, &te) || te.Op != 1 {
		t.Fatalf("read Txn of a missing node = %v; want ErrNotFound at op 1", err)
	}
	if _, err := c.Txn(ctx, client.OpGet("/r/a"), client.IfExists("/r/b", client.IfGeneration(7))); !errors.Is(err, client.ErrGenerationMismatch) ||
		!errors.As(err, &te) || te.Op != 1 {
		t.Fatalf("read Txn with a failing check = %v; want ErrGenerationMismatch at op 1", err)
	}

	// A get in a Txn that writes is refused, and nothing is written.
	_, err = c.Txn(ctx, client.OpPut("/r/c", []byte("c")), client.OpGet("/r/a"))
	if !errors.Is(err, client.ErrBadRequest) || !errors.As(err, &te) || te.Op != 1 || !strings.Contains(err.Error(), "a get in a Txn that writes") {
		t.Fatalf("Txn of a put and a get = %v; want ErrBadRequest at op 1", err)
	}
	if _, err := c.Stat(ctx, "/r/c"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after a refused Txn /r/c: %v; want ErrNotFound", err)
	}
	if _, err := c.Txn(ctx, client.OpGet("relative")); !errors.As(err, &te) || te.Op != 0 {
		t.Fatalf("OpGet of a bad path = %v; want a *TxnError at op 0", err)
	}

	// The gets' contents must fit in one reply (a frame): the cell's bound
	// on a reply's bytes is conservative, so a Txn it lets through up to
	// its last byte encodes within the frame limit, and one op more is
	// refused with ErrLimit at that op.
	const limit, perResult = wire.DefaultMaxFrame, 256 // lockserver's resultBytes
	paths := []string{"/r/big1", "/r/big2", "/r/big3", "/r/big4"}
	left := limit - 64
	for i, p := range paths {
		n := min(262144, left-perResult-len(p)-1)
		if i == len(paths)-1 {
			n = left - perResult - len(p) // the last byte the bound allows
		}
		left -= perResult + len(p) + n
		if _, err := c.Put(ctx, p, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	gets := []client.TxnOp{client.OpGet(paths[0]), client.OpGet(paths[1]), client.OpGet(paths[2]), client.OpGet(paths[3])}
	if res, err := c.Txn(ctx, gets...); err != nil || len(res[3].Content) == 0 {
		t.Fatalf("read Txn of a full frame = %v", err)
	}
	if _, err := c.Txn(ctx, append(gets, client.IfMissing("/x"))...); !errors.Is(err, client.ErrLimit) || !errors.As(err, &te) || te.Op != 4 {
		t.Fatalf("read Txn past a frame = %v; want ErrLimit at op 4", err)
	}
}
