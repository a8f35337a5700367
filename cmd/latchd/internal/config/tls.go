package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/latchd/latch/cmd/internal/tlsfiles"
)

// TLSFiles is the "tls" section: TLS on the client listener and HTTPS on
// the admin HTTP server, with this replica's certificate.
type TLSFiles struct {
	// CertFile and KeyFile are this replica's PEM certificate (chain,
	// leaf first) and private key. Required. The certificate must be
	// valid for the host of this node's client address.
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// CAFile holds the PEM certificates of the CAs that sign client
	// certificates. The replica also trusts them, instead of the system's
	// roots, when /status asks the other replicas' client ports.
	CAFile string `json:"caFile,omitempty"`
	// ClientCertAuth requires every client (and every admin HTTP request)
	// to present a certificate signed by a CA of CAFile; its Subject
	// CommonName is the client's principal. Needs CAFile.
	ClientCertAuth bool `json:"clientCertAuth,omitempty"`
}

// PeerTLSFiles is the "peerTLS" section: mutual TLS between replicas.
// Every field is required; the certificate must be signed by a CA of
// CAFile, allow server and client authentication, and be valid for the
// host of this node's peer address.
type PeerTLSFiles struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	CAFile   string `json:"caFile"`
}

// WithTLS returns c with the TLS configs and superusers that the "tls"
// and "peerTLS" sections t and p (nil: none) and superusers resolve to,
// checked and loaded as Resolve does for a replica whose clients and peers
// dial host. It serves cells that have no file: the replicas of
// `latchd dev --tls`, which share one certificate. The error joins one
// *FieldError per problem.
func (c Config) WithTLS(t *TLSFiles, p *PeerTLSFiles, superusers []string, host string) (Config, error) {
	var errs problems
	c.resolveAccess(t, p, superusers, host, host, errs.bad)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// resolveAccess sets c's TLS configs and superusers from the "tls" and
// "peerTLS" sections and "superusers" of a replica whose clients dial
// clientHost and whose peers dial peerHost ("" if unknown).
func (c *Config) resolveAccess(t *TLSFiles, p *PeerTLSFiles, superusers []string, clientHost, peerHost string, bad func(field, format string, args ...any)) {
	c.TLS, c.ClientTLS = resolveTLS(t, clientHost, bad)
	switch {
	case len(superusers) > 0 && (t == nil || !t.ClientCertAuth):
		bad("superusers", "need tls.clientCertAuth: without client certificates no client proves a principal")
	case slices.Contains(superusers, ""):
		bad("superusers", "an empty name is the anonymous principal, which cannot be a superuser")
	}
	c.Superusers = superusers
	c.PeerTLS = resolvePeerTLS(p, peerHost, bad)
}

// resolveTLS checks and loads the "tls" section (nil: no TLS) for a
// replica whose clients connect to host ("" if unknown). It returns the
// server's config and the config this replica dials the others' client
// ports with.
func resolveTLS(f *TLSFiles, host string, bad func(field, format string, args ...any)) (server, client *tls.Config) {
	if f == nil {
		return nil, nil
	}
	if f.ClientCertAuth && f.CAFile == "" {
		bad("tls.clientCertAuth", "needs tls.caFile, the CAs that sign the client certificates")
	}
	pair, pool, ok := load("tls", f.CertFile, f.KeyFile, f.CAFile, false, bad)
	if !ok {
		return nil, nil
	}
	if err := checkHost(pair, host); err != nil {
		bad("tls.certFile", "%s: %v: clients connect to this replica at %s", f.CertFile, err, host)
		return nil, nil
	}
	server = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	if f.ClientCertAuth {
		server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	client = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

// resolvePeerTLS checks and loads the "peerTLS" section (nil: no TLS) for
// a replica whose peers dial host ("" if unknown).
func resolvePeerTLS(f *PeerTLSFiles, host string, bad func(field, format string, args ...any)) *tls.Config {
	if f == nil {
		return nil
	}
	pair, pool, ok := load("peerTLS", f.CertFile, f.KeyFile, f.CAFile, true, bad)
	if !ok {
		return nil
	}
	for _, u := range []struct {
		usage x509.ExtKeyUsage
		as    string
	}{{x509.ExtKeyUsageServerAuth, "a server (to the replicas that dial it)"}, {x509.ExtKeyUsageClientAuth, "a client (to the replicas it dials)"}} {
		if err := verify(pair, pool, u.usage); err != nil {
			bad("peerTLS.certFile", "%s does not verify against peerTLS.caFile as %s: %v", f.CertFile, u.as, err)
			return nil
		}
	}
	if err := checkHost(pair, host); err != nil {
		bad("peerTLS.certFile", "%s: %v: the other replicas dial this one at %s", f.CertFile, err, host)
		return nil
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// load reads a section's files, reporting each problem on its field
// (section.certFile, ...). The CA file is optional unless needCA. ok is
// false if anything was wrong.
func load(section, certFile, keyFile, caFile string, needCA bool, bad func(field, format string, args ...any)) (pair tls.Certificate, pool *x509.CertPool, ok bool) {
	ok = true
	for _, f := range []struct{ name, path string }{{"certFile", certFile}, {"keyFile", keyFile}, {"caFile", caFile}} {
		if f.path == "" && (f.name != "caFile" || needCA) {
			bad(section+"."+f.name, "missing: set the path of the PEM file")
			ok = false
		}
	}
	field := map[tlsfiles.Which]string{tlsfiles.Cert: "certFile", tlsfiles.Key: "keyFile", tlsfiles.CA: "caFile"}
	report := func(err error) {
		if fe, isFile := errors.AsType[*tlsfiles.Error](err); isFile {
			bad(section+"."+field[fe.Which], "%v", err)
		} else {
			bad(section, "%v", err)
		}
		ok = false
	}
	if caFile != "" {
		var err error
		if pool, err = tlsfiles.Pool(caFile); err != nil {
			report(err)
		}
	}
	if certFile != "" && keyFile != "" {
		var err error
		if pair, err = tlsfiles.KeyPair(certFile, keyFile, time.Now()); err != nil {
			report(err)
		}
	}
	return pair, pool, ok
}

// verify checks that pair's leaf chains to pool for usage.
func verify(pair tls.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// checkHost checks that pair's leaf is valid for host ("" is not checked).
func checkHost(pair tls.Certificate, host string) error {
	if host == "" {
		return nil
	}
	return pair.Leaf.VerifyHostname(host)
}

// selfHost returns the host of this replica's address (peer or client) in
// f, or "" if myid names no node or the address is bad (reported apart).
func selfHost(f File, peer bool) string {
	for _, n := range f.Nodes {
		if n.ID == f.MyID {
			addr := n.Client
			if peer {
				addr = n.Peer
			}
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return ""
			}
			return host
		}
	}
	return ""
}

// applyTLS sets the fields of the TLS sections that o overrides, making a
// section that the file lacks.
func (f File) applyTLS(o Overrides) File {
	if o.CertFile != nil || o.KeyFile != nil || o.CAFile != nil || o.ClientCertAuth != nil {
		t := TLSFiles{}
		if f.TLS != nil {
			t = *f.TLS
		}
		set(&t.CertFile, o.CertFile)
		set(&t.KeyFile, o.KeyFile)
		set(&t.CAFile, o.CAFile)
		set(&t.ClientCertAuth, o.ClientCertAuth)
		f.TLS = &t
	}
	if o.PeerCertFile != nil || o.PeerKeyFile != nil || o.PeerCAFile != nil {
		p := PeerTLSFiles{}
		if f.PeerTLS != nil {
			p = *f.PeerTLS
		}
		set(&p.CertFile, o.PeerCertFile)
		set(&p.KeyFile, o.PeerKeyFile)
		set(&p.CAFile, o.PeerCAFile)
		f.PeerTLS = &p
	}
	return f
}

func set[T any](field *T, v *T) {
	if v != nil {
		*field = *v
	}
}
