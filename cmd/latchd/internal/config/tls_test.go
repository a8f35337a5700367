package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/lockserver"
)

// tlsFiles writes a CA, this replica's certificate and key, and a few bad
// files into a temporary directory.
type tlsFiles struct {
	dir                 string
	ca, otherCA         string // CA certificates
	cert, key           string // this replica's, for both usages, 127.0.0.1
	otherCert, otherKey string // a certificate and key from another CA
	serverOnly          string // a certificate for server use only (key: serverOnlyKey)
	serverOnlyKey       string
	expired, expiredKey string
	garbage, badBlock   string // not PEM; a CERTIFICATE block that is not one
	missing             string // no such file
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	ca, other := testcerts.NewCA(t, "latch"), testcerts.NewCA(t, "someone else")
	f := tlsFiles{dir: dir, ca: ca.WriteCA(t, dir, "ca.crt"), otherCA: other.WriteCA(t, dir, "other-ca.crt")}
	f.cert, f.key = ca.Issue(t, "replica 1").Write(t, dir, "replica")
	f.otherCert, f.otherKey = other.Issue(t, "replica 1").Write(t, dir, "other")
	f.serverOnly, f.serverOnlyKey = ca.IssueFor(t, "replica 1", testcerts.ServerOnly, time.Now().Add(time.Hour)).Write(t, dir, "server-only")
	f.expired, f.expiredKey = ca.IssueFor(t, "replica 1", testcerts.Both, time.Now().Add(-time.Hour)).Write(t, dir, "expired")
	f.garbage = filepath.Join(dir, "garbage")
	f.badBlock = filepath.Join(dir, "bad-block.crt")
	f.missing = filepath.Join(dir, "missing.crt")
	os.WriteFile(f.garbage, []byte("not a certificate\n"), 0o600)
	os.WriteFile(f.badBlock, []byte("-----BEGIN CERTIFICATE-----\nbm90IGRlcg==\n-----END CERTIFICATE-----\n"), 0o600)
	return f
}

// tlsFile is a valid File for replica 1 on 127.0.0.1 with both TLS sections.
func (f tlsFiles) file() File {
	return File{
		Nodes: []Node{
			{ID: 1, Peer: "127.0.0.1:7001", Client: "127.0.0.1:7101", HTTP: "127.0.0.1:7201"},
			{ID: 2, Peer: "127.0.0.2:7001", Client: "127.0.0.2:7101"},
		},
		MyID: 1, DataDir: "/d",
		TLS:     &TLSFiles{CertFile: f.cert, KeyFile: f.key, CAFile: f.ca, ClientCertAuth: true},
		PeerTLS: &PeerTLSFiles{CertFile: f.cert, KeyFile: f.key, CAFile: f.ca},
	}
}

func TestTLSConfig(t *testing.T) {
	files := writeTLSFiles(t)
	c, err := files.file().Resolve()
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if c.TLS == nil || len(c.TLS.Certificates) != 1 || c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.TLS.ClientCAs == nil {
		t.Errorf("TLS = %+v; want this replica's certificate and client certificates required", c.TLS)
	}
	if c.ClientTLS == nil || c.ClientTLS.RootCAs == nil || len(c.ClientTLS.Certificates) != 1 {
		t.Errorf("ClientTLS = %+v; want the CA and this replica's certificate", c.ClientTLS)
	}
	if c.PeerTLS == nil || c.PeerTLS.RootCAs == nil || c.PeerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("PeerTLS = %+v; want mutual", c.PeerTLS)
	}
	sc, err := c.Server(nil)
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	if sc.TLS != c.TLS || sc.PeerTLS != c.PeerTLS {
		t.Errorf("Server() does not carry the TLS configs")
	}
	f := files.file()
	f.Superusers = []string{"root", "ops-1"}
	if c, err := f.Resolve(); err != nil {
		t.Errorf("with superusers: %v", err)
	} else if sc, err := c.Server(nil); err != nil || !slices.Equal(sc.Superusers, f.Superusers) {
		t.Errorf("Server().Superusers = %v, %v; want %v", sc.Superusers, err, f.Superusers)
	}

	// Without clientCertAuth, client certificates are not asked for.
	f = files.file()
	f.TLS.ClientCertAuth = false
	if c, err := f.Resolve(); err != nil || c.TLS.ClientAuth != tls.NoClientCert {
		t.Errorf("without clientCertAuth: ClientAuth %v, %v; want NoClientCert", c.TLS.ClientAuth, err)
	}
	// Without the sections, no TLS.
	f.TLS, f.PeerTLS = nil, nil
	if c, err := f.Resolve(); err != nil || c.TLS != nil || c.ClientTLS != nil || c.PeerTLS != nil {
		t.Errorf("without TLS sections: %+v, %v; want no TLS", c, err)
	}
}

