package client_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/lockserver"
)

// tlsCell starts a cell whose replicas serve clients over TLS (requiring
// client certificates if clientAuth) and each other over mutual TLS, with
// certificates signed by ca.
func tlsCell(t *testing.T, ca *testcerts.CA, clientAuth bool) *lockserver.Cell {
	t.Helper()
	return startCell(t, func(cfg *lockserver.Config) {
		name := fmt.Sprintf("replica %d", cfg.ID)
		cfg.TLS = ca.ServerConfig(t, name, clientAuth)
		cfg.PeerTLS = ca.PeerConfig(t, name)
	})
}

// dialErr dials cell with cfgTLS and returns the error, which must come
// at once (within the 10 s the dial is given, with three endpoints to try).
func dialErr(t *testing.T, cell *lockserver.Cell, cfgTLS *tls.Config) error {
	t.Helper()
	cfg := testConfig(cell)
	cfg.TLS = cfgTLS
	c, err := client.Dial(bg(t), cfg)
	if err == nil {
		c.Close()
		return errors.New("Dial succeeded")
	}
	return err
}

func TestTLSPutGet(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, false)
	c := dial(t, cell, func(cfg *client.Config) { cfg.TLS = ca.ClientConfig(t, "") })
	if _, err := c.Put(bg(t), "/tls", []byte("secret")); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	n, err := c.Get(bg(t), "/tls")
	if err != nil || string(n.Data) != "secret" {
		t.Fatalf("Get(/tls) over TLS = %q, %v; want %q", n.Data, err, "secret")
	}
	ms, err := c.Members(bg(t))
	if err != nil {
		t.Fatalf("Members over TLS: %v", err)
	}
	for _, m := range ms {
		if !m.Reachable {
			t.Errorf("Members: %s unreachable over TLS", m.ClientAddr)
		}
	}
	if _, err := client.StatusOfTLS(bg(t), cell.Endpoints()[0], ca.ClientConfig(t, "")); err != nil {
		t.Errorf("StatusOfTLS: %v", err)
	}
}

// TestTLSUntrusted: a client that does not trust the replicas' CA, or
// whose certificate the replicas do not accept, fails Dial at once with
// ErrTLS and the reason.
func TestTLSUntrusted(t *testing.T) {
	ca, other := testcerts.NewCA(t, "latch"), testcerts.NewCA(t, "someone else")
	cell := tlsCell(t, ca, true)
	withCert := func(c *tls.Config, cert tls.Certificate) *tls.Config {
		c.Certificates = []tls.Certificate{cert}
		return c
	}
	cases := []struct {
		name string
		tls  *tls.Config
		text string
	}{
		{"without the CA", withCert(other.ClientConfig(t, ""), ca.Issue(t, "alice").TLS), "certificate signed by unknown authority"},
		{"without a client certificate", ca.ClientConfig(t, ""), "refused this client: it requires a client certificate and this client has none"},
		{"client certificate from another CA", withCert(ca.ClientConfig(t, ""), other.Issue(t, "mallory").TLS), "refused this client: remote error: tls: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dialErr(t, cell, tc.tls)
			if !errors.Is(err, client.ErrTLS) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Dial = %v; want ErrTLS saying %q", err, tc.text)
			}
		})
	}
	// With a replica down as well, the cell might be fine: retry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	cfg := testConfig(cell)
	cfg.Endpoints, cfg.TLS = []string{down, cell.Endpoints()[0]}, ca.ClientConfig(t, "")
	if _, err := client.Dial(bg(t, 1500*time.Millisecond), cfg); !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrTLS) {
		t.Errorf("Dial with one endpoint down, one refusing = %v; want ErrUnavailable, not ErrTLS", err)
	}

	c := dial(t, cell, func(cfg *client.Config) { cfg.TLS = ca.ClientConfig(t, "alice") })
	if _, err := c.Put(bg(t), "/alice", nil); err != nil {
		t.Errorf("Put with a client certificate: %v", err)
	}
	if _, err := client.StatusOfTLS(bg(t), cell.Endpoints()[0], ca.ClientConfig(t, "")); !errors.Is(err, client.ErrTLS) {
		t.Errorf("StatusOfTLS without a client certificate = %v; want ErrTLS", err)
	}
}

// A client without TLS against a TLS cell is closed on without a word: its
// error says what to look at instead of only "connection closed".
func TestPlainClientOfTLSCellGetsAHint(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, false)
	cfg := testConfig(cell)
	_, err := client.Dial(bg(t, 1500*time.Millisecond), cfg)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "if the cell uses TLS, give this client its CA") {
		t.Errorf("plain Dial of a TLS cell = %v; want ErrUnavailable with the TLS hint", err)
	}
}

// tlsHint is the part of a plain client's error that points at TLS.
const tlsHint = "if the cell uses TLS, give this client its CA: Config.TLS, latch --cacert)"

// With a replica of the TLS cell down, the last endpoint tried fails with
// "connection refused": the error still gives the hint the others earned.
func TestPlainClientOfTLSCellWithAReplicaDownGetsAHint(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, false)
	last := cell.N() - 1
	if err := cell.Stop(last); err != nil {
		t.Fatalf("Stop(%d): %v", last, err)
	}
	cfg := testConfig(cell) // the stopped replica is the last endpoint of each round
	_, err := client.Dial(bg(t, 1500*time.Millisecond), cfg)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), tlsHint) {
		t.Errorf("plain Dial of a TLS cell with replica %d down = %v; want ErrUnavailable with the TLS hint", last, err)
	}
}

// A replica that closes a plain connection as a TLS one does and then goes
// down: the later dial rounds fail otherwise ("connection refused"), and
// the error keeps the hint of the first.
func TestPlainClientKeepsTheTLSHintAcrossRounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		ln.Close() // down before the client sees the close: no later round reaches it
		if err != nil {
			return
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		nc.Read(make([]byte, 5)) // as a TLS replica reads a record header, then gives up
		nc.Close()
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	cfg := client.DefaultConfig(ln.Addr().String())
	cfg.DialTimeout = 500 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	_, err = client.Dial(bg(t, 1500*time.Millisecond), cfg)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), tlsHint) {
		t.Errorf("plain Dial of a replica that closed the connection, then went down = %v; want ErrUnavailable with the TLS hint", err)
	}
}
