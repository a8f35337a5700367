package wire

import (
	"fmt"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Typed msgpack for the messages of the hot paths (Get, Put, Acquire,
// Release, KeepAlive, Txn, OpenSession, CloseSession, their replies, Ack
// and Error, and the Stat, Sequencer, ACL, Event, TxnOp and TxnResult they
// carry). Reflection cost more than the rest of a call's
// encoding and decoding together (a struct-cache lookup, an interface per
// field, an omitempty check per field). The bytes are exactly those the
// reflection encoder writes for the struct tags: a map of the fields that
// are not omitted, in declaration order (an embedded Header's fields
// first), integers at their full width (uint64 as 0xcf, int64 and Duration
// as 0xd3, uint8 as 0xcc, uint16 as 0xcd, uint32 as 0xce). The decoders
// accept what the reflection decoder accepts for a map: keys in any order,
// unknown keys skipped, nil for zero; they refuse the array form of a
// struct, which no encoder here writes. A nil slice is written as nil and
// an empty one as an empty array, and each decodes back as it was.
// Slices grow as their elements are read, so a length prefix alone cannot
// make a decoder allocate (reflection's slice decoder sizes a slice by its
// prefix, up to what the frame validator lets through).
// TestTypedCodecMatchesReflection, TestTxnCodecMatchesReflection and
// TestSessionCodecMatchesReflection hold both to that. The other messages
// use reflection.

// fieldWriter writes the fields of one struct as a msgpack map. A struct's
// fields method runs twice: first to count the fields that are not omitted
// (count set), then, after begin, to write them. (Concrete calls only, so
// that nothing escapes to the heap.)
type fieldWriter struct {
	e     *msgpack.Encoder
	count bool
	n     int
	err   error
}

func newFieldWriter(e *msgpack.Encoder) fieldWriter { return fieldWriter{e: e, count: true} }

// begin writes the map header after the counting pass.
func (w *fieldWriter) begin() {
	w.count = false
	w.err = w.e.EncodeMapLen(w.n)
}

// key starts a field; it reports whether to write its value.
func (w *fieldWriter) key(k string) bool {
	if w.count {
		w.n++
		return false
	}
	if w.err == nil {
		w.err = w.e.EncodeString(k)
	}
	return w.err == nil
}

func (w *fieldWriter) set(err error) {
	if w.err == nil {
		w.err = err
	}
}

// u64 writes a uint64 field; omit drops a zero value (omitempty).
func (w *fieldWriter) u64(k string, v uint64, omit bool) {
	if (!omit || v != 0) && w.key(k) {
		w.set(w.e.EncodeUint64(v))
	}
}

func (w *fieldWriter) u32(k string, v uint32, omit bool) {
	if (!omit || v != 0) && w.key(k) {
		w.set(w.e.EncodeUint32(v))
	}
}

func (w *fieldWriter) u16(k string, v uint16, omit bool) {
	if (!omit || v != 0) && w.key(k) {
		w.set(w.e.EncodeUint16(v))
	}
}

func (w *fieldWriter) u8(k string, v uint8, omit bool) {
	if (!omit || v != 0) && w.key(k) {
		w.set(w.e.EncodeUint8(v))
	}
}

func (w *fieldWriter) i64(k string, v int64, omit bool) {
	if (!omit || v != 0) && w.key(k) {
		w.set(w.e.EncodeInt64(v))
	}
}

func (w *fieldWriter) dur(k string, v time.Duration, omit bool) { w.i64(k, int64(v), omit) }

func (w *fieldWriter) str(k string, v string, omit bool) {
	if (!omit || v != "") && w.key(k) {
		w.set(w.e.EncodeString(v))
	}
}

func (w *fieldWriter) bytes(k string, v []byte, omit bool) {
	if (!omit || len(v) != 0) && w.key(k) {
		w.set(w.e.EncodeBytes(v))
	}
}

func (w *fieldWriter) flag(k string, v bool, omit bool) {
	if (!omit || v) && w.key(k) {
		w.set(w.e.EncodeBool(v))
	}
}

// stat and seq write a nested struct (never omitted).
func (w *fieldWriter) stat(k string, v *Stat) {
	if w.key(k) {
		w.set(v.EncodeMsgpack(w.e))
	}
}

func (w *fieldWriter) seq(k string, v *Sequencer) {
	if w.key(k) {
		w.set(v.EncodeMsgpack(w.e))
	}
}

// seqPtr and acl write a pointer to a nested struct, omitted when nil
// (omitempty on a pointer: a non-nil pointer to a zero value is written).
func (w *fieldWriter) seqPtr(k string, v *Sequencer) {
	if v != nil {
		w.seq(k, v)
	}
}

func (w *fieldWriter) acl(k string, v *ACL) {
	if v != nil && w.key(k) {
		w.set(v.EncodeMsgpack(w.e))
	}
}

// strs and u64s write a []string and a []uint64; omit drops an empty one.
func (w *fieldWriter) strs(k string, v []string, omit bool) {
	writeArray(w, k, v, omit, (*msgpack.Encoder).EncodeString)
}

func (w *fieldWriter) u64s(k string, v []uint64, omit bool) {
	writeArray(w, k, v, omit, (*msgpack.Encoder).EncodeUint64)
}

// writeArray writes a slice of scalars, each with put: nil as nil,
// otherwise an array; omit drops an empty one.
func writeArray[T any](w *fieldWriter, k string, v []T, omit bool, put func(*msgpack.Encoder, T) error) {
	if (omit && len(v) == 0) || !w.key(k) {
		return
	}
	if v == nil {
		w.set(w.e.EncodeNil())
		return
	}
	w.set(w.e.EncodeArrayLen(len(v)))
	for _, x := range v {
		if w.err != nil {
			return
		}
		w.set(put(w.e, x))
	}
}

// writeStructs writes a slice of typed structs: nil as nil, otherwise an
// array of maps; omit drops an empty one.
func writeStructs[T any, P interface {
	*T
	msgpack.CustomEncoder
}](w *fieldWriter, k string, v []T, omit bool) {
	if (omit && len(v) == 0) || !w.key(k) {
		return
	}
	if v == nil {
		w.set(w.e.EncodeNil())
		return
	}
	w.set(w.e.EncodeArrayLen(len(v)))
	for i := range v {
		if w.err != nil {
			return
		}
		w.set(P(&v[i]).EncodeMsgpack(w.e))
	}
}

// mapReader reads a msgpack map field by field into a struct:
//
//	r := newMapReader(d)
//	for r.next() {
//		switch string(r.key) { case "path": r.str(&m.Path); default: r.skip() }
//	}
//	return r.done()
//
// It keeps the first error. The key is read into a buffer of its own (no
// allocation for keys up to its size); a nil map reads as no fields; the
// array form of a struct is an error. Readers are pooled: one on the stack
// would escape anyway (its buffer is read into through an io.Reader).
type mapReader struct {
	d   *msgpack.Decoder
	n   int // fields left
	key []byte
	buf [16]byte
	err error
}

var mapReaders = sync.Pool{New: func() any { return new(mapReader) }}

func newMapReader(d *msgpack.Decoder) *mapReader {
	r := mapReaders.Get().(*mapReader)
	r.d, r.key, r.err = d, nil, nil
	r.n, r.err = d.DecodeMapLen()
	return r
}

// done returns the reader to the pool and returns its error.
func (r *mapReader) done() error {
	err := r.err
	r.d, r.key, r.err = nil, nil, nil
	mapReaders.Put(r)
	return err
}

// next reads the next key; it returns false after the last field or an
// error.
func (r *mapReader) next() bool {
	if r.err != nil || r.n <= 0 {
		return false
	}
	r.n--
	kn, err := r.d.DecodeBytesLen()
	if err != nil {
		r.err = err
		return false
	}
	kn = max(kn, 0) // a nil key is ""
	if kn <= len(r.buf) {
		r.key = r.buf[:kn]
	} else {
		r.key = make([]byte, kn)
	}
	r.err = r.d.ReadFull(r.key)
	return r.err == nil
}

func (r *mapReader) set(err error) {
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("field %q: %w", string(r.key), err) // a copy: r.key must not escape
	}
}

// skip passes over the value of an unknown field.
func (r *mapReader) skip() { r.set(r.d.Skip()) }

// header reads the fields of an embedded Header, and skips any other.
func (r *mapReader) header(h *Header) {
	switch string(r.key) {
	case "sid":
		r.u64(&h.Session)
	case "rid":
		r.u64(&h.Request)
	default:
		r.skip()
	}
}

func (r *mapReader) u64(p *uint64) {
	v, err := r.d.DecodeUint64()
	*p = v
	r.set(err)
}

func (r *mapReader) u32(p *uint32) {
	v, err := r.d.DecodeUint64()
	*p = uint32(v)
	r.set(err)
}

func (r *mapReader) i64(p *int64) {
	v, err := r.d.DecodeInt64()
	*p = v
	r.set(err)
}

func (r *mapReader) dur(p *time.Duration) {
	v, err := r.d.DecodeInt64()
	*p = time.Duration(v)
	r.set(err)
}

func (r *mapReader) str(p *string) {
	v, err := r.d.DecodeString()
	*p = v
	r.set(err)
}

func (r *mapReader) bytes(p *[]byte) {
	v, err := r.d.DecodeBytes()
	*p = v
	r.set(err)
}

func (r *mapReader) flag(p *bool) {
	v, err := r.d.DecodeBool()
	*p = v
	r.set(err)
}

// maxPrealloc bounds the capacity a decoder gives a slice before reading
// its elements: a length prefix alone (5 bytes) cannot make it allocate
// more; longer slices grow as their elements are read, each of which takes
// at least a byte of the input.
const maxPrealloc = 32

// arrayLen reads an array's length: -1 for nil.
func (r *mapReader) arrayLen() int {
	n, err := r.d.DecodeArrayLen()
	r.set(err)
	if err != nil {
		return -1
	}
	return n
}

// nilValue reads a nil and reports true, or reports false and reads
// nothing. After an error it reports true.
func (r *mapReader) nilValue() bool {
	c, err := r.d.PeekCode()
	if err != nil {
		r.set(err)
		return true
	}
	if c != msgpcode.Nil {
		return false
	}
	r.set(r.d.DecodeNil())
	return true
}

// strs and u64s read a []string and a []uint64: nil as nil, an empty
// array as an empty slice.
func (r *mapReader) strs(p *[]string) { readArray(r, p, (*msgpack.Decoder).DecodeString) }

func (r *mapReader) u64s(p *[]uint64) { readArray(r, p, (*msgpack.Decoder).DecodeUint64) }

// readArray reads a slice of scalars, each with get.
func readArray[T any](r *mapReader, p *[]T, get func(*msgpack.Decoder) (T, error)) {
	n := r.arrayLen()
	if n < 0 {
		*p = nil
		return
	}
	s := make([]T, 0, min(n, maxPrealloc))
	for range n {
		v, err := get(r.d)
		if err != nil {
			r.set(err)
			break
		}
		s = append(s, v)
	}
	*p = s
}

// readStructs reads a slice of typed structs written by writeStructs (or
// reflection): nil as nil, an empty array as an empty slice.
func readStructs[T any, P interface {
	*T
	msgpack.CustomDecoder
}](r *mapReader, p *[]T) {
	n := r.arrayLen()
	if n < 0 {
		*p = nil
		return
	}
	s := make([]T, 0, min(n, maxPrealloc))
	for range n {
		var zero T
		s = append(s, zero)
		if err := P(&s[len(s)-1]).DecodeMsgpack(r.d); err != nil {
			r.set(err)
			break
		}
	}
	*p = s
}

func (r *mapReader) mode(p *LockMode) {
	v, err := r.d.DecodeUint64()
	*p = LockMode(v)
	r.set(err)
}

// Header (embedded: its fields are inlined in the request's map).

func (h *Header) fields(w *fieldWriter) {
	w.u64("sid", h.Session, true)
	w.u64("rid", h.Request, true)
}

// Stat

func (s *Stat) fields(w *fieldWriter) {
	w.u64("inst", s.Instance, true)
	w.u64("cgen", s.ContentGen, true)
	w.u64("lgen", s.LockGen, true)
	w.u64("agen", s.ACLGen, true)
	w.u64("sum", s.Checksum, true)
	w.u64("size", s.Size, true)
	w.u64("cidx", s.CreatedIndex, true)
	w.u64("midx", s.ModifiedIndex, true)
	w.i64("ctime", s.CreatedTime, true)
	w.i64("mtime", s.ModifiedTime, true)
	w.u64("eph", s.EphemeralOwner, true)
	w.u32("kids", s.Children, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *Stat) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	s.fields(&w)
	w.begin()
	s.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *Stat) DecodeMsgpack(d *msgpack.Decoder) error {
	*s = Stat{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "inst":
			r.u64(&s.Instance)
		case "cgen":
			r.u64(&s.ContentGen)
		case "lgen":
			r.u64(&s.LockGen)
		case "agen":
			r.u64(&s.ACLGen)
		case "sum":
			r.u64(&s.Checksum)
		case "size":
			r.u64(&s.Size)
		case "cidx":
			r.u64(&s.CreatedIndex)
		case "midx":
			r.u64(&s.ModifiedIndex)
		case "ctime":
			r.i64(&s.CreatedTime)
		case "mtime":
			r.i64(&s.ModifiedTime)
		case "eph":
			r.u64(&s.EphemeralOwner)
		case "kids":
			r.u32(&s.Children)
		default:
			r.skip()
		}
	}
	return r.done()
}

