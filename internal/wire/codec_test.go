package wire

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The typed messages' twins without methods: msgpack encodes and decodes
// these by reflection from the same struct tags.
type (
	plainGet          Get
	plainGetReply     GetReply
	plainPut          Put
	plainPutReply     PutReply
	plainAcquire      Acquire
	plainAcquireReply AcquireReply
	plainRelease      Release
	plainAck          Ack
	plainKeepAlive    KeepAlive
	plainError        Error
	plainStat         Stat
	plainSequencer    Sequencer
	plainACL          ACL
	plainHeader       Header
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
	{new(Error), reflect.TypeFor[*plainError]()},
	{new(Stat), reflect.TypeFor[*plainStat]()},
	{new(Sequencer), reflect.TypeFor[*plainSequencer]()},
	{new(ACL), reflect.TypeFor[*plainACL]()},
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

// The Txn messages' twins without methods all the way down (a twin of Txn
// alone would still reach TxnOp's methods through its Ops): the same
// fields and tags, the nested types replaced by their twins.
type (
	plainTxn struct {
		plainHeader
		Ops []plainTxnOp `msgpack:"ops"`
	}
	plainTxnOp struct {
		Kind       TxnOpKind       `msgpack:"kind"`
		Path       string          `msgpack:"path,omitempty"`
		Content    []byte          `msgpack:"content,omitempty"`
		IfGen      uint64          `msgpack:"ifgen,omitempty"`
		Create     bool            `msgpack:"create,omitempty"`
		Ephemeral  bool            `msgpack:"eph,omitempty"`
		Parents    bool            `msgpack:"parents,omitempty"`
		Sequential bool            `msgpack:"seq,omitempty"`
		Recursive  bool            `msgpack:"recursive,omitempty"`
		ACL        *plainACL       `msgpack:"acl,omitempty"`
		Sequencer  *plainSequencer `msgpack:"sequencer,omitempty"`
	}
	plainTxnReply struct {
		Results []plainTxnResult `msgpack:"results"`
		Index   uint64           `msgpack:"index,omitempty"`
	}
	plainTxnResult struct {
		Path    string    `msgpack:"path,omitempty"`
		Stat    plainStat `msgpack:"stat"`
		Content []byte    `msgpack:"content,omitempty"`
	}
)

// deepConvert copies src into dst, a value of its twin type (fields in the
// same order), keeping nil and empty slices and nil pointers as they are.
func deepConvert(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		for i := range src.NumField() {
			deepConvert(dst.Field(i), src.Field(i))
		}
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		dst.Set(reflect.New(dst.Type().Elem()))
		deepConvert(dst.Elem(), src.Elem())
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		dst.Set(reflect.MakeSlice(dst.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			deepConvert(dst.Index(i), src.Index(i))
		}
	default:
		dst.Set(src.Convert(dst.Type()))
	}
}

// randomize sets v (recursively) to a random value: each field zero or
// not, slices nil, empty or of up to 4 elements, pointers nil, to a zero
// value or to a random one, integers of every width.
func randomize(v reflect.Value, rng *rand.Rand) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			randomize(v.Field(i), rng)
		}
		return
	case reflect.Pointer:
		switch rng.IntN(3) {
		case 0:
			v.SetZero()
		case 1:
			v.Set(reflect.New(v.Type().Elem()))
		default:
			v.Set(reflect.New(v.Type().Elem()))
			randomize(v.Elem(), rng)
		}
		return
	case reflect.Slice:
		switch n := rng.IntN(6) - 1; n {
		case -1:
			v.SetZero()
		default:
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				randomize(v.Index(i), rng)
			}
		}
		return
	}
	if rng.IntN(3) == 0 {
		v.SetZero()
		return
	}
	switch v.Kind() {
	case reflect.String:
		const s = "/ab/\x00é" // a NUL and a byte of a rune cut in two, too
		v.SetString(s[:rng.IntN(len(s)+1)])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(rng.Uint64() >> rng.IntN(64))
	case reflect.Int64:
		v.SetInt(int64(rng.Uint64()) >> rng.IntN(64))
	default:
		panic("randomize: unhandled kind " + v.Kind().String())
	}
}

// twin pairs a typed struct with its twin without methods all the way
// down.
type twin struct {
	typed any // a pointer to a zero value
	plain reflect.Type
}

