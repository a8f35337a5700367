package devcerts

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/internal/testcerts"
)

func newSet(t *testing.T, now time.Time) Set {
	t.Helper()
	s := Set{Dir: filepath.Join(t.TempDir(), "tls"), Clients: []string{"admin", "alice"}}
	if err := s.Make(now); err != nil {
		t.Fatalf("Make: %v", err)
	}
	return s
}

func TestMakeAndCheck(t *testing.T) {
	now := time.Now()
	s := newSet(t, now)
	for _, at := range []time.Time{now, now.Add(-30 * time.Minute), now.Add(Validity - Margin - time.Hour)} {
		if err := s.Check(at); err != nil {
			t.Errorf("Check(%v) after Make(%v): %v", at, now, err)
		}
	}
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{now.Add(-2 * time.Hour), "not valid before"},
		{now.Add(Validity - Margin + time.Hour), "expired"},
		{now.Add(Validity + time.Hour), "expired"},
	} {
		if err := s.Check(tt.at); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%v) = %v; want an error with %q", tt.at, err, tt.want)
		}
	}
	info, err := os.Stat(s.Dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the directory: %v, %v; want mode 0700", info, err)
	}
	for _, name := range []string{"replica", "admin", "alice"} {
		_, key := s.Files(name)
		if info, err := os.Stat(key); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", key, info, err)
		}
	}

	// Make again replaces every file, keeping the keys' mode.
	ca, _ := os.ReadFile(s.CA())
	_, key := s.Files("admin")
	os.Chmod(key, 0o644)
	if err := s.Make(now); err != nil {
		t.Fatalf("Make again: %v", err)
	}
	if again, _ := os.ReadFile(s.CA()); bytes.Equal(ca, again) {
		t.Errorf("Make again kept ca.crt")
	}
	if info, err := os.Stat(key); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("%s after Make again: %v, %v; want mode 0600", key, info, err)
	}
}

// TestHandshakes checks that the set does what latchd dev --tls uses it
// for: the replica certificate serves clients and its peers (mutual TLS,
// verified for Host) and the client certificates prove their names.
func TestHandshakes(t *testing.T) {
	s := newSet(t, time.Now())
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(s.CA())
	pool.AppendCertsFromPEM(caPEM)
	pair := func(name string) tls.Certificate {
		cert, key := s.Files(name)
		p, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	server := &tls.Config{Certificates: []tls.Certificate{pair(ReplicaName)}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	for _, name := range []string{ReplicaName, "admin", "alice"} {
		a, b := net.Pipe()
		srv := tls.Server(a, server)
		done := make(chan error, 1)
		go func() { done <- srv.Handshake() }()
		cli := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{pair(name)}, RootCAs: pool, ServerName: Host})
		err := cli.Handshake()
		if serr := <-done; err != nil || serr != nil {
			t.Errorf("handshake as %s: client %v, server %v", name, err, serr)
		} else if cn := srv.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != name {
			t.Errorf("handshake as %s: the server sees %q", name, cn)
		}
		a.Close() // not srv.Close: its close_notify would wait for a reader
		b.Close()
	}
}

func TestCheckRefuses(t *testing.T) {
	now := time.Now()
	other := newSet(t, now)
	tests := []struct {
		name   string
		damage func(s Set)
		want   string
	}{
		{"no files", func(s Set) { os.RemoveAll(s.Dir) }, "no such file"},
		{"a missing key", func(s Set) { os.Remove(filepath.Join(s.Dir, "alice.key")) }, "alice.key: no such file"},
		{"a damaged CA", func(s Set) { os.WriteFile(s.CA(), []byte("x"), 0o644) }, "ca.crt: no PEM data"},
		{"another CA", func(s Set) { copyFile(t, other.CA(), s.CA()) }, "replica.crt at"},
		{"another's certificate", func(s Set) {
			copyFile(t, filepath.Join(s.Dir, "admin.crt"), filepath.Join(s.Dir, "alice.crt"))
			copyFile(t, filepath.Join(s.Dir, "admin.key"), filepath.Join(s.Dir, "alice.key"))
		}, `alice.crt: the certificate is for "admin", not "alice"`},
		{"a key of another certificate", func(s Set) {
			copyFile(t, filepath.Join(s.Dir, "admin.key"), filepath.Join(s.Dir, "alice.key"))
		}, "alice.key: not the private key of the certificate"},
		{"a client certificate for the replicas", func(s Set) {
			ca := testcerts.NewCA(t, "test")
			ca.WriteCA(t, s.Dir, "ca.crt")
			ca.IssueFor(t, ReplicaName, testcerts.ClientOnly, now.Add(Margin+time.Hour)).Write(t, s.Dir, ReplicaName)
		}, "incompatible key usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(t, now)
			tt.damage(s)
			if err := s.Check(now); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v; want an error with %q", err, tt.want)
			}
			if err := s.Make(now); err != nil {
				t.Fatalf("Make: %v", err)
			}
			if err := s.Check(now); err != nil {
				t.Errorf("Check after Make = %v; want nil", err)
			}
		})
	}
}

func TestBadSets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	tests := []struct {
		set  Set
		want string
	}{
		{Set{Dir: dir, Clients: []string{"../x"}}, `client name "../x": want a plain file name`},
		{Set{Dir: dir, Clients: []string{""}}, `client name "": want a plain file name`},
		{Set{Dir: dir, Clients: []string{"a", "a"}}, `client name "a": used twice`},
		{Set{Dir: dir, Clients: []string{ReplicaName}}, `client name "replica": used twice, or taken`},
		{Set{Dir: dir, Clients: []string{"ca"}}, `client name "ca": used twice, or taken`},
	}
	for _, tt := range tests {
		for op, err := range map[string]error{"Make": tt.set.Make(time.Now()), "Check": tt.set.Check(time.Now())} {
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s(%v) = %v; want an error with %q", op, tt.set.Clients, err, tt.want)
			}
		}
	}
	if err := (Set{Dir: filepath.Join(file, "tls")}).Make(time.Now()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Make under a file = %v; want not a directory", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
