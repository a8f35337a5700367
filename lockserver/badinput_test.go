package lockserver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// rawFrame builds a frame by hand: length, version, type, call id 100, body.
func rawFrame(version uint8, t wire.Type, body []byte) []byte {
	return wire.AppendRawFrame(nil, version, t, 100, body)
}

// closedAfter writes raw bytes on rc's call stream and checks that the
// server closes the connection (reads end without a reply).
func closedAfter(t *testing.T, rc *rawConn, raw []byte) {
	t.Helper()
	// The server may stop reading mid-frame: write in the background
	// (the write ends when the connection does).
	go rc.st.Write(raw)
	rc.st.SetReadDeadline(time.Now().Add(10 * time.Second))
	id, m, err := rc.dec.DecodeCall()
	if err == nil {
		t.Fatalf("answered on call %d with %+v; want the connection closed", id, m)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection was not closed")
	}
}

// TestBadInput feeds a live cell garbage and checks that each bad input
// closes its own connection (or, for a well-framed request of an unknown
// type, gets an error on its call id), while a bystander client carries on
// throughout (docs/protocol.md, Framing).
func TestBadInput(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.MaxFrame = 300 << 10 })
	by := newClient(t, c)
	by.open(20 * time.Second)
	by.must(&wire.Put{Path: "/by", Content: []byte("ok")})
	leader := c.Endpoints()[leaderIndex(t, c)]
	bystanderOK := func(step string) {
		t.Helper()
		if g, err := by.do(&wire.Get{Path: "/by"}); err != nil || string(g.(*wire.GetReply).Content) != "ok" {
			t.Fatalf("after %s the bystander's Get = %v, %v", step, g, err)
		}
	}

	t.Run("garbage bytes on TCP", func(t *testing.T) {
		nc, err := net.Dial("tcp", leader)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write([]byte("GET / HTTP/1.1\r\nHost: latch\r\n\r\n\x00\xff\xfe garbage"))
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(nc); err != nil {
			t.Fatalf("server did not close a garbage connection: %v", err)
		}
		bystanderOK("garbage")
	})

	// A frame's limit is checked on its 4-byte prefix, before the body is
	// read or allocated; the stream cannot be resynchronized past it, so
	// the connection is closed.
	bigPut, err := wire.MarshalCall(100, &wire.Put{Header: wire.Header{Session: by.sid, Request: 9000}, Path: "/big", Content: make([]byte, 400<<10)})
	if err != nil {
		t.Fatal(err)
	}
	full := rawFrame(wire.Version, wire.TypeGet, []byte{0x81, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'x'})
	closing := []struct {
		name string
		raw  []byte
	}{
		{"oversized frame", binary.BigEndian.AppendUint32(nil, 10<<20)},
		{"oversized content frame", bigPut},
		{"garbage on the call stream", []byte("\x00\xff\xfe garbage garbage garbage")},
		{"malformed msgpack", rawFrame(wire.Version, wire.TypeGet, []byte{0xc1, 0x00})},
		{"wrong body shape", rawFrame(wire.Version, wire.TypeGet, []byte{0x93, 0x01, 0x02, 0x03})},
		{"unknown version", rawFrame(9, wire.TypeGet, []byte{0x80})},
		{"version 1", rawFrame(1, wire.TypeGet, []byte{0x80})},
		{"trailing bytes", rawFrame(wire.Version, wire.TypeStatus, []byte{0x80, 0x80})},
		{"extension type", rawFrame(wire.Version, wire.TypeGet, []byte{0xd4, 0x01, 0x02})},
	}
	for _, tc := range closing {
		t.Run(tc.name, func(t *testing.T) {
			closedAfter(t, dialRaw(t, leader), tc.raw)
			bystanderOK(tc.name)
		})
	}

	t.Run("truncated frame", func(t *testing.T) {
		rc := dialRaw(t, leader)
		rc.st.Write(full[:len(full)-3])
		rc.st.Close() // half-closes the call stream: it ends inside the frame
		rc.st.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, m, err := rc.dec.DecodeCall(); err == nil {
			t.Fatalf("truncated request answered %v; want the connection closed", m)
		}
		bystanderOK("a truncated frame")
	})

	// A well-framed request of an unknown type is answered on its call id
	// and the connection carries on.
	t.Run("unknown type", func(t *testing.T) {
		rc := dialRaw(t, leader)
		if _, err := rc.st.Write(rawFrame(wire.Version, 999, []byte{0x80})); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.recv(100, 10*time.Second); codeOf(err) != wire.BadRequest {
			t.Fatalf("unknown type answered %v; want BadRequest", err)
		}
		if _, err := rc.call(&wire.Status{}); err != nil {
			t.Fatalf("the connection did not carry on: %v", err)
		}
	})

	t.Run("request before Hello", func(t *testing.T) {
		nc, err := net.Dial("tcp", leader)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := newRawConn(nc)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.close()
		if _, err := raw.call(&wire.Status{}); codeOf(err) != wire.BadRequest {
			t.Fatalf("Status before Hello = %v; want BadRequest", err)
		}
		if _, err := raw.call(&wire.Hello{MinVersion: 5, MaxVersion: 6}); codeOf(err) != wire.BadRequest {
			t.Fatalf("Hello with no common version = %v; want BadRequest", err)
		}
		if _, err := raw.call(&wire.Hello{MinVersion: 1, MaxVersion: 3}); err != nil {
			t.Fatalf("Hello = %v", err)
		}
		if _, err := raw.call(&wire.Status{}); err != nil {
			t.Fatalf("Status after Hello = %v", err)
		}
	})
	bystanderOK("all bad input")
}
