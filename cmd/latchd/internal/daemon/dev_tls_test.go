package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/devcerts"
	"github.com/latchd/latch/cmd/internal/tlsfiles"
	"github.com/latchd/latch/cmd/latchd/internal/admin"
	"github.com/latchd/latch/cmd/latchd/internal/config"
)

// devClientTLS is the TLS config of a client of a `latchd dev --tls` cell
// whose files are in dir, presenting name's certificate ("" for none).
func devClientTLS(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	pool, err := tlsfiles.Pool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{RootCAs: pool}
	if name != "" {
		pair, err := tlsfiles.KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// httpsGet GETs url with tc and returns the status code and body.
func httpsGet(t *testing.T, tc *tls.Config, url string) (int, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

// TestDevTLS runs `latchd dev --tls`: the superuser's certificate writes,
// reads and sets an ACL that refuses alice, a client without a certificate
// is refused, the admin HTTPS serves /status to the superuser and /backup
// to it alone. A restart with the same --data-dir keeps the certificates,
// and --tls --restore starts a cell from the backup, ACLs and all.
func TestDevTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	dev := startDev(t, "--tls", "--data-dir", dir)
	out := dev.out.String()
	for _, want := range []string{
		"latchd dev: new TLS files in " + tlsDir + "\n",
		"LATCH_CACERT=" + tlsDir + "/ca.crt LATCH_CERT=" + tlsDir + "/admin.crt LATCH_KEY=" + tlsDir + "/admin.key\n",
		"admin is a superuser of the cell; alice.crt/alice.key and bob.crt/bob.key in " + tlsDir + " are ordinary principals",
		"curl --cacert " + tlsDir + "/ca.crt --cert " + tlsDir + "/admin.crt --key " + tlsDir + "/admin.key https://127.0.0.1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	endpoints := strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(out)[1], ",")
	https := regexp.MustCompile(`admin https://(\S+)`).FindAllStringSubmatch(out, -1)
	if len(https) != 3 {
		t.Fatalf("output has %d admin https addresses; want 3:\n%s", len(https), out)
	}
	adminTLS, aliceTLS := devClientTLS(t, tlsDir, "admin"), devClientTLS(t, tlsDir, "alice")
	dial := func(tc *tls.Config) (*client.Client, error) {
		return client.Dial(ctx, client.Config{Endpoints: endpoints, TLS: tc})
	}

	su, err := dial(adminTLS)
	if err != nil {
		t.Fatalf("Dial as admin: %v", err)
	}
	if name, super := su.Principal(); name != "admin" || !super {
		t.Errorf("admin's Principal() = %q, %v; want admin, a superuser", name, super)
	}
	if _, err := su.Put(ctx, "/acl/admins", []byte("admin"), client.CreateParents()); err != nil {
		t.Fatalf("Put(/acl/admins) as admin: %v", err)
	}
	if _, err := su.Put(ctx, "/secret", []byte("s")); err != nil {
		t.Fatalf("Put(/secret) as admin: %v", err)
	}
	if n, err := su.Get(ctx, "/secret"); err != nil || string(n.Data) != "s" {
		t.Errorf("Get(/secret) as admin = %q, %v; want s", n.Data, err)
	}
	if _, err := su.SetACL(ctx, "/secret", client.ACL{Read: []string{"admins"}, Write: []string{"admins"}, Admin: []string{"admins"}}); err != nil {
		t.Fatalf("SetACL(/secret) as admin: %v", err)
	}
	su.Close()

	alice, err := dial(aliceTLS)
	if err != nil {
		t.Fatalf("Dial as alice: %v", err)
	}
	if name, super := alice.Principal(); name != "alice" || super {
		t.Errorf("alice's Principal() = %q, %v; want alice, no superuser", name, super)
	}
	if _, err := alice.Get(ctx, "/secret"); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Get(/secret) as alice = %v; want ErrPermission", err)
	}
	alice.Close()
	if c, err := dial(devClientTLS(t, tlsDir, "")); !errors.Is(err, client.ErrTLS) {
		if err == nil {
			c.Close()
		}
		t.Errorf("Dial without a client certificate = %v; want ErrTLS", err)
	}

	// Admin HTTPS: /status to anyone with a certificate (and the members
	// reach each other's client ports over TLS), /backup to the
	// superuser alone.
	base := "https://" + https[0][1]
	code, body := httpsGet(t, adminTLS, base+"/status")
	var st admin.StatusDoc
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Leader == 0 || len(st.Members) != 3 {
		t.Fatalf("/status as admin = %d %s (%v); want a leader and three members", code, body, err)
	}
	for _, m := range st.Members {
		if !m.Reachable {
			t.Errorf("/status: member %d unreachable: %s", m.ID, m.Error)
		}
	}
	if code, body := httpsGet(t, aliceTLS, base+"/backup"); code != http.StatusForbidden {
		t.Errorf("/backup as alice = %d (%d bytes); want 403", code, len(body))
	}
	var leaderHTTP string
	for _, m := range st.Members {
		if m.ID == st.Leader {
			leaderHTTP = m.HTTP
		}
	}
	code, backup := httpsGet(t, adminTLS, "https://"+leaderHTTP+"/backup")
	if code != 200 || !bytes.HasPrefix(backup, []byte("LTBK")) {
		t.Fatalf("/backup as admin from the leader = %d, %d bytes; want 200 and a backup", code, len(backup))
	}
	dev.stop()

	// The same --data-dir again: the files are kept, and the certificates
	// read before the restart still work.
	ca, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	dev = startDev(t, "--tls", "--data-dir", dir)
	if want := "latchd dev: TLS files in " + tlsDir + ", kept from an earlier run\n"; !strings.Contains(dev.out.String(), want) {
		t.Errorf("output after a restart lacks %q:\n%s", want, dev.out.String())
	}
	if again, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt")); !bytes.Equal(ca, again) {
		t.Errorf("ca.crt changed across a restart")
	}
	endpoints = strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(dev.out.String())[1], ",")
	su, err = dial(adminTLS)
	if err != nil {
		t.Fatalf("Dial as admin after a restart: %v", err)
	}
	if n, err := su.Get(ctx, "/secret"); err != nil || string(n.Data) != "s" {
		t.Errorf("Get(/secret) as admin after a restart = %q, %v; want s", n.Data, err)
	}
	su.Close()
	dev.stop()

	// --tls --restore, in a temporary dir, without admin HTTP.
	file := filepath.Join(t.TempDir(), "cell.backup")
	if err := os.WriteFile(file, backup, 0o644); err != nil {
		t.Fatal(err)
	}
	dev = startDev(t, "--tls", "--restore", file, "--no-http")
	out = dev.out.String()
	m := regexp.MustCompile(`new TLS files in (\S+)\n`).FindStringSubmatch(out)
	if m == nil || strings.Count(out, "restored ") != 3 || strings.Contains(out, "curl") || strings.Count(out, "admin -") != 3 {
		t.Fatalf("output of --tls --restore --no-http: want new TLS files, three restored lines, admin - and no curl line:\n%s", out)
	}
	tmpTLS := m[1]
	endpoints = strings.Split(regexp.MustCompile(`export LATCH_ENDPOINTS=(\S+)`).FindStringSubmatch(out)[1], ",")
	for _, who := range []struct {
		name string
		want error
	}{{"admin", nil}, {"alice", client.ErrPermission}} {
		c, err := dial(devClientTLS(t, tmpTLS, who.name))
		if err != nil {
			t.Fatalf("Dial the restored cell as %s: %v", who.name, err)
		}
		if _, err := c.Get(ctx, "/secret"); !errors.Is(err, who.want) {
			t.Errorf("Get(/secret) in the restored cell as %s = %v; want %v", who.name, err, who.want)
		}
		c.Close()
	}
	dev.stop()
	if _, err := os.Stat(tmpTLS); !os.IsNotExist(err) {
		t.Errorf("the temporary TLS files %s are still there (%v)", tmpTLS, err)
	}
}