// Sequencer

func (s *Sequencer) fields(w *fieldWriter) {
	w.str("path", s.Path, false)
	w.u8("mode", uint8(s.Mode), false)
	w.u64("lgen", s.LockGen, false)
	w.u64("inst", s.Instance, false)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (s *Sequencer) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	s.fields(&w)
	w.begin()
	s.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *Sequencer) DecodeMsgpack(d *msgpack.Decoder) error {
	*s = Sequencer{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&s.Path)
		case "mode":
			r.mode(&s.Mode)
		case "lgen":
			r.u64(&s.LockGen)
		case "inst":
			r.u64(&s.Instance)
		default:
			r.skip()
		}
	}
	return r.done()
}

// Get

func (m *Get) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.str("path", m.Path, false)
	w.flag("stale", m.Stale, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Get) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Get) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Get{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "stale":
			r.flag(&m.Stale)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// GetReply

func (m *GetReply) fields(w *fieldWriter) {
	w.bytes("content", m.Content, true)
	w.stat("stat", &m.Stat)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *GetReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *GetReply) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = GetReply{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "content":
			r.bytes(&m.Content)
		case "stat":
			r.set(m.Stat.DecodeMsgpack(d))
		default:
			r.skip()
		}
	}
	return r.done()
}

// Put

