package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Protocol versions this package speaks. Frames of any other version are
// rejected with a *VersionError.
const (
	// Version is the newest protocol version, the one this package writes.
	// Version 2 carries every call of a connection on one stream, each
	// frame tagged with its call id (docs/protocol.md).
	Version uint8 = 2
	// MinVersion is the oldest version this package still reads. Version 1
	// (a stream per call, no call id) was never released and is gone.
	MinVersion uint8 = 2
)

// Frame size limits.
const (
	// DefaultMaxFrame is the default limit on a frame's length (the bytes
	// after the length prefix): 1 MiB, room for a 256 KiB content
	// (DefaultMaxContent) with generous headroom for metadata and pages.
	DefaultMaxFrame = 1 << 20
	// DefaultMaxContent is the default limit on a node's content.
	DefaultMaxContent = 256 << 10
	// DefaultMaxElements is the default limit on the total number of array
	// elements declared in one frame. It bounds what decoding may allocate
	// (an element costs one byte on the wire but up to a few hundred in
	// memory).
	DefaultMaxElements = 16 << 10
	// MinFrame is the smallest frame limit a Decoder accepts.
	MinFrame = 64
)

// The frame layout: a length prefix, then the header (version, type, call
// id) and the body, which the length counts.
const (
	prefixLen = 4
	headerLen = 7 // version(1) + type(2) + call(4), counted in the frame length
	// FrameOverhead is the bytes of a frame before its msgpack body: the
	// length prefix and the header.
	FrameOverhead = prefixLen + headerLen
)

// Errors of framing and decoding.
var (
	// ErrFrameTooLarge is returned for a frame whose length is over the
	// limit, found before its body was read or allocated.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrTruncated is returned when the stream ends inside a frame.
	ErrTruncated = errors.New("wire: truncated frame")
	// ErrVersion is returned for a frame of a version this package does
	// not speak; the error is a *VersionError.
	ErrVersion = errors.New("wire: unsupported protocol version")
	// ErrUnknownType is returned for a frame whose message type is unknown.
	ErrUnknownType = errors.New("wire: unknown message type")
	// ErrMalformed is returned for a body that is not a valid encoding of
	// its message type.
	ErrMalformed = errors.New("wire: malformed message")
)

// VersionError reports a frame of an unsupported version. It matches
// ErrVersion with errors.Is.
type VersionError struct {
	Got      uint8 // the version in the frame
	Min, Max uint8 // the versions this side speaks
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("wire: unsupported protocol version %d (this side speaks %d..%d)", e.Got, e.Min, e.Max)
}

// Is makes errors.Is(err, ErrVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// SizeError reports a frame over the limit. It matches ErrFrameTooLarge.
type SizeError struct {
	Size, Max int
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("wire: frame too large: %d bytes, limit %d", e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *SizeError) Is(target error) bool { return target == ErrFrameTooLarge }

// Encoder writes frames to a writer, each with a single Write call (so
// frames from one Encoder are never interleaved on the stream). It reuses its
// buffer between frames. An Encoder is not safe for concurrent use.
type Encoder struct {
	w        io.Writer
	maxFrame int
	out      sliceWriter
	enc      *msgpack.Encoder
}

// NewEncoder returns an Encoder that writes to w and refuses to write frames
// longer than maxFrame (DefaultMaxFrame if maxFrame <= 0).
func NewEncoder(w io.Writer, maxFrame int) *Encoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	e := &Encoder{w: w, maxFrame: maxFrame}
	e.enc = msgpack.NewEncoder(&e.out)
	return e
}

// Reset makes e write to w, keeping its limit and buffer.
func (e *Encoder) Reset(w io.Writer) { e.w = w }

// Encode writes m as one frame of the current Version with call id 0. A
// message whose frame would be over the limit is not written; the error
// matches ErrFrameTooLarge.
func (e *Encoder) Encode(m Message) error {
	return e.EncodeCall(0, m)
}

