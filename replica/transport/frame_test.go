package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// frame builds raw frame bytes: header with the given length and version,
// then body.
func frame(length uint32, version byte, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	return append(append(b, version), body...)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		group   uint32
		payload []byte
	}{
		{"empty", 0, []byte{}},
		{"small", 7, []byte("accept b=3.1 i=42")},
		{"max group", math.MaxUint32, []byte{1, 2, 3}},
		{"bin16", 300, bytes.Repeat([]byte{0xab}, 300)},
		{"bin32", 1, bytes.Repeat([]byte{0xcd}, 70000)},
	}
	var buf bytes.Buffer
	ew := newEnvelopeWriter()
	for _, c := range cases {
		n, err := ew.write(&buf, c.group, c.payload)
		if err != nil {
			t.Fatalf("%s: write: %v", c.name, err)
		}
		if n > headerLen+len(c.payload)+EnvelopeOverhead {
			t.Errorf("%s: frame of %d bytes for %d-byte payload; overhead above %d", c.name, n, len(c.payload), EnvelopeOverhead)
		}
	}
	fr := frameReader{r: &buf}
	er := newEnvelopeReader()
	for _, c := range cases {
		body, _, err := fr.next(1 << 20)
		if err != nil {
			t.Fatalf("%s: next: %v", c.name, err)
		}
		g, p, err := er.decode(body)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if g != c.group || !bytes.Equal(p, c.payload) {
			t.Errorf("%s: decode = (%d, %d bytes); want (%d, %d bytes)", c.name, g, len(p), c.group, len(c.payload))
		}
	}
	if _, _, err := fr.next(1 << 20); err != io.EOF {
		t.Errorf("next at end = %v; want io.EOF", err)
	}
}

// TestMaxPayloadFitsMaxFrame checks the promise behind Config.MaxPayload: the
// largest payload Send accepts gives a frame the receiver accepts.
func TestMaxPayloadFitsMaxFrame(t *testing.T) {
	for _, maxFrame := range []int{MinFrame, 300, 70000, 1 << 20} {
		cfg := Config{MaxFrame: maxFrame}
		var buf bytes.Buffer
		if _, err := newEnvelopeWriter().write(&buf, math.MaxUint32, make([]byte, cfg.MaxPayload())); err != nil {
			t.Fatal(err)
		}
		fr := frameReader{r: &buf}
		if _, _, err := fr.next(maxFrame); err != nil {
			t.Errorf("MaxFrame %d: frame with MaxPayload %d bytes: %v", maxFrame, cfg.MaxPayload(), err)
		}
	}
}

func TestFrameReaderRejects(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty stream", nil, io.EOF},
		{"short header", []byte{0, 0, 1}, io.ErrUnexpectedEOF},
		{"truncated body", frame(10, Version, []byte("abc")), io.ErrUnexpectedEOF},
		{"wrong version", frame(3, Version+1, []byte("abc")), ErrVersion},
		{"version zero", frame(3, 0, []byte("abc")), ErrVersion},
		{"one over limit", frame(101, Version, nil), ErrFrameTooLarge},
		{"4 GiB length", frame(math.MaxUint32, Version, nil), ErrFrameTooLarge},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fr := frameReader{r: bytes.NewReader(c.input)}
			_, _, err := fr.next(100)
			if !errors.Is(err, c.want) {
				t.Errorf("next(%q) = %v; want %v", c.input, err, c.want)
			}
		})
	}
}

// TestFrameLengthCheckedBeforeAllocating sends a header announcing a frame one
// byte over a 16 MiB limit, with no body, and checks nothing near that size
// was allocated.
func TestFrameLengthCheckedBeforeAllocating(t *testing.T) {
	const limit = 16 << 20
	input := frame(limit+1, Version, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fr := frameReader{r: bytes.NewReader(input)}
	_, _, err := fr.next(limit)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("next = %v; want ErrFrameTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("rejecting an oversized frame allocated %d bytes", grew)
	}
}

func TestEnvelopeRejects(t *testing.T) {
	enc := func(vs ...any) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		for _, v := range vs {
			if err := e.Encode(v); err != nil {
				t.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	arr := func(n int) []byte {
		var buf bytes.Buffer
		msgpack.NewEncoder(&buf).EncodeArrayLen(n)
		return buf.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name string
		body []byte
	}{
		{"empty body", nil},
		{"not an array", enc("hello")},
		{"array of 3", cat(arr(3), enc(1, []byte("x"), 2))},
		{"array of 1", cat(arr(1), enc(1))},
		{"negative group", cat(arr(2), enc(-1, []byte("x")))},
		{"group over uint32", cat(arr(2), enc(uint64(math.MaxUint32)+1, []byte("x")))},
		{"group is a string", cat(arr(2), enc("g", []byte("x")))},
		{"payload is a map", cat(arr(2), enc(1, map[string]int{"a": 1}))},
		{"payload is nil", cat(arr(2), enc(1, nil))},
		{"trailing bytes", cat(arr(2), enc(1, []byte("x")), []byte{0})},
		{"truncated payload", cat(arr(2), enc(1, []byte("xyz")))[:5]},
		{"garbage", []byte{0xc1, 0xff, 0x00}},
	}
	er := newEnvelopeReader()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, p, err := er.decode(c.body)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("decode(%x) = (%d, %q, %v); want ErrMalformed", c.body, g, p, err)
			}
		})
	}
}

