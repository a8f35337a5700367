package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// decode parses r's stdout as JSON into v.
func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		t.Fatalf("stdout %q is not the JSON wanted: %v", r.out, err)
	}
	if strings.Count(strings.TrimSpace(r.out), "\n") != 0 {
		t.Errorf("stdout %q: want one line of JSON", r.out)
	}
	return v
}

func TestPutGetStat(t *testing.T) {
	fresh(t, "/ns")
	latch(t, "put", "-p", "/ns/a/b", "hello").ok(t)
	if r := latch(t, "get", "/ns/a/b").ok(t); r.out != "hello" {
		t.Errorf("get = %q; want hello", r.out)
	}
	n := decode[NodeJSON](t, latch(t, "-o", "json", "get", "/ns/a/b").ok(t))
	if n.Data == nil || *n.Data != "hello" || n.Stat.ContentGen != 1 || n.Stat.Size != 5 || n.Path != "/ns/a/b" {
		t.Errorf("get -o json = %+v", n)
	}

	// put --if-gen: a compare-and-swap on the content generation.
	s := decode[StatJSON](t, latch(t, "-o", "json", "put", "--if-gen", "1", "/ns/a/b", "v2").ok(t))
	if s.ContentGen != 2 {
		t.Errorf("put --if-gen 1 -o json: content gen %d; want 2", s.ContentGen)
	}
	latch(t, "put", "--if-gen", "1", "/ns/a/b", "v3").failed(t, ExitConflict, "generation mismatch")
	if r := latch(t, "get", "/ns/a/b").ok(t); r.out != "v2" {
		t.Errorf("after a failed CAS get = %q; want v2", r.out)
	}

	r := latch(t, "stat", "/ns/a/b").ok(t)
	for _, want := range []string{"path:", "/ns/a/b", "content gen:  2", "size:         2 bytes", "ephemeral:    no"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("stat output lacks %q:\n%s", want, r.out)
		}
	}
	st := decode[StatJSON](t, latch(t, "-o", "json", "stat", "/ns/a").ok(t))
	if st.Children != 1 || st.Size != 0 || st.Path != "/ns/a" {
		t.Errorf("stat -o json /ns/a = %+v", st)
	}
	// Stale reads work too.
	if r := latch(t, "--stale", "get", "/ns/a/b").ok(t); r.out != "v2" && r.out != "hello" {
		t.Errorf("get --stale = %q", r.out)
	}
}

func TestPutStdin(t *testing.T) {
	fresh(t, "/stdin")
	content := "line one\nline two\n"
	invocation{stdin: content}.run(t, "put", "-p", "/stdin/x", "-").ok(t)
	if r := latch(t, "get", "/stdin/x").ok(t); r.out != content {
		t.Errorf("get = %q; want %q", r.out, content)
	}
	// Binary content comes back in base64 in JSON.
	bin := "\xff\x00\xfe"
	invocation{stdin: bin}.run(t, "put", "/stdin/bin", "-").ok(t)
	n := decode[NodeJSON](t, latch(t, "-o", "json", "get", "/stdin/bin").ok(t))
	if n.Data != nil || n.DataBase64 != base64.StdEncoding.EncodeToString([]byte(bin)) {
		t.Errorf("get -o json of binary content = %+v", n)
	}
	if r := latch(t, "get", "/stdin/bin").ok(t); r.out != bin {
		t.Errorf("get = %q; want the bytes put", r.out)
	}
	// Over the cell's content limit.
	big := strings.Repeat("x", 300<<10)
	invocation{stdin: big}.run(t, "put", "/stdin/big", "-").failed(t, ExitRejected, "too large")
}

