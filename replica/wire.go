package replica

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/latchd/latch/replica/paxos"
)

// paxos.Message on the wire, encoded field by field with msgpack's typed
// calls (no reflection on the hot path):
//
//	[Type, From, To, [Round, ID], Instance, Last, Commit, Lease, Snapshot,
//	 [[Instance, [Round, ID], Value, Noop (, Conf)], ...]]
//
// Integers use msgpack's most compact form. An entry has a fifth field,
// Conf = true, only when it is a member change (docs/membership.md): every
// other entry is encoded as before member changes, and a build older than
// them refuses (drops) a message carrying a member change instead of taking
// it for a plain value.

const (
	messageFields = 10
	entryFields   = 4
	confFields    = 5 // an entry with Conf
)

// encodeMessage returns the peer payload for m.
func encodeMessage(m *paxos.Message) ([]byte, error) {
	size := 64
	for i := range m.Entries {
		size += len(m.Entries[i].Value) + 32
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteByte(peerVersion)
	buf.WriteByte(kindPaxos)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	err := firstErr(
		enc.EncodeArrayLen(messageFields),
		enc.EncodeUint(uint64(m.Type)),
		enc.EncodeUint(m.From),
		enc.EncodeUint(m.To),
		encodeBallot(enc, m.Ballot),
		enc.EncodeUint(m.Instance),
		enc.EncodeUint(m.Last),
		enc.EncodeUint(m.Commit),
		enc.EncodeUint(m.Lease),
		enc.EncodeUint(m.Snapshot),
		enc.EncodeArrayLen(len(m.Entries)),
	)
	for i := range m.Entries {
		e := &m.Entries[i]
		fields := entryFields
		if e.Conf {
			fields = confFields
		}
		err = firstErr(err,
			enc.EncodeArrayLen(fields),
			enc.EncodeUint(e.Instance),
			encodeBallot(enc, e.Ballot),
			enc.EncodeBytes(e.Value),
			enc.EncodeBool(e.Noop),
		)
		if e.Conf {
			err = firstErr(err, enc.EncodeBool(true))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("replica: encode peer message: %w", err)
	}
	return buf.Bytes(), nil
}

func encodeBallot(enc *msgpack.Encoder, b paxos.Ballot) error {
	return firstErr(enc.EncodeArrayLen(2), enc.EncodeUint(b.Round), enc.EncodeUint(b.ID))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// msgReader decodes with a sticky error.
type msgReader struct {
	dec *msgpack.Decoder
	err error
}

func (r *msgReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *msgReader) array(want int) int {
	if r.err != nil {
		return 0
	}
	n, err := r.dec.DecodeArrayLen()
	switch {
	case err != nil:
		r.fail("%v", err)
	case want >= 0 && n != want:
		r.fail("array of %d fields, want %d", n, want)
	case n < 0:
		n = 0 // nil array
	}
	return n
}

func (r *msgReader) uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := r.dec.DecodeUint64()
	if err != nil {
		r.fail("%v", err)
	}
	return v
}

// bytes reads a byte string whose claimed length is checked against what
// is left of the body before anything is allocated: msgpack's DecodeBytes
// would allocate any length a forged header claims.
func (r *msgReader) bytes(rest *bytes.Reader) []byte {
	if r.err != nil {
		return nil
	}
	n, err := r.dec.DecodeBytesLen()
	switch {
	case err != nil:
		r.fail("%v", err)
		return nil
	case n < 0:
		return nil
	case n > rest.Len():
		r.fail("byte string of %d bytes with %d left", n, rest.Len())
		return nil
	}
	v := make([]byte, n)
	if _, err := io.ReadFull(rest, v); err != nil {
		r.fail("%v", err)
		return nil
	}
	return v
}

func (r *msgReader) ballot() paxos.Ballot {
	r.array(2)
	return paxos.Ballot{Round: r.uint(), ID: r.uint()}
}

// decodeMessage decodes a paxos message body.
func decodeMessage(body []byte, m *paxos.Message) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	br := bytes.NewReader(body)
	dec.Reset(br)
	r := &msgReader{dec: dec}
	r.array(messageFields)
	t := r.uint()
	if t > 255 {
		r.fail("message type %d", t)
	}
	m.Type = paxos.MessageType(t)
	m.From, m.To = r.uint(), r.uint()
	m.Ballot = r.ballot()
	m.Instance, m.Last, m.Commit, m.Lease, m.Snapshot = r.uint(), r.uint(), r.uint(), r.uint(), r.uint()
	n := r.array(-1)
	if r.err == nil && n > len(body) {
		r.fail("%d entries in %d bytes", n, len(body))
	}
	if n > 0 && r.err == nil {
		m.Entries = make([]paxos.Entry, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		e := &m.Entries[i]
		fields := r.array(-1)
		if r.err == nil && fields != entryFields && fields != confFields {
			r.fail("entry of %d fields, want %d or %d", fields, entryFields, confFields)
		}
		e.Instance = r.uint()
		e.Ballot = r.ballot()
		if r.err == nil {
			e.Value = r.bytes(br)
		}
		if r.err == nil {
			b, err := dec.DecodeBool()
			if err != nil {
				r.fail("%v", err)
			}
			e.Noop = b
		}
		if r.err == nil && fields == confFields {
			b, err := dec.DecodeBool()
			switch {
			case err != nil:
				r.fail("%v", err)
			case !b:
				r.fail("entry with a Conf field of false")
			}
			e.Conf = b
		}
	}
	return r.err
}

// decodeChunk decodes a snapChunk body (encodePeer's array-encoded struct)
// field by field, so that the claimed length of Data is checked against the
// body before it is allocated.
func decodeChunk(body []byte, c *snapChunk) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	br := bytes.NewReader(body)
	dec.Reset(br)
	r := &msgReader{dec: dec}
	r.array(snapChunkFields)
	c.Instance = r.uint()
	c.Offset, c.Size = r.int(), r.int()
	crc := r.uint()
	if crc > math.MaxUint32 {
		r.fail("chunk CRC %d", crc)
	}
	c.CRC = uint32(crc)
	c.Data = r.bytes(br)
	return r.err
}

const snapChunkFields = 5

func (r *msgReader) int() int64 {
	if r.err != nil {
		return 0
	}
	v, err := r.dec.DecodeInt64()
	if err != nil {
		r.fail("%v", err)
	}
	return v
}