func (m *Put) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.str("path", m.Path, false)
	w.bytes("content", m.Content, true)
	w.u64("ifgen", m.IfGen, true)
	w.flag("create", m.Create, true)
	w.flag("eph", m.Ephemeral, true)
	w.flag("parents", m.Parents, true)
	w.flag("seq", m.Sequential, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Put) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Put) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Put{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "content":
			r.bytes(&m.Content)
		case "ifgen":
			r.u64(&m.IfGen)
		case "create":
			r.flag(&m.Create)
		case "eph":
			r.flag(&m.Ephemeral)
		case "parents":
			r.flag(&m.Parents)
		case "seq":
			r.flag(&m.Sequential)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// PutReply

func (m *PutReply) fields(w *fieldWriter) {
	w.str("path", m.Path, false)
	w.stat("stat", &m.Stat)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *PutReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *PutReply) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = PutReply{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "stat":
			r.set(m.Stat.DecodeMsgpack(d))
		default:
			r.skip()
		}
	}
	return r.done()
}

// Acquire

func (m *Acquire) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.str("path", m.Path, false)
	w.u8("mode", uint8(m.Mode), false)
	w.flag("wait", m.Wait, true)
	w.dur("delay", m.LockDelay, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Acquire) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Acquire) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Acquire{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "mode":
			r.mode(&m.Mode)
		case "wait":
			r.flag(&m.Wait)
		case "delay":
			r.dur(&m.LockDelay)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// AcquireReply

func (m *AcquireReply) fields(w *fieldWriter) {
	w.seq("seq", &m.Sequencer)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *AcquireReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *AcquireReply) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = AcquireReply{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "seq":
			r.set(m.Sequencer.DecodeMsgpack(d))
		default:
			r.skip()
		}
	}
	return r.done()
}

