package namespace

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Paths and tree keys.
//
// A path is "/" (the root) or "/"-separated names: "/ls/prod/leader". Names are
// non-empty, valid UTF-8, contain neither "/" nor NUL, are not "." or "..", and
// are at most Config.MaxNameLen bytes; a path is at most Config.MaxPathLen
// bytes and Config.MaxDepth names.
//
// The radix tree is keyed by depth byte + path: "/a/b" is stored under
// "\x02/a/b". All direct children of a node of depth d share the key prefix
// byte(d+1)+path+"/" and nothing else does (a child's name has no "/"), so
// listing the children of a node walks exactly its children, never its
// deeper descendants. Key order is depth-major: every parent sorts before its
// children, which snapshots and restores rely on.

// ValidatePath checks p against the path rules and the limits of c. The error
// wraps ErrBadPath (and ErrPathTooLong, ErrNameTooLong or ErrTooDeep when a
// limit is the cause).
func (c Config) ValidatePath(p string) error {
	if _, err := c.checkPath(p); err != nil {
		return err
	}
	return nil
}

// checkPath validates p and returns its depth (the number of names).
func (c *Config) checkPath(p string) (int, *Error) {
	switch {
	case p == "":
		return 0, errorf(CodeBadPath, "empty path")
	case p[0] != '/':
		return 0, errorf(CodeBadPath, "%s does not start with /", quote(p))
	case len(p) > c.MaxPathLen:
		return 0, errorf(CodePathTooLong, "%d bytes > %d", len(p), c.MaxPathLen)
	case p == "/":
		return 0, nil
	case p[len(p)-1] == '/':
		return 0, errorf(CodeBadPath, "%s ends with /", quote(p))
	}
	depth, start, ascii := 0, 1, true
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if p[i] == 0 {
				return 0, errorf(CodeBadPath, "%s contains NUL", quote(p))
			}
			ascii = ascii && p[i] < utf8.RuneSelf
			continue
		}
		name := p[start:i]
		switch {
		case name == "":
			return 0, errorf(CodeBadPath, "%s has an empty name", quote(p))
		case name == "." || name == "..":
			return 0, errorf(CodeBadPath, "%s has the name %q", quote(p), name)
		case len(name) > c.MaxNameLen:
			return 0, errorf(CodeNameTooLong, "%d bytes > %d in %s", len(name), c.MaxNameLen, quote(p))
		}
		depth++
		if depth > c.MaxDepth {
			return 0, errorf(CodeTooDeep, "more than %d names in %s", c.MaxDepth, quote(p))
		}
		start = i + 1
	}
	if !ascii && !utf8.ValidString(p) {
		return 0, errorf(CodeBadPath, "%s is not valid UTF-8", quote(p))
	}
	return depth, nil
}

// checkName validates a single name (an ACL name), which may be empty.
func (c *Config) checkName(what, name string) *Error {
	switch {
	case name == "":
		return nil
	case len(name) > c.MaxNameLen:
		return errorf(CodeInvalidCommand, "%s name %s longer than %d bytes", what, quote(name), c.MaxNameLen)
	case strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || !utf8.ValidString(name):
		return errorf(CodeInvalidCommand, "bad %s name %s", what, quote(name))
	}
	return nil
}

// quote renders p for an error message, shortened when long.
func quote(p string) string {
	const max = 80
	if len(p) > max {
		return strconv.Quote(p[:max]) + "..."
	}
	return strconv.Quote(p)
}

// nodeKey is the radix key of the node at path p of the given depth.
func nodeKey(p string, depth int) string {
	return string([]byte{byte(depth)}) + p
}

// childPrefix is the radix key prefix shared by exactly the children of the
// node at path p of the given depth.
func childPrefix(p string, depth int) string { return levelPrefix(p, depth+1) }

// levelPrefix is the radix key prefix shared by exactly the descendants of p
// that have depth d (d greater than p's depth).
func levelPrefix(p string, d int) string {
	if p == "/" {
		return string([]byte{byte(d), '/'})
	}
	return string([]byte{byte(d)}) + p + "/"
}

// pathDepth returns the depth of a valid path.
func pathDepth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// keyPath returns the path stored in a radix key.
func keyPath(key string) string { return key[1:] }

// keyDepth returns the depth stored in a radix key.
func keyDepth(key string) int { return int(key[0]) }

// splitPath returns the parent path and the last name of a valid path other
// than "/".
func splitPath(p string) (parent, name string) {
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// joinPath returns the path of the child name of parent.
func joinPath(parent, name string) string {
	if parent == "/" {
		return "/" + name
	}
	return parent + "/" + name
}