func TestHandshakeMessages(t *testing.T) {
	var buf bytes.Buffer
	in := hello{From: 1, To: 2, Cell: 0xfeed}
	if err := writeMsg(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out hello
	if err := readMsg(&buf, &out); err != nil || out != in {
		t.Errorf("readMsg = (%+v, %v); want (%+v, nil)", out, err, in)
	}

	// A hello body over helloMax is refused before allocation.
	big := frame(helloMax+1, Version, nil)
	if err := readMsg(bytes.NewReader(big), &out); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("readMsg(oversized) = %v; want ErrFrameTooLarge", err)
	}
	garbage := frame(3, Version, []byte{0xc1, 0xc1, 0xc1})
	if err := readMsg(bytes.NewReader(garbage), &out); !errors.Is(err, ErrMalformed) {
		t.Errorf("readMsg(garbage) = %v; want ErrMalformed", err)
	}
}

func TestCheckHello(t *testing.T) {
	cfg := Config{ID: 2, Peers: map[uint64]string{1: "", 2: "", 3: "h3:1"}}
	cell := cfg.cellHash()
	cases := []struct {
		name string
		h    hello
		want error
		text string
	}{
		{"lower peer", hello{From: 1, To: 2, Cell: cell}, nil, ""},
		{"unknown id", hello{From: 9, To: 2, Cell: cell}, ErrUnknownPeer, "replica 9 is not a peer"},
		{"own id", hello{From: 2, To: 2, Cell: cell}, ErrUnknownPeer, "replica 2 is not a peer"},
		{"meant for another", hello{From: 1, To: 3, Cell: cell}, ErrHandshake, "meant to reach replica 3"},
		{"higher id dials", hello{From: 3, To: 2, Cell: cell}, ErrHandshake, "only the lower id dials"},
		{"other cell", hello{From: 1, To: 2, Cell: cell + 1}, ErrHandshake, "another peer set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkHello(cfg, cell, c.h)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("checkHello(%+v) = %v; want %v", c.h, err, c.want)
			}
			if err != nil && !strings.Contains(err.Error(), c.text) {
				t.Errorf("checkHello(%+v) = %q; want it to mention %q", c.h, err, c.text)
			}
		})
	}
}

func TestCellHash(t *testing.T) {
	a := Config{ID: 1, Peers: map[uint64]string{2: "x", 3: "y"}}
	b := Config{ID: 3, Peers: map[uint64]string{1: "", 2: "z", 3: "self"}}
	c := Config{ID: 1, Peers: map[uint64]string{2: "x", 4: "y"}}
	if a.cellHash() != b.cellHash() {
		t.Errorf("cells {1,2,3} seen from 1 and 3 hash differently")
	}
	if a.cellHash() == c.cellHash() {
		t.Errorf("cells {1,2,3} and {1,2,4} hash alike")
	}
}

// FuzzFrame feeds arbitrary bytes to the frame and envelope decoders: they
// must never panic, never return a body over the limit, and what decodes must
// re-encode to a frame that decodes the same.
func FuzzFrame(f *testing.F) {
	var good bytes.Buffer
	newEnvelopeWriter().write(&good, 3, []byte("payload"))
	f.Add(good.Bytes())
	f.Add(frame(5, Version, []byte{0x92, 0x01, 0xc4, 0x01, 0x00}))
	f.Add(frame(math.MaxUint32, Version, nil))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bytes.NewReader(data)}
		er := newEnvelopeReader()
		for {
			body, _, err := fr.next(limit)
			if err != nil {
				return
			}
			if len(body) > limit {
				t.Fatalf("body of %d bytes over limit %d", len(body), limit)
			}
			g, p, err := er.decode(body)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("decode error %v is not ErrMalformed", err)
				}
				continue
			}
			var buf bytes.Buffer
			newEnvelopeWriter().write(&buf, g, p)
			again, _, err := (&frameReader{r: &buf}).next(limit + EnvelopeOverhead)
			if err != nil {
				t.Fatal(err)
			}
			g2, p2, err := newEnvelopeReader().decode(again)
			if err != nil || g2 != g || !bytes.Equal(p2, p) {
				t.Fatalf("re-encoded (%d, %x) decodes as (%d, %x, %v)", g, p, g2, p2, err)
			}
		}
	})
}
