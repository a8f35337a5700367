package lockserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/latchd/latch/namespace"
)

// The log-command format. Every entry the server proposes is one command:
//
//	byte 0    format version (commandVersion)
//	byte 1    kind (kindNamespace, kindPut)
//	byte 2..  the namespace.Command in its own msgpack encoding (which
//	          carries the namespace's own CommandVersion)
//
// Commands stay in the replicated log and in snapshots forever, so the
// meaning of a version never changes: a new field or kind means a new
// version, and decodeCommand keeps reading every older one. An entry of an
// unknown version or kind is not applied; every replica rejects it alike.
const (
	// commandVersion is the format version this code writes and reads.
	commandVersion = 1
)

// kind says how Apply treats the namespace command of a log entry.
type kind uint8

const (
	// kindNamespace: apply the namespace command as it is.
	kindNamespace kind = 1
	// kindPut: an unconditional write ("put = create or set"). The command
	// is an OpCreate; Apply turns it into an OpSetContent of the same
	// content when the node exists at that point of the log, so the choice
	// is made deterministically in log order, not by the proposer.
	kindPut kind = 2
	kindEnd kind = 3
)

// Log-command errors.
var (
	// ErrBadCommand: a log entry that is not a valid command.
	ErrBadCommand = errors.New("lockserver: bad log command")
	// ErrCommandVersion: a log entry of a format version this code does
	// not know. It wraps ErrBadCommand.
	ErrCommandVersion = fmt.Errorf("%w: unknown version", ErrBadCommand)
)

