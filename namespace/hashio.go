package namespace

import (
	"fmt"
	"hash/crc32"
	"io"
)

// Checksummed I/O for snapshots: the writer and reader keep a CRC-32C of
// every byte, so Restore detects a corrupted or truncated stream.

// hashWriter passes writes to w and keeps their CRC-32C.
type hashWriter struct {
	w   io.Writer
	crc uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.crc = crc32.Update(h.crc, castagnoli, p[:n])
	return n, err
}

// hashReader is a buffered io.ByteScanner that keeps the CRC-32C of the bytes
// consumed so far (sum). Bytes are hashed when the buffer is refilled or sum
// is called, so UnreadByte of the last byte is always possible.
type hashReader struct {
	r       io.Reader
	buf     []byte
	pos     int // next byte to read
	end     int // end of valid data
	hashed  int // buf[:hashed] is in crc
	crc     uint32
	lastErr error
}

func newHashReader(r io.Reader) *hashReader {
	return &hashReader{r: r, buf: make([]byte, 64<<10)}
}

func (h *hashReader) fill() error {
	h.crc = crc32.Update(h.crc, castagnoli, h.buf[h.hashed:h.pos])
	h.pos, h.end, h.hashed = 0, 0, 0
	for h.end == 0 {
		if h.lastErr != nil {
			return h.lastErr
		}
		n, err := h.r.Read(h.buf)
		h.end = n
		if err != nil {
			h.lastErr = err
		}
	}
	return nil
}

func (h *hashReader) ReadByte() (byte, error) {
	if h.pos == h.end {
		if err := h.fill(); err != nil {
			return 0, err
		}
	}
	c := h.buf[h.pos]
	h.pos++
	return c, nil
}

func (h *hashReader) UnreadByte() error {
	if h.pos <= h.hashed {
		return fmt.Errorf("%w: unread before the buffer", ErrBadSnapshot)
	}
	h.pos--
	return nil
}

func (h *hashReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if h.pos == h.end {
		if err := h.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, h.buf[h.pos:h.end])
	h.pos += n
	return n, nil
}

// sum returns the CRC-32C of every byte consumed.
func (h *hashReader) sum() uint32 {
	h.crc = crc32.Update(h.crc, castagnoli, h.buf[h.hashed:h.pos])
	h.hashed = h.pos
	return h.crc
}
