package lockserver

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/latchd/latch/internal/wire"
)

// rawFrame builds a frame by hand: length, version, type, body.
func rawFrame(version uint8, t wire.Type, body []byte) []byte {
	b := make([]byte, 7, 7+len(body))
	binary.BigEndian.PutUint32(b, uint32(3+len(body)))
	b[4] = version
	binary.BigEndian.PutUint16(b[5:], uint16(t))
	return append(b, body...)
}

// streamCall writes raw bytes on a new stream and reads one reply frame.
func streamCall(t *testing.T, rc *rawConn, raw []byte) (wire.Message, error) {
	t.Helper()
	st, err := rc.mux.OpenStream()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write(raw); err != nil {
		return nil, err
	}
	return wire.NewDecoder(st, 4<<20).Decode()
}

// TestBadInput feeds a live cell garbage and checks that each bad input
// gets its error or closes only its own connection, while a bystander
// client carries on throughout.
func TestBadInput(t *testing.T) {
	c := testCell(t, func(cfg *Config) { cfg.MaxFrame = 300 << 10 })
	by := newClient(t, c)
	by.open(20 * time.Second)
	by.must(&wire.Put{Path: "/by", Content: []byte("ok")})
	leader := c.Endpoints()[c.Leader()]
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
	// read: the call gets TooLarge on its own stream and, since every call
	// has a stream of its own, the connection carries on (docs/protocol.md).
	t.Run("oversized frame", func(t *testing.T) {
		rc := dialRaw(t, leader)
		hdr := make([]byte, 4)
		binary.BigEndian.PutUint32(hdr, 10<<20)
		m, err := streamCall(t, rc, hdr)
		if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.TooLarge {
			t.Fatalf("oversized frame answered %+v, %v; want TooLarge", m, err)
		}
		if _, err := rc.call(&wire.Status{}); err != nil {
			t.Fatalf("the connection did not carry on: %v", err)
		}
		bystanderOK("an oversized frame")
	})

	t.Run("oversized content frame", func(t *testing.T) {
		// The server answers after the prefix and never reads the body,
		// so the writer may block on flow control: write in the background.
		rc := dialRaw(t, leader)
		frame, err := wire.Marshal(&wire.Put{Header: wire.Header{Session: by.sid, Request: 9000}, Path: "/big", Content: make([]byte, 400<<10)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := rc.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			st.Write(frame)
		}()
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := wire.NewDecoder(st, 0).Decode()
		if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.TooLarge {
			t.Fatalf("a frame over MaxFrame answered %+v, %v; want TooLarge", m, err)
		}
		if _, err := rc.call(&wire.Status{}); err != nil {
			t.Fatalf("the connection did not carry on: %v", err)
		}
		rc.close()
		<-wrote
		bystanderOK("an oversized content")
	})

	t.Run("truncated frame", func(t *testing.T) {
		rc := dialRaw(t, leader)
		st, err := rc.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		full := rawFrame(1, wire.TypeGet, []byte{0x81, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'x'})
		st.Write(full[:len(full)-3])
		st.Close()
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		if m, err := wire.NewDecoder(st, 0).Decode(); err != io.EOF {
			t.Fatalf("truncated request answered %v, %v; want the stream closed", m, err)
		}
		if _, err := rc.call(&wire.Status{}); err != nil {
			t.Fatalf("the connection did not carry on: %v", err)
		}
		bystanderOK("a truncated frame")
	})

	// These get an error reply and the connection carries on.
	rc := dialRaw(t, leader)
	cases := []struct {
		name string
		raw  []byte
	}{
		{"malformed msgpack", rawFrame(1, wire.TypeGet, []byte{0xc1, 0x00})},
		{"wrong body shape", rawFrame(1, wire.TypeGet, []byte{0x93, 0x01, 0x02, 0x03})},
		{"unknown type", rawFrame(1, 999, []byte{0x80})},
		{"unknown version", rawFrame(9, wire.TypeGet, []byte{0x80})},
		{"trailing bytes", rawFrame(1, wire.TypeStatus, []byte{0x80, 0x80})},
		{"extension type", rawFrame(1, wire.TypeGet, []byte{0xd4, 0x01, 0x02})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := streamCall(t, rc, tc.raw)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			if e, ok := m.(*wire.Error); !ok || e.Code != wire.BadRequest {
				t.Fatalf("reply %+v; want BadRequest", m)
			}
			if _, err := rc.call(&wire.Status{}); err != nil {
				t.Fatalf("the connection did not carry on: %v", err)
			}
		})
	}

	t.Run("request before Hello", func(t *testing.T) {
		nc, err := net.Dial("tcp", leader)
		if err != nil {
			t.Fatal(err)
		}
		raw := &rawConn{nc: nc}
		raw.mux, _ = newYamuxClient(nc)
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
