package wire

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The typed messages' twins without methods: msgpack encodes and decodes
// these by reflection from the same struct tags.
type (
	plainGet            Get
	plainGetReply       GetReply
	plainPut            Put
	plainPutReply       PutReply
	plainAcquire        Acquire
	plainAcquireReply   AcquireReply
	plainRelease        Release
	plainAck            Ack
	plainKeepAlive      KeepAlive
	plainKeepAliveReply KeepAliveReply
	plainError          Error
	plainStat           Stat
	plainSequencer      Sequencer
)

// typedTwins pairs a new typed value with its reflection twin's type.
var typedTwins = []struct {
	typed any
	plain reflect.Type
}{
	{new(Get), reflect.TypeFor[*plainGet]()},
	{new(GetReply), reflect.TypeFor[*plainGetReply]()},
	{new(Put), reflect.TypeFor[*plainPut]()},
	{new(PutReply), reflect.TypeFor[*plainPutReply]()},
	{new(Acquire), reflect.TypeFor[*plainAcquire]()},
	{new(AcquireReply), reflect.TypeFor[*plainAcquireReply]()},
	{new(Release), reflect.TypeFor[*plainRelease]()},
	{new(Ack), reflect.TypeFor[*plainAck]()},
	{new(KeepAlive), reflect.TypeFor[*plainKeepAlive]()},
	{new(KeepAliveReply), reflect.TypeFor[*plainKeepAliveReply]()},
	{new(Error), reflect.TypeFor[*plainError]()},
	{new(Stat), reflect.TypeFor[*plainStat]()},
	{new(Sequencer), reflect.TypeFor[*plainSequencer]()},
}

// variants returns values of v's type: zero, every field set, and every
// field set but one (for each field), so each omitempty rule is exercised.
func variants(v any) []reflect.Value {
	typ := reflect.TypeOf(v).Elem()
	out := []reflect.Value{reflect.New(typ)}
	full := reflect.New(typ)
	n := 0
	fill(full.Elem(), &n)
	out = append(out, full)
	for i := range typ.NumField() {
		one := reflect.New(typ)
		one.Elem().Set(full.Elem())
		one.Elem().Field(i).SetZero()
		out = append(out, one)
	}
	return out
}

// TestTypedCodecMatchesReflection checks that the typed encoders write the
// bytes reflection writes, and that each side decodes the other's output
// to the same value.
func TestTypedCodecMatchesReflection(t *testing.T) {
	for _, tw := range typedTwins {
		name := reflect.TypeOf(tw.typed).Elem().Name()
		for i, v := range variants(tw.typed) {
			typed, err := msgpack.Marshal(v.Interface())
			if err != nil {
				t.Fatalf("%s #%d: typed encode: %v", name, i, err)
			}
			plainV := v.Convert(tw.plain)
			plain, err := msgpack.Marshal(plainV.Interface())
			if err != nil {
				t.Fatalf("%s #%d: reflection encode: %v", name, i, err)
			}
			if !bytes.Equal(typed, plain) {
				t.Errorf("%s #%d: typed encoding\n%x\nreflection encoding\n%x", name, i, typed, plain)
			}
			// The typed decoder reads reflection's bytes, and reflection
			// reads the typed bytes, both to the value encoded.
			back := reflect.New(v.Type().Elem())
			if err := msgpack.Unmarshal(plain, back.Interface()); err != nil {
				t.Fatalf("%s #%d: typed decode: %v", name, i, err)
			}
			plainBack := reflect.New(tw.plain.Elem())
			if err := msgpack.Unmarshal(typed, plainBack.Interface()); err != nil {
				t.Fatalf("%s #%d: reflection decode: %v", name, i, err)
			}
			want := normalizeAny(v.Elem().Interface())
			if got := normalizeAny(back.Elem().Interface()); !reflect.DeepEqual(got, want) {
				t.Errorf("%s #%d: typed decode = %#v; want %#v", name, i, got, want)
			}
			if got := normalizeAny(plainBack.Convert(v.Type()).Elem().Interface()); !reflect.DeepEqual(got, want) {
				t.Errorf("%s #%d: reflection decode = %#v; want %#v", name, i, got, want)
			}
		}
	}
}

// normalizeAny maps empty slices to nil, as a decode gives them.
func normalizeAny(v any) any {
	p := reflect.New(reflect.TypeOf(v))
	p.Elem().Set(reflect.ValueOf(v))
	normalizeValue(p.Elem())
	return p.Elem().Interface()
}

func TestTypedDecodeSkipsUnknownAndNil(t *testing.T) {
	// {"path": "/a", "new": [1, {"x": nil}], "stale": nil, "sid": 7}
	body := []byte{0x84, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'a', 0xa3, 'n', 'e', 'w', 0x92, 0x01, 0x81, 0xa1, 'x', 0xc0,
		0xa5, 's', 't', 'a', 'l', 'e', 0xc0, 0xa3, 's', 'i', 'd', 0x07}
	var g Get
	if err := msgpack.Unmarshal(body, &g); err != nil || g.Path != "/a" || g.Stale || g.Session != 7 {
		t.Fatalf("decode = %+v, %v", g, err)
	}
	var r GetReply
	if err := msgpack.Unmarshal([]byte{0xc0}, &r); err != nil || r.Content != nil {
		t.Fatalf("decode of nil = %+v, %v", r, err)
	}
	// The array form of a struct is refused.
	if err := msgpack.Unmarshal([]byte{0x92, 0x01, 0xa1, 'x'}, &g); err == nil {
		t.Fatalf("decode of an array = %+v; want an error", g)
	}
}