// EncodeCall writes m as one frame of the current Version tagged with the
// given call id (see [Conn] for what the id means on a connection).
func (e *Encoder) EncodeCall(call uint32, m Message) error {
	frame, err := e.frame(call, m)
	if err != nil {
		return err
	}
	_, err = e.w.Write(frame)
	return err
}

// frame encodes m into e's buffer and returns the whole frame, valid until
// the next call.
func (e *Encoder) frame(call uint32, m Message) ([]byte, error) {
	e.out.b = e.out.b[:0]
	if err := appendFrame(&e.out, e.enc, call, m, e.maxFrame); err != nil {
		return nil, err
	}
	return e.out.b, nil
}

// sliceWriter is the msgpack encoders' output: an append to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *sliceWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// appendFrame appends m as one frame with the given call id to out, whose
// msgpack encoder is enc. On error out is left as it was.
func appendFrame(out *sliceWriter, enc *msgpack.Encoder, call uint32, m Message, maxFrame int) error {
	if m == nil || isNilPointer(m) {
		return fmt.Errorf("%w: nil message", ErrMalformed)
	}
	t := m.Type()
	if t == 0 || t >= typeEnd { // New knows every type in between
		return fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	start := len(out.b)
	out.b = append(out.b, make([]byte, FrameOverhead)...)
	var err error
	if ce, ok := m.(msgpack.CustomEncoder); ok {
		err = ce.EncodeMsgpack(enc) // typed (codec.go): no reflection at all
	} else {
		err = enc.Encode(m)
	}
	if err != nil {
		out.b = out.b[:start]
		return fmt.Errorf("wire: encode %v: %w", t, err)
	}
	b := out.b[start:]
	n := len(b) - prefixLen
	if n > maxFrame {
		out.b = out.b[:start]
		return &SizeError{Size: n, Max: maxFrame}
	}
	putHeader(b, n, t, call)
	return nil
}

// putHeader writes the length prefix and header of a frame of length n.
func putHeader(b []byte, n int, t Type, call uint32) {
	binary.BigEndian.PutUint32(b[0:4], uint32(n))
	b[4] = Version
	binary.BigEndian.PutUint16(b[5:7], uint16(t))
	binary.BigEndian.PutUint32(b[7:11], call)
}

// AppendRawFrame appends a frame built by hand to dst: the length prefix,
// then version, type and call id, then body as given (not checked). It is
// for tests that feed a peer frames an Encoder would not write.
func AppendRawFrame(dst []byte, version uint8, t Type, call uint32, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(headerLen+len(body)))
	dst = append(dst, version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(t))
	dst = binary.BigEndian.AppendUint32(dst, call)
	return append(dst, body...)
}

// Decoder reads frames from a reader. It checks each frame's length against
// its limit before allocating, reuses its buffer, and validates the body's
// structure before decoding it. A Decoder is not safe for concurrent use.
type Decoder struct {
	r           io.Reader
	hdr         [prefixLen]byte
	maxFrame    int
	maxElements int
	buf         []byte
	br          bytes.Reader
	dec         *msgpack.Decoder
}

// NewDecoder returns a Decoder that reads from r and rejects frames longer
// than maxFrame (DefaultMaxFrame if maxFrame <= 0; at least MinFrame).
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	maxFrame = max(maxFrame, MinFrame)
	d := &Decoder{r: r, maxFrame: maxFrame, maxElements: DefaultMaxElements}
	d.dec = msgpack.NewDecoder(&d.br)
	return d
}

// Reset makes d read from r, keeping its limits and buffer.
func (d *Decoder) Reset(r io.Reader) { d.r = r }

// SetMaxElements changes the limit on array elements per frame (default
// DefaultMaxElements). n <= 0 restores the default.
func (d *Decoder) SetMaxElements(n int) {
	if n <= 0 {
		n = DefaultMaxElements
	}
	d.maxElements = n
}

// Decode reads the next frame and returns its message, dropping the call
// id. At a clean end of stream (no byte of a new frame read) it returns
// io.EOF itself; inside a frame it returns an error matching ErrTruncated.
// Other failures match ErrFrameTooLarge, ErrVersion, ErrUnknownType or
// ErrMalformed. After an error the stream position is undefined: close the
// stream.
func (d *Decoder) Decode() (Message, error) {
	_, m, err := d.DecodeCall()
	return m, err
}