// TestTLSConfigErrors checks that each mistake in the TLS sections is
// reported on its field, with the reason.
func TestTLSConfigErrors(t *testing.T) {
	files := writeTLSFiles(t)
	tests := []struct {
		name   string
		change func(f *File)
		field  string
		reason string
	}{
		{"tls without certFile", func(f *File) { f.TLS.CertFile = "" }, "tls.certFile", "missing"},
		{"tls without keyFile", func(f *File) { f.TLS.KeyFile = "" }, "tls.keyFile", "missing"},
		{"certFile missing", func(f *File) { f.TLS.CertFile = files.missing }, "tls.certFile", "no such file"},
		{"certFile not PEM", func(f *File) { f.TLS.CertFile = files.garbage }, "tls.certFile", "no PEM data"},
		{"certFile holds a key", func(f *File) { f.TLS.CertFile = files.key }, "tls.certFile", "no CERTIFICATE in the file, only PRIVATE KEY"},
		{"certFile with a broken certificate", func(f *File) { f.TLS.CertFile = files.badBlock }, "tls.certFile", "certificate 1: x509:"},
		{"expired certificate", func(f *File) { f.TLS.CertFile, f.TLS.KeyFile = files.expired, files.expiredKey }, "tls.certFile", "expired on"},
		{"keyFile missing", func(f *File) { f.TLS.KeyFile = files.missing }, "tls.keyFile", "no such file"},
		{"keyFile holds a certificate", func(f *File) { f.TLS.KeyFile = files.cert }, "tls.keyFile", "found a certificate rather than a key"},
		{"key of another certificate", func(f *File) { f.TLS.KeyFile = files.otherKey }, "tls.keyFile", "not the private key of the certificate in " + files.cert},
		{"clientCertAuth without caFile", func(f *File) { f.TLS.CAFile = "" }, "tls.clientCertAuth", "needs tls.caFile"},
		{"caFile missing", func(f *File) { f.TLS.CAFile = files.missing }, "tls.caFile", "no such file"},
		{"caFile not PEM", func(f *File) { f.TLS.CAFile = files.garbage }, "tls.caFile", "no PEM data"},
		{"certificate not for the client address", func(f *File) { f.Nodes[0].Client = "127.0.0.3:7101" }, "tls.certFile",
			"not 127.0.0.3: clients connect to this replica at 127.0.0.3"},
		{"peerTLS without caFile", func(f *File) { f.PeerTLS.CAFile = "" }, "peerTLS.caFile", "missing"},
		{"peerTLS without keyFile", func(f *File) { f.PeerTLS.KeyFile = "" }, "peerTLS.keyFile", "missing"},
		{"peerTLS keyFile of another certificate", func(f *File) { f.PeerTLS.KeyFile = files.otherKey }, "peerTLS.keyFile", "not the private key"},
		{"peer certificate from another CA", func(f *File) { f.PeerTLS.CertFile, f.PeerTLS.KeyFile = files.otherCert, files.otherKey },
			"peerTLS.certFile", "does not verify against peerTLS.caFile as a server (to the replicas that dial it): x509: certificate signed by unknown authority"},
		{"peer certificate for servers only", func(f *File) { f.PeerTLS.CertFile, f.PeerTLS.KeyFile = files.serverOnly, files.serverOnlyKey },
			"peerTLS.certFile", "as a client (to the replicas it dials)"},
		{"peer certificate not for the peer address", func(f *File) { f.Nodes[0].Peer = "127.0.0.3:7001" }, "peerTLS.certFile",
			"the other replicas dial this one at 127.0.0.3"},
		{"peerTLS caFile not PEM", func(f *File) { f.PeerTLS.CAFile = files.garbage }, "peerTLS.caFile", "no PEM data"},
		{"superusers without clientCertAuth", func(f *File) { f.Superusers, f.TLS.ClientCertAuth = []string{"root"}, false },
			"superusers", "need tls.clientCertAuth"},
		{"superusers without tls", func(f *File) { f.Superusers, f.TLS = []string{"root"}, nil }, "superusers", "need tls.clientCertAuth"},
		{"anonymous superuser", func(f *File) { f.Superusers = []string{"root", ""} }, "superusers", "anonymous principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := files.file()
			tt.change(&f)
			_, err := f.Resolve()
			if !hasField(err, tt.field, tt.reason) {
				t.Errorf("Resolve() = %v; want a FieldError on %q containing %q", err, tt.field, tt.reason)
			}
		})
	}
}

