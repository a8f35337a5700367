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
	Version uint8 = 1
	// MinVersion is the oldest version this package still reads.
	MinVersion uint8 = 1
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

// headerLen is the length prefix plus the version and type.
const (
	prefixLen = 4
	headerLen = 3 // version + type, counted in the frame length
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
	buf      bytes.Buffer
	enc      *msgpack.Encoder
}

// NewEncoder returns an Encoder that writes to w and refuses to write frames
// longer than maxFrame (DefaultMaxFrame if maxFrame <= 0).
func NewEncoder(w io.Writer, maxFrame int) *Encoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	e := &Encoder{w: w, maxFrame: maxFrame}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

// Reset makes e write to w, keeping its limit and buffer.
func (e *Encoder) Reset(w io.Writer) { e.w = w }

// Encode writes m as one frame of the current Version. A message whose frame
// would be over the limit is not written; the error matches
// ErrFrameTooLarge.
func (e *Encoder) Encode(m Message) error {
	return e.encode(m, Version)
}

func (e *Encoder) encode(m Message, version uint8) error {
	frame, err := e.frame(m, version)
	if err != nil {
		return err
	}
	_, err = e.w.Write(frame)
	return err
}

// frame encodes m into e.buf and returns the whole frame, valid until the
// next call.
func (e *Encoder) frame(m Message, version uint8) ([]byte, error) {
	if m == nil || isNilPointer(m) {
		return nil, fmt.Errorf("%w: nil message", ErrMalformed)
	}
	t := m.Type()
	if New(t) == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	e.buf.Reset()
	var hdr [prefixLen + headerLen]byte
	e.buf.Write(hdr[:])
	if err := e.enc.Encode(m); err != nil {
		return nil, fmt.Errorf("wire: encode %v: %w", t, err)
	}
	b := e.buf.Bytes()
	n := len(b) - prefixLen
	if n > e.maxFrame {
		return nil, &SizeError{Size: n, Max: e.maxFrame}
	}
	binary.BigEndian.PutUint32(b[0:4], uint32(n))
	b[4] = version
	binary.BigEndian.PutUint16(b[5:7], uint16(t))
	return b, nil
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

// Decode reads the next frame and returns its message. At a clean end of
// stream (no byte of a new frame read) it returns io.EOF itself; inside a
// frame it returns an error matching ErrTruncated. Other failures match
// ErrFrameTooLarge, ErrVersion, ErrUnknownType or ErrMalformed. After an
// error the stream position is undefined: close the stream.
func (d *Decoder) Decode() (Message, error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, truncated(err)
	}
	n := int(binary.BigEndian.Uint32(d.hdr[:]))
	if n > d.maxFrame {
		return nil, &SizeError{Size: n, Max: d.maxFrame}
	}
	if n < headerLen {
		return nil, fmt.Errorf("%w: frame length %d is shorter than its header", ErrMalformed, n)
	}
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	frame := d.buf[:n]
	if _, err := io.ReadFull(d.r, frame); err != nil {
		return nil, truncated(err)
	}
	return d.decodeFrame(frame)
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
	}
	return err
}

// decodeFrame decodes version, type and body (the frame without its length
// prefix).
func (d *Decoder) decodeFrame(frame []byte) (Message, error) {
	version := frame[0]
	if version < MinVersion || version > Version {
		return nil, &VersionError{Got: version, Min: MinVersion, Max: Version}
	}
	t := Type(binary.BigEndian.Uint16(frame[1:3]))
	m := New(t)
	if m == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	body := frame[headerLen:]
	if err := validate(body, d.maxElements); err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrMalformed, t, err)
	}
	d.br.Reset(body)
	d.dec.Reset(&d.br)
	if err := d.dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrMalformed, t, err)
	}
	if d.br.Len() != 0 {
		return nil, fmt.Errorf("%w: %v: %d trailing bytes", ErrMalformed, t, d.br.Len())
	}
	return m, nil
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

// Marshal returns m as one frame, length prefix included.
func Marshal(m Message) ([]byte, error) {
	e := NewEncoder(io.Discard, DefaultMaxFrame)
	b, err := e.frame(m, Version)
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