// commandEncoder encodes log entries into a buffer it reuses.
type commandEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var commandEncoders = sync.Pool{New: func() any {
	e := &commandEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

// maxPooledCommand is the largest encoding buffer kept for reuse.
const maxPooledCommand = 64 << 10

// encodeCommand encodes the log entry for cmd into a pooled encoder. The
// entry (e.entry()) stays valid until e.release() returns the encoder to
// the pool.
func encodeCommand(k kind, cmd *namespace.Command) (e *commandEncoder, err error) {
	e = commandEncoders.Get().(*commandEncoder)
	e.buf.Reset()
	e.buf.WriteByte(commandVersion)
	e.buf.WriteByte(byte(k))
	if err := cmd.EncodeMsgpack(e.enc); err != nil {
		e.release()
		return nil, err
	}
	return e, nil
}

// entry returns the encoded log entry.
func (e *commandEncoder) entry() []byte { return e.buf.Bytes() }

// release returns e to the pool (unless its buffer grew too large to
// keep). Neither e nor its entry may be used afterwards.
func (e *commandEncoder) release() {
	if e.buf.Cap() <= maxPooledCommand {
		commandEncoders.Put(e)
	}
}

// commandDecoder decodes log entries, reusing its reader and msgpack
// decoder. Not safe for concurrent use: the apply goroutine owns one.
type commandDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

func newCommandDecoder() *commandDecoder {
	d := &commandDecoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

// decode decodes the entry b into cmd. The errors wrap ErrBadCommand.
func (d *commandDecoder) decode(b []byte, cmd *namespace.Command) (kind, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion {
		return 0, fmt.Errorf("%w: %d", ErrCommandVersion, b[0])
	}
	k := kind(b[1])
	if k == 0 || k >= kindEnd {
		return 0, fmt.Errorf("%w: unknown kind %d", ErrBadCommand, k)
	}
	d.r.Reset(b[2:])
	d.dec.Reset(&d.r)
	if err := cmd.DecodeMsgpack(d.dec); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if d.r.Len() != 0 {
		return 0, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, d.r.Len())
	}
	if k == kindPut && cmd.Op != namespace.OpCreate {
		return 0, fmt.Errorf("%w: put of a %s command", ErrBadCommand, cmd.Op)
	}
	return k, nil
}

// The result of applying one command travels from Apply to the proposer on
// the same replica (replica.Propose returns it) as bytes. It never reaches
// the log or the disk, so its encoding is private and may change freely.

// outcome is what Apply reports for one command.
type outcome struct {
	index uint64
	res   namespace.Result
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendResult(b []byte, index uint64, r *namespace.Result) []byte {
	b = binary.AppendUvarint(b, index)
	b = appendResultBody(b, r)
	if r.Txn == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(r.Txn.Failed))
	b = binary.AppendUvarint(b, uint64(len(r.Txn.Ops)))
	for i := range r.Txn.Ops {
		b = appendResultBody(b, &r.Txn.Ops[i])
	}
	return b
}

// appendResultBody appends the fields of r but a txn's outcome.
func appendResultBody(b []byte, r *namespace.Result) []byte {
	if ne, ok := errors.AsType[*namespace.Error](r.Err); ok {
		b = binary.AppendUvarint(b, uint64(ne.Code))
		b = appendString(b, ne.Msg)
	} else if r.Err != nil {
		b = binary.AppendUvarint(b, uint64(namespace.CodeOf(r.Err)))
		b = appendString(b, r.Err.Error())
	} else {
		b = binary.AppendUvarint(b, 0)
	}
	b = appendString(b, r.Path)
	st := &r.Stat
	for _, v := range [...]uint64{st.Instance, st.ContentGen, st.LockGen, st.ACLGen, st.Checksum,
		uint64(st.Size), st.CreatedIndex, uint64(st.CreatedTime), st.ModifiedIndex,
		uint64(st.ModifiedTime), st.EphemeralOwner, uint64(st.Children), r.Session} {
		b = binary.AppendUvarint(b, v)
	}
	b = appendString(b, r.Sequencer.Path)
	b = append(b, byte(r.Sequencer.Mode))
	b = binary.AppendUvarint(b, r.Sequencer.LockGen)
	b = binary.AppendUvarint(b, r.Sequencer.Instance)
	q := byte(0)
	if r.Queued {
		q = 1
	}
	b = append(b, q)
	return binary.AppendUvarint(b, uint64(r.Deleted))
}

var errBadResult = errors.New("lockserver: malformed apply result")

// resultReader reads what appendResult wrote.
type resultReader struct {
	b   []byte
	err error
}

func (r *resultReader) uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadResult
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *resultReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errBadResult
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *resultReader) string() string {
	n := r.uint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBadResult
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func decodeResult(b []byte) (outcome, error) {
	r := resultReader{b: b}
	var o outcome
	o.index = r.uint()
	r.body(&o.res)
	if r.byte() == 1 {
		txn := &namespace.TxnResult{Failed: int(r.uint())}
		if n := r.uint(); n > namespace.MaxTxnOps {
			r.err = errBadResult
		} else if n > 0 {
			txn.Ops = make([]namespace.Result, n)
			for i := range txn.Ops {
				r.body(&txn.Ops[i])
			}
		}
		o.res.Txn = txn
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errBadResult
	}
	return o, r.err
}

// body reads what appendResultBody wrote into res.
func (r *resultReader) body(res *namespace.Result) {
	if code := namespace.Code(r.uint()); code != namespace.CodeOK {
		res.Err = &namespace.Error{Code: code, Msg: r.string()}
	}
	res.Path = r.string()
	st := &res.Stat
	st.Instance = r.uint()
	st.ContentGen = r.uint()
	st.LockGen = r.uint()
	st.ACLGen = r.uint()
	st.Checksum = r.uint()
	st.Size = int(r.uint())
	st.CreatedIndex = r.uint()
	st.CreatedTime = int64(r.uint())
	st.ModifiedIndex = r.uint()
	st.ModifiedTime = int64(r.uint())
	st.EphemeralOwner = r.uint()
	st.Children = int(r.uint())
	res.Session = r.uint()
	res.Sequencer.Path = r.string()
	res.Sequencer.Mode = namespace.Mode(r.byte())
	res.Sequencer.LockGen = r.uint()
	res.Sequencer.Instance = r.uint()
	res.Queued = r.byte() == 1
	res.Deleted = int(r.uint())
}