// TestTxnCodecMatchesReflection checks the typed Txn codecs on random
// values against reflection on their twins (checkTwins).
func TestTxnCodecMatchesReflection(t *testing.T) {
	checkTwins(t, rand.New(rand.NewPCG(1, 2)), []twin{
		{new(Txn), reflect.TypeFor[plainTxn]()},
		{new(TxnReply), reflect.TypeFor[plainTxnReply]()},
		{new(TxnOp), reflect.TypeFor[plainTxnOp]()},
		{new(TxnResult), reflect.TypeFor[plainTxnResult]()},
		{new(ACL), reflect.TypeFor[plainACL]()},
	})
}

// checkTwins checks typed codecs on random values against reflection on
// their twins: the same bytes, each side decoding the other's bytes to the
// same value (nil and empty slices, nil pointers and pointers to zero
// values included), and decode(encode(x)) == x up to the empty values
// omitempty drops, with a slice that is not omitempty (Txn.Ops,
// TxnReply.Results) nil or empty as it was.
func checkTwins(t *testing.T, rng *rand.Rand, twins []twin) {
	t.Helper()
	for _, tw := range twins {
		typ := reflect.TypeOf(tw.typed).Elem()
		for i := range 2000 {
			v := reflect.New(typ)
			randomize(v.Elem(), rng)
			plainV := reflect.New(tw.plain)
			deepConvert(plainV.Elem(), v.Elem())
			typed, err := msgpack.Marshal(v.Interface())
			if err != nil {
				t.Fatalf("%s #%d: typed encode: %v", typ.Name(), i, err)
			}
			plain, err := msgpack.Marshal(plainV.Interface())
			if err != nil {
				t.Fatalf("%s #%d: reflection encode: %v", typ.Name(), i, err)
			}
			if !bytes.Equal(typed, plain) {
				t.Fatalf("%s #%d: %#v\ntyped encoding\n%x\nreflection encoding\n%x", typ.Name(), i, v.Elem().Interface(), typed, plain)
			}
			back := reflect.New(typ)
			if err := msgpack.Unmarshal(plain, back.Interface()); err != nil {
				t.Fatalf("%s #%d: typed decode: %v", typ.Name(), i, err)
			}
			plainBack := reflect.New(tw.plain)
			if err := msgpack.Unmarshal(typed, plainBack.Interface()); err != nil {
				t.Fatalf("%s #%d: reflection decode: %v", typ.Name(), i, err)
			}
			reflBack := reflect.New(typ)
			deepConvert(reflBack.Elem(), plainBack.Elem())
			// Exactly equal, nil and empty slices included.
			if got, want := back.Elem().Interface(), reflBack.Elem().Interface(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s #%d: typed decode = %#v; reflection decodes %#v", typ.Name(), i, got, want)
			}
			want := reflect.New(typ) // a deep copy, for normalizeValue changes pointees
			deepConvert(want.Elem(), v.Elem())
			normalizeValue(want.Elem())
			if got := normalizeAny(back.Elem().Interface()); !reflect.DeepEqual(got, want.Elem().Interface()) {
				t.Fatalf("%s #%d: decode(encode(x)) = %#v; want %#v", typ.Name(), i, got, want.Elem().Interface())
			}
			switch x := v.Interface().(type) {
			case *Txn:
				if y := back.Interface().(*Txn); (x.Ops == nil) != (y.Ops == nil) {
					t.Fatalf("Txn #%d: Ops %#v decodes as %#v", i, x.Ops, y.Ops)
				}
			case *TxnReply:
				if y := back.Interface().(*TxnReply); (x.Results == nil) != (y.Results == nil) {
					t.Fatalf("TxnReply #%d: Results %#v decodes as %#v", i, x.Results, y.Results)
				}
			}
		}
	}
}

