package client_test

import (
	"testing"
)

func TestSmoke(t *testing.T) {
	cell := startCell(t)
	c := dial(t, cell)
	ctx := bg(t)
	st, err := c.Put(ctx, "/a", []byte("x"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	n, err := c.Get(ctx, "/a")
	if err != nil || string(n.Data) != "x" || n.Stat.ContentGen != st.ContentGen {
		t.Fatalf("Get = %+v, %v", n, err)
	}
	l, err := c.Lock(ctx, "/ls/app/leader")
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	t.Logf("seq %s", l.Sequencer())
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkNoClientGoroutines(t)
}
