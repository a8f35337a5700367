package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/cmd/latch/internal/bench"
	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/lockserver"
)

// TestTLS runs the CLI against a cell that serves clients over TLS and
// requires client certificates: with the flags, with the variables, and
// without a certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "latch")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	cert, key := ca.Issue(t, "operator").Write(t, dir, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := lockserver.StartCell(ctx, lockserver.CellConfig{DataDir: t.TempDir(), Tune: func(cfg *lockserver.Config) {
		cfg.TLS = ca.ServerConfig(t, fmt.Sprintf("replica %d", cfg.ID), true)
		cfg.PeerTLS = ca.PeerConfig(t, fmt.Sprintf("replica %d", cfg.ID))
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	flags := invocation{endpoints: c.Endpoints()}
	flag := func(args ...string) []string {
		return append([]string{"--cacert", caFile, "--cert", cert, "--key", key}, args...)
	}
	flags.run(t, flag("put", "-p", "/tls/x", "over TLS")...).ok(t)
	if r := flags.run(t, flag("get", "/tls/x")...).ok(t); strings.TrimSpace(r.out) != "over TLS" {
		t.Errorf("get /tls/x = %q; want %q", r.out, "over TLS")
	}

	vars := invocation{endpoints: c.Endpoints(), env: map[string]string{EnvCACert: caFile, EnvCert: cert, EnvKey: key}}
	if r := vars.run(t, "status").ok(t); strings.Count(r.out, " ok") != 3 {
		t.Errorf("status over TLS:\n%s", r.out)
	}
	vars.run(t, "members").ok(t)

	metrics := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("process_cpu_seconds_total 1\n"))
	}))
	metrics.TLS = ca.ServerConfig(t, "metrics", true)
	metrics.StartTLS()
	defer metrics.Close()
	r := vars.run(t, "bench", "sessions", "--clients", "2", "--duration", "100ms", "--metrics-url", metrics.URL).ok(t)
	if res := decode[bench.Result](t, r); res.Ops != 2 || res.Errors != 0 || res.ServerCPUPercent == nil {
		t.Errorf("bench sessions over TLS = %+v", res)
	}
	r = vars.run(t, "bench", "put", "--clients", "2", "--duration", "30s", "--max-ops", "10").ok(t)
	if res := decode[bench.Result](t, r); res.Ops != 10 || res.Errors != 0 {
		t.Errorf("bench put over TLS = %+v", res)
	}

	noCert := invocation{endpoints: c.Endpoints()}
	noCert.run(t, "--cacert", caFile, "get", "/tls/x").failed(t, ExitError, "requires a client certificate and this client has none")
	other := testcerts.NewCA(t, "someone else").WriteCA(t, dir, "other.crt")
	noCert.run(t, "--cacert", other, "--cert", cert, "--key", key, "get", "/tls/x").failed(t, ExitError, "certificate signed by unknown authority")
}

// TestTLSFlagErrors: a bad TLS file or flag is a usage error naming the
// flag or variable, found before anything is dialed.
func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "latch")
	cert, key := ca.Issue(t, "operator").Write(t, dir, "operator")
	_, otherKey := ca.Issue(t, "other").Write(t, dir, "other")
	expired, expiredKey := ca.IssueFor(t, "old", testcerts.Both, time.Now().Add(-time.Hour)).Write(t, dir, "expired")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("nope"), 0o600)
	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"missing CA file", nil, []string{"--cacert", missing}, "--cacert: open " + missing + ": no such file"},
		{"CA file not PEM", nil, []string{"--cacert", garbage}, "--cacert: " + garbage + ": no PEM data"},
		{"CA file from the variable", map[string]string{EnvCACert: garbage}, nil, "$LATCH_CACERT: " + garbage + ": no PEM data"},
		{"cert without key", nil, []string{"--cert", cert}, "--cert needs --key (or $LATCH_KEY)"},
		{"key without cert", map[string]string{EnvKey: key}, nil, "$LATCH_KEY needs --cert (or $LATCH_CERT)"},
		{"key of another certificate", nil, []string{"--cert", cert, "--key", otherKey}, "--key: " + otherKey + ": not the private key of the certificate in " + cert},
		{"cert file holds a key", nil, []string{"--cert", key, "--key", key}, "--cert: " + key + ": no CERTIFICATE in the file, only PRIVATE KEY"},
		{"expired cert", map[string]string{EnvCert: expired, EnvKey: expiredKey}, nil, "$LATCH_CERT: " + expired + ": the certificate expired on"},
		{"flag before variable", map[string]string{EnvCACert: garbage}, []string{"--cacert", missing}, "--cacert: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := invocation{endpoints: []string{"127.0.0.1:1"}, env: tt.env}
			inv.run(t, append(tt.args, "get", "/x")...).failed(t, ExitUsage, tt.want)
		})
	}
}
