package namespace

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// fieldEncoder writes msgpack values, keeping the first error so a sequence of
// writes needs one check at the end.
type fieldEncoder struct {
	enc *msgpack.Encoder
	err error
}

func (e *fieldEncoder) arrayLen(n int) {
	if e.err == nil {
		e.err = e.enc.EncodeArrayLen(n)
	}
}

func (e *fieldEncoder) uint(v uint64) {
	if e.err == nil {
		e.err = e.enc.EncodeUint(v)
	}
}

func (e *fieldEncoder) int(v int64) {
	if e.err == nil {
		e.err = e.enc.EncodeInt(v)
	}
}

func (e *fieldEncoder) bool(v bool) {
	if e.err == nil {
		e.err = e.enc.EncodeBool(v)
	}
}

func (e *fieldEncoder) string(v string) {
	if e.err == nil {
		e.err = e.enc.EncodeString(v)
	}
}

func (e *fieldEncoder) bytes(v []byte) {
	if e.err == nil {
		e.err = e.enc.EncodeBytes(v)
	}
}

// fieldDecoder reads typed msgpack values, keeping the first error, wrapped
// with wrap and the name of the field being read.
type fieldDecoder struct {
	dec  *msgpack.Decoder
	wrap error
	err  error
}

func (d *fieldDecoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %v", d.wrap, field, err)
	}
}

func (d *fieldDecoder) arrayLen(field string) int {
	if d.err != nil {
		return 0
	}
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		d.fail(field, err)
		return 0
	}
	if n < 0 {
		d.fail(field, fmt.Errorf("nil array"))
		return 0
	}
	return n
}

// expectArray reads an array header and fails unless it has n elements.
func (d *fieldDecoder) expectArray(field string, n int) {
	if got := d.arrayLen(field); d.err == nil && got != n {
		d.fail(field, fmt.Errorf("%d fields, want %d", got, n))
	}
}

func (d *fieldDecoder) uint(field string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeUint64()
	if err != nil {
		d.fail(field, err)
		return 0
	}
	if v > max {
		d.fail(field, fmt.Errorf("%d out of range", v))
		return 0
	}
	return v
}

func (d *fieldDecoder) int(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeInt64()
	if err != nil {
		d.fail(field, err)
	}
	return v
}

func (d *fieldDecoder) bool(field string) bool {
	if d.err != nil {
		return false
	}
	v, err := d.dec.DecodeBool()
	if err != nil {
		d.fail(field, err)
	}
	return v
}

func (d *fieldDecoder) string(field string) string {
	if d.err != nil {
		return ""
	}
	v, err := d.dec.DecodeString()
	if err != nil {
		d.fail(field, err)
	}
	return v
}

// bytes reads a bin or str value. It does not trust the length prefix: it
// grows the buffer as data arrives, so a forged length cannot make it
// allocate more than about twice the bytes actually present (msgpack's own
// DecodeBytes allocates the claimed length up front).
func (d *fieldDecoder) bytes(field string) []byte {
	if d.err != nil {
		return nil
	}
	n, err := d.dec.DecodeBytesLen()
	if err != nil {
		d.fail(field, err)
		return nil
	}
	const chunk = 64 << 10
	var b []byte
	for len(b) < n {
		start := len(b)
		b = append(b, make([]byte, min(n-start, chunk))...)
		if err := d.dec.ReadFull(b[start:]); err != nil {
			d.fail(field, err)
			return nil
		}
	}
	return b
}

// smallBytes reads a bin or str value of at most len(buf) bytes into buf.
func (d *fieldDecoder) smallBytes(field string, buf []byte) []byte {
	if d.err != nil {
		return nil
	}
	n, err := d.dec.DecodeBytesLen()
	switch {
	case err != nil:
		d.fail(field, err)
		return nil
	case n > len(buf):
		d.fail(field, fmt.Errorf("%d bytes > %d", n, len(buf)))
		return nil
	case n <= 0:
		return buf[:0]
	}
	if err := d.dec.ReadFull(buf[:n]); err != nil {
		d.fail(field, err)
		return nil
	}
	return buf[:n]
}