func TestLsTreeRm(t *testing.T) {
	fresh(t, "/tr")
	for _, p := range []string{"/tr/x/one", "/tr/x/two", "/tr/y", "/tr/x-z"} {
		latch(t, "put", "-p", p, "data-"+p).ok(t)
	}
	if r := latch(t, "ls", "/tr").ok(t); r.out != "x\nx-z\ny\n" {
		t.Errorf("ls /tr = %q", r.out)
	}
	if r := latch(t, "ls", "-R", "/tr").ok(t); r.out != "/tr/x\n/tr/x/one\n/tr/x/two\n/tr/x-z\n/tr/y\n" {
		t.Errorf("ls -R /tr = %q", r.out)
	}
	r := latch(t, "ls", "-l", "/tr").ok(t)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "KIND") || !strings.Contains(lines[1], "x") || !strings.Contains(lines[1], " 2 ") {
		t.Errorf("ls -l /tr =\n%s", r.out)
	}
	es := decode[[]EntryJSON](t, latch(t, "-o", "json", "ls", "/tr/x").ok(t))
	if len(es) != 2 || es[0].Name != "one" || es[0].Path != "/tr/x/one" || es[1].Stat.Size != uint64(len("data-/tr/x/two")) {
		t.Errorf("ls -o json = %+v", es)
	}
	if es := decode[[]EntryJSON](t, latch(t, "-o", "json", "ls", "/tr/x/one").ok(t)); len(es) != 0 {
		t.Errorf("ls of a leaf -o json = %+v; want []", es)
	}

	// tree shows lock state.
	latch(t, "lock", "/tr/y", "--", "true").ok(t)
	r = latch(t, "tree", "/tr").ok(t)
	want := []string{
		"/tr  [0 B · gen 1]",
		"├── x  [0 B · gen 1]",
		"│   ├── one  [14 B · gen 1]",
		"│   └── two  [14 B · gen 1]",
		"├── x-z  [12 B · gen 1]",
		"└── y  [10 B · gen 1 · lock gen 1]",
	}
	if got := strings.TrimSpace(r.out); got != strings.Join(want, "\n") {
		t.Errorf("tree /tr =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	tree := decode[TreeJSON](t, latch(t, "-o", "json", "tree", "/tr").ok(t))
	if tree.Path != "/tr" || len(tree.Children) != 3 || len(tree.Children[0].Children) != 2 || tree.Children[2].Stat.LockGen != 1 {
		t.Errorf("tree -o json = %+v", tree)
	}

	latch(t, "rm", "/tr/x").failed(t, ExitConflict, "children")
	latch(t, "rm", "--if-gen", "5", "/tr/y").failed(t, ExitConflict, "generation mismatch")
	latch(t, "rm", "--if-gen", "1", "/tr/y").ok(t)
	if r := latch(t, "-o", "json", "rm", "-r", "/tr/x").ok(t); !strings.Contains(r.out, `"deleted":true`) {
		t.Errorf("rm -o json = %q", r.out)
	}
	if r := latch(t, "ls", "-R", "/tr").ok(t); r.out != "/tr/x-z\n" {
		t.Errorf("after rm: ls -R = %q", r.out)
	}
	latch(t, "get", "/tr/x/one").failed(t, ExitNotFound, "not found")
	latch(t, "tree", "/tr/nope").failed(t, ExitNotFound, "not found")
}

func TestUsageAndErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown flag", []string{"ls", "--frob"}, ExitUsage, "unknown flag"},
		{"missing argument", []string{"get"}, ExitUsage, "want one PATH"},
		{"too many arguments", []string{"put", "/a", "b", "c"}, ExitUsage, "want PATH and VALUE"},
		{"bad output format", []string{"-o", "yaml", "ls"}, ExitUsage, `-o "yaml"`},
		{"if-gen 0", []string{"put", "--if-gen", "0", "/a", "b"}, ExitUsage, "--if-gen must be at least 1"},
		{"lock without path", []string{"lock"}, ExitUsage, "want PATH"},
		{"lock with nothing after --", []string{"lock", "/a", "--"}, ExitUsage, "no command after --"},
		{"lock command without --", []string{"lock", "/a", "echo"}, ExitUsage, "want PATH"},
		{"bad bench kind", []string{"bench", "nap"}, ExitUsage, "unknown benchmark"},
		{"elect observe with value", []string{"elect", "--observe", "a", "b"}, ExitUsage, "want one NAME"},
		{"bad path", []string{"get", "no-slash"}, ExitRejected, "bad path"},
		{"not found", []string{"stat", "/no/such/node"}, ExitNotFound, "not found"},
		{"parent missing", []string{"put", "/no/such/parent", "x"}, ExitNotFound, "not found"},
		{"negative count", []string{"watch", "--count", "-1", "/a"}, ExitUsage, "--count"},
		{"empty endpoints", []string{"--endpoints", "", "ls"}, ExitUsage, `--endpoints "" names no address`},
		{"endpoints of commas", []string{"--endpoints", ", ,", "status"}, ExitUsage, "names no address"},
		{"completion without a shell", []string{"completion"}, ExitUsage, "completion: want a shell"},
		{"completion of an unknown shell", []string{"completion", "tcsh"}, ExitUsage, `unknown shell "tcsh"`},
		{"negative grace", []string{"--grace", "-1s", "put", "/a", "b"}, ExitUsage, "usage: --grace -1s must not be negative"},
		{"grace within the backoff", []string{"--grace", "500ms", "ls"}, ExitUsage, "usage: --grace 500ms must be longer than"},
		{"negative session timeout", []string{"--session-timeout", "-2s", "ls"}, ExitUsage, "usage: --session-timeout -2s must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			latch(t, tt.args...).failed(t, tt.code, tt.want)
		})
	}
}

