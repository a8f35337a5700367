package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/frames.golden")

// allTypes returns every message type this package defines.
func allTypes() []Type {
	var ts []Type
	for t := Type(1); t < typeEnd; t++ {
		ts = append(ts, t)
	}
	return ts
}

// fill sets every field of v (recursively) to a non-zero value derived from
// *n, so a round trip checks every field's tag and encoding.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), n)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("/s%d:x", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8:
		v.SetUint(uint64(*n%2 + 1)) // a valid LockMode; any byte for others
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n) * 1000003)
	case reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			v.SetInt(int64(*n) * int64(time.Millisecond))
		} else {
			v.SetInt(-int64(*n) * 1e12)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(s.Index(i), n)
		}
		v.Set(s)
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

func filled(t Type) Message {
	m := New(t)
	n := int(t) * 100
	fill(reflect.ValueOf(m).Elem(), &n)
	return m
}

func TestRoundTripEveryType(t *testing.T) {
	for _, typ := range allTypes() {
		t.Run(typ.String(), func(t *testing.T) {
			for _, m := range []Message{New(typ), filled(typ)} {
				if m.Type() != typ {
					t.Fatalf("New(%d).Type() = %v", typ, m.Type())
				}
				roundTrip(t, m)
			}
		})
	}
}

// roundTrip checks that m decodes from its frame as it was.
func roundTrip(t *testing.T, m Message) {
	t.Helper()
	b, err := Marshal(m)
	if err != nil {
		t.Fatalf("Marshal(%#v): %v", m, err)
	}
	got, err := Unmarshal(b, 0)
	if err != nil {
		t.Fatalf("Unmarshal(Marshal(%#v)): %v", m, err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(m)) {
		t.Errorf("round trip = %#v; want %#v", got, m)
	}
}

// normalize maps empty slices to nil (omitempty drops them).
func normalize(m Message) Message {
	v := reflect.ValueOf(m).Elem()
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	normalizeValue(c)
	return c.Addr().Interface().(Message)
}

func normalizeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			normalizeValue(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := 0; i < v.Len(); i++ {
			normalizeValue(v.Index(i))
		}
	case reflect.Pointer: // changes the pointee: normalize a deep copy
		if !v.IsNil() {
			normalizeValue(v.Elem())
		}
	}
}

func TestTypeNamesAndNew(t *testing.T) {
	seen := map[string]Type{}
	for _, typ := range allTypes() {
		name := typ.String()
		if strings.HasPrefix(name, "Type(") {
			t.Errorf("Type(%d) has no name", typ)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("types %d and %d are both %q", prev, typ, name)
		}
		seen[name] = typ
	}
	if New(0) != nil || New(typeEnd) != nil {
		t.Errorf("New of an unknown type is not nil")
	}
	if got := Type(999).String(); got != "Type(999)" {
		t.Errorf("Type(999).String() = %q", got)
	}
}

// TestGoldenFrames keeps the encoding of every message stable: a change to a
// field tag or type shows up as a diff of testdata/frames.golden, which must
// come with a new protocol Version.
func TestGoldenFrames(t *testing.T) {
	var out bytes.Buffer
	for _, typ := range allTypes() {
		b, err := Marshal(filled(typ))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s %s\n", typ, hex.EncodeToString(b))
	}
	const golden = "testdata/frames.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenFrames -update)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("encoding changed; diff %s against the output of -update", golden)
	}
	// Every golden frame still decodes, so old frames stay readable.
	sc := bufio.NewScanner(bytes.NewReader(want))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, h, _ := strings.Cut(sc.Text(), " ")
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := Unmarshal(b, 0)
		if err != nil {
			t.Errorf("golden %s: %v", name, err)
		} else if m.Type().String() != name {
			t.Errorf("golden %s decodes as %v", name, m.Type())
		}
	}
}

