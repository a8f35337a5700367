package cli

import (
	"strings"
	"testing"
)

func TestACLGetSet(t *testing.T) {
	fresh(t, "/acltest", "/acl/clitest-all", "/acl/clitest-none")
	latch(t, "put", "-p", "/acl/clitest-all", "# everyone\n*").ok(t)
	latch(t, "put", "-p", "/acltest/n", "v").ok(t)

	a := decode[ACLJSON](t, latch(t, "-o", "json", "acl", "get", "/acltest/n").ok(t))
	if a.Read != "" || a.Write != "" || a.Change != "" || a.ACLGen != 1 {
		t.Errorf("acl get of a new node = %+v; want no names, ACL gen 1", a)
	}
	a = decode[ACLJSON](t, latch(t, "-o", "json", "acl", "set", "/acltest/n", "--read", "clitest-all",
		"--write", "clitest-all", "--change", "clitest-all", "--if-gen", "1").ok(t))
	if a.Read != "clitest-all" || a.Write != "clitest-all" || a.Change != "clitest-all" || a.ACLGen != 2 {
		t.Errorf("acl set -o json = %+v; want every name clitest-all, ACL gen 2", a)
	}
	if r := latch(t, "acl", "get", "/acltest/n").ok(t); !contains(r.out, "write:", "clitest-all", "acl gen:", "2") {
		t.Errorf("acl get = %q", r.out)
	}
	latch(t, "acl", "set", "--if-gen", "7", "/acltest/n").failed(t, ExitConflict, "generation")
	latch(t, "acl", "set", "--if-gen", "0", "/acltest/n").failed(t, ExitUsage, "--if-gen")
	latch(t, "acl", "get", "/acltest/none").failed(t, ExitNotFound, "")
	latch(t, "acl", "frob", "/acltest/n").failed(t, ExitUsage, "")

	// Writing is still allowed (the file lists *); once the writer ACL
	// names a file that does not exist, nobody but a superuser may write.
	latch(t, "put", "/acltest/n", "w").ok(t)
	if r := latch(t, "acl", "set", "/acltest/n", "--read", "clitest-all", "--write", "clitest-none").ok(t); !strings.Contains(r.err, "names no --change ACL") {
		t.Errorf("acl set without --change: stderr %q; want the warning", r.err)
	}
	latch(t, "acl", "set", "/acltest/n", "--read", "clitest-all", "--write", "clitest-none", "--change", "clitest-all").ok(t)
	latch(t, "put", "/acltest/n", "x").failed(t, ExitRejected, "permission")
	if r := latch(t, "get", "/acltest/n").ok(t); r.out != "w" {
		t.Errorf("get after a refused put = %q; want w", r.out)
	}
	// Clearing the names opens the node again.
	latch(t, "acl", "set", "/acltest/n").ok(t)
	latch(t, "put", "/acltest/n", "y").ok(t)
}

// contains reports whether s holds every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Without a client certificate the CLI is the anonymous principal (the
// e2e TestTLSCell checks a certificate's CN and a superuser).
func TestWhoami(t *testing.T) {
	if r := latch(t, "whoami").ok(t); r.out != "anonymous\n" {
		t.Errorf("whoami = %q; want anonymous", r.out)
	}
	w := decode[WhoamiJSON](t, latch(t, "-o", "json", "whoami").ok(t))
	if w.Principal != "" || w.Superuser || w.Session == 0 {
		t.Errorf("whoami -o json = %+v; want the anonymous principal and a session", w)
	}
	latch(t, "whoami", "extra").failed(t, ExitUsage, "")
}