// Release

func (m *Release) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.str("path", m.Path, false)
	w.u64("lgen", m.LockGen, false)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Release) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Release) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Release{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "lgen":
			r.u64(&m.LockGen)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// Ack

func (m *Ack) fields(w *fieldWriter) {
	w.u64("idx", m.Index, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Ack) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Ack) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Ack{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "idx":
			r.u64(&m.Index)
		default:
			r.skip()
		}
	}
	return r.done()
}

// KeepAlive

func (m *KeepAlive) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.u64("ack", m.Acked, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *KeepAlive) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *KeepAlive) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = KeepAlive{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "ack":
			r.u64(&m.Acked)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// KeepAliveReply

func (m *KeepAliveReply) fields(w *fieldWriter) {
	w.dur("ttl", m.TTL, false)
	w.dur("held", m.Held, true)
	writeStructs(w, "events", m.Events, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *KeepAliveReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *KeepAliveReply) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = KeepAliveReply{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "ttl":
			r.dur(&m.TTL)
		case "held":
			r.dur(&m.Held)
		case "events":
			readStructs(r, &m.Events)
		default:
			r.skip()
		}
	}
	return r.done()
}

// Event

func (ev *Event) fields(w *fieldWriter) {
	w.u8("t", uint8(ev.Type), false)
	w.u64("seq", ev.Seq, true)
	w.u64("idx", ev.Index, true)
	w.str("path", ev.Path, true)
	w.str("child", ev.Child, true)
	w.u64("inst", ev.Instance, true)
	w.u64("cgen", ev.ContentGen, true)
	w.u64("lgen", ev.LockGen, true)
	w.u8("mode", uint8(ev.Mode), true)
	w.u64("sid", ev.Session, true)
	w.u64s("w", ev.Watches, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (ev *Event) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	ev.fields(&w)
	w.begin()
	ev.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (ev *Event) DecodeMsgpack(d *msgpack.Decoder) error {
	*ev = Event{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "t":
			var t uint64
			r.u64(&t)
			ev.Type = EventType(t)
		case "seq":
			r.u64(&ev.Seq)
		case "idx":
			r.u64(&ev.Index)
		case "path":
			r.str(&ev.Path)
		case "child":
			r.str(&ev.Child)
		case "inst":
			r.u64(&ev.Instance)
		case "cgen":
			r.u64(&ev.ContentGen)
		case "lgen":
			r.u64(&ev.LockGen)
		case "mode":
			r.mode(&ev.Mode)
		case "sid":
			r.u64(&ev.Session)
		case "w":
			r.u64s(&ev.Watches)
		default:
			r.skip()
		}
	}
	return r.done()
}

// OpenSession

func (m *OpenSession) fields(w *fieldWriter) {
	m.Header.fields(w)
	w.dur("timeout", m.Timeout, true)
	w.str("client", m.Client, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *OpenSession) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *OpenSession) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = OpenSession{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "timeout":
			r.dur(&m.Timeout)
		case "client":
			r.str(&m.Client)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// SessionOpened

func (m *SessionOpened) fields(w *fieldWriter) {
	w.u64("sid", m.Session, false)
	w.dur("timeout", m.Timeout, false)
	w.str("principal", m.Principal, true)
	w.flag("super", m.Superuser, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *SessionOpened) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *SessionOpened) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = SessionOpened{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "sid":
			r.u64(&m.Session)
		case "timeout":
			r.dur(&m.Timeout)
		case "principal":
			r.str(&m.Principal)
		case "super":
			r.flag(&m.Superuser)
		default:
			r.skip()
		}
	}
	return r.done()
}

