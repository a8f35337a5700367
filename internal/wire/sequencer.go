package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadSequencer is returned by ParseSequencer for a string that is not a
// sequencer.
var ErrBadSequencer = errors.New("wire: malformed sequencer")

// sequencerPrefix starts the printable form of every sequencer.
const sequencerPrefix = "latch-seq:v1:"

// Sequencer is the fencing token of a lock grant: the lock's path, the mode
// granted, the lock generation and the node's instance. A server that is
// handed a sequencer checks it against the cell (CheckSequencer) or against
// the newest one it has seen (a higher LockGen on the same Path and Instance
// supersedes a lower one).
type Sequencer struct {
	Path     string   `msgpack:"path"`
	Mode     LockMode `msgpack:"mode"`
	LockGen  uint64   `msgpack:"lgen"`
	Instance uint64   `msgpack:"inst"`
}

// String returns the printable form
//
//	latch-seq:v1:<mode>:<lockgen>:<instance>:<path>
//
// for example "latch-seq:v1:ex:12:3:/ls/prod/leader". The path comes last
// and runs to the end of the string, so a path containing ':' (or any other
// byte) is unambiguous. ParseSequencer is its inverse.
func (s Sequencer) String() string {
	var b strings.Builder
	b.Grow(len(sequencerPrefix) + len(s.Path) + 32)
	b.WriteString(sequencerPrefix)
	b.WriteString(s.Mode.String())
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(s.LockGen, 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(s.Instance, 10))
	b.WriteByte(':')
	b.WriteString(s.Path)
	return b.String()
}

// ParseSequencer parses the printable form written by Sequencer.String. It
// accepts only the canonical form: mode "ex" or "sh", decimal numbers without
// sign or leading zeros, and a path that starts with '/'.
func ParseSequencer(text string) (Sequencer, error) {
	rest, ok := strings.CutPrefix(text, sequencerPrefix)
	if !ok {
		return Sequencer{}, fmt.Errorf("%w: %q does not start with %q", ErrBadSequencer, text, sequencerPrefix)
	}
	parts := strings.SplitN(rest, ":", 4)
	if len(parts) != 4 {
		return Sequencer{}, fmt.Errorf("%w: %q has too few fields", ErrBadSequencer, text)
	}
	var s Sequencer
	switch parts[0] {
	case "ex":
		s.Mode = Exclusive
	case "sh":
		s.Mode = Shared
	default:
		return Sequencer{}, fmt.Errorf("%w: bad mode %q", ErrBadSequencer, parts[0])
	}
	var err error
	if s.LockGen, err = parseCanonicalUint(parts[1]); err != nil {
		return Sequencer{}, fmt.Errorf("%w: lock generation: %w", ErrBadSequencer, err)
	}
	if s.Instance, err = parseCanonicalUint(parts[2]); err != nil {
		return Sequencer{}, fmt.Errorf("%w: instance: %w", ErrBadSequencer, err)
	}
	s.Path = parts[3]
	if !strings.HasPrefix(s.Path, "/") {
		return Sequencer{}, fmt.Errorf("%w: path %q does not start with '/'", ErrBadSequencer, s.Path)
	}
	return s, nil
}

func parseCanonicalUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%q is not in canonical form", s)
	}
	return n, nil
}
