package lockserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/testcerts"
	"github.com/latchd/latch/internal/wire"
)

// tlsCell starts a cell of three whose replicas serve clients over TLS
// (with client certificates required if clientAuth) and talk to each other
// over mutual TLS, every certificate signed by ca; peerCA3, if not nil,
// signs the peer certificate of replica 3 instead, and the cell settles
// without it.
func tlsCell(t *testing.T, ca *testcerts.CA, clientAuth bool, peerCA3 *testcerts.CA) *Cell {
	t.Helper()
	c := startTestCell(t, func(cfg *Config) {
		name := fmt.Sprintf("replica %d", cfg.ID)
		cfg.TLS = ca.ServerConfig(t, name, clientAuth)
		cfg.PeerTLS = ca.PeerConfig(t, name)
		if cfg.ID == 3 && peerCA3 != nil {
			cfg.PeerTLS.Certificates = []tls.Certificate{peerCA3.Issue(t, name).TLS}
		}
	})
	followers := c.N() - 1
	if peerCA3 != nil {
		followers-- // replica 3 never hears from the leader
	}
	waitSettled(t, c, followers)
	return c
}

// dialTLS connects to addr with TLS (cfg) or plain TCP (cfg nil) and says
// Hello.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*wire.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{}
	var nc net.Conn
	var err error
	if cfg != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	wc, err := wire.NewConn(ctx, nc, wire.ConnConfig{}, wire.Hello{Client: "tls test"})
	if err == nil {
		t.Cleanup(func() { wc.Close() })
	}
	return wc, err
}

func call(t *testing.T, wc *wire.Conn, req wire.Message) wire.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := wc.Call(ctx, req)
	if err != nil {
		t.Fatalf("%v: %v", req.Type(), err)
	}
	return m
}

// leaderCall makes req over TLS (cfg) at the replica that leads, and again,
// with the same request id, at the next one while the answer is NotLeader
// or Unavailable: a TLS cell on a loaded machine may change leaders in the
// middle of a test (a handshake costs much CPU under -race).
func leaderCall(t *testing.T, cell *Cell, cfg *tls.Config, req wire.Message) wire.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		wc, err := dialTLS(t, cell.Endpoints()[leaderIndex(t, cell)], cfg)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var m wire.Message
			m, err = wc.Call(ctx, req)
			cancel()
			wc.Close()
			if err == nil {
				return m
			}
		}
		if c := codeOf(err); c != wire.NotLeader && c != wire.Unavailable || time.Now().After(deadline) {
			t.Fatalf("%v: %v", req.Type(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSCell: replicas with mutual peer TLS elect a leader, and a client
// that trusts the CA writes and reads over TLS. A plain TCP client is
// refused at the handshake, which is counted, and the TLS connection goes
// on.
func TestTLSCell(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, false, nil)
	cfg := ca.ClientConfig(t, "")
	sid := leaderCall(t, cell, cfg, &wire.OpenSession{Header: wire.Header{Request: 1}}).(*wire.SessionOpened).Session
	leaderCall(t, cell, cfg, &wire.Put{Header: wire.Header{Session: sid, Request: 2}, Path: "/tls", Content: []byte("secret")})
	if r := leaderCall(t, cell, cfg, &wire.Get{Header: wire.Header{Session: sid, Request: 3}, Path: "/tls"}).(*wire.GetReply); string(r.Content) != "secret" {
		t.Fatalf("Get(/tls) = %q; want %q", r.Content, "secret")
	}

	// One replica, leading or not, serves a TLS connection and refuses a
	// plain one; the TLS connection goes on (with stale reads, which any
	// replica answers once it has applied the Put).
	wc, err := dialTLS(t, cell.Endpoints()[0], cfg)
	if err != nil {
		t.Fatalf("TLS Hello: %v", err)
	}
	if _, err := dialTLS(t, cell.Endpoints()[0], nil); err == nil {
		t.Fatalf("plain TCP Hello to a TLS server succeeded; want it refused")
	}
	m := cell.Server(0).Metrics()
	waitFor(t, 10*time.Second, "the failed handshake to be counted", func() bool { return m.TLSHandshakeErrors.Load() == 1 })
	waitFor(t, 10*time.Second, "a stale Get of /tls over the TLS connection", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := wc.Call(ctx, &wire.Get{Path: "/tls", Stale: true})
		if codeOf(err) == wire.NotFound {
			return false // replica 0 has not applied the Put yet
		}
		if err != nil {
			t.Fatalf("stale Get(/tls) over the TLS connection: %v", err)
		}
		return string(m.(*wire.GetReply).Content) == "secret"
	})
}

// TestTLSPeerFromAnotherCA: replica 3's peer certificate is signed by
// another CA, so replicas 1 and 2 refuse it: they elect a leader and
// apply writes while replica 3 learns nothing.
func TestTLSPeerFromAnotherCA(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, false, testcerts.NewCA(t, "someone else"))
	leader := leaderIndex(t, cell)
	if leader == 2 {
		t.Fatalf("replica 3, cut off by its certificate, leads")
	}
	cfg := ca.ClientConfig(t, "")
	sid := leaderCall(t, cell, cfg, &wire.OpenSession{Header: wire.Header{Request: 1}}).(*wire.SessionOpened).Session
	leaderCall(t, cell, cfg, &wire.Put{Header: wire.Header{Session: sid, Request: 2}, Path: "/tls", Content: []byte("x")})
	leader = leaderIndex(t, cell)
	other := 1 - leader
	waitFor(t, 10*time.Second, "the other good replica to apply the write", func() bool {
		return cell.Server(other).Status().Applied >= cell.Server(leader).Status().Applied
	})
	if st := cell.Server(2).Status(); st.Leader != 0 || st.Applied != 0 {
		t.Errorf("replica 3 knows leader %d and applied %d; want no leader, nothing applied", st.Leader, st.Applied)
	}
}

