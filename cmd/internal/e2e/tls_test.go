package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/testcerts"
)

// TestTLSCell runs three latchd processes whose config files turn on TLS
// for clients (with client certificates required) and mutual TLS between
// replicas, and drives them with the latch CLI given the certificates by
// its environment variables.
func TestTLSCell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "latch")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	cert, key := ca.Issue(t, "replica").Write(t, dir, "replica")
	opCert, opKey := ca.Issue(t, "operator").Write(t, dir, "operator")
	c := newProcCell(t, cellOptions{extra: fmt.Sprintf(
		`"tls": {"certFile": %q, "keyFile": %q, "caFile": %q, "clientCertAuth": true}, "peerTLS": {"certFile": %q, "keyFile": %q, "caFile": %q}`,
		cert, key, caFile, cert, key, caFile)})
	noCert := append(slices.Clone(c.env), "LATCH_CACERT="+caFile)
	c.env = append(c.env, "LATCH_CACERT="+caFile, "LATCH_CERT="+opCert, "LATCH_KEY="+opKey)
	for _, n := range c.nodes {
		c.start(n, "--new-cell")
	}
	c.leader(ctx)

	if _, errs, code := run(t, ctx, c.latch, c.env, "", "put", "-p", "/tls/hello", "world"); code != 0 {
		t.Fatalf("latch put over TLS: exit %d: %s", code, errs)
	}
	if out, errs, code := run(t, ctx, c.latch, c.env, "", "get", "/tls/hello"); code != 0 || out != "world" {
		t.Fatalf("latch get over TLS = %q, exit %d: %s", out, code, errs)
	}
	if _, errs, code := run(t, ctx, c.latch, noCert, "", "get", "/tls/hello"); code == 0 || !strings.Contains(errs, "tls: certificate required") {
		t.Errorf("latch get without a client certificate: exit %d: %s; want refused", code, errs)
	}
}
