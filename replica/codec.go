package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/latchd/latch/replica/paxos"
)

// ErrMalformed reports a peer message, batch or snapshot header that does
// not decode.
var ErrMalformed = errors.New("replica: malformed data")

// Peer messages. Every payload handed to the network starts with the peer
// format version and a kind byte; the rest is msgpack.
const (
	peerVersion = 1

	kindPaxos     = 1 // paxos.Message
	kindSnapChunk = 2 // snapChunk
	kindSnapAck   = 3 // snapAck
)

// snapChunk carries part of a state machine snapshot to a lagging replica.
type snapChunk struct {
	Instance uint64 // last instance the snapshot covers
	Offset   int64  // where Data starts in the snapshot
	Size     int64  // total snapshot size
	CRC      uint32 // CRC-32C of the whole snapshot
	Data     []byte
}

// snapAck answers a chunk: Next is the offset the receiver expects next;
// Done means the snapshot is installed (or not needed), Abort that the
// receiver gave up on it.
type snapAck struct {
	Instance uint64
	Next     int64
	Done     bool
	Abort    bool
}

func encodePeer(kind byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(64)
	buf.WriteByte(peerVersion)
	buf.WriteByte(kind)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseArrayEncodedStructs(true)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("replica: encode peer message: %w", err)
	}
	return buf.Bytes(), nil
}

// decodePeer splits a payload into its kind and msgpack body.
func decodePeer(p []byte) (byte, []byte, error) {
	if len(p) < 2 {
		return 0, nil, fmt.Errorf("%w: peer payload of %d bytes", ErrMalformed, len(p))
	}
	if p[0] != peerVersion {
		return 0, nil, fmt.Errorf("%w: peer format version %d, want %d", ErrMalformed, p[0], peerVersion)
	}
	return p[1], p[2:], nil
}

func decodeBody(body []byte, v any) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// Batch values. One Paxos instance carries one batch:
//
//	byte     batchVersion
//	uvarint  origin replica id
//	uvarint  batch id (unique per origin process)
//	uvarint  count
//	count ×  (uvarint length, bytes)
//
// The (origin, id) pair lets the origin recognise its own batch when it is
// applied, whichever instance it ended up in. A batch of zero commands is a
// read marker: it changes nothing and proves, once applied, that every
// write chosen before it is applied.
const batchVersion = 1

// batchHeaderMax bounds the header: version + 3 uvarints.
const batchHeaderMax = 1 + 3*binary.MaxVarintLen64

// appendBatch encodes cmds as a batch value.
func appendBatch(dst []byte, origin, id uint64, cmds [][]byte) []byte {
	dst = append(dst, batchVersion)
	dst = binary.AppendUvarint(dst, origin)
	dst = binary.AppendUvarint(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// batchSize is the encoded size of one command inside a batch.
func batchSize(cmd []byte) int {
	return uvarintLen(uint64(len(cmd))) + len(cmd)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// batch is a decoded batch header with its undecoded commands.
type batch struct {
	origin, id uint64
	count      int
	rest       []byte
}

func decodeBatch(v []byte) (batch, error) {
	var b batch
	if len(v) == 0 || v[0] != batchVersion {
		return b, fmt.Errorf("%w: batch version byte %v", ErrMalformed, v[:min(len(v), 1)])
	}
	p := v[1:]
	var vals [3]uint64
	for i := range vals {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return b, fmt.Errorf("%w: batch header", ErrMalformed)
		}
		vals[i], p = x, p[n:]
	}
	if vals[2] > uint64(len(p)) {
		return b, fmt.Errorf("%w: batch claims %d commands in %d bytes", ErrMalformed, vals[2], len(p))
	}
	b.origin, b.id, b.count, b.rest = vals[0], vals[1], int(vals[2]), p
	return b, nil
}

// next returns the next command (aliasing the value) or an error.
func (b *batch) next() ([]byte, error) {
	n, k := binary.Uvarint(b.rest)
	if k <= 0 || n > uint64(len(b.rest)-k) {
		return nil, fmt.Errorf("%w: batch command length", ErrMalformed)
	}
	cmd := b.rest[k : k+int(n)]
	b.rest = b.rest[k+int(n):]
	return cmd, nil
}

// Snapshot files. The driver writes this header before the state machine's
// own bytes, so a restore knows where the log resumes and which members
// the group had there:
//
//	4 bytes  "LRS1" or "LRS2"
//	8 bytes  instance (big-endian): last instance applied
//	8 bytes  command index: last index handed to StateMachine.Apply
//	LRS2 only:
//	4 bytes  length n (big-endian) of the member set, at most maxMembersBytes
//	n bytes  the member set as of instance (paxos.Members.Encode)
//
// A snapshot without a member set (LRS1: taken before member changes, or a
// backup restored into a new cell) leaves the member set to the core: the
// bootstrap set and the changes it knows.
const (
	snapMagic       = "LRS1"
	snapMagic2      = "LRS2"
	snapHeaderLen   = 4 + 8 + 8 // LRS1
	maxMembersBytes = 1 << 20
)

// snapHeader is a decoded snapshot header.
type snapHeader struct {
	instance, index uint64
	members         *paxos.Members // nil: LRS1
	len             int            // bytes of the header
}

// appendSnapHeader appends an LRS2 header, or an LRS1 header if m is nil.
func appendSnapHeader(dst []byte, instance, index uint64, m *paxos.Members) []byte {
	magic := snapMagic
	if m != nil {
		magic = snapMagic2
	}
	dst = append(dst, magic...)
	dst = binary.BigEndian.AppendUint64(dst, instance)
	dst = binary.BigEndian.AppendUint64(dst, index)
	if m != nil {
		enc := m.Encode()
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(enc)))
		dst = append(dst, enc...)
	}
	return dst
}

func readSnapHeader(r io.Reader) (snapHeader, error) {
	var h [snapHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: %w", ErrMalformed, err)
	}
	sh := snapHeader{instance: binary.BigEndian.Uint64(h[4:]), index: binary.BigEndian.Uint64(h[12:]), len: snapHeaderLen}
	switch string(h[:4]) {
	case snapMagic:
		return sh, nil
	case snapMagic2:
	default:
		return snapHeader{}, fmt.Errorf("%w: snapshot magic %q", ErrMalformed, h[:4])
	}
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header's member set: %w", ErrMalformed, err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxMembersBytes {
		return snapHeader{}, fmt.Errorf("%w: snapshot header's member set of %d bytes, at most %d", ErrMalformed, size, maxMembersBytes)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header's member set: %w", ErrMalformed, err)
	}
	m, err := paxos.DecodeMembers(b)
	if err != nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header: %w", ErrMalformed, err)
	}
	sh.members, sh.len = &m, snapHeaderLen+4+int(size)
	return sh, nil
}
