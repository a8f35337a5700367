package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestTLSCell runs three latchd processes whose config files turn on TLS
// for clients (with client certificates required) and mutual TLS between
// replicas, and drives them with the latch CLI given the certificates by
// its environment variables.
func TestTLSCell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startProcCell(t, ctx, cellOptions{tls: true})
	noCert := []string{c.env[0], "LATCH_CACERT=" + c.caFile()}

	if _, errs, code := run(t, ctx, c.latch, c.env, "", "put", "-p", "/tls/hello", "world"); code != 0 {
		t.Fatalf("latch put over TLS: exit %d: %s", code, errs)
	}
	if out, errs, code := run(t, ctx, c.latch, c.env, "", "get", "/tls/hello"); code != 0 || out != "world" {
		t.Fatalf("latch get over TLS = %q, exit %d: %s", out, code, errs)
	}
	if _, errs, code := run(t, ctx, c.latch, noCert, "", "get", "/tls/hello"); code == 0 || !strings.Contains(errs, "requires a client certificate and this client has none") {
		t.Errorf("latch get without a client certificate: exit %d: %s; want refused", code, errs)
	}

	// ACLs see the certificates' CNs: the operator (a superuser) lets
	// alice, not bob, read and write /tls/app.
	alice, bob := c.envAs("alice"), c.envAs("bob")
	latch := func(env []string, wantCode int, args ...string) string {
		t.Helper()
		out, errs, code := run(t, ctx, c.latch, env, "", args...)
		if code != wantCode {
			t.Fatalf("latch %v: exit %d (%s); want %d", args, code, errs, wantCode)
		}
		return out + errs
	}
	latch(c.env, 0, "put", "-p", "/acl/app", "alice")
	latch(c.env, 0, "put", "/tls/app", "v1")
	latch(c.env, 0, "acl", "set", "/tls/app", "--read", "app", "--write", "app", "--change", "app")
	latch(alice, 0, "put", "/tls/app", "v2")
	if out := latch(alice, 0, "get", "/tls/app"); out != "v2" {
		t.Errorf("alice's get = %q; want v2", out)
	}
	if out := latch(bob, 7, "put", "/tls/app", "v3"); !strings.Contains(out, `principal "bob" may not write "/tls/app"`) {
		t.Errorf("bob's put: %q; want the ACL's refusal", out)
	}
	latch(bob, 7, "get", "/tls/app")
	latch(c.env, 0, "put", "/tls/app", "v4") // the superuser is never refused
	if out := latch(alice, 0, "whoami"); out != "alice\n" {
		t.Errorf("whoami as alice = %q", out)
	}
	if out := latch(c.env, 0, "whoami"); out != "operator (superuser)\n" {
		t.Errorf("whoami as the operator = %q", out)
	}

	// Member changes over TLS: the superuser's only; anyone may list.
	if out := latch(alice, 7, "members", "add", "9", "127.0.0.1:1", "127.0.0.1:2"); !strings.Contains(out, "alice is not one") {
		t.Errorf("alice's members add: %q; want refused: not a superuser", out)
	}
	latch(c.env, 0, "members", "add", "9", "127.0.0.1:1", "127.0.0.1:2")
	if out := latch(alice, 0, "members"); !strings.Contains(out, " learner ") || !strings.Contains(out, "epoch 1, α") {
		t.Errorf("alice's members =\n%s\nwant learner 9 and epoch 1", out)
	}
	latch(c.env, 0, "members", "remove", "9")
}
