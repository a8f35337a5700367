package depgraph

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/latchd/latch"

// rule says which of our packages a package (and everything it imports,
// transitively) may use. Patterns are module-relative; "x/..." matches x and
// everything below it.
type rule struct {
	pkg     string   // module-relative pattern of the packages the rule covers
	allowed []string // module-relative patterns of our packages they may depend on
	denyStd []string // standard packages they must not import directly
}

// rules is the layering of DESIGN.md ("Who may import whom"). A package of
// ours that no rule covers fails the test, so a new top-level package must be
// placed in the graph on purpose.
var rules = []rule{
	{pkg: "namespace/...", allowed: []string{"namespace/..."}},
	{pkg: "replica/paxos/...", allowed: []string{"replica/paxos/..."}, denyStd: []string{"time", "net", "os"}},
	{pkg: "replica/...", allowed: []string{"replica/...", "internal/muxconn"}},
	{pkg: "session/...", allowed: []string{"session/...", "namespace/..."}},
	{pkg: "internal/muxconn", allowed: []string{"internal/muxconn"}},
	{pkg: "internal/wire/...", allowed: []string{"internal/wire/..."}},
	{pkg: "client/...", allowed: []string{"client/...", "internal/wire/...", "internal/muxconn"}},
	{pkg: "lockserver/...", allowed: []string{"lockserver/...", "replica/...", "namespace/...", "session/...", "internal/wire/...", "internal/muxconn"}},
	{pkg: "cmd/...", allowed: []string{"cmd/...", "lockserver/...", "client/...", "replica/...", "namespace/...", "session/...", "internal/wire/...", "internal/muxconn"}},
	{pkg: "examples/...", allowed: []string{"examples/...", "replica/...", "internal/muxconn"}},
	{pkg: "internal/depgraph", allowed: []string{"internal/depgraph"}},
	// The certificates of the TLS tests of lockserver, client, replica/transport and cmd: imported by tests only.
	{pkg: "internal/testcerts", allowed: []string{"internal/testcerts"}},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("go command not in PATH: %v", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(&stdout)
	for {
		var p pkgInfo
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// match reports whether the module-relative package rel matches pattern.
func match(pattern, rel string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

func ours(importPath string) (string, bool) {
	if importPath == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func ruleFor(rel string) (rule, bool) {
	for _, r := range rules {
		if match(r.pkg, rel) {
			return r, true
		}
	}
	return rule{}, false
}

func TestPackageGraph(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	for _, p := range pkgs {
		rel, _ := ours(p.ImportPath)
		r, ok := ruleFor(rel)
		if !ok {
			t.Errorf("package %s is not placed in the graph: add a rule to depgraph_test.go and DESIGN's layering", rel)
			continue
		}
		for _, d := range p.Deps {
			drel, isOurs := ours(d)
			if !isOurs {
				continue
			}
			allowed := false
			for _, a := range r.allowed {
				allowed = allowed || match(a, drel)
			}
			if !allowed {
				t.Errorf("%s depends on %s; allowed: %v", rel, drel, r.allowed)
			}
		}
		for _, imp := range p.Imports {
			for _, deny := range r.denyStd {
				if imp == deny || strings.HasPrefix(imp, deny+"/") {
					t.Errorf("%s imports %s; it must stay free of %v", rel, imp, r.denyStd)
				}
			}
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, rel string
		want         bool
	}{
		{"replica/...", "replica", true},
		{"replica/...", "replica/paxos", true},
		{"replica/...", "replicas", false},
		{"namespace", "namespace", true},
		{"namespace", "namespace/x", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.rel); got != tt.want {
			t.Errorf("match(%q, %q) = %v; want %v", tt.pattern, tt.rel, got, tt.want)
		}
	}
}