func TestTLSConfigFromJSON(t *testing.T) {
	const nodes = `"nodes": [{"id": 1, "peer": "127.0.0.1:7001", "client": "127.0.0.1:7101"}], "myid": 1, "dataDir": "/d"`
	for _, tt := range []struct {
		name, json, field, reason string
	}{
		{"clientCertAuth in peerTLS", `{` + nodes + `, "peerTLS": {"certFile": "c", "keyFile": "k", "caFile": "a", "clientCertAuth": true}}`,
			"clientCertAuth", `it belongs in "tls"`},
		{"unknown tls field", `{` + nodes + `, "tls": {"cert": "c"}}`, "cert", "unknown field"},
		{"clientCertAuth as string", `{` + nodes + `, "tls": {"clientCertAuth": "yes"}}`, "tls.clientCertAuth", "want bool"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(tt.json)); !hasField(err, tt.field, tt.reason) {
				t.Errorf("Parse() = %v; want a FieldError on %q containing %q", err, tt.field, tt.reason)
			}
		})
	}
}

func TestTLSOverrides(t *testing.T) {
	files := writeTLSFiles(t)
	f := files.file()
	f.TLS, f.PeerTLS = nil, nil
	auth := true
	g := f.Apply(Overrides{CertFile: &files.cert, KeyFile: &files.key, CAFile: &files.ca, ClientCertAuth: &auth,
		PeerCertFile: &files.cert, PeerKeyFile: &files.key, PeerCAFile: &files.ca})
	c, err := g.Resolve()
	if err != nil {
		t.Fatalf("Resolve after the TLS flags: %v", err)
	}
	if c.TLS == nil || c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.PeerTLS == nil {
		t.Errorf("after the TLS flags: TLS %+v, PeerTLS %+v", c.TLS, c.PeerTLS)
	}
	if f.TLS != nil || f.PeerTLS != nil {
		t.Errorf("Apply changed the original File")
	}
	// A flag replaces one field and keeps the others of the file.
	g = files.file().Apply(Overrides{KeyFile: &files.otherKey})
	if g.TLS.CertFile != files.cert || g.TLS.KeyFile != files.otherKey || !g.TLS.ClientCertAuth {
		t.Errorf("--key-file: tls = %+v", g.TLS)
	}
	if _, err := g.Resolve(); !hasField(err, "tls.keyFile", "not the private key") {
		t.Errorf("--key-file of another certificate: %v; want a tls.keyFile error", err)
	}
}

// TestWithTLS checks the sections of a cell without a file (latchd dev
// --tls): loaded and checked as Resolve does, the rest of the Config kept.
func TestWithTLS(t *testing.T) {
	files := writeTLSFiles(t)
	f := files.file()
	c, err := Default().WithTLS(f.TLS, f.PeerTLS, []string{"root"}, "127.0.0.1")
	if err != nil {
		t.Fatalf("WithTLS: %v", err)
	}
	if c.TLS == nil || c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientTLS == nil || c.PeerTLS == nil ||
		!slices.Equal(c.Superusers, []string{"root"}) || c.Lease != DefaultLease {
		t.Errorf("WithTLS = %+v; want TLS, ClientTLS, PeerTLS, the superuser and the default timings", c)
	}
	sc := lockserver.DefaultConfig()
	Tune(&sc, c)
	if sc.TLS != c.TLS || sc.PeerTLS != c.PeerTLS || !slices.Equal(sc.Superusers, c.Superusers) {
		t.Errorf("Tune with WithTLS's config: TLS %p PeerTLS %p superusers %v; want WithTLS's", sc.TLS, sc.PeerTLS, sc.Superusers)
	}
	if c, err := Default().WithTLS(nil, nil, nil, "127.0.0.1"); err != nil || c.TLS != nil || c.PeerTLS != nil {
		t.Errorf("WithTLS(nil, nil) = %+v, %v; want no TLS", c, err)
	}
	_, err = Default().WithTLS(f.TLS, f.PeerTLS, []string{""}, "127.0.0.3")
	for _, want := range []struct{ field, reason string }{
		{"tls.certFile", "clients connect to this replica at 127.0.0.3"},
		{"peerTLS.certFile", "the other replicas dial this one at 127.0.0.3"},
		{"superusers", "anonymous principal"},
	} {
		if !hasField(err, want.field, want.reason) {
			t.Errorf("WithTLS for another host, an anonymous superuser = %v; want a FieldError on %q containing %q", err, want.field, want.reason)
		}
	}
}
