package namespace

import (
	"bytes"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// CommandVersion is the format version of Command this code writes and
// applies. Commands live in the replicated log forever, so a change of their
// meaning or encoding needs a new version (and Decode keeps reading the old).
// The one exception is an optional field appended at the end and written
// only when set (msgpack's omitempty): every command written before it keeps
// its bytes and its meaning. Version 1 has three, Command.Client,
// Command.Principal and Command.Ops; two flags, FlagRestricted and
// FlagSuperuser, that only new kinds of session carry; and ops appended to
// the list (OpTxn and its conditions), which older code rejects as unknown.
const CommandVersion = 1

// Op names what a Command does.
type Op uint8

// The commands. The values are part of the log format: never renumber them.
const (
	OpInvalid Op = iota
	// OpTick does nothing but advance command time; the leader proposes it when
	// NextDeadline has passed so that lock-delays end in the log.
	OpTick
	// OpOpenSession opens a session with Command.Timeout and Command.Client;
	// the result carries its id.
	OpOpenSession
	// OpCloseSession closes Command.Session: ephemerals deleted, locks released
	// (no lock-delay), queued acquires dropped.
	OpCloseSession
	// OpExpireSession expires Command.Target (leader only, Command.Session 0):
	// like close, but freed locks enter lock-delay.
	OpExpireSession
	// OpCreate creates Command.Path with Command.Content (flags: ephemeral,
	// parents, sequential; Command.ACL or the parent's ACL).
	OpCreate
	// OpSetContent replaces the content of Command.Path (if Command.Generation
	// is non-zero, only when it equals the content generation).
	OpSetContent
	// OpDelete deletes Command.Path (FlagRecursive for a subtree; if
	// Command.Generation is non-zero, only when it equals the content generation).
	OpDelete
	// OpSetACL replaces the ACL names of Command.Path (if Command.Generation is
	// non-zero, only when it equals the ACL generation).
	OpSetACL
	// OpAcquire takes the lock on Command.Path in Command.Mode; with FlagWait it
	// queues when the lock is busy, else it fails with ErrLocked.
	OpAcquire
	// OpCancel removes the session's queued acquire of Command.Path.
	OpCancel
	// OpRelease releases the session's hold of the lock on Command.Path (if
	// Command.Generation is non-zero, only when it equals the lock generation).
	OpRelease
	// OpTxn applies Command.Ops, conditions and node writes, in order and
	// all or nothing (see TxnOp and NewTxn).
	OpTxn
	// OpCheckExists is a txn condition, valid only as a TxnOp: the node
	// exists (and, if TxnOp.Generation is non-zero, has that content
	// generation); the caller needs the read right, as for a stat.
	OpCheckExists
	// OpCheckMissing is a txn condition: no node exists at the path.
	OpCheckMissing
	// OpCheckSequencer is a txn condition: the sequencer named by the
	// TxnOp's Path, Mode, Generation (the lock generation) and Instance is
	// current, as Tree.CheckSequencer says (ErrNotHolder otherwise).
	OpCheckSequencer
	// OpPut is a txn write, valid only as a TxnOp: it sets the content of
	// the node if it exists at that point of the txn, and otherwise creates
	// it (flags: ephemeral, parents), as a server's unconditional put does
	// with its own log command kind. With FlagEphemeral it sets only the
	// txn session's own ephemeral node; any other existing node makes it a
	// create, which fails with ErrExists.
	OpPut
	opEnd
)

var opNames = [opEnd]string{"invalid", "tick", "open-session", "close-session", "expire-session",
	"create", "set-content", "delete", "set-acl", "acquire", "cancel", "release",
	"txn", "check-exists", "check-missing", "check-sequencer", "put"}

// String returns the op's name, such as "set-content".
func (o Op) String() string {
	if o < opEnd {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Flags modify the ops; opFlags says which flags each accepts.
type Flags uint8

// Command flags. The values are part of the log format.
const (
	// FlagEphemeral (create): the node belongs to the session and is deleted
	// when the session ends.
	FlagEphemeral Flags = 1 << iota
	// FlagParents (create): create missing parents (permanent, ACL inherited).
	FlagParents
	// FlagSequential (create): append a 10-digit counter kept by the parent to
	// the last name.
	FlagSequential
	// FlagRecursive (delete): delete the whole subtree.
	FlagRecursive
	// FlagWait (acquire): queue behind the holders instead of failing.
	FlagWait
	// FlagRestricted (open-session): the session's writes are checked
	// against the ACLs as Command.Principal. A server sets it, or
	// FlagSuperuser, on every session it opens. A session opened with
	// neither is not restricted, as every session was before ACLs were
	// enforced: so the commands already in logs keep their meaning.
	// (create, set-content, set-acl, delete without a session): the write
	// is checked as Command.Principal, not taken as the leader's or an
	// operator's; a server sets it on the sessionless writes of clients
	// that are not superusers.
	FlagRestricted
	// FlagSuperuser (open-session): the session's principal is a superuser
	// (the server's configuration says), whom no ACL restricts and who may
	// also set the root's ACL names.
	FlagSuperuser
	flagsAll = FlagEphemeral | FlagParents | FlagSequential | FlagRecursive | FlagWait | FlagRestricted | FlagSuperuser
)

// Mode is a lock mode.
type Mode uint8

// Lock modes.
const (
	// ModeNone: not locked.
	ModeNone Mode = iota
	// ModeExclusive: one holder (writer lock).
	ModeExclusive
	// ModeShared: any number of holders (reader lock).
	ModeShared
)

// String returns "exclusive", "shared" or "none".
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeExclusive:
		return "exclusive"
	case ModeShared:
		return "shared"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ACL holds the three ACL names of a node, as in Chubby: the names of ACL
// files in ACLDir for readers, writers and ACL changers; an empty name
// admits everyone. Apply checks a session's principal against them (see
// Right and docs/namespace.md). The zero ACL in a create means "inherit the
// parent's".
type ACL struct {
	Reader  string
	Writer  string
	Changer string
}

// IsZero reports whether all three names are empty.
func (a ACL) IsZero() bool { return a == ACL{} }

// Command is one entry of the replicated log: a mutation of the namespace,
// stamped by the leader with its time and by the client with (Session,
// Request). Fields an op does not use are ignored (flags it does not take are
// an error). Build commands with the New* constructors and then set Time,
// Session and Request.
type Command struct {
	// Version is the format version; Apply accepts only CommandVersion.
	Version uint8
	// Op is what to do.
	Op Op
	// Time is the leader's clock when it proposed the command, in Unix
	// nanoseconds. Apply never reads a clock; command time only moves forward
	// (a smaller Time than an earlier command's counts as that earlier time).
	Time int64
	// Session is the client's session, or 0 for the leader or an operator
	// (no session, no idempotence).
	Session uint64
	// Request is the client's request id: a command retried with the same
	// non-zero (Session, Request) is applied once. 0 disables deduplication.
	Request uint64
	// Path is the node for node and lock ops.
	Path string
	// Content is the node content for OpCreate and OpSetContent.
	Content []byte
	// Flags modify the op.
	Flags Flags
	// Mode is the lock mode for OpAcquire.
	Mode Mode
	// Generation makes OpSetContent, OpDelete, OpSetACL and OpRelease
	// conditional when non-zero (see each Op).
	Generation uint64
	// ACL is the node's ACL for OpCreate (zero: inherit) and OpSetACL.
	ACL ACL
	// Timeout is the session timeout for OpOpenSession (recorded, enforced by
	// the leader).
	Timeout time.Duration
	// LockDelay is the lock-delay for OpAcquire: 0 means
	// Config.DefaultLockDelay, negative means none, and it is capped at
	// Config.MaxLockDelay.
	LockDelay time.Duration
	// Target is the session OpExpireSession expires.
	Target uint64
	// Client is the name the client gave for OpOpenSession: free text, valid
	// UTF-8, at most Config.MaxClientNameLen bytes, kept with the session and
	// shown in session listings. Optional; encoded only when non-empty.
	Client string
	// Principal is the authenticated name of the client, as its server
	// established it ("" for an anonymous one), for OpOpenSession and the
	// sessionless writes: with FlagRestricted, the session's writes (or
	// the write) are checked against the ACLs as this principal. Same
	// limits as Client. Encoded only when non-empty.
	Principal string
	// Ops are the sub-operations of OpTxn, applied in order, all or
	// nothing; at most MaxTxnOps. Encoded only when non-empty (Client and
	// Principal are then written even when empty).
	Ops []TxnOp
}

// NewTick returns a tick command.
func NewTick() Command { return Command{Version: CommandVersion, Op: OpTick} }

// NewOpenSession returns a command that opens a session with the timeout.
// Set the Client field to name the session's client.
func NewOpenSession(timeout time.Duration) Command {
	return Command{Version: CommandVersion, Op: OpOpenSession, Timeout: timeout}
}

// NewCloseSession returns a command that closes the command's own Session.
func NewCloseSession() Command { return Command{Version: CommandVersion, Op: OpCloseSession} }

// NewExpireSession returns a command that expires session target.
func NewExpireSession(target uint64) Command {
	return Command{Version: CommandVersion, Op: OpExpireSession, Target: target}
}

// NewCreate returns a command that creates path with content. Set the ACL field
// to give the node its own ACL names.
func NewCreate(path string, content []byte, flags Flags) Command {
	return Command{Version: CommandVersion, Op: OpCreate, Path: path, Content: content, Flags: flags}
}

// NewSetContent returns a command that sets the content of path, only if its
// content generation is ifGen when ifGen is non-zero.
func NewSetContent(path string, content []byte, ifGen uint64) Command {
	return Command{Version: CommandVersion, Op: OpSetContent, Path: path, Content: content, Generation: ifGen}
}

// NewDelete returns a command that deletes path (and its subtree if
// recursive), only if its content generation is ifGen when ifGen is non-zero.
func NewDelete(path string, recursive bool, ifGen uint64) Command {
	c := Command{Version: CommandVersion, Op: OpDelete, Path: path, Generation: ifGen}
	if recursive {
		c.Flags = FlagRecursive
	}
	return c
}

// NewSetACL returns a command that sets the ACL names of path, only if its ACL
// generation is ifGen when ifGen is non-zero.
func NewSetACL(path string, acl ACL, ifGen uint64) Command {
	return Command{Version: CommandVersion, Op: OpSetACL, Path: path, ACL: acl, Generation: ifGen}
}

// NewAcquire returns a command that takes the lock on path in mode; wait
// queues the request when the lock is busy. lockDelay: see Command.LockDelay.
func NewAcquire(path string, mode Mode, wait bool, lockDelay time.Duration) Command {
	c := Command{Version: CommandVersion, Op: OpAcquire, Path: path, Mode: mode, LockDelay: lockDelay}
	if wait {
		c.Flags = FlagWait
	}
	return c
}

// NewCancel returns a command that drops the session's queued acquire of path.
func NewCancel(path string) Command {
	return Command{Version: CommandVersion, Op: OpCancel, Path: path}
}

// NewRelease returns a command that releases the lock on path, only if the lock
// generation is ifLockGen when ifLockGen is non-zero.
func NewRelease(path string, ifLockGen uint64) Command {
	return Command{Version: CommandVersion, Op: OpRelease, Path: path, Generation: ifLockGen}
}

// The length of the msgpack array of a version-1 command: without the
// optional Client, Principal and Ops fields, with Client, with Client and
// Principal, and with all three.
const (
	commandFieldsV1          = 16
	commandFieldsV1Client    = 17
	commandFieldsV1Principal = 18
	commandFieldsV1Ops       = 19
)

// txnOpFields is the length of the msgpack array of one TxnOp.
const txnOpFields = 10

// EncodeMsgpack writes c as a msgpack array of its fields in declaration
// order (ACL inlined as three strings); Client, Principal and Ops, the last
// three, only when they or a later one are not empty, so commands without
// them keep the encoding they always had. Each TxnOp is an array of its
// fields in declaration order (ACL inlined). It implements
// msgpack.CustomEncoder, so a Command can be a field of a larger msgpack
// message.
func (c *Command) EncodeMsgpack(enc *msgpack.Encoder) error {
	if c.Version != CommandVersion {
		return fmt.Errorf("%w: cannot encode version %d", ErrUnknownVersion, c.Version)
	}
	e := fieldEncoder{enc: enc}
	n := commandFieldsV1
	switch {
	case len(c.Ops) > 0:
		n = commandFieldsV1Ops
	case c.Principal != "":
		n = commandFieldsV1Principal
	case c.Client != "":
		n = commandFieldsV1Client
	}
	e.arrayLen(n)
	e.uint(uint64(c.Version))
	e.uint(uint64(c.Op))
	e.int(c.Time)
	e.uint(c.Session)
	e.uint(c.Request)
	e.string(c.Path)
	e.bytes(c.Content)
	e.uint(uint64(c.Flags))
	e.uint(uint64(c.Mode))
	e.uint(c.Generation)
	e.string(c.ACL.Reader)
	e.string(c.ACL.Writer)
	e.string(c.ACL.Changer)
	e.int(int64(c.Timeout))
	e.int(int64(c.LockDelay))
	e.uint(c.Target)
	if n >= commandFieldsV1Client {
		e.string(c.Client)
	}
	if n >= commandFieldsV1Principal {
		e.string(c.Principal)
	}
	if n == commandFieldsV1Ops {
		e.arrayLen(len(c.Ops))
		for i := range c.Ops {
			o := &c.Ops[i]
			e.arrayLen(txnOpFields)
			e.uint(uint64(o.Op))
			e.string(o.Path)
			e.bytes(o.Content)
			e.uint(uint64(o.Flags))
			e.uint(uint64(o.Mode))
			e.uint(o.Generation)
			e.string(o.ACL.Reader)
			e.string(o.ACL.Writer)
			e.string(o.ACL.Changer)
			e.uint(o.Instance)
		}
	}
	return e.err
}

// DecodeMsgpack reads a command written by EncodeMsgpack. It implements
// msgpack.CustomDecoder. Unknown versions, ops, flags and modes are errors
// wrapping ErrInvalidCommand, and so are malformed txns: empty, more than
// MaxTxnOps sub-ops, a sub-op that is a txn, a lock or session op or
// unknown, flags a sub-op does not take, a sequencer condition without a
// lock mode, sub-ops on a command that is not a txn, and a txn condition
// outside a txn.
func (c *Command) DecodeMsgpack(dec *msgpack.Decoder) error {
	d := fieldDecoder{dec: dec, wrap: ErrInvalidCommand}
	n := d.arrayLen("command")
	if d.err == nil && n < 1 {
		return fmt.Errorf("%w: command is an empty array", ErrInvalidCommand)
	}
	v := uint8(d.uint("version", 0xff))
	if d.err != nil {
		return d.err
	}
	if v != CommandVersion {
		return fmt.Errorf("%w: command version %d", ErrUnknownVersion, v)
	}
	if n < commandFieldsV1 || n > commandFieldsV1Ops {
		return fmt.Errorf("%w: version-1 command has %d fields, want %d to %d", ErrInvalidCommand, n, commandFieldsV1, commandFieldsV1Ops)
	}
	*c = Command{
		Version:    v,
		Op:         Op(d.uint("op", 0xff)),
		Time:       d.int("time"),
		Session:    d.uint("session", 1<<64-1),
		Request:    d.uint("request", 1<<64-1),
		Path:       d.string("path"),
		Content:    d.bytes("content"),
		Flags:      Flags(d.uint("flags", uint64(flagsAll))),
		Mode:       Mode(d.uint("mode", uint64(ModeShared))),
		Generation: d.uint("generation", 1<<64-1),
		ACL:        ACL{Reader: d.string("acl reader"), Writer: d.string("acl writer"), Changer: d.string("acl changer")},
		Timeout:    time.Duration(d.int("timeout")),
		LockDelay:  time.Duration(d.int("lock delay")),
		Target:     d.uint("target", 1<<64-1),
	}
	if n >= commandFieldsV1Client {
		c.Client = d.string("client")
	}
	if n >= commandFieldsV1Principal {
		c.Principal = d.string("principal")
	}
	if n == commandFieldsV1Ops {
		c.Ops = d.txnOps()
	}
	if d.err != nil {
		return d.err
	}
	if c.Op == OpInvalid || c.Op >= opEnd {
		return fmt.Errorf("%w: %d", ErrUnknownOp, uint8(c.Op))
	}
	switch {
	case c.Op == OpTxn:
		if i, err := checkTxnShape(c.Ops); err != nil {
			return txnOpError(i, c.Ops, err)
		}
	case n == commandFieldsV1Ops:
		return fmt.Errorf("%w: %s carries txn ops", ErrInvalidCommand, c.Op)
	case isCondition(c.Op):
		return fmt.Errorf("%w: %s is a txn condition, not a command", ErrInvalidCommand, c.Op)
	case c.Op == OpPut:
		return fmt.Errorf("%w: put is a txn write, not a command", ErrInvalidCommand)
	}
	return nil
}

// txnOps reads the sub-ops of a txn, refusing more than MaxTxnOps before
// allocating them.
func (d *fieldDecoder) txnOps() []TxnOp {
	k := d.arrayLen("txn ops")
	if d.err != nil {
		return nil
	}
	if k > MaxTxnOps {
		d.fail("txn ops", fmt.Errorf("%d sub-ops; the limit is %d", k, MaxTxnOps))
		return nil
	}
	ops := make([]TxnOp, k)
	for i := range ops {
		d.expectArray("txn op", txnOpFields)
		ops[i] = TxnOp{
			Op:         Op(d.uint("txn op kind", 0xff)),
			Path:       d.string("txn op path"),
			Content:    d.bytes("txn op content"),
			Flags:      Flags(d.uint("txn op flags", uint64(flagsAll))),
			Mode:       Mode(d.uint("txn op mode", uint64(ModeShared))),
			Generation: d.uint("txn op generation", 1<<64-1),
			ACL: ACL{Reader: d.string("txn op acl reader"), Writer: d.string("txn op acl writer"),
				Changer: d.string("txn op acl changer")},
			Instance: d.uint("txn op instance", 1<<64-1),
		}
	}
	return ops
}

// Encode returns the msgpack encoding of c.
func (c *Command) Encode() ([]byte, error) {
	var buf bytes.Buffer
	if err := c.EncodeMsgpack(msgpack.NewEncoder(&buf)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeCommand decodes one command from b, which must hold nothing else.
func DecodeCommand(b []byte) (Command, error) {
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	var c Command
	if err := c.DecodeMsgpack(dec); err != nil {
		return Command{}, err
	}
	if r.Len() != 0 {
		return Command{}, fmt.Errorf("%w: %d trailing bytes after the command", ErrInvalidCommand, r.Len())
	}
	return c, nil
}
