package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// goleveldb's memory-pool drainer lingers up to a second after
	// DB.Close (it waits for a pooled buffer before exiting).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}

func TestProposeMemNetwork(t *testing.T) {
	c := newCell(t, cellOpts{})
	lead := c.leader(1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		cmd := fmt.Appendf(nil, "cmd-%d", i)
		res, err := lead.Propose(ctx, 1, cmd)
		if err != nil {
			t.Fatalf("Propose(%q) = %v", cmd, err)
		}
		if want := fmt.Sprintf("%d:%s", i+1, cmd); string(res) != want {
			t.Fatalf("Propose(%q) = %q; want %q", cmd, res, want)
		}
	}
	c.waitApplied(1, 20, 10*time.Second)
	c.checkSame(1)
	// A follower refuses and names the leader.
	for id, r := range c.reps {
		if r == lead {
			continue
		}
		_, err := r.Propose(ctx, 1, []byte("x"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) {
			t.Fatalf("replica %d: Propose = %v; want *NotLeaderError", id, err)
		}
		if nl.Leader != lead.ID() || nl.Addr != c.cfgs[lead.ID()].Members[lead.ID()] {
			t.Fatalf("replica %d: NotLeaderError = %+v; want leader %d", id, nl, lead.ID())
		}
	}
}

func TestConcurrentProposalsBatched(t *testing.T) {
	c := newCell(t, cellOpts{})
	lead := c.leader(1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const workers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				cmd := fmt.Appendf(nil, "w%d-%d", w, i)
				res, err := lead.Propose(ctx, 1, cmd)
				if err != nil {
					errs <- fmt.Errorf("Propose(%q) = %v", cmd, err)
					return
				}
				if len(res) == 0 {
					errs <- fmt.Errorf("Propose(%q) returned an empty result", cmd)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.waitApplied(1, workers*each, 10*time.Second)
	c.checkSame(1)
	st, err := lead.Status(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commands in %d batches", st.Stats.Proposals, st.Stats.Batches)
}
