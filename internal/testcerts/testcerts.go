// Package testcerts makes the certificates that tests of latch's TLS need:
// a CA, and certificates it signs for a common name, ECDSA P-256, valid
// for 127.0.0.1 and localhost, for server and client use alike. Only tests
// import it (internal/depgraph places it on its own).
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority of a test.
type CA struct {
	Cert *x509.Certificate
	// PEM is Cert, PEM-encoded (what a caFile holds).
	PEM []byte
	key *ecdsa.PrivateKey
}

// Cert is a certificate the CA signed, with its key.
type Cert struct {
	TLS tls.Certificate
	// CertPEM and KeyPEM are what a certFile and a keyFile hold.
	CertPEM, KeyPEM []byte
}

// Usage says what a certificate may be used for.
type Usage int

// Usages: Both (the default of Issue) suits a replica, which is a server
// and, to its peers and the other replicas' client ports, a client too.
const (
	Both Usage = iota
	ServerOnly
	ClientOnly
)

// NewCA returns a new CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testcerts: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcerts: parse CA: %v", err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Pool returns a pool that holds the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns a certificate for the common name cn, valid for
// 127.0.0.1 and localhost, for server and client use.
func (ca *CA) Issue(t testing.TB, cn string) Cert {
	t.Helper()
	return ca.IssueFor(t, cn, Both, time.Now().Add(24*time.Hour))
}

// IssueFor is Issue with the usage and the end of validity given.
func (ca *CA) IssueFor(t testing.TB, cn string, u Usage, notAfter time.Time) Cert {
	t.Helper()
	key := newKey(t)
	eku := map[Usage][]x509.ExtKeyUsage{
		Both:       {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ServerOnly: {x509.ExtKeyUsageServerAuth},
		ClientOnly: {x509.ExtKeyUsageClientAuth},
	}[u]
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notAfter.Add(-48 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  eku,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testcerts: create certificate for %q: %v", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcerts: marshal key: %v", err)
	}
	c := Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if c.TLS, err = tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		t.Fatalf("testcerts: key pair: %v", err)
	}
	return c
}

// ServerConfig is the tls.Config of a server with a certificate for cn. With
// clientAuth it requires a client certificate signed by the CA.
func (ca *CA) ServerConfig(t testing.TB, cn string, clientAuth bool) *tls.Config {
	t.Helper()
	c := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, cn).TLS}}
	if clientAuth {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	}
	return c
}

// ClientConfig is the tls.Config of a client that trusts the CA and, if cn
// is not empty, presents a certificate for cn.
func (ca *CA) ClientConfig(t testing.TB, cn string) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: ca.Pool()}
	if cn != "" {
		c.Certificates = []tls.Certificate{ca.Issue(t, cn).TLS}
	}
	return c
}

// PeerConfig is the mutual tls.Config of a replica's peer connections: a
// certificate for cn, and the CA both to verify the replicas it dials and
// to require and verify the certificates of those that dial it.
func (ca *CA) PeerConfig(t testing.TB, cn string) *tls.Config {
	t.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, cn).TLS},
		RootCAs:      ca.Pool(),
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// WriteCA writes the CA certificate to dir/name and returns the path.
func (ca *CA) WriteCA(t testing.TB, dir, name string) string {
	t.Helper()
	return write(t, filepath.Join(dir, name), ca.PEM)
}

// Write writes the certificate and the key to dir/name.crt and
// dir/name.key and returns their paths.
func (c Cert) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	return write(t, filepath.Join(dir, name+".crt"), c.CertPEM), write(t, filepath.Join(dir, name+".key"), c.KeyPEM)
}

func write(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("testcerts: %v", err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcerts: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testcerts: serial: %v", err)
	}
	return n
}