// CloseSession

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *CloseSession) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.Header.fields(&w)
	w.begin()
	m.Header.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *CloseSession) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = CloseSession{}
	r := newMapReader(d)
	for r.next() {
		r.header(&m.Header)
	}
	return r.done()
}

// Error

func (m *Error) fields(w *fieldWriter) {
	w.u16("code", uint16(m.Code), false)
	w.str("msg", m.Message, true)
	w.str("leader", m.Leader, true)
	w.u32("op", m.Op, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Error) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Error) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Error{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "code":
			var c uint64
			r.u64(&c)
			m.Code = Code(c)
		case "msg":
			r.str(&m.Message)
		case "leader":
			r.str(&m.Leader)
		case "op":
			r.u32(&m.Op)
		default:
			r.skip()
		}
	}
	return r.done()
}

// ACL

func (a *ACL) fields(w *fieldWriter) {
	w.strs("r", a.Read, true)
	w.strs("w", a.Write, true)
	w.strs("a", a.Admin, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (a *ACL) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	a.fields(&w)
	w.begin()
	a.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (a *ACL) DecodeMsgpack(d *msgpack.Decoder) error {
	*a = ACL{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "r":
			r.strs(&a.Read)
		case "w":
			r.strs(&a.Write)
		case "a":
			r.strs(&a.Admin)
		default:
			r.skip()
		}
	}
	return r.done()
}

// Txn

func (m *Txn) fields(w *fieldWriter) {
	m.Header.fields(w)
	writeStructs(w, "ops", m.Ops, false)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Txn) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Txn) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = Txn{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "ops":
			readStructs(r, &m.Ops)
		default:
			r.header(&m.Header)
		}
	}
	return r.done()
}

