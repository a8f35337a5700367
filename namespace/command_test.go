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
	txnCreate := TxnCreate("/a/q-", []byte("x"), FlagEphemeral|FlagParents|FlagSequential)
	txnCreate.ACL = acl
	txn := NewTxn(
		TxnCheckExists("/a", 3),
		TxnCheckMissing("/b"),
		TxnCheckSequencer(Sequencer{Path: "/l", Mode: ModeShared, LockGen: 7, Instance: 1 << 40}),
		txnCreate,
		TxnSetContent("/a", []byte{0, 1}, 2),
		TxnDelete("/c", true, 4),
		TxnSetACL("/a", acl, 5),
	)
	restrictedTxn := NewTxn(TxnSetContent("/a", nil, 0))
	restrictedTxn.Flags, restrictedTxn.Principal = FlagRestricted, "alice"
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
		txn,
		restrictedTxn,
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
		for i := range c.Ops {
			if len(c.Ops[i].Content) == 0 {
				c.Ops[i].Content = nil
			}
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
	subOp := func(op, flags, mode any) []any {
		return []any{op, "/a", []byte(nil), flags, mode, 0, "", "", "", 0}
	}
	withOps := func(op any, ops ...[]any) []byte {
		return raw(1, op, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 0, 0, 0, "", "", append([][]any{}, ops...))
	}
	exists := subOp(uint8(OpCheckExists), 0, 0)
	tooMany := make([][]any, MaxTxnOps+1)
	for i := range tooMany {
		tooMany[i] = exists
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
		{"20 fields", raw(1, 2, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 1, 0, 0, "c", "p", []any{}, "x"), ErrInvalidCommand},
		{"ops not an array", raw(1, 2, 0, 0, 0, "", []byte(nil), 0, 0, 0, "", "", "", 1, 0, 0, "c", "p", "x"), ErrInvalidCommand},
		{"txn without ops", fields(1, uint8(OpTxn), 0, 0), ErrInvalidCommand},
		{"empty txn", withOps(uint8(OpTxn)), ErrInvalidCommand},
		{"too many ops", withOps(uint8(OpTxn), tooMany...), ErrInvalidCommand},
		{"nested txn", withOps(uint8(OpTxn), exists, subOp(uint8(OpTxn), 0, 0)), ErrInvalidCommand},
		{"lock op in txn", withOps(uint8(OpTxn), subOp(uint8(OpAcquire), 0, 1)), ErrInvalidCommand},
		{"unknown sub-op", withOps(uint8(OpTxn), subOp(99, 0, 0)), ErrUnknownOp},
		{"sub-op flags", withOps(uint8(OpTxn), subOp(uint8(OpSetContent), uint8(FlagRecursive), 0)), ErrInvalidCommand},
		{"sequencer mode", withOps(uint8(OpTxn), subOp(uint8(OpCheckSequencer), 0, 0)), ErrInvalidCommand},
		{"sub-op mode", withOps(uint8(OpTxn), subOp(uint8(OpCheckSequencer), 0, 3)), ErrInvalidCommand},
		{"sub-op fields", withOps(uint8(OpTxn), []any{uint8(OpCheckExists), "/a"}), ErrInvalidCommand},
		{"ops on a create", withOps(uint8(OpCreate), exists), ErrInvalidCommand},
		{"condition alone", fields(1, uint8(OpCheckMissing), 0, 0), ErrInvalidCommand},
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
	// The errors say what is wrong, and which sub-op.
	for in, want := range map[string]string{
		string(withOps(uint8(OpTxn))):                                    "namespace: invalid command: empty txn",
		string(withOps(uint8(OpTxn), tooMany...)):                        "namespace: invalid command: txn ops: 129 sub-ops; the limit is 128",
		string(withOps(uint8(OpTxn), exists, subOp(uint8(OpTxn), 0, 0))): "namespace: invalid command: txn ops[1] (txn): a txn cannot contain a txn",
		string(withOps(uint8(OpTxn), subOp(99, 0, 0))):                   "namespace: invalid command: unknown op: txn ops[0] (op(99))",
		string(withOps(uint8(OpCreate), exists)):                         "namespace: invalid command: create carries txn ops",
		string(fields(1, uint8(OpCheckMissing), 0, 0)):                   "namespace: invalid command: check-missing is a txn condition, not a command",
	} {
		if _, err := DecodeCommand([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("DecodeCommand = %v; want %q", err, want)
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

// Txn ops are an optional trailing field: commands without them keep their
// bytes, and a txn writes Client and Principal (empty) before them.
func TestCommandOpsOptional(t *testing.T) {
	for _, c := range allConstructors() {
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := msgpack.NewDecoder(bytes.NewReader(b)).DecodeArrayLen()
		want := commandFieldsV1
		switch {
		case c.Op == OpTxn:
			want = commandFieldsV1Ops
		case c.Principal != "":
			want = commandFieldsV1Principal
		case c.Client != "":
			want = commandFieldsV1Client
		}
		if n != want {
			t.Errorf("%s encodes %d fields; want %d", c.Op, n, want)
		}
	}
	txn := NewTxn(TxnCheckMissing("/a"))
	b, err := txn.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// version 1, op 12 (txn), zero fields, "" "", one sub-op: op 14
	// (check-missing), "/a", nil content, then zeros and empty names.
	want := []byte{0xdc, 0x00, 0x13, 0x01, 0x0c, 0x00, 0x00, 0x00, 0xa0, 0xc0, 0x00, 0x00, 0x00,
		0xa0, 0xa0, 0xa0, 0x00, 0x00, 0x00, 0xa0, 0xa0,
		0x91, 0x9a, 0x0e, 0xa2, '/', 'a', 0xc0, 0x00, 0x00, 0x00, 0xa0, 0xa0, 0xa0, 0x00}
	if !bytes.Equal(b, want) {
		t.Fatalf("txn encodes as % x; want % x", b, want)
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
