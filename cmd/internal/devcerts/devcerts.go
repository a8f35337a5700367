// Package devcerts makes the throwaway certificates of `latchd dev --tls`:
// a CA, one certificate that every replica of a local cell serves and
// dials its peers with, and client certificates whose common names are the
// principals of the ACLs. Everything is ECDSA P-256, made with crypto/x509
// alone. The CA's key is not kept: the set is made anew as a whole
// whenever it cannot be used as it is (Check), never added to.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/latchd/latch/cmd/internal/tlsfiles"
)

const (
	// Host is the address the replica certificate is valid for: a local
	// cell's replicas listen on it. The certificate also names localhost.
	Host = "127.0.0.1"
	// ReplicaName is the common name, and the files' name, of the replica
	// certificate.
	ReplicaName = "replica"
	// Validity is how long the certificates Make writes are valid.
	Validity = 365 * 24 * time.Hour
	// Margin is how long, at least, every certificate must remain valid
	// for Check to accept the set: one that expires sooner is replaced
	// before the cell starts, not while it runs.
	Margin = 24 * time.Hour
)

// Set is the files of a CA and the certificates it signed, in Dir:
// ca.crt; replica.crt and replica.key (for server and client use, valid
// for Host); and NAME.crt and NAME.key for each of Clients (for client
// use, with the common name NAME).
type Set struct {
	Dir     string
	Clients []string
}

// CA returns the path of the CA certificate.
func (s Set) CA() string { return filepath.Join(s.Dir, "ca.crt") }

// Files returns the paths of the certificate and the key named name
// (ReplicaName or one of Clients).
func (s Set) Files(name string) (cert, key string) {
	return filepath.Join(s.Dir, name+".crt"), filepath.Join(s.Dir, name+".key")
}

// Check reports why the set cannot be used at now, or nil if it can: a
// file is missing or damaged, a certificate is not signed by the CA, has
// the wrong common name or usage, the replica's is not valid for Host, a
// key is not its certificate's, or a certificate (the CA's included) is
// not yet valid or expires within Margin.
func (s Set) Check(now time.Time) error {
	if err := s.checkNames(); err != nil {
		return err
	}
	pool, err := tlsfiles.Pool(s.CA())
	if err != nil {
		return err
	}
	check := func(name string, usages ...x509.ExtKeyUsage) (*x509.Certificate, error) {
		certFile, keyFile := s.Files(name)
		pair, err := tlsfiles.KeyPair(certFile, keyFile, now)
		if err != nil {
			return nil, err
		}
		leaf := pair.Leaf
		if leaf.Subject.CommonName != name {
			return nil, fmt.Errorf("%s: the certificate is for %q, not %q", certFile, leaf.Subject.CommonName, name)
		}
		// Verify checks the chain's validity at one time: now (not yet
		// valid) and now+Margin (expires soon).
		for _, at := range []time.Time{now, now.Add(Margin)} {
			for _, u := range usages {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					return nil, fmt.Errorf("%s at %s: %w", certFile, at.UTC().Format(time.RFC3339), err)
				}
			}
		}
		return leaf, nil
	}
	replica, err := check(ReplicaName, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	if err := replica.VerifyHostname(Host); err != nil {
		cert, _ := s.Files(ReplicaName)
		return fmt.Errorf("%s: %w", cert, err)
	}
	for _, name := range s.Clients {
		if _, err := check(name, x509.ExtKeyUsageClientAuth); err != nil {
			return err
		}
	}
	return nil
}

// checkNames checks that the clients' names make files of their own.
func (s Set) checkNames() error {
	seen := map[string]bool{ReplicaName: true, "ca": true}
	for _, name := range s.Clients {
		if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
			return fmt.Errorf("devcerts: client name %q: want a plain file name", name)
		}
		if seen[name] {
			return fmt.Errorf("devcerts: client name %q: used twice, or taken by the CA or the replicas", name)
		}
		seen[name] = true
	}
	return nil
}

// Make writes a new set into Dir (made if missing, mode 0700), replacing
// any files of the names it writes. Its certificates are valid from an
// hour before now for Validity.
func (s Set) Make(now time.Time) error {
	if err := s.checkNames(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "latchd dev CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := sign(caTmpl, nil, &caKey.PublicKey, caKey, now)
	if err != nil {
		return fmt.Errorf("devcerts: the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("devcerts: the CA: %w", err)
	}
	if err := write(s.CA(), pemBlock("CERTIFICATE", caDER), 0o644); err != nil {
		return err
	}
	issue := func(name string, tmpl *x509.Certificate) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.Subject = pkix.Name{CommonName: name}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := sign(tmpl, ca, &key.PublicKey, caKey, now)
		if err != nil {
			return fmt.Errorf("devcerts: %s: %w", name, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("devcerts: %s: %w", name, err)
		}
		certFile, keyFile := s.Files(name)
		if err := write(keyFile, pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
			return err
		}
		return write(certFile, pemBlock("CERTIFICATE", der), 0o644)
	}
	err = issue(ReplicaName, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP(Host)},
		DNSNames:    []string{"localhost"},
	})
	if err != nil {
		return err
	}
	for _, name := range s.Clients {
		if err := issue(name, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return err
		}
	}
	return nil
}

// sign sets tmpl's serial number and validity and signs it with the key
// of parent (tmpl itself if parent is nil).
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(Validity)
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// write replaces path with b, with mode perm even if path existed.
func write(path string, b []byte, perm os.FileMode) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(path, b, perm)
}