// TestTxnDecodeAnyOrderAndUnknown decodes Txns and TxnReplies written as
// an older or newer encoder might (checkDecodeAnyOrder), and with fields
// missing.
func TestTxnDecodeAnyOrderAndUnknown(t *testing.T) {
	checkDecodeAnyOrder(t, rand.New(rand.NewPCG(3, 4)), TypeTxn, TypeTxnReply)
	// Fields missing or nil: {"ops": [{"path": "/a"}, nil, {"kind": 7, "acl": nil, "sequencer": nil}]}
	body := []byte{0x81, 0xa3, 'o', 'p', 's', 0x93,
		0x81, 0xa4, 'p', 'a', 't', 'h', 0xa2, '/', 'a',
		0xc0,
		0x83, 0xa4, 'k', 'i', 'n', 'd', 0x07, 0xa3, 'a', 'c', 'l', 0xc0, 0xa9, 's', 'e', 'q', 'u', 'e', 'n', 'c', 'e', 'r', 0xc0}
	var txn Txn
	if err := msgpack.Unmarshal(body, &txn); err != nil {
		t.Fatal(err)
	}
	if want := (Txn{Ops: []TxnOp{{Path: "/a"}, {}, {Kind: TxnGet}}}); !reflect.DeepEqual(txn, want) {
		t.Fatalf("decode = %#v; want %#v", txn, want)
	}
	// An op's unknown field nested deep, then the array form refused.
	var op TxnOp
	if err := msgpack.Unmarshal([]byte{0x82, 0xa1, 'x', 0x91, 0x81, 0xa1, 'y', 0x90, 0xa4, 'k', 'i', 'n', 'd', 0x01}, &op); err != nil || op.Kind != TxnCheck {
		t.Fatalf("decode = %#v, %v", op, err)
	}
	if err := msgpack.Unmarshal([]byte{0x81, 0xa3, 'o', 'p', 's', 0x91, 0x91, 0x01}, &txn); err == nil {
		t.Fatalf("decode of an op as an array = %#v; want an error", txn)
	}
}

// checkDecodeAnyOrder decodes random messages of the types given written
// as an older or newer encoder might: every map's keys in a random order
// (msgpack writes a Go map in its iteration order) and an unknown field in
// every map. They must decode as the bytes the typed encoder wrote.
func checkDecodeAnyOrder(t *testing.T, rng *rand.Rand, types ...Type) {
	t.Helper()
	for i := range 500 {
		for _, typ := range types {
			m := New(typ)
			randomize(reflect.ValueOf(m).Elem(), rng)
			b, err := msgpack.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var generic any
			if err := msgpack.Unmarshal(b, &generic); err != nil {
				t.Fatal(err)
			}
			addUnknown(generic)
			shuffled, err := msgpack.Marshal(generic)
			if err != nil {
				t.Fatal(err)
			}
			want := New(typ)
			if err := msgpack.Unmarshal(b, want); err != nil {
				t.Fatal(err)
			}
			got := New(typ)
			if err := msgpack.Unmarshal(shuffled, got); err != nil {
				t.Fatalf("%v #%d: decode of %x: %v", typ, i, shuffled, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%v #%d: decode of reordered %x = %#v; want %#v", typ, i, shuffled, got, want)
			}
		}
	}
}

// addUnknown adds a field no decoder knows to every map in v.
func addUnknown(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			addUnknown(x)
		}
		v["zz-future"] = []any{uint64(1), map[string]any{"x": nil}}
	case []any:
		for _, x := range v {
			addUnknown(x)
		}
	}
}

// The session messages' twins without methods all the way down.
type (
	plainKeepAliveReply struct {
		TTL    time.Duration `msgpack:"ttl"`
		Held   time.Duration `msgpack:"held,omitempty"`
		Events []plainEvent  `msgpack:"events,omitempty"`
	}
	plainEvent struct {
		Type       EventType `msgpack:"t"`
		Seq        uint64    `msgpack:"seq,omitempty"`
		Index      uint64    `msgpack:"idx,omitempty"`
		Path       string    `msgpack:"path,omitempty"`
		Child      string    `msgpack:"child,omitempty"`
		Instance   uint64    `msgpack:"inst,omitempty"`
		ContentGen uint64    `msgpack:"cgen,omitempty"`
		LockGen    uint64    `msgpack:"lgen,omitempty"`
		Mode       LockMode  `msgpack:"mode,omitempty"`
		Session    uint64    `msgpack:"sid,omitempty"`
		Watches    []uint64  `msgpack:"w,omitempty"`
	}
	plainOpenSession   OpenSession
	plainSessionOpened SessionOpened
	plainCloseSession  CloseSession
)

// TestSessionCodecMatchesReflection checks the typed codecs of the
// session messages and Event on random values against reflection on their
// twins (checkTwins).
func TestSessionCodecMatchesReflection(t *testing.T) {
	checkTwins(t, rand.New(rand.NewPCG(5, 6)), []twin{
		{new(KeepAlive), reflect.TypeFor[plainKeepAlive]()},
		{new(KeepAliveReply), reflect.TypeFor[plainKeepAliveReply]()},
		{new(Event), reflect.TypeFor[plainEvent]()},
		{new(OpenSession), reflect.TypeFor[plainOpenSession]()},
		{new(SessionOpened), reflect.TypeFor[plainSessionOpened]()},
		{new(CloseSession), reflect.TypeFor[plainCloseSession]()},
	})
}

