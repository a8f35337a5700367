package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/latchd/latch/internal/testcerts"
)

func TestMutualTLSExchange(t *testing.T) {
	ca := testcerts.NewCA(t, "latch peers")
	nodes := startCell(t, 3, func(c *Config) { c.TLS = ca.PeerConfig(t, fmt.Sprintf("replica %d", c.ID)) })
	exchange(t, nodes, []uint32{1, 2}, 50)
	for _, n := range nodes[1:] {
		if r := n.Stats().Rejected; r != 0 {
			t.Errorf("replica %d refused %d connections; want none\nlog:\n%s", n.id, r, n.log)
		}
	}
}

// TestPeerWithBadCertCannotJoin: replica 1 dials replica 2. Whichever side
// is misconfigured, replica 2 refuses the connection (the bad certificate
// is the listener's own when replica 1 refuses it first: the alert ends
// the handshake on both sides) and delivers nothing.
func TestPeerWithBadCertCannotJoin(t *testing.T) {
	ca, other := testcerts.NewCA(t, "latch peers"), testcerts.NewCA(t, "someone else")
	good := func(t *testing.T, id uint64) *tls.Config { return ca.PeerConfig(t, fmt.Sprintf("replica %d", id)) }
	cases := []struct {
		name       string
		tls1, tls2 func(t *testing.T) *tls.Config
		log2       string // in replica 2's log, on the refusal
	}{
		{"dialer's cert from another CA", func(t *testing.T) *tls.Config {
			c := other.PeerConfig(t, "replica 1")
			c.RootCAs = ca.Pool() // trusts the cell, is not trusted by it
			return c
		}, func(t *testing.T) *tls.Config { return good(t, 2) }, "TLS"},
		{"listener's cert from another CA", func(t *testing.T) *tls.Config { return good(t, 1) }, func(t *testing.T) *tls.Config {
			c := other.PeerConfig(t, "replica 2")
			c.ClientCAs = ca.Pool()
			return c
		}, "TLS"},
		{"dialer without TLS", func(*testing.T) *tls.Config { return nil }, func(t *testing.T) *tls.Config { return good(t, 2) }, "TLS"},
		{"listener without TLS", func(t *testing.T) *tls.Config { return good(t, 1) }, func(*testing.T) *tls.Config { return nil }, "refused connection"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startCell(t, 2, func(c *Config) {
				if c.ID == 1 {
					c.TLS = tc.tls1(t)
				} else {
					c.TLS = tc.tls2(t)
				}
			})
			if err := nodes[1].Send(2, 1, []byte("let me in")); err != nil {
				t.Fatalf("Send: %v", err)
			}
			// Two refusals: the dialer came back after the first and was
			// refused again.
			waitFor(t, "replica 2 to refuse replica 1 twice", func() bool { return nodes[2].Stats().Rejected >= 2 })
			if st := nodes[2].Stats().Peers[1]; st.Connected || st.Connects != 0 || st.FramesReceived != 0 {
				t.Errorf("replica 2's stats for replica 1 = %+v; want never connected, nothing received", st)
			}
			if st := nodes[1].Stats().Peers[2]; st.Connected || st.Connects != 0 {
				t.Errorf("replica 1's stats for replica 2 = %+v; want never connected", st)
			}
			select {
			case m := <-nodes[2].inbox:
				t.Errorf("replica 2 received %q from replica %d; want nothing", m.payload, m.from)
			default:
			}
			logContains(t, nodes[2], tc.log2)
			logContains(t, nodes[1], "cannot connect to peer")
		})
	}
}

func TestConfigValidateTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "latch peers")
	cfg := validConfig()
	cfg.TLS = ca.PeerConfig(t, "replica 2")
	if err := cfg.Validate(); err != nil {
		t.Fatalf("mutual TLS: Validate() = %v", err)
	}
	cases := []struct {
		name   string
		change func(*tls.Config)
		text   string
	}{
		{"no certificate", func(c *tls.Config) { c.Certificates = nil }, "TLS has no certificate"},
		{"no root CAs", func(c *tls.Config) { c.RootCAs = nil }, "TLS.RootCAs is nil"},
		{"no client CAs", func(c *tls.Config) { c.ClientCAs = nil }, "peer TLS must be mutual"},
		{"client certificate optional", func(c *tls.Config) { c.ClientAuth = tls.VerifyClientCertIfGiven }, "peer TLS must be mutual"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.TLS = ca.PeerConfig(t, "replica 2")
			tc.change(cfg.TLS)
			if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Validate() = %v; want ErrConfig mentioning %q", err, tc.text)
			}
		})
	}
}