// TxnOp

func (o *TxnOp) fields(w *fieldWriter) {
	w.u8("kind", uint8(o.Kind), false)
	w.str("path", o.Path, true)
	w.bytes("content", o.Content, true)
	w.u64("ifgen", o.IfGen, true)
	w.flag("create", o.Create, true)
	w.flag("eph", o.Ephemeral, true)
	w.flag("parents", o.Parents, true)
	w.flag("seq", o.Sequential, true)
	w.flag("recursive", o.Recursive, true)
	w.acl("acl", o.ACL)
	w.seqPtr("sequencer", o.Sequencer)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (o *TxnOp) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	o.fields(&w)
	w.begin()
	o.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder. A nil acl or sequencer
// leaves the pointer nil, as reflection does.
func (o *TxnOp) DecodeMsgpack(d *msgpack.Decoder) error {
	*o = TxnOp{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "kind":
			var k uint64
			r.u64(&k)
			o.Kind = TxnOpKind(k)
		case "path":
			r.str(&o.Path)
		case "content":
			r.bytes(&o.Content)
		case "ifgen":
			r.u64(&o.IfGen)
		case "create":
			r.flag(&o.Create)
		case "eph":
			r.flag(&o.Ephemeral)
		case "parents":
			r.flag(&o.Parents)
		case "seq":
			r.flag(&o.Sequential)
		case "recursive":
			r.flag(&o.Recursive)
		case "acl":
			o.ACL = nil
			if r.nilValue() {
				break
			}
			o.ACL = new(ACL)
			r.set(o.ACL.DecodeMsgpack(d))
		case "sequencer":
			o.Sequencer = nil
			if r.nilValue() {
				break
			}
			o.Sequencer = new(Sequencer)
			r.set(o.Sequencer.DecodeMsgpack(d))
		default:
			r.skip()
		}
	}
	return r.done()
}

// TxnReply

func (m *TxnReply) fields(w *fieldWriter) {
	writeStructs(w, "results", m.Results, false)
	w.u64("index", m.Index, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *TxnReply) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *TxnReply) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = TxnReply{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "results":
			readStructs(r, &m.Results)
		case "index":
			r.u64(&m.Index)
		default:
			r.skip()
		}
	}
	return r.done()
}

