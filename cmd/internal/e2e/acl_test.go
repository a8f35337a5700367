package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/testutil"
	"github.com/latchd/latch/internal/wire"
)

// TestACLChangeAcrossFailover is fault scenario S25: a right is revoked
// and the leader is killed with SIGKILL right after the change is
// acknowledged. Writes are checked when they are applied, against the ACL
// files at that point of the log, so no write of the revoked principal
// that comes after the revocation may be applied, at the new leader
// either: not one bob had in flight when the leader died, nor one resent
// with the same request id, while a write of bob's applied before the
// revocation and resent afterwards gets its stored outcome and is not
// applied again. bob's reads are refused, and his watches (one on /app,
// one on the whole tree) show nothing of /app from the revocation on;
// alice, still listed, reads and writes; every replica ends with the same
// /app. Then the reverse: bob is listed again, the leader is killed at
// once, and bob writes at the new leader.
func TestACLChangeAcrossFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startProcCell(t, ctx, cellOptions{tls: true})
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The operator (a superuser) locks /acl down to the operators and lets
	// ops (alice and bob) read and write /app.
	op := c.dial(ctx)
	operators := []string{"operators"}
	ops := []string{"ops"}
	_, err := op.Put(ctx, "/acl/operators", []byte("operator\n"), client.CreateParents())
	must("Put /acl/operators", err)
	for _, p := range []string{"/acl/operators", "/acl"} {
		_, err := op.SetACL(ctx, p, client.ACL{Read: operators, Write: operators, Admin: operators})
		must("SetACL "+p, err)
	}
	_, err = op.Put(ctx, "/acl/ops", []byte("alice\nbob\n"))
	must("Put /acl/ops", err)
	_, err = op.Put(ctx, "/app", []byte("v0"))
	must("Put /app", err)
	_, err = op.SetACL(ctx, "/app", client.ACL{Read: ops, Write: ops, Admin: operators})
	must("SetACL /app", err)

	alice, bob := c.dialAs(ctx, "alice"), c.dialAs(ctx, "bob")
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	appEvents, err := bob.Watch(wctx, "/app")
	must("bob's Watch /app", err)
	allEvents, err := bob.Watch(wctx, "/", client.Recursive())
	must("bob's Watch / (recursive)", err)

	_, err = bob.Put(ctx, "/app", []byte("bob-1"))
	must("bob's Put before the revocation", err)
	// A write of bob's with a request id of the test's choosing, applied
	// before the revocation: resent after it, it must get its stored
	// outcome and not be applied again.
	old := c.leader(ctx)
	early := &wire.Put{Header: wire.Header{Session: bob.SessionID(), Request: 1 << 40}, Path: "/app", Content: []byte("bob-early")}
	if err := c.rawCall(ctx, old, "bob", early); err != nil {
		t.Fatalf("bob's Put with request id %d before the revocation: %v", early.Request, err)
	}
	before, err := alice.Put(ctx, "/app", []byte("alice-1"))
	must("alice's Put before the revocation", err)

	rc := c.rawDial(ctx, old.client, "bob")
	rev, err := op.Put(ctx, "/acl/ops", []byte("alice\n"))
	must("revoking bob (Put /acl/ops)", err)
	revoked := rev.ModifiedIndex
	// bob's writes sent after the revocation, as the leader dies: one
	// through the client, which resends it with its request id until the
	// cell answers, one on a connection to the old leader alone.
	late := &wire.Put{Header: wire.Header{Session: bob.SessionID(), Request: 1<<40 + 1}, Path: "/app", Content: []byte("bob-late")}
	lateRaw, lateClient := make(chan error, 1), make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := rc.Call(cctx, late)
		lateRaw <- err
	}()
	go func() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := bob.Put(cctx, "/app", []byte("bob-late-client"))
		lateClient <- err
	}()
	old.p.stop(t, syscall.SIGKILL, 10*time.Second)
	t.Logf("bob revoked at index %d; latchd %d (the leader) killed", revoked, old.id)
	lead := c.leaderOtherThan(ctx, old)

	if err := <-lateRaw; err == nil || isWireErr(err) && !isCode(err, wire.Permission, wire.Unavailable, wire.NotLeader) {
		t.Errorf("bob's Put to the dying leader after the revocation: %v; want refused or no answer", err)
	}
	if err := <-lateClient; !errors.Is(err, client.ErrPermission) {
		t.Errorf("bob's Put in flight across the failover: %v; want %v", err, client.ErrPermission)
	}
	if err := c.rawCall(ctx, lead, "bob", late); !isCode(err, wire.Permission) {
		t.Errorf("bob's Put resent with request id %d at the new leader: %v; want Permission", late.Request, err)
	}
	if err := c.rawCall(ctx, lead, "bob", early); err != nil {
		t.Errorf("bob's Put applied before the revocation, resent with request id %d: %v; want its stored success", early.Request, err)
	}
	if _, err := bob.Get(ctx, "/app"); !errors.Is(err, client.ErrPermission) {
		t.Errorf("bob's Get after the failover: %v; want %v", err, client.ErrPermission)
	}
	if _, err := bob.Put(ctx, "/app", []byte("bob-2")); !errors.Is(err, client.ErrPermission) {
		t.Errorf("bob's Put after the failover: %v; want %v", err, client.ErrPermission)
	}
	bobEnv := c.envAs("bob")
	for _, args := range [][]string{{"get", "/app"}, {"put", "/app", "bob-cli"}} {
		if _, errs, code := run(t, ctx, c.latch, bobEnv, "", args...); code != 7 {
			t.Errorf("latch %v as bob: exit %d (%s); want 7", args, code, errs)
		}
	}
	_, err = alice.Put(ctx, "/app", []byte("alice-2"))
	must("alice's Put after the failover", err)
	if n, err := alice.Get(ctx, "/app"); err != nil || string(n.Data) != "alice-2" {
		t.Errorf("alice's Get after the failover = %q, %v; want alice-2", n.Data, err)
	}

	// bob's watches: once his watch of / is registered again at the new
	// leader (its failover event), alice writes /app again and the
	// operator creates /pub (open to all); the watch shows /pub created
	// and nothing of /app since the revocation. The watch of /app was not
	// registered again (bob may not read /app).
	shown := func(ev client.Event) bool { return ev.Path == "/app" && ev.Index > revoked }
	var got []string
	next := func(what string, until func(client.Event) bool) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case ev := <-allEvents:
				got = append(got, ev.String())
				if shown(ev) {
					t.Errorf("bob's watch of / shows %v after the revocation (index %d)", ev, revoked)
				}
				if until(ev) {
					return
				}
			case <-timeout:
				t.Fatalf("bob's watch of / showed %q; no %s within 30 s", got, what)
			}
		}
	}
	next("failover event", func(ev client.Event) bool { return ev.Type == client.EventFailover })
	_, err = alice.Put(ctx, "/app", []byte("alice-3"))
	must("alice's Put after bob's watch was registered again", err)
	_, err = op.Put(ctx, "/pub", []byte("tick"))
	must("Put /pub", err)
	next("/pub created", func(ev client.Event) bool { return ev.Type == client.EventNodeCreated && ev.Path == "/pub" })
	t.Logf("bob's watch of /: %q", got)
	for drain := time.After(time.Second); ; {
		select {
		case ev := <-appEvents:
			if shown(ev) {
				t.Errorf("bob's watch of /app shows %v after the revocation (index %d)", ev, revoked)
			}
			continue
		case <-drain:
		}
		break
	}

	// No write of bob's applied since the revocation: alice's two are the
	// only ones (two content generations), on every replica.
	c.start(old)
	c.caughtUp(ctx, old)
	want := before.ContentGen + 2
	for _, n := range c.nodes {
		one := c.dial(ctx, n.client)
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("latchd %d to hold alice-3", n.id), func() bool {
			got, err := one.Get(ctx, "/app", client.Stale())
			if err == nil && (got.Stat.ContentGen > want || got.Stat.ContentGen == want && string(got.Data) != "alice-3") {
				t.Fatalf("latchd %d: /app = %q at content generation %d; want alice-3 at %d (alice's two writes since the revocation)",
					n.id, got.Data, got.Stat.ContentGen, want)
			}
			return err == nil && got.Stat.ContentGen == want
		})
		one.Close()
	}

	// The reverse: bob is listed again and the leader killed at once; bob
	// writes at the new leader.
	old = c.leader(ctx)
	_, err = op.Put(ctx, "/acl/ops", []byte("alice\nbob\n"))
	must("listing bob again", err)
	old.p.stop(t, syscall.SIGKILL, 10*time.Second)
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	_, err = bob.Put(pctx, "/app", []byte("bob-3"))
	pcancel()
	must("bob's Put across the failover after the grant", err)
	c.leaderOtherThan(ctx, old)
	if n, err := bob.Get(ctx, "/app"); err != nil || string(n.Data) != "bob-3" {
		t.Errorf("bob's Get at the new leader = %q, %v; want bob-3", n.Data, err)
	}
	if out, errs, code := run(t, ctx, c.latch, bobEnv, "", "get", "/app"); code != 0 || out != "bob-3" {
		t.Errorf("latch get /app as bob = %q, exit %d (%s); want bob-3, 0", out, code, errs)
	}
}

