package muxconn

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

// recordConn records every write that reaches the socket.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderLen)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], 7) // stream id
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// A data frame's header and body reach the socket in one write; every other
// write passes through as it is, and the byte stream never changes.
func TestMergesDataHeaderWithBody(t *testing.T) {
	rec := &recordConn{}
	c := New(rec)
	body := []byte("hello")
	writes := [][]byte{
		yamuxHeader(yamuxTypeData, uint32(len(body))), body, // merged
		yamuxHeader(1, 1<<16),                        // window update: no body
		yamuxHeader(yamuxTypeData, 0),                // data frame without a body (SYN, FIN)
		yamuxHeader(yamuxTypeData, 3), []byte("abc"), // merged
	}
	var want []byte
	for _, w := range writes {
		if n, err := c.Write(w); n != len(w) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
		}
		want = append(want, w...)
	}
	if len(rec.writes) != 4 {
		t.Fatalf("%d writes reached the socket; want 4", len(rec.writes))
	}
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, want) {
		t.Fatalf("byte stream changed:\n got %x\nwant %x", got, want)
	}
	if len(rec.writes[0]) != yamuxHeaderLen+len(body) {
		t.Errorf("first write %d bytes; want header and body, %d", len(rec.writes[0]), yamuxHeaderLen+len(body))
	}
	// A body too large to copy goes out with writev (two writes here: the
	// recording conn has no writev), the stream still unchanged.
	large := bytes.Repeat([]byte{'x'}, mergeCopyMax+1)
	hdr := yamuxHeader(yamuxTypeData, uint32(len(large)))
	c.Write(hdr)
	c.Write(large)
	want = append(append(want, hdr...), large...)
	if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, want) {
		t.Fatalf("byte stream changed by a large body")
	}
}