func TestUnavailable(t *testing.T) {
	// Nobody listens on these ports (the shared cell uses others).
	r := invocation{endpoints: []string{"127.0.0.1:1", "127.0.0.1:2"}}.run(t, "--command-timeout", "300ms", "get", "/x")
	r.failed(t, ExitUnavailable, "connecting to 127.0.0.1:1,127.0.0.1:2")
	r = invocation{endpoints: []string{"127.0.0.1:1"}}.run(t, "--command-timeout", "300ms", "status")
	r.failed(t, ExitUnavailable, "no endpoint")
	if !strings.Contains(r.out, "unreachable") {
		t.Errorf("status stdout = %q; want the unreachable endpoint listed", r.out)
	}
	r = invocation{endpoints: []string{"127.0.0.1:1"}}.run(t, "--command-timeout", "300ms", "members")
	r.failed(t, ExitUnavailable, "no endpoint")
	latch(t, "--endpoints", "nope", "ls").failed(t, ExitUsage, "--endpoints")
}

func TestEndpointsFromEnvironment(t *testing.T) {
	g := &globals{env: Env{Getenv: func(k string) string {
		if k == EnvEndpoints {
			return "10.0.0.1:7101, 10.0.0.2:7101"
		}
		return ""
	}}}
	eps, err := g.endpointList()
	if err != nil || strings.Join(eps, ",") != "10.0.0.1:7101,10.0.0.2:7101" {
		t.Errorf("endpoints from $LATCH_ENDPOINTS = %q, %v", eps, err)
	}
	g.endpoints = "127.0.0.1:1"
	if eps, _ := g.endpointList(); strings.Join(eps, ",") != "127.0.0.1:1" {
		t.Errorf("--endpoints does not override the environment: %q", eps)
	}
	g = &globals{env: Env{Getenv: func(string) string { return "" }}}
	if eps, _ := g.endpointList(); strings.Join(eps, ",") != DefaultEndpoints {
		t.Errorf("default endpoints = %q; want %s", eps, DefaultEndpoints)
	}
}

// TestHelpNamesFlagValues: --help shows each global flag with its kind of
// value (pflag takes a `quoted` word of the usage text for it instead).
func TestHelpNamesFlagValues(t *testing.T) {
	r := latch(t, "--help").ok(t)
	for _, want := range []string{"--name string", "--endpoints string", "--grace duration"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("latch --help does not show %q:\n%s", want, r.out)
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := latch(t, "completion", shell).ok(t)
		if !strings.Contains(r.out, "latch") || len(r.out) < 500 {
			t.Errorf("completion %s: %d bytes", shell, len(r.out))
		}
	}
}

// TestNoQuorum: with one replica of three left, stale reads still work
// (they open no session), and writes report the cell unavailable.
func TestNoQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	own := ownCell(t, ctx)
	inv := invocation{endpoints: own.Endpoints()}
	inv.run(t, "put", "-p", "/nq/x", "kept").ok(t)
	// Wait until every replica has applied the write, then stop two.
	waitFor(t, 20*time.Second, "every replica to apply the write", func() bool {
		doc := decode[CellJSON](t, inv.run(t, "-o", "json", "status"))
		for _, r := range doc.Replicas {
			if !r.Reachable || r.Lag != 0 {
				return false
			}
		}
		return true
	})
	last := own.N() - 1
	for i := range last {
		own.Stop(i)
	}
	one := invocation{endpoints: own.Endpoints()[last:]}
	if r := one.run(t, "--stale", "--command-timeout", "5s", "get", "/nq/x").ok(t); r.out != "kept" {
		t.Errorf("stale get without a quorum = %q; want kept", r.out)
	}
	if r := one.run(t, "--stale", "--command-timeout", "5s", "ls", "/nq").ok(t); r.out != "x\n" {
		t.Errorf("stale ls without a quorum = %q", r.out)
	}
	one.run(t, "--command-timeout", "2s", "put", "/nq/y", "lost").failed(t, ExitUnavailable, "unavailable")
}