// envAs is the CLI's environment for a client of the TLS cell with a
// certificate for cn.
func (c *procCell) envAs(cn string) []string {
	certFile, keyFile := c.ca.Issue(c.t, cn).Write(c.t, c.certDir, cn)
	return []string{c.env[0], "LATCH_CACERT=" + c.caFile(), "LATCH_CERT=" + certFile, "LATCH_KEY=" + keyFile}
}

// dialAs opens a client session of the TLS cell with a certificate for
// cn, as dial does for the operator.
func (c *procCell) dialAs(ctx context.Context, cn string) *client.Client {
	c.t.Helper()
	cl, err := client.Dial(ctx, client.Config{Endpoints: c.endpoints, Grace: time.Minute, TLS: c.ca.ClientConfig(c.t, cn)})
	if err != nil {
		c.t.Fatalf("Dial as %s: %v", cn, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// rawDial opens a protocol connection to addr with a certificate for cn,
// for requests whose ids the test chooses; it is closed at the end of the
// test.
func (c *procCell) rawDial(ctx context.Context, addr, cn string) *wire.Conn {
	c.t.Helper()
	nc, err := (&tls.Dialer{Config: c.ca.ClientConfig(c.t, cn)}).DialContext(ctx, "tcp", addr)
	if err != nil {
		c.t.Fatalf("dial %s as %s: %v", addr, cn, err)
	}
	wc, err := wire.NewConn(ctx, nc, wire.ConnConfig{}, wire.Hello{})
	if err != nil {
		c.t.Fatalf("hello to %s as %s: %v", addr, cn, err)
	}
	c.t.Cleanup(func() { wc.Close() })
	return wc
}

// rawCall sends req to n as cn on a connection of its own, again while n
// answers Unavailable or NotLeader (a new leader taking over), for up to 30 s, and
// returns the answer's error.
func (c *procCell) rawCall(ctx context.Context, n *node, cn string, req wire.Message) error {
	c.t.Helper()
	wc := c.rawDial(ctx, n.client, cn)
	defer wc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := wc.Call(cctx, req)
		cancel()
		if !isCode(err, wire.Unavailable, wire.NotLeader) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isWireErr reports whether err is an error answer of the cell.
func isWireErr(err error) bool {
	_, ok := errors.AsType[*wire.Error](err)
	return ok
}

// isCode reports whether err is a protocol error with one of the codes.
func isCode(err error, codes ...wire.Code) bool {
	we, ok := errors.AsType[*wire.Error](err)
	return ok && slices.Contains(codes, we.Code)
}
