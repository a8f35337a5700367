package daemon

import (
	"encoding/json"
	"strings"
	"testing"
)

// repeatedKeys returns the top-level keys that occur more than once in
// the JSON object line (slog's JSON handler writes a key again for each
// .With that adds it, and a decoder keeps only the last).
func repeatedKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("log line %q is not a JSON object (%v)", line, err)
	}
	seen := map[string]int{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		k := tok.(string)
		if seen[k]++; seen[k] == 2 {
			dups = append(dups, k)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("log line %q: value of %q: %v", line, k, err)
		}
	}
	return dups
}

// checkLogKeys fails t for each JSON log line in logs with a key twice,
// and unless some line carries each of the keys want.
func checkLogKeys(t *testing.T, logs string, want ...string) {
	t.Helper()
	found := map[string]bool{}
	bad := 0
	for line := range strings.Lines(logs) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if dups := repeatedKeys(t, line); len(dups) > 0 {
			if bad++; bad <= 5 {
				t.Errorf("log line has %q more than once: %s", dups, line)
			}
		}
		var rec map[string]any
		json.Unmarshal([]byte(line), &rec)
		for k := range rec {
			found[k] = true
		}
	}
	if bad > 5 {
		t.Errorf("... %d lines with a repeated key in all", bad)
	}
	for _, k := range want {
		if !found[k] {
			t.Errorf("no log line has the key %q:\n%s", k, logs)
		}
	}
}

// TestDevJSONLogKeys runs `latchd dev --log-format json -v`: each line is
// one JSON object with each key once.
func TestDevJSONLogKeys(t *testing.T) {
	dev := startDev(t, "--log-format", "json", "-v")
	dev.stop()
	checkLogKeys(t, dev.errb.String(), "replica", "component")
}
