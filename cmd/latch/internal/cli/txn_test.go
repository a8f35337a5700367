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

	// Gets: a read of several nodes at one moment, contents quoted; in
	// JSON as get does; with a write, refused.
	latch(t, "put", "/txn/a", "line 1\nline 2").ok(t)
	latch(t, "put", "/txn/b", "\xff").ok(t)
	r = latch(t, "txn", "get /txn/a", "missing /txn/cfg", "get /txn/b").ok(t)
	if lines := strings.Split(strings.TrimSpace(r.out), "\n"); len(lines) != 3 || lines[0] != `ok  get /txn/a  -> /txn/a gen 1: "line 1\nline 2"` ||
		lines[2] != `ok  get /txn/b  -> /txn/b gen 1: "\xff"` {
		t.Errorf("read txn output:\n%s", r.out)
	}
	j = decode[struct {
		Applied bool            `json:"applied"`
		Results []TxnResultJSON `json:"results"`
	}](t, latch(t, "-o", "json", "txn", "get /txn/a", "get /txn/b").ok(t))
	if len(j.Results) != 2 || j.Results[0].Data == nil || *j.Results[0].Data != "line 1\nline 2" || j.Results[1].DataBase64 != "/w==" ||
		j.Results[0].Stat == nil || j.Results[0].Stat.ContentGen != 1 {
		t.Errorf("read txn -o json = %+v", j)
	}
	latch(t, "txn", "get /txn/none").failed(t, ExitNotFound, "op 1")
	latch(t, "txn", "put /txn/a x", "get /txn/a").failed(t, ExitUsage, "op 2 (get /txn/a) reads and op 1 (put /txn/a x) writes")

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