func TestEncoderDecoderStream(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf, 0)
	msgs := []Message{
		&Hello{MinVersion: 1, MaxVersion: 1, Client: "test"},
		&KeepAlive{Header: Header{Session: 7, Request: 9}, Acked: 3},
		&KeepAliveReply{TTL: 12 * time.Second, Events: []Event{{Type: ChildAdded, Seq: 4, Path: "/a", Child: "b", Watches: []uint64{1}}}},
		&Put{Header: Header{Session: 7, Request: 10}, Path: "/a/b", Content: bytes.Repeat([]byte{'x'}, DefaultMaxContent)},
		&Error{Code: NotLeader, Message: "not the leader", Leader: "127.0.0.1:7001"},
	}
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			t.Fatalf("Encode(%v): %v", m.Type(), err)
		}
	}
	dec := NewDecoder(&buf, 0)
	for _, want := range msgs {
		got, err := dec.Decode()
		if err != nil {
			t.Fatalf("Decode() = %v; want %v", err, want.Type())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Decode() = %#v; want %#v", got, want)
		}
	}
	if _, err := dec.Decode(); err != io.EOF {
		t.Errorf("Decode() at end = %v; want io.EOF", err)
	}
}

// frameOf builds a raw frame with the given version, type and body, and
// call id 0.
func frameOf(version uint8, t Type, body []byte) []byte {
	return AppendRawFrame(nil, version, t, 0, body)
}

func TestDecodeErrors(t *testing.T) {
	good, err := Marshal(&Get{Header: Header{Session: 1, Request: 2}, Path: "/a"})
	if err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, 1<<31)

	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrTruncated},
		{"short prefix", []byte{0, 0}, ErrTruncated},
		{"truncated body", good[:len(good)-1], ErrTruncated},
		{"header only prefix", good[:4], ErrTruncated},
		{"oversize", append(huge, 1, 0, 10), ErrFrameTooLarge},
		{"length below header", []byte{0, 0, 0, 2, 1, 0}, ErrMalformed},
		{"version 0", frameOf(0, TypeGet, good[FrameOverhead:]), ErrVersion},
		{"version 2", frameOf(Version+1, TypeGet, good[FrameOverhead:]), ErrVersion},
		{"unknown type", frameOf(Version, 999, good[FrameOverhead:]), ErrUnknownType},
		{"type 0", frameOf(Version, 0, good[FrameOverhead:]), ErrUnknownType},
		{"empty body", frameOf(Version, TypeGet, nil), ErrMalformed},
		{"garbage", frameOf(Version, TypeGet, []byte("\xc1garbage")), ErrMalformed},
		{"wrong shape", frameOf(Version, TypeGet, []byte{0x81, 0xa4, 'p', 'a', 't', 'h', 0x05}), ErrMalformed},
		{"trailing in body", frameOf(Version, TypeGet, append(bytes.Clone(good[FrameOverhead:]), 0xc0)), ErrMalformed},
		{"trailing after frame", append(bytes.Clone(good), 0), ErrMalformed},
		{"ext type", frameOf(Version, TypeGet, []byte{0xd4, 1, 1}), ErrMalformed},
		{"array claims 4G elements", frameOf(Version, TypeKeepAliveReply, []byte{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}), ErrMalformed},
		{"string claims 4 GiB", frameOf(Version, TypeGet, []byte{0x81, 0xa4, 'p', 'a', 't', 'h', 0xdb, 0xff, 0xff, 0xff, 0xff}), ErrMalformed},
		{"deep nesting", frameOf(Version, TypeGet, bytes.Repeat([]byte{0x91}, 100)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Unmarshal(tt.frame, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal = %v, %v; want error %v", m, err, tt.want)
			}
		})
	}
	var ve *VersionError
	if _, err := Unmarshal(frameOf(9, TypeGet, good[FrameOverhead:]), 0); !errors.As(err, &ve) || ve.Got != 9 {
		t.Errorf("version error = %v; want *VersionError{Got: 9}", err)
	}
	var se *SizeError
	if _, err := Unmarshal(append(huge, 1, 0, 10), 0); !errors.As(err, &se) || se.Size != 1<<31 || se.Max != DefaultMaxFrame {
		t.Errorf("size error = %v; want *SizeError", err)
	}
}

