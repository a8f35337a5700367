// Package tlsfiles reads the PEM files of latch's TLS settings (latchd's
// "tls" and "peerTLS" sections, the latch CLI's --cert, --key and
// --cacert) and says which file is wrong and why, so that latchd can name
// the field and latch the flag.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Which names a file of a TLS setting.
type Which int

// The files.
const (
	Cert Which = iota // a certificate chain, its leaf first
	Key               // the leaf's private key
	CA                // trusted CA certificates
)

// Error is a problem with one file. Its text names the file's path.
type Error struct {
	Which Which
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(w Which, format string, args ...any) error {
	return &Error{Which: w, Err: fmt.Errorf(format, args...)}
}

// KeyPair reads the PEM certificate chain in certFile (the leaf first) and
// the leaf's PEM private key in keyFile. It refuses a leaf that is not
// valid at now (expired, or not yet valid). The certificate's Leaf is set.
func KeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &Error{Which: Cert, Err: err}
	}
	certs, err := parse(certFile, certPEM)
	if err != nil {
		return tls.Certificate{}, &Error{Which: Cert, Err: err}
	}
	leaf := certs[0]
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fail(Cert, "%s: the certificate expired on %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fail(Cert, "%s: the certificate is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &Error{Which: Key, Err: err}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, fail(Key, "%s: not the private key of the certificate in %s (%v)", keyFile, certFile, err)
		}
		return tls.Certificate{}, fail(Key, "%s: %v", keyFile, err)
	}
	return pair, nil
}

// Pool reads the PEM CA certificates in caFile.
func Pool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &Error{Which: CA, Err: err}
	}
	certs, err := parse(caFile, b)
	if err != nil {
		return nil, &Error{Which: CA, Err: err}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parse returns the certificates of the CERTIFICATE blocks of b, in order:
// at least one, and every one well-formed.
func parse(path string, b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var others []string
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) > 0:
		return certs, nil
	case len(others) > 0:
		return nil, fmt.Errorf("%s: no CERTIFICATE in the file, only %s", path, strings.Join(others, ", "))
	}
	return nil, errors.New(path + ": no PEM data: want PEM certificates (-----BEGIN CERTIFICATE-----)")
}
