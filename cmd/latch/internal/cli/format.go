package cli

import (
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/latchd/latch/client"
)

// StatJSON is a node's metadata in -o json output.
type StatJSON struct {
	Path           string    `json:"path"`
	Instance       uint64    `json:"instance"`
	ContentGen     uint64    `json:"contentGen"`
	LockGen        uint64    `json:"lockGen"`
	ACLGen         uint64    `json:"aclGen"`
	Checksum       string    `json:"checksum"`
	Size           uint64    `json:"size"`
	CreatedIndex   uint64    `json:"createdIndex"`
	ModifiedIndex  uint64    `json:"modifiedIndex"`
	Created        time.Time `json:"created"`
	Modified       time.Time `json:"modified"`
	EphemeralOwner uint64    `json:"ephemeralOwner,omitempty"`
	Children       int       `json:"children"`
}

func statJSON(path string, s client.Stat) StatJSON {
	return StatJSON{
		Path: path, Instance: s.Instance, ContentGen: s.ContentGen, LockGen: s.LockGen, ACLGen: s.ACLGen,
		Checksum: fmt.Sprintf("%016x", s.Checksum), Size: s.Size,
		CreatedIndex: s.CreatedIndex, ModifiedIndex: s.ModifiedIndex,
		Created: s.Created.UTC(), Modified: s.Modified.UTC(),
		EphemeralOwner: s.EphemeralOwner, Children: s.Children,
	}
}

// LockJSON is a lock in -o json output.
type LockJSON struct {
	Path       string     `json:"path"`
	Mode       string     `json:"mode,omitempty"` // "ex" or "sh" while held
	LockGen    uint64     `json:"lockGen"`
	Instance   uint64     `json:"instance"`
	Holders    []uint64   `json:"holders"`
	Waiters    int        `json:"waiters"`
	DelayUntil *time.Time `json:"delayUntil,omitempty"`
}

func lockJSON(l client.LockInfo) LockJSON {
	out := LockJSON{Path: l.Path, LockGen: l.LockGen, Instance: l.Instance, Holders: l.Holders, Waiters: l.Waiters}
	if out.Holders == nil {
		out.Holders = []uint64{}
	}
	if l.Mode != 0 && len(l.Holders) > 0 {
		out.Mode = l.Mode.String()
	}
	if !l.DelayUntil.IsZero() {
		t := l.DelayUntil.UTC()
		out.DelayUntil = &t
	}
	return out
}

// lockState renders a lock for tree and ls -l: "ex by 12", "sh by 3,4 +2
// waiting", "delay 4s", or "".
func lockState(l client.LockInfo, now time.Time) string {
	var parts []string
	if len(l.Holders) > 0 {
		parts = append(parts, fmt.Sprintf("%s by %s", l.Mode, holderList(l.Holders)))
	}
	if l.Waiters > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting", l.Waiters))
	}
	if d := delayLeft(l, now); d != "" {
		parts = append(parts, "delay "+d)
	}
	return strings.Join(parts, ", ")
}

// holderList renders session ids: "3,4".
func holderList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}

// delayLeft renders what is left of a lock-delay, or "" if none.
func delayLeft(l client.LockInfo, now time.Time) string {
	if l.DelayUntil.IsZero() || !l.DelayUntil.After(now) {
		return ""
	}
	return l.DelayUntil.Sub(now).Round(100 * time.Millisecond).String()
}

// dataJSON puts content in a JSON document: as text if it is valid UTF-8,
// else in base64.
func dataJSON(data []byte) (text *string, b64 string) {
	if utf8.Valid(data) {
		s := string(data)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(data)
}

// size renders a byte count briefly: 12 B, 4.0 KiB, 1.2 MiB.
func size(n uint64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// age renders how long ago t was, briefly.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// table writes aligned columns.
type table struct{ w *tabwriter.Writer }

func newTable(out io.Writer, header ...string) *table {
	t := &table{w: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row writes one row. A column with control characters (a tab or a
// newline in a client's session name, say) is written quoted, so it cannot
// break the table's columns or rows.
func (t *table) row(cols ...string) {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c
		if strings.ContainsFunc(c, unicode.IsControl) {
			out[i] = strconv.Quote(c)
		}
	}
	fmt.Fprintln(t.w, strings.Join(out, "\t"))
}

func (t *table) flush() error { return t.w.Flush() }