// TestSessionDecodeAnyOrderAndUnknown decodes the session messages written
// as an older or newer encoder might (checkDecodeAnyOrder), with fields
// missing or nil, and with a length prefix far longer than the body.
func TestSessionDecodeAnyOrderAndUnknown(t *testing.T) {
	checkDecodeAnyOrder(t, rand.New(rand.NewPCG(7, 8)),
		TypeKeepAlive, TypeKeepAliveReply, TypeOpenSession, TypeSessionOpened, TypeCloseSession)
	// {"events": [{"w": [3, nil]}, nil, {"t": 9, "w": nil, "zz": {}}], "ttl": nil}
	body := []byte{0x82, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0x93,
		0x81, 0xa1, 'w', 0x92, 0x03, 0xc0,
		0xc0,
		0x83, 0xa1, 't', 0x09, 0xa1, 'w', 0xc0, 0xa2, 'z', 'z', 0x80,
		0xa3, 't', 't', 'l', 0xc0}
	var r KeepAliveReply
	if err := msgpack.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if want := (KeepAliveReply{Events: []Event{{Watches: []uint64{3, 0}}, {}, {Type: Failover}}}); !reflect.DeepEqual(r, want) {
		t.Fatalf("decode = %#v; want %#v", r, want)
	}
	// {"sid": 7, "rid": 8, "x": [1]} for CloseSession, nil for SessionOpened.
	var cs CloseSession
	if err := msgpack.Unmarshal([]byte{0x83, 0xa3, 's', 'i', 'd', 0x07, 0xa3, 'r', 'i', 'd', 0x08, 0xa1, 'x', 0x91, 0x01}, &cs); err != nil || cs != (CloseSession{Header{7, 8}}) {
		t.Fatalf("decode = %#v, %v", cs, err)
	}
	var so SessionOpened
	if err := msgpack.Unmarshal([]byte{0xc0}, &so); err != nil || so != (SessionOpened{}) {
		t.Fatalf("decode of nil = %#v, %v", so, err)
	}
	// A prefix of 2^31-1 events, or watch ids, and nothing after it: the
	// decoder fails at the end of the body having allocated for what it
	// read, not for the prefix (reflection would ask for 2^31 Events).
	for _, body := range [][]byte{
		{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x80},
		{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0x91, 0x81, 0xa1, 'w', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := msgpack.Unmarshal(body, &r)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("decode of %x = %#v; want an error", body, r)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("decode of %x allocated %d bytes; want at most 1 MiB", body, n)
		}
	}
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

// BenchmarkSessionCodec measures encoding and decoding one frame body of
// the session messages: the KeepAlive and reply an idle session sends
// every few seconds (`latch bench sessions`), a reply carrying two watch
// events, and the OpenSession, SessionOpened and CloseSession each session
// sends once. Each goes the way appendFrame and decodeFrame send it, so
// the same benchmark measures both sides of a change.
func BenchmarkSessionCodec(b *testing.B) {
	hdr := Header{Session: 0x1234_5678_9abc, Request: 3456}
	events := []Event{
		{Type: ContentChanged, Seq: 41, Index: 1200, Path: "/bench/c1/a", Instance: 9, ContentGen: 5, Watches: []uint64{3}},
		{Type: ChildAdded, Seq: 42, Index: 1201, Path: "/bench/c1", Child: "b", Instance: 8, Watches: []uint64{1, 3}},
	}
	for _, bc := range []struct {
		name string
		m    Message
	}{
		{"KeepAlive", &KeepAlive{Header: hdr, Acked: 40}},
		{"KeepAliveReply", &KeepAliveReply{TTL: 3 * time.Second, Held: 9 * time.Second}},
		{"KeepAliveReply/events2", &KeepAliveReply{TTL: 3 * time.Second, Held: 20 * time.Millisecond, Events: events}},
		{"OpenSession", &OpenSession{Header: Header{Request: 0x5eed_1234_5678}, Timeout: 12 * time.Second, Client: "bench-7"}},
		{"SessionOpened", &SessionOpened{Session: hdr.Session, Timeout: 12 * time.Second}},
		{"CloseSession", &CloseSession{Header: hdr}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchFrameBody(b, bc.m) })
	}
}