// countingReader counts bytes read, to show that an oversized frame is
// rejected after its 4-byte prefix alone.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestOversizeRejectedBeforeRead(t *testing.T) {
	frame := frameOf(Version, TypePut, make([]byte, 2000))
	r := &countingReader{r: bytes.NewReader(frame)}
	if _, err := NewDecoder(r, 1000).Decode(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Decode = %v; want ErrFrameTooLarge", err)
	}
	if r.n != 4 {
		t.Errorf("read %d bytes; want only the 4-byte prefix", r.n)
	}
	// And without allocating a buffer for it.
	huge := []byte{0x7f, 0xff, 0xff, 0xff, 1, 0, 10}
	hr := bytes.NewReader(huge)
	d := NewDecoder(hr, 0)
	allocs := testing.AllocsPerRun(100, func() {
		hr.Reset(huge)
		d.Reset(hr)
		if _, err := d.Decode(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the *SizeError
		t.Errorf("rejecting an oversized frame allocated %v times", allocs)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf, 1024)
	err := enc.Encode(&Put{Path: "/a", Content: make([]byte, 2048)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Encode(big) = %v; want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Errorf("a refused frame wrote %d bytes", buf.Len())
	}
	if err := enc.Encode(&Put{Path: "/a", Content: make([]byte, 10)}); err != nil {
		t.Fatalf("Encode(small) after a refusal: %v", err)
	}
	if _, err := NewDecoder(&buf, 1024).Decode(); err != nil {
		t.Fatalf("Decode after refusal: %v", err)
	}
	var nilGet *Get
	if err := enc.Encode(nilGet); !errors.Is(err, ErrMalformed) {
		t.Errorf("Encode(nil) = %v; want ErrMalformed", err)
	}
}

func TestElementLimit(t *testing.T) {
	m := &KeepAliveReply{Events: make([]Event, 100)}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder(bytes.NewReader(b), 0)
	d.SetMaxElements(99)
	if _, err := d.Decode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode with 100 elements, limit 99 = %v; want ErrMalformed", err)
	}
	d = NewDecoder(bytes.NewReader(b), 0)
	d.SetMaxElements(100)
	if _, err := d.Decode(); err != nil {
		t.Errorf("Decode with 100 elements, limit 100 = %v", err)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	// A newer peer may add fields within a version; older ones skip them.
	body := []byte{0x82, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'a', 0xa3, 'n', 'e', 'w', 0x2a}
	m, err := Unmarshal(frameOf(Version, TypeGet, body), 0)
	if err != nil {
		t.Fatalf("Unmarshal with an unknown field: %v", err)
	}
	if g := m.(*Get); g.Path != "/a" {
		t.Errorf("Path = %q; want /a", g.Path)
	}
}

func TestCallIDs(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf, 0)
	ids := []uint32{0, 1, 1 << 31, 1<<32 - 1}
	for _, id := range ids {
		if err := enc.EncodeCall(id, &Get{Path: "/a"}); err != nil {
			t.Fatal(err)
		}
	}
	buf.Write(AppendRawFrame(nil, Version, 999, 42, []byte{0x80}))
	if err := enc.EncodeCall(43, &CancelCall{}); err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder(&buf, 0)
	for _, want := range ids {
		if id, m, err := dec.DecodeCall(); err != nil || id != want || m.(*Get).Path != "/a" {
			t.Errorf("DecodeCall() = %d, %v, %v; want call %d", id, m, err, want)
		}
	}
	// An unknown type is read whole and keeps its call id; the stream goes on.
	if id, _, err := dec.DecodeCall(); !errors.Is(err, ErrUnknownType) || id != 42 {
		t.Errorf("DecodeCall(unknown type) = %d, %v; want ErrUnknownType on call 42", id, err)
	}
	if id, m, err := dec.DecodeCall(); err != nil || id != 43 || m.Type() != TypeCancelCall {
		t.Errorf("DecodeCall() = %d, %v, %v; want CancelCall on call 43", id, m, err)
	}
}
