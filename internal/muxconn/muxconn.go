// Package muxconn adapts a net.Conn to carry a yamux session cheaply: it
// merges each yamux data frame's header and body into one write, on yamux's
// send loop itself. The peer transport (replica/transport) puts one under
// its sessions. (The client protocol, internal/wire, uses a coalescing
// writer with a flusher goroutine instead: with many connections of one
// call each, it measured about 1.5 times the throughput; see batchconn.go.)
package muxconn

import (
	"encoding/binary"
	"net"
)

// yamux's frame header (v0.1): version, type, flags (2), stream id (4),
// length (4). For a data frame, length is the size of the body that follows.
const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0
	// mergeCopyMax is the largest body copied behind its header; a larger
	// one goes out with writev instead of a copy.
	mergeCopyMax = 64 << 10
)

// Conn merges each yamux data frame's header and body into one write.
// yamux v0.1's send loop writes them with two calls, so every message cost
// two write system calls (and, on loopback, two segments for the reader to
// wake up for). Conn holds a data header whose length announces a body
// and writes it together with the next write (a copy into one buffer, or
// writev for a large body). The byte stream is unchanged; only where the
// writes split moves. Only yamux's send loop writes to it, so it needs no
// lock.
type Conn struct {
	net.Conn
	hdr  [yamuxHeaderLen]byte
	held bool
	buf  []byte
	bufs net.Buffers
}

// New returns c with merged writes. Only one goroutine may write to it at a
// time (yamux's send loop is the only writer).
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Write writes p, or holds it when it is a data frame header with a body to
// come.
func (c *Conn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		var err error
		if len(p) <= mergeCopyMax {
			c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
			_, err = c.Conn.Write(c.buf)
		} else {
			c.bufs = append(c.bufs[:0], c.hdr[:], p)
			_, err = c.bufs.WriteTo(c.Conn)
		}
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderLen && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}