// TestTLSClientCertRequired: with client certificates required, a client
// without one, or with one from another CA, is refused; one signed by
// the CA is served.
func TestTLSClientCertRequired(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	cell := tlsCell(t, ca, true, nil)
	addr := cell.Endpoints()[0]
	noCert := ca.ClientConfig(t, "")
	foreign := ca.ClientConfig(t, "")
	foreign.Certificates = []tls.Certificate{testcerts.NewCA(t, "someone else").Issue(t, "mallory").TLS}
	for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "certificate from another CA": foreign} {
		// With TLS 1.3 the client learns of the refusal only when it reads
		// (here as the connection closed under the Hello); package client
		// reports the server's alert.
		if _, err := dialTLS(t, addr, cfg); err == nil {
			t.Errorf("%s: Hello succeeded; want it refused", name)
		}
	}
	if _, err := dialTLS(t, addr, ca.ClientConfig(t, "alice")); err != nil {
		t.Errorf("with a certificate: Hello = %v", err)
	}
	waitFor(t, 10*time.Second, "both failed handshakes to be counted", func() bool {
		return cell.Server(0).Metrics().TLSHandshakeErrors.Load() == 2
	})
}

// TestPrincipalOf: the principal is the CommonName of the verified client
// certificate, and empty without one or without TLS.
func TestPrincipalOf(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	srv := ca.ServerConfig(t, "server", true)
	srv.ClientAuth = tls.VerifyClientCertIfGiven
	cases := []struct {
		name   string
		client *tls.Config // nil: plain TCP
		want   string
	}{
		{"client certificate", ca.ClientConfig(t, "alice"), "alice"},
		{"no client certificate", ca.ClientConfig(t, ""), ""},
		{"plain TCP", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					got <- "accept: " + err.Error()
					return
				}
				defer nc.Close()
				if tc.client != nil {
					sc := tls.Server(nc, srv)
					if err := sc.Handshake(); err != nil {
						got <- "handshake: " + err.Error()
						return
					}
					nc = sc
				}
				got <- principalOf(nc)
			}()
			var nc net.Conn
			if tc.client != nil {
				nc, err = tls.Dial("tcp", ln.Addr().String(), tc.client)
			} else {
				nc, err = net.Dial("tcp", ln.Addr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if p := <-got; p != tc.want {
				t.Errorf("principalOf = %q; want %q", p, tc.want)
			}
		})
	}
}

func TestConfigValidateTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "latch")
	valid := func() Config {
		c := DefaultConfig()
		c.ID, c.DataDir = 1, t.TempDir()
		c.Members = map[uint64]Member{1: {Peer: "127.0.0.1:7001", Client: "127.0.0.1:7101"}}
		c.TLS = ca.ServerConfig(t, "replica 1", true)
		c.PeerTLS = ca.PeerConfig(t, "replica 1")
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("Validate() = %v; want nil", err)
	}
	cases := []struct {
		name   string
		change func(*Config)
		text   string
	}{
		{"TLS without a certificate", func(c *Config) { c.TLS.Certificates = nil }, "TLS has no certificate"},
		{"PeerTLS not mutual", func(c *Config) { c.PeerTLS.ClientAuth = tls.NoClientCert }, "PeerTLS: transport: invalid config: peer TLS must be mutual"},
		{"PeerTLS without a certificate", func(c *Config) { c.PeerTLS.Certificates = nil }, "PeerTLS: transport: invalid config: TLS has no certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Validate() = %v; want ErrConfig mentioning %q", err, tc.text)
			}
		})
	}
}