// BenchmarkCodec measures encoding and decoding one frame of the hot
// messages, typed (as the package does now) and by reflection (their
// method-less twins), for allocs/op and ns/op.
func BenchmarkCodec(b *testing.B) {
	msgs := []Message{
		&Get{Header: Header{Session: 12, Request: 3456}, Path: "/bench/node"},
		&GetReply{Content: make([]byte, 128), Stat: Stat{Instance: 9, ContentGen: 4, Size: 128, CreatedIndex: 100, ModifiedIndex: 200, CreatedTime: 1e18, ModifiedTime: 1e18}},
		&Put{Header: Header{Session: 12, Request: 3456}, Path: "/bench/node", Content: make([]byte, 128)},
		&AcquireReply{Sequencer: Sequencer{Path: "/bench/lock", Mode: Exclusive, LockGen: 7, Instance: 9}},
	}
	plain := map[Type]reflect.Type{
		TypeGet: reflect.TypeFor[*plainGet](), TypeGetReply: reflect.TypeFor[*plainGetReply](),
		TypePut: reflect.TypeFor[*plainPut](), TypeAcquireReply: reflect.TypeFor[*plainAcquireReply](),
	}
	for _, m := range msgs {
		b.Run(m.Type().String()+"/typed", func(b *testing.B) {
			benchCodec(b, m, nil)
		})
		b.Run(m.Type().String()+"/reflect", func(b *testing.B) {
			benchCodec(b, m, plain[m.Type()])
		})
	}
}

// benchCodec encodes and decodes m in a loop as a frame body is: typed
// messages through their methods (as appendFrame and decodeFrame call
// them), or with plainType set, through reflection on the twin type.
func benchCodec(b *testing.B, m Message, plainType reflect.Type) {
	var out sliceWriter
	enc := msgpack.NewEncoder(&out)
	var br bytes.Reader
	dec := msgpack.NewDecoder(&br)
	encode := func() error { return m.(msgpack.CustomEncoder).EncodeMsgpack(enc) }
	decode := func() error { return New(m.Type()).(msgpack.CustomDecoder).DecodeMsgpack(dec) }
	if plainType != nil {
		v := reflect.ValueOf(m).Convert(plainType).Interface()
		encode = func() error { return enc.Encode(v) }
		decode = func() error { return dec.Decode(reflect.New(plainType.Elem()).Interface()) }
	}
	b.ReportAllocs()
	for b.Loop() {
		out.b = out.b[:0]
		if err := encode(); err != nil {
			b.Fatal(err)
		}
		br.Reset(out.b)
		dec.Reset(&br)
		if err := decode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTxnCodec measures encoding and decoding one frame body of the
// Txn messages `latch bench mget` and `latch bench txn` send: a read-only
// Txn of two gets and its reply, and a compare-and-set Txn of two checks
// and two puts of 128 bytes and its reply. Each goes the way appendFrame
// and decodeFrame send it (typed when the type has methods, else by
// reflection), so the same benchmark measures both sides of a change.
func BenchmarkTxnCodec(b *testing.B) {
	hdr := Header{Session: 12, Request: 3456}
	st := Stat{Instance: 9, ContentGen: 4, Size: 64, CreatedIndex: 100, ModifiedIndex: 200, CreatedTime: 1e18, ModifiedTime: 1e18}
	val := make([]byte, 128)
	for _, bc := range []struct {
		name string
		m    Message
	}{
		{"mget/Txn", &Txn{Header: hdr, Ops: []TxnOp{{Kind: TxnGet, Path: "/bench/c1/a"}, {Kind: TxnGet, Path: "/bench/c1/b"}}}},
		{"mget/TxnReply", &TxnReply{Results: []TxnResult{{Path: "/bench/c1/a", Stat: st, Content: val[:64]}, {Path: "/bench/c1/b", Stat: st, Content: val[:64]}}}},
		{"cas/Txn", &Txn{Header: hdr, Ops: []TxnOp{
			{Kind: TxnCheck, Path: "/bench/c1/a", IfGen: 4}, {Kind: TxnCheck, Path: "/bench/c1/b", IfGen: 4},
			{Kind: TxnPut, Path: "/bench/c1/a", Content: val, IfGen: 4}, {Kind: TxnPut, Path: "/bench/c1/b", Content: val, IfGen: 4}}}},
		{"cas/TxnReply", &TxnReply{Index: 1234, Results: []TxnResult{{Path: "/bench/c1/a", Stat: st}, {Path: "/bench/c1/b", Stat: st}, {Path: "/bench/c1/a", Stat: st}, {Path: "/bench/c1/b", Stat: st}}}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchFrameBody(b, bc.m) })
	}
}

// benchFrameBody encodes and decodes m in a loop as appendFrame and
// decodeFrame do.
func benchFrameBody(b *testing.B, m Message) {
	var out sliceWriter
	enc := msgpack.NewEncoder(&out)
	var br bytes.Reader
	dec := msgpack.NewDecoder(&br)
	b.ReportAllocs()
	for b.Loop() {
		out.b = out.b[:0]
		var err error
		if ce, ok := m.(msgpack.CustomEncoder); ok {
			err = ce.EncodeMsgpack(enc)
		} else {
			err = enc.Encode(m)
		}
		if err != nil {
			b.Fatal(err)
		}
		br.Reset(out.b)
		dec.Reset(&br)
		back := New(m.Type())
		if cd, ok := back.(msgpack.CustomDecoder); ok {
			err = cd.DecodeMsgpack(dec)
		} else {
			err = dec.Decode(back)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
