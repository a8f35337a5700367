package lockserver

import (
	"context"
	"testing"
	"time"
)

// TestCoarseDeadline: the contexts end between d and 1.25·d after the call,
// one is shared by the calls of the same quarter of d, and a renewal cancels
// the context it replaces.
func TestCoarseDeadline(t *testing.T) {
	const d = time.Hour
	var c coarseDeadline
	before := time.Now()
	ctx := c.get(context.Background(), d)
	after := time.Now()
	dl, ok := ctx.Deadline()
	if !ok || dl.Before(before.Add(d)) || dl.After(after.Add(d+d/4)) {
		t.Fatalf("deadline %v (%v); want in [%v, %v]", dl, ok, before.Add(d), after.Add(d+d/4))
	}
	if again := c.get(context.Background(), d); again != ctx {
		t.Fatalf("second get within d/4 made a new context")
	}
	c.renew = time.Now() // as if d/4 had passed
	next := c.get(context.Background(), d)
	if next == ctx {
		t.Fatalf("get after d/4 reused the old context")
	}
	if ctx.Err() == nil {
		t.Fatalf("the replaced context was not canceled")
	}
	if next.Err() != nil {
		t.Fatalf("new context already ended: %v", next.Err())
	}
	c.cancel()
}
