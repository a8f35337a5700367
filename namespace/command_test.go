package namespace

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func allConstructors() []Command {
	acl := ACL{Reader: "r", Writer: "w", Changer: "c"}
	create := NewCreate("/a/b", []byte("hi"), FlagEphemeral|FlagParents|FlagSequential)
	create.ACL = acl
	named := NewOpenSession(3 * time.Second)
	named.Client = "billing-7 on host-12"
	principal := NewOpenSession(3 * time.Second)
	principal.Principal, principal.Flags = "alice", FlagRestricted
	super := NewOpenSession(3 * time.Second)
	super.Client, super.Principal, super.Flags = "ops", "root", FlagSuperuser
	return []Command{
		NewTick(),
		NewOpenSession(12 * time.Second),
		named,
		principal,
		super,
		NewCloseSession(),
		NewExpireSession(7),
		create,
		NewSetContent("/a", []byte{0, 1, 2}, 3),
		NewDelete("/a", true, 4),
		NewDelete("/a", false, 0),
		NewSetACL("/a", acl, 2),
		NewAcquire("/a", ModeShared, true, 5*time.Second),
		NewAcquire("/a", ModeExclusive, false, -1),
		NewCancel("/a"),
		NewRelease("/a", 9),
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range allConstructors() {
		c.Time, c.Session, c.Request = -5, 1<<63, 42
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode(%s) = %v", c.Op, err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("DecodeCommand(%s) = %v", c.Op, err)
		}
		if len(c.Content) == 0 {
			c.Content = nil
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of %s = %+v; want %+v", c.Op, got, c)
		}
	}
}

// A Command embeds in a larger msgpack message through the custom coder.
func TestCommandEmbedded(t *testing.T) {
	type entry struct {
		Kind string
		Cmd  Command
	}
	in := entry{Kind: "ns", Cmd: NewSetContent("/x", []byte("v"), 0)}
	b, err := msgpack.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out entry
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("embedded round trip = %+v; want %+v", out, in)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	good, _ := (&Command{Version: 1, Op: OpTick}).Encode()
	raw := func(vals ...any) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		if err := enc.EncodeArrayLen(len(vals)); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	fields := func(version, op, flags, mode any) []byte {
		return raw(version, op, 0, 0, 0, "", []byte(nil), flags, mode, 0, "", "", "", 0, 0, 0)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrInvalidCommand},
		{"not an array", []byte{0x01}, ErrInvalidCommand},
		{"empty array", raw(), ErrInvalidCommand},
		{"version 2", raw(2, 1), ErrUnknownVersion},
		{"version 0", fields(0, 1, 0, 0), ErrUnknownVersion},
		{"short", raw(1, 1, 0), ErrInvalidCommand},
		{"19 fields", raw(1, 2, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 1, 0, 0, "c", "p", "x"), ErrInvalidCommand},
		{"principal not a string", raw(1, 2, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 1, 0, 0, "c", 7), ErrInvalidCommand},
		{"client not a string", raw(1, 2, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 1, 0, 0, 7), ErrInvalidCommand},
		{"op 0", fields(1, 0, 0, 0), ErrUnknownOp},
		{"op 99", fields(1, 99, 0, 0), ErrUnknownOp},
		{"bad flags", fields(1, 1, 0x80, 0), ErrInvalidCommand},
		{"bad mode", fields(1, 1, 0, 3), ErrInvalidCommand},
		{"string op", fields(1, "tick", 0, 0), ErrInvalidCommand},
		{"trailing", append(append([]byte{}, good...), 0), ErrInvalidCommand},
		{"truncated", good[:len(good)-1], ErrInvalidCommand},
	}
	for _, tt := range tests {
		_, err := DecodeCommand(tt.in)
		if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: DecodeCommand = %v; want %v", tt.name, err, tt.want)
		}
	}
	if _, err := (&Command{Op: OpTick}).Encode(); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Encode of version 0 = %v; want ErrUnknownVersion", err)
	}
}

// The client name is an optional trailing field: a command without one
// keeps the 16-field encoding of every command written before the field
// existed, and such a command decodes with no name.
func TestCommandClientOptional(t *testing.T) {
	plain := NewOpenSession(time.Second)
	b, err := plain.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := msgpack.NewDecoder(bytes.NewReader(b)).DecodeArrayLen(); err != nil || n != commandFieldsV1 {
		t.Fatalf("open-session without a client name encodes %d fields (%v); want %d", n, err, commandFieldsV1)
	}
	// What the code before the field existed wrote for it: version 1,
	// open-session, timeout 1 s.
	old := []byte{0xdc, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0xa0, 0xc0, 0x00, 0x00, 0x00,
		0xa0, 0xa0, 0xa0, 0xce, 0x3b, 0x9a, 0xca, 0x00, 0x00, 0x00}
	if !bytes.Equal(b, old) {
		t.Fatalf("open-session without a client name encodes as % x; want % x", b, old)
	}
	got, err := DecodeCommand(old)
	if err != nil || !reflect.DeepEqual(got, plain) {
		t.Fatalf("DecodeCommand(old open-session) = %+v, %v; want %+v", got, err, plain)
	}
	named := plain
	named.Client = "web-1"
	nb, err := named.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := msgpack.NewDecoder(bytes.NewReader(nb)).DecodeArrayLen(); n != commandFieldsV1Client {
		t.Fatalf("open-session with a client name encodes %d fields; want %d", n, commandFieldsV1Client)
	}
	if got, err := DecodeCommand(nb); err != nil || got.Client != "web-1" {
		t.Fatalf("DecodeCommand(named) = %+v, %v; want client web-1", got, err)
	}
	// A principal comes after the client name, which is then written even
	// when empty.
	anon := plain
	anon.Principal = "alice"
	ab, err := anon.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := msgpack.NewDecoder(bytes.NewReader(ab)).DecodeArrayLen(); n != commandFieldsV1Principal {
		t.Fatalf("open-session with a principal encodes %d fields; want %d", n, commandFieldsV1Principal)
	}
	if got, err := DecodeCommand(ab); err != nil || got.Client != "" || got.Principal != "alice" {
		t.Fatalf("DecodeCommand(with principal) = %+v, %v; want principal alice and no client", got, err)
	}
}

func TestStringers(t *testing.T) {
	for o := OpInvalid; o <= opEnd; o++ {
		if o.String() == "" {
			t.Errorf("Op(%d) has no name", o)
		}
	}
	for k := EventKind(0); k <= eventEnd; k++ {
		if k.String() == "" {
			t.Errorf("EventKind(%d) has no name", k)
		}
	}
	if ModeShared.String() != "shared" || Mode(9).String() != "mode(9)" || Reason(99).String() != "reason(99)" {
		t.Errorf("stringers wrong")
	}
	e := Event{Kind: EventLockAcquired, Path: "/a", Instance: 2, Session: 3, Request: 4,
		Sequencer: Sequencer{Path: "/a", Mode: ModeExclusive, LockGen: 1, Instance: 2}}
	if got, want := e.String(), "lock-acquired /a inst=2 session=3 req=4 seq=/a:exclusive:1:2"; got != want {
		t.Errorf("Event.String() = %q; want %q", got, want)
	}
}
