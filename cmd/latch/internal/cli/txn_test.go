package cli

import (
	"strings"
	"testing"
)

func TestTxn(t *testing.T) {
	fresh(t, "/txn")
	latch(t, "put", "-p", "/txn/cfg", "v1").ok(t)

	// Operations as arguments: all apply, one line each.
	r := latch(t, "txn", "exists --if-gen 1 /txn/cfg", "missing /txn/new", `put /txn/cfg "v 2"`, "create -s /txn/q- x").ok(t)
	if lines := strings.Split(strings.TrimSpace(r.out), "\n"); len(lines) != 4 || !strings.Contains(lines[2], "gen 2") || !strings.Contains(lines[3], "/txn/q-0") {
		t.Errorf("txn output:\n%s", r.out)
	}
	if g := latch(t, "get", "/txn/cfg").ok(t); g.out != "v 2" {
		t.Errorf("get after txn = %q; want \"v 2\"", g.out)
	}

	// From stdin, with comments: a failed check applies nothing and names
	// the op; the exit code is the failure's.
	script := "# move the config\nput /txn/cfg v3\n\nexists --if-gen 1 /txn/cfg\n"
	invocation{stdin: script}.run(t, "txn").failed(t, ExitConflict, "op 2 (exists --if-gen 1 /txn/cfg) failed")
	if g := latch(t, "get", "/txn/cfg").ok(t); g.out != "v 2" {
		t.Errorf("get after a failed txn = %q; want \"v 2\"", g.out)
	}
	latch(t, "txn", "rm /txn/none").failed(t, ExitNotFound, "op 1")

	// -o json.
	j := decode[struct {
		Applied bool            `json:"applied"`
		Results []TxnResultJSON `json:"results"`
	}](t, latch(t, "-o", "json", "txn", "put /txn/cfg v4", "rm /txn/cfg").ok(t))
	if !j.Applied || len(j.Results) != 2 || j.Results[0].Stat == nil || j.Results[0].Stat.ContentGen != 3 {
		t.Errorf("txn -o json = %+v", j)
	}

	// Bad lines are usage errors, before anything is sent.
	for _, tc := range []struct{ line, want string }{
		{"frobnicate /x", "unknown operation"},
		{"put /x", "wants 2 argument"},
		{"rm -s /x", "rm takes no --sequential"},
		{`put /x "unterminated`, "bad quoted string"},
		{"held not-a-sequencer", "sequencer"},
		{"exists --if-gen 0 /x", "at least 1"},
	} {
		latch(t, "txn", tc.line).failed(t, ExitUsage, tc.want)
	}
	invocation{stdin: "# nothing\n\n"}.run(t, "txn").failed(t, ExitUsage, "no operations")
}
