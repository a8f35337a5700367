package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchd/latch/client"
)

// observeUntil reads leader notices until one has the value want ("" = no
// leader).
func observeUntil(t *testing.T, obs <-chan client.LeaderInfo, want string) client.LeaderInfo {
	t.Helper()
	for {
		info, ok := recv(t, obs, 10*time.Second, "leader notice "+want)
		if !ok {
			t.Fatalf("Observe channel closed; want leader %q", want)
		}
		if info.Value == want {
			return info
		}
	}
}

func TestElection(t *testing.T) {
	cell := startCell(t)
	a, b, o := dial(t, cell), dial(t, cell, shortLease), dial(t, cell) // b's session ends below
	ctx := bg(t, 30*time.Second)
	const path = "/ls/app/election"

	watcher := client.NewElection(o, path)
	if _, err := watcher.Leader(ctx); !errors.Is(err, client.ErrNoLeader) {
		t.Fatalf("Leader before any campaign = %v; want ErrNoLeader", err)
	}
	obs, err := watcher.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info := observeUntil(t, obs, ""); !info.Sequencer.IsZero() {
		t.Fatalf("first notice %+v; want no leader", info)
	}

	ea := client.NewElection(a, path)
	select {
	case <-ea.Lost():
	default:
		t.Fatalf("Lost() before Campaign is open; want closed")
	}
	if err := ea.Campaign(ctx, "a:1"); err != nil {
		t.Fatalf("Campaign a: %v", err)
	}
	info, err := watcher.Leader(ctx)
	if err != nil || info.Value != "a:1" || info.Sequencer != ea.Sequencer() {
		t.Fatalf("Leader = %+v, %v; want a:1 at %s", info, err, ea.Sequencer())
	}
	observeUntil(t, obs, "a:1")
	if err := ea.Campaign(ctx, "a:again"); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("second Campaign while leader = %v; want ErrInvalid", err)
	}

	eb := client.NewElection(b, path)
	won := make(chan error, 1)
	go func() { won <- eb.Campaign(ctx, "b:1") }()
	waitFor(t, 5*time.Second, "b to queue", func() bool { return waiters(t, o, path) == 1 })
	select {
	case err := <-won:
		t.Fatalf("b's Campaign returned (%v) while a leads", err)
	default:
	}

	if err := ea.Proclaim(ctx, "a:2"); err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	observeUntil(t, obs, "a:2")
	if err := eb.Proclaim(ctx, "b:no"); !errors.Is(err, client.ErrNotHolder) {
		t.Fatalf("Proclaim by a non-leader = %v; want ErrNotHolder", err)
	}

	if err := ea.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if err, _ := recv(t, won, 10*time.Second, "b's win"); err != nil {
		t.Fatalf("b's Campaign: %v", err)
	}
	observeUntil(t, obs, "b:1")
	if !ea.Sequencer().IsZero() {
		t.Fatalf("a's Sequencer after Resign = %s; want zero", ea.Sequencer())
	}
	if err := ea.Resign(ctx); err != nil {
		t.Fatalf("Resign when not leader: %v; want nil", err)
	}

	// Leadership ends with the session: b stops its KeepAlives.
	bSeq := eb.Sequencer()
	client.PauseKeepAlives(b, true)
	recv(t, eb.Lost(), 15*time.Second, "b's leadership lost")
	observeUntil(t, obs, "")
	if ok, err := o.CheckSequencer(ctx, bSeq); err != nil || ok {
		t.Fatalf("CheckSequencer(b's leadership) after its session ended = %v, %v; want false", ok, err)
	}
	// a campaigns again and wins (after the cell expired b and the
	// lock-delay passed).
	ea2 := client.NewElection(a, path)
	if err := ea2.Campaign(ctx, "a:3"); err != nil {
		t.Fatalf("Campaign after b's loss: %v", err)
	}
	if got := observeUntil(t, obs, "a:3"); got.Sequencer.LockGen <= bSeq.LockGen {
		t.Fatalf("new leadership %s; want a greater generation than %s", got.Sequencer, bSeq)
	}
}

// A Campaign ends with the session: it does not keep waiting once the
// session has expired.
func TestCampaignEndsWithSession(t *testing.T) {
	cell := startCell(t)
	a, b := dial(t, cell), dial(t, cell, shortLease)
	ctx := bg(t, 20*time.Second)
	if err := client.NewElection(a, "/ls/e").Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- client.NewElection(b, "/ls/e").Campaign(ctx, "b") }()
	waitFor(t, 5*time.Second, "b to queue", func() bool { return waiters(t, a, "/ls/e") == 1 })
	client.PauseKeepAlives(b, true)
	if err, _ := recv(t, done, 15*time.Second, "Campaign to end"); !errors.Is(err, client.ErrSessionExpired) {
		t.Fatalf("Campaign of an expired session = %v; want ErrSessionExpired", err)
	}
}

func TestRegistry(t *testing.T) {
	cell := startCell(t)
	a, b, o := dial(t, cell), dial(t, cell), dial(t, cell)
	ctx := bg(t)
	const svc = "/svc/billing"
	if insts, err := client.Resolve(ctx, o, svc); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Resolve of an unknown service = %v, %v; want ErrNotFound", insts, err)
	}
	ra, err := client.Register(ctx, a, svc, "10.0.0.5:8080")
	if err != nil {
		t.Fatal(err)
	}
	rb, err := client.Register(ctx, b, svc, "10.0.0.6:8080")
	if err != nil {
		t.Fatal(err)
	}
	if ra.Path() == rb.Path() || ra.Addr() != "10.0.0.5:8080" {
		t.Fatalf("registrations %s and %s", ra.Path(), rb.Path())
	}
	// A persistent node under the service is not an instance.
	if _, err := o.Put(ctx, svc+"/config", []byte("not an instance")); err != nil {
		t.Fatal(err)
	}
	insts, err := client.Resolve(ctx, o, svc)
	if err != nil || len(insts) != 2 ||
		insts[0] != (client.Instance{Path: ra.Path(), Addr: "10.0.0.5:8080", Session: a.SessionID()}) ||
		insts[1] != (client.Instance{Path: rb.Path(), Addr: "10.0.0.6:8080", Session: b.SessionID()}) {
		t.Fatalf("Resolve = %+v, %v; want a's then b's instance", insts, err)
	}
	if err := ra.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ra.Deregister(ctx); err != nil {
		t.Fatalf("second Deregister: %v; want nil", err)
	}
	if insts, err := client.Resolve(ctx, o, svc, client.Stale()); err != nil || len(insts) > 2 {
		t.Fatalf("stale Resolve = %+v, %v", insts, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	recv(t, rb.Lost(), time.Second, "b's registration Lost")
	if insts, err := client.Resolve(ctx, o, svc); err != nil || len(insts) != 0 {
		t.Fatalf("Resolve after both left = %+v, %v; want none", insts, err)
	}
	if _, err := client.Register(ctx, a, svc, ""); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Register of an empty address = %v; want ErrInvalid", err)
	}
	if _, err := client.Register(ctx, a, "svc", "x:1"); !errors.Is(err, client.ErrBadPath) {
		t.Fatalf("Register under a relative path = %v; want ErrBadPath", err)
	}
}
