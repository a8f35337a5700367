package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxDepth bounds the nesting of msgpack containers in a body.
const maxDepth = 32

var (
	errShort    = errors.New("value runs past the end of the body")
	errTrailing = errors.New("bytes after the message")
	errDepth    = errors.New("containers nested too deep")
	errExt      = errors.New("msgpack extension types are not allowed")
	errBadByte  = errors.New("invalid msgpack type byte 0xc1")
	errElements = errors.New("too many array elements")
)

// validate checks that body is exactly one msgpack value whose declared
// lengths all fit in the body, with at most maxElements array elements in all,
// nesting at most maxDepth, and no extension types. After it passes, decoding
// the body cannot be made to allocate much more than the element limit allows:
// the msgpack library sizes slices by their declared length.
func validate(body []byte, maxElements int) error {
	v := validator{b: body, elements: maxElements}
	if err := v.value(0); err != nil {
		return fmt.Errorf("at byte %d: %w", v.off, err)
	}
	if v.off != len(v.b) {
		return fmt.Errorf("at byte %d: %w", v.off, errTrailing)
	}
	return nil
}

type validator struct {
	b        []byte
	off      int
	elements int // array elements still allowed
}

// need returns the next n bytes, or an error if fewer remain.
func (v *validator) need(n uint64) ([]byte, error) {
	if n > uint64(len(v.b)-v.off) {
		return nil, errShort
	}
	p := v.b[v.off : v.off+int(n)]
	v.off += int(n)
	return p, nil
}

// length reads a big-endian length of size bytes (1, 2 or 4).
func (v *validator) length(size int) (uint64, error) {
	p, err := v.need(uint64(size))
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	default:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
}

func (v *validator) value(depth int) error {
	if depth > maxDepth {
		return errDepth
	}
	p, err := v.need(1)
	if err != nil {
		return err
	}
	c := p[0]
	switch {
	case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		return nil
	case c >= 0x80 && c <= 0x8f:
		return v.container(uint64(c&0x0f), true, depth)
	case c >= 0x90 && c <= 0x9f:
		return v.container(uint64(c&0x0f), false, depth)
	case c >= 0xa0 && c <= 0xbf: // fixstr
		_, err := v.need(uint64(c & 0x1f))
		return err
	}
	switch c {
	case 0xc1:
		return errBadByte
	case 0xc4, 0xd9: // bin8, str8
		return v.blob(1)
	case 0xc5, 0xda: // bin16, str16
		return v.blob(2)
	case 0xc6, 0xdb: // bin32, str32
		return v.blob(4)
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // ext
		return errExt
	case 0xca: // float32
		_, err := v.need(4)
		return err
	case 0xcb: // float64
		_, err := v.need(8)
		return err
	case 0xcc, 0xd0:
		_, err := v.need(1)
		return err
	case 0xcd, 0xd1:
		_, err := v.need(2)
		return err
	case 0xce, 0xd2:
		_, err := v.need(4)
		return err
	case 0xcf, 0xd3:
		_, err := v.need(8)
		return err
	case 0xdc:
		return v.sizedContainer(2, false, depth)
	case 0xdd:
		return v.sizedContainer(4, false, depth)
	case 0xde:
		return v.sizedContainer(2, true, depth)
	default: // 0xdf
		return v.sizedContainer(4, true, depth)
	}
}

func (v *validator) blob(size int) error {
	n, err := v.length(size)
	if err != nil {
		return err
	}
	_, err = v.need(n)
	return err
}

func (v *validator) sizedContainer(size int, isMap bool, depth int) error {
	n, err := v.length(size)
	if err != nil {
		return err
	}
	return v.container(n, isMap, depth)
}

func (v *validator) container(n uint64, isMap bool, depth int) error {
	items := n
	if isMap {
		items = 2 * n
	}
	// Every item takes at least one byte: reject impossible lengths before
	// walking them.
	if items > uint64(len(v.b)-v.off) {
		return errShort
	}
	if !isMap {
		if n > uint64(v.elements) {
			return errElements
		}
		v.elements -= int(n)
	}
	for i := uint64(0); i < items; i++ {
		if err := v.value(depth + 1); err != nil {
			return err
		}
	}
	return nil
}
