package cli

import (
	"bytes"
	"strings"
	"testing"
)

// A column with a tab or a newline (a session's client name, say) is
// quoted, so the table keeps its rows and columns.
func TestTableQuotesControlCharacters(t *testing.T) {
	var out bytes.Buffer
	tb := newTable(&out, "ID", "CLIENT")
	tb.row("1", "plain name")
	tb.row("2", "two\nlines\tand a tab")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines; want 3:\n%s", len(lines), out.String())
	}
	if !strings.HasSuffix(lines[1], "plain name") {
		t.Errorf("plain column changed: %q", lines[1])
	}
	if want := `"two\nlines\tand a tab"`; !strings.HasSuffix(lines[2], want) {
		t.Errorf("row %q; want it to end with %s", lines[2], want)
	}
}