// TestDevTLSFiles checks that dev --tls makes its files, keeps them, and
// replaces those it cannot use, saying why; and that it refuses a data dir
// where it cannot write them.
func TestDevTLSFiles(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	set := devcerts.Set{Dir: tlsDir, Clients: devClients}
	tests := []struct {
		name   string
		damage func()
		want   string // the line devTLS prints
	}{
		{"none yet", func() {}, "latchd dev: new TLS files in " + tlsDir + "\n"},
		{"good ones", func() {}, "latchd dev: TLS files in " + tlsDir + ", kept from an earlier run\n"},
		{"expired", func() {
			if err := set.Make(time.Now().Add(-devcerts.Validity - time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, "latchd dev: new TLS files in " + tlsDir + ", replacing the old ones: " + tlsDir + "/replica.crt: the certificate expired on "},
		{"a missing key", func() { os.Remove(filepath.Join(tlsDir, "bob.key")) },
			"latchd dev: new TLS files in " + tlsDir + ", replacing the old ones: open " + tlsDir + "/bob.key: no such file or directory\n"},
	}
	for _, tt := range tests {
		tt.damage()
		var out bytes.Buffer
		got, cfg, err := devTLS(dir, config.Default(), time.Now(), &out)
		if err != nil {
			t.Fatalf("%s: devTLS: %v", tt.name, err)
		}
		if !strings.HasPrefix(out.String(), tt.want) {
			t.Errorf("%s: devTLS printed %q; want %q", tt.name, out.String(), tt.want)
		}
		if err := got.Check(time.Now()); err != nil {
			t.Errorf("%s: the files after devTLS: %v", tt.name, err)
		}
		if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientTLS == nil || cfg.PeerTLS == nil ||
			!slices.Equal(cfg.Superusers, []string{"admin"}) || cfg.Lease != config.DefaultLease {
			t.Errorf("%s: devTLS config = %+v; want client certificates required, peer TLS, admin a superuser, the default timings", tt.name, cfg)
		}
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	var errb bytes.Buffer
	ended, end := context.WithCancel(context.Background())
	end()
	code := Main(ended, []string{"dev", "--base-port", "0", "--tls", "--data-dir", file}, io.Discard, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "--tls: mkdir "+file+": not a directory") {
		t.Errorf("latchd dev --tls on a data dir that is a file: exit %d, %q; want %d and --tls: mkdir ...: not a directory", code, errb.String(), ExitError)
	}
}
