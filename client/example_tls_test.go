package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log"
	"os"

	"github.com/latchd/latch/client"
)

// Connect to a cell that requires client certificates (latchd's "tls" with
// clientCertAuth). The certificate's CN is the principal the cell's ACLs
// admit or refuse; a refused write is ErrPermission.
func Example_tls() {
	cert, err := tls.LoadX509KeyPair("alice.crt", "alice.key")
	if err != nil {
		log.Fatal(err)
	}
	caPEM, err := os.ReadFile("ca.crt")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatal("ca.crt holds no certificate")
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{
		Endpoints: []string{"10.0.0.1:7101", "10.0.0.2:7101", "10.0.0.3:7101"},
		// ServerName is filled in from each endpoint's host.
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots},
	})
	if err != nil {
		log.Fatal(err) // client.ErrTLS if no replica trusts us or we trust none
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/app/config", []byte("v2")); errors.Is(err, client.ErrPermission) {
		log.Printf("alice may not write /app/config: %v", err)
	}
}
