package namespace

import (
	"errors"
	"hash/crc64"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	cfg := DefaultConfig()
	deep := strings.Repeat("/a", 64)
	tests := []struct {
		path string
		want error
	}{
		{"/", nil},
		{"/a", nil},
		{"/ls/prod/billing/leader", nil},
		{"/a b/c-d_e.f/ü/😀", nil},
		{"/...", nil},
		{"/" + strings.Repeat("n", 255), nil},
		{deep, nil},
		{"", ErrBadPath},
		{"a", ErrBadPath},
		{"a/b", ErrBadPath},
		{"/a/", ErrBadPath},
		{"//", ErrBadPath},
		{"/a//b", ErrBadPath},
		{"/.", ErrBadPath},
		{"/a/..", ErrBadPath},
		{"/a\x00b", ErrBadPath},
		{"/a\xffb", ErrBadPath},
		{"/" + strings.Repeat("n", 256), ErrNameTooLong},
		{strings.Repeat("/abcdefgh", 512) + "/x", ErrPathTooLong},
		{deep + "/a", ErrTooDeep},
	}
	for _, tt := range tests {
		err := cfg.ValidatePath(tt.path)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("ValidatePath(%s) = %v; want %v", quote(tt.path), err, tt.want)
		}
		if tt.want != nil && !errors.Is(err, ErrBadPath) {
			t.Errorf("ValidatePath(%s) = %v; want it to wrap ErrBadPath", quote(tt.path), err)
		}
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		path       string
		depth      int
		key, child string
		parent     string
		name       string
	}{
		{"/", 0, "\x00/", "\x01/", "", ""},
		{"/a", 1, "\x01/a", "\x02/a/", "/", "a"},
		{"/a/bc", 2, "\x02/a/bc", "\x03/a/bc/", "/a", "bc"},
	}
	for _, tt := range tests {
		if got := pathDepth(tt.path); got != tt.depth {
			t.Errorf("pathDepth(%q) = %d; want %d", tt.path, got, tt.depth)
		}
		if got := nodeKey(tt.path, tt.depth); got != tt.key {
			t.Errorf("nodeKey(%q) = %q; want %q", tt.path, got, tt.key)
		}
		if got := childPrefix(tt.path, tt.depth); got != tt.child {
			t.Errorf("childPrefix(%q) = %q; want %q", tt.path, got, tt.child)
		}
		if keyPath(tt.key) != tt.path || keyDepth(tt.key) != tt.depth {
			t.Errorf("key %q does not round-trip", tt.key)
		}
		if tt.path != "/" {
			p, n := splitPath(tt.path)
			if p != tt.parent || n != tt.name || joinPath(p, n) != tt.path {
				t.Errorf("splitPath(%q) = %q, %q; want %q, %q", tt.path, p, n, tt.parent, tt.name)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"name len", func(c *Config) { c.MaxNameLen = 0 }},
		{"path len", func(c *Config) { c.MaxPathLen = 1 }},
		{"name > path", func(c *Config) { c.MaxNameLen = c.MaxPathLen }},
		{"depth 0", func(c *Config) { c.MaxDepth = 0 }},
		{"depth 256", func(c *Config) { c.MaxDepth = 256 }},
		{"content", func(c *Config) { c.MaxContent = -1 }},
		{"children", func(c *Config) { c.MaxChildren = 0 }},
		{"ephemerals", func(c *Config) { c.MaxEphemerals = -1 }},
		{"client name", func(c *Config) { c.MaxClientNameLen = -1 }},
		{"delay", func(c *Config) { c.DefaultLockDelay = -1 }},
		{"delay cap", func(c *Config) { c.MaxLockDelay = c.DefaultLockDelay - 1 }},
		{"results", func(c *Config) { c.Results = -1 }},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: Validate() = %v; want ErrBadConfig", tt.name, err)
		}
	}
}

func TestCodes(t *testing.T) {
	for c := CodeOK + 1; c < codeEnd; c++ {
		sentinel := c.Err()
		if sentinel == nil || c.String() == "" || !c.Valid() {
			t.Fatalf("code %d has no sentinel or name", c)
		}
		if got := CodeOf(sentinel); got != c {
			t.Errorf("CodeOf(%v) = %v; want %v", sentinel, got, c)
		}
		e := errorf(c, "detail %d", 1)
		if !errors.Is(e, sentinel) || CodeOf(e) != c || !strings.HasPrefix(e.Error(), "namespace: ") {
			t.Errorf("errorf(%v) = %v does not wrap %v", c, e, sentinel)
		}
	}
	if CodeOf(nil) != CodeOK || CodeOf(errors.New("other")) != CodeInvalidCommand {
		t.Errorf("CodeOf(nil or foreign) wrong")
	}
	if !errors.Is(errorf(CodeTooManyChildren, ""), ErrLimit) || !errors.Is(errorf(CodeTooDeep, ""), ErrBadPath) {
		t.Errorf("refined codes do not wrap their category")
	}
	if Code(999).Valid() || Code(999).Err() != nil || Code(999).String() != "code(999)" {
		t.Errorf("unknown code handled wrong")
	}
}

// Error.Detail drops the root sentinel's text only: a refined code keeps
// what it adds to its root ("name too long"), a message that does not
// begin with the sentinel is kept whole.
func TestErrorDetail(t *testing.T) {
	for _, c := range []struct {
		err  *Error
		want string
	}{
		{errorf(CodeNotFound, "%s", quote("/x")), `"/x"`},
		{errorf(CodeNotFound, ""), ""},
		{errorf(CodeNameTooLong, "300 bytes > 255"), "name too long: 300 bytes > 255"},
		{errorf(CodeTooManyChildren, "%s has %d children", quote("/d"), 9), `too many children: "/d" has 9 children`},
		{&Error{Code: CodeNotFound, Msg: "something else"}, "something else"},
		{&Error{Code: CodeNotFound, Msg: "namespace: node not foundling"}, "namespace: node not foundling"},
	} {
		if got := c.err.Detail(); got != c.want {
			t.Errorf("Detail of %q = %q; want %q", c.err.Msg, got, c.want)
		}
	}
}

func TestChecksumMatchesCRC64(t *testing.T) {
	table := crc64.MakeTable(crc64.ECMA)
	for _, n := range []int{0, 1, 15, 16, 63, 64, 65, 1000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		if got, want := checksum(string(b)), crc64.Checksum(b, table); got != want {
			t.Errorf("checksum of %d bytes = %#x; want %#x", n, got, want)
		}
	}
}