// TxnResult

func (m *TxnResult) fields(w *fieldWriter) {
	w.str("path", m.Path, true)
	w.stat("stat", &m.Stat)
	w.bytes("content", m.Content, true)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *TxnResult) EncodeMsgpack(e *msgpack.Encoder) error {
	w := newFieldWriter(e)
	m.fields(&w)
	w.begin()
	m.fields(&w)
	return w.err
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *TxnResult) DecodeMsgpack(d *msgpack.Decoder) error {
	*m = TxnResult{}
	r := newMapReader(d)
	for r.next() {
		switch string(r.key) {
		case "path":
			r.str(&m.Path)
		case "stat":
			r.set(m.Stat.DecodeMsgpack(d))
		case "content":
			r.bytes(&m.Content)
		default:
			r.skip()
		}
	}
	return r.done()
}

// The typed messages, checked by the compiler.
var (
	_ msgpack.CustomEncoder = (*Get)(nil)
	_ msgpack.CustomDecoder = (*Get)(nil)
	_ msgpack.CustomEncoder = (*GetReply)(nil)
	_ msgpack.CustomDecoder = (*GetReply)(nil)
	_ msgpack.CustomEncoder = (*Put)(nil)
	_ msgpack.CustomDecoder = (*Put)(nil)
	_ msgpack.CustomEncoder = (*PutReply)(nil)
	_ msgpack.CustomDecoder = (*PutReply)(nil)
	_ msgpack.CustomEncoder = (*Acquire)(nil)
	_ msgpack.CustomDecoder = (*Acquire)(nil)
	_ msgpack.CustomEncoder = (*AcquireReply)(nil)
	_ msgpack.CustomDecoder = (*AcquireReply)(nil)
	_ msgpack.CustomEncoder = (*Release)(nil)
	_ msgpack.CustomDecoder = (*Release)(nil)
	_ msgpack.CustomEncoder = (*Ack)(nil)
	_ msgpack.CustomDecoder = (*Ack)(nil)
	_ msgpack.CustomEncoder = (*KeepAlive)(nil)
	_ msgpack.CustomDecoder = (*KeepAlive)(nil)
	_ msgpack.CustomEncoder = (*KeepAliveReply)(nil)
	_ msgpack.CustomDecoder = (*KeepAliveReply)(nil)
	_ msgpack.CustomEncoder = (*Event)(nil)
	_ msgpack.CustomDecoder = (*Event)(nil)
	_ msgpack.CustomEncoder = (*OpenSession)(nil)
	_ msgpack.CustomDecoder = (*OpenSession)(nil)
	_ msgpack.CustomEncoder = (*SessionOpened)(nil)
	_ msgpack.CustomDecoder = (*SessionOpened)(nil)
	_ msgpack.CustomEncoder = (*CloseSession)(nil)
	_ msgpack.CustomDecoder = (*CloseSession)(nil)
	_ msgpack.CustomEncoder = (*Error)(nil)
	_ msgpack.CustomDecoder = (*Error)(nil)
	_ msgpack.CustomEncoder = (*Stat)(nil)
	_ msgpack.CustomDecoder = (*Stat)(nil)
	_ msgpack.CustomEncoder = (*Sequencer)(nil)
	_ msgpack.CustomDecoder = (*Sequencer)(nil)
	_ msgpack.CustomEncoder = (*ACL)(nil)
	_ msgpack.CustomDecoder = (*ACL)(nil)
	_ msgpack.CustomEncoder = (*Txn)(nil)
	_ msgpack.CustomDecoder = (*Txn)(nil)
	_ msgpack.CustomEncoder = (*TxnOp)(nil)
	_ msgpack.CustomDecoder = (*TxnOp)(nil)
	_ msgpack.CustomEncoder = (*TxnReply)(nil)
	_ msgpack.CustomDecoder = (*TxnReply)(nil)
	_ msgpack.CustomEncoder = (*TxnResult)(nil)
	_ msgpack.CustomDecoder = (*TxnResult)(nil)
)