// DecodeCall is Decode that also returns the frame's call id. After an
// error matching ErrUnknownType (and only then) the whole frame was read,
// the call id is valid, and the stream can go on.
func (d *Decoder) DecodeCall() (call uint32, m Message, err error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		if err == io.EOF {
			return 0, nil, io.EOF
		}
		return 0, nil, truncated(err)
	}
	n := int(binary.BigEndian.Uint32(d.hdr[:]))
	if n > d.maxFrame {
		return 0, nil, &SizeError{Size: n, Max: d.maxFrame}
	}
	if n < headerLen {
		return 0, nil, fmt.Errorf("%w: frame length %d is shorter than its header", ErrMalformed, n)
	}
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	frame := d.buf[:n]
	if _, err := io.ReadFull(d.r, frame); err != nil {
		return 0, nil, truncated(err)
	}
	return d.decodeFrame(frame)
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
	}
	return err
}

// decodeFrame decodes version, type, call id and body (the frame without
// its length prefix).
func (d *Decoder) decodeFrame(frame []byte) (uint32, Message, error) {
	version := frame[0]
	if version < MinVersion || version > Version {
		return 0, nil, &VersionError{Got: version, Min: MinVersion, Max: Version}
	}
	t := Type(binary.BigEndian.Uint16(frame[1:3]))
	call := binary.BigEndian.Uint32(frame[3:7])
	m := New(t)
	if m == nil {
		return call, nil, fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	body := frame[headerLen:]
	if err := validate(body, d.maxElements); err != nil {
		return call, nil, fmt.Errorf("%w: %v: %w", ErrMalformed, t, err)
	}
	d.br.Reset(body)
	d.dec.Reset(&d.br)
	var err error
	if cd, ok := m.(msgpack.CustomDecoder); ok {
		err = cd.DecodeMsgpack(d.dec) // typed (codec.go)
	} else {
		err = d.dec.Decode(m)
	}
	if err != nil {
		return call, nil, fmt.Errorf("%w: %v: %w", ErrMalformed, t, err)
	}
	if d.br.Len() != 0 {
		return call, nil, fmt.Errorf("%w: %v: %d trailing bytes", ErrMalformed, t, d.br.Len())
	}
	return call, m, nil
}

// WriteFrame writes m to w as one frame with a fresh Encoder and the default
// limit. Use an Encoder to write many frames.
func WriteFrame(w io.Writer, m Message) error {
	return NewEncoder(w, DefaultMaxFrame).Encode(m)
}

// ReadFrame reads one frame from r with a fresh Decoder and the given limit
// (DefaultMaxFrame if maxFrame <= 0). It never reads past the frame. Use a
// Decoder to read many frames.
func ReadFrame(r io.Reader, maxFrame int) (Message, error) {
	return NewDecoder(r, maxFrame).Decode()
}

// Marshal returns m as one frame with call id 0, length prefix included.
func Marshal(m Message) ([]byte, error) {
	return MarshalCall(0, m)
}

// MarshalCall returns m as one frame with the given call id, length prefix
// included.
func MarshalCall(call uint32, m Message) ([]byte, error) {
	e := NewEncoder(io.Discard, DefaultMaxFrame)
	b, err := e.frame(call, m)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// Unmarshal decodes one whole frame, length prefix included, with the given
// limit. Bytes after the frame are an error.
func Unmarshal(frame []byte, maxFrame int) (Message, error) {
	r := bytes.NewReader(frame)
	m, err := ReadFrame(r, maxFrame)
	if err == io.EOF {
		return nil, fmt.Errorf("%w: empty input", ErrTruncated)
	}
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the frame", ErrMalformed, r.Len())
	}
	return m, nil
}

func isNilPointer(m Message) bool {
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func typeName(m Message) string {
	return reflect.TypeOf(m).Elem().Name()
}
