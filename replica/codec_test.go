package replica

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"

	"github.com/latchd/latch/replica/paxos"
)

func TestBatchRoundTrip(t *testing.T) {
	for _, cmds := range [][][]byte{
		nil,
		{[]byte("a")},
		{[]byte(""), bytes.Repeat([]byte("x"), 300), []byte("third")},
	} {
		v := appendBatch(nil, 7, 1<<40, cmds)
		b, err := decodeBatch(v)
		if err != nil {
			t.Fatalf("decodeBatch(appendBatch(%q)) = %v", cmds, err)
		}
		if b.origin != 7 || b.id != 1<<40 || b.count != len(cmds) {
			t.Fatalf("header = %+v; want origin 7 id 2^40 count %d", b, len(cmds))
		}
		for i := range cmds {
			got, err := b.next()
			if err != nil || !bytes.Equal(got, cmds[i]) {
				t.Fatalf("command %d = %q, %v; want %q", i, got, err, cmds[i])
			}
		}
		size := batchHeaderMax
		for _, c := range cmds {
			size += batchSize(c)
		}
		if len(v) > size {
			t.Fatalf("encoded %d bytes; estimate %d is too small", len(v), size)
		}
	}
}

func TestBatchMalformed(t *testing.T) {
	good := appendBatch(nil, 1, 2, [][]byte{[]byte("hello")})
	for name, v := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, good[1:]...),
		"cut header":    good[:2],
		"huge count":    {batchVersion, 1, 2, 0xc8, 0x01}, // 200 commands in 0 bytes
	} {
		if _, err := decodeBatch(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeBatch(%s) = %v; want ErrMalformed", name, err)
		}
	}
	b, err := decodeBatch(good[:len(good)-2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("next() on a cut command = %v; want ErrMalformed", err)
	}
}

func TestPeerMessageRoundTrip(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.Ballot{Round: 3, ID: 1}, Commit: 9, Lease: 4,
		Entries: []paxos.Entry{{Instance: 9, Ballot: paxos.Ballot{Round: 3, ID: 1}, Value: []byte("v")}, {Instance: 10, Noop: true},
			{Instance: 11, Value: paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4}.Encode(), Conf: true}}}
	p, err := encodeMessage(&m)
	if err != nil {
		t.Fatal(err)
	}
	in, err := decodeInbound(1, p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.msg, m) {
		t.Fatalf("decoded %+v; want %+v", in.msg, m)
	}
	if _, err := decodeInbound(5, p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(spoofed sender) = %v; want ErrMalformed", err)
	}
	bad := append([]byte{}, p...)
	bad[0] = 99
	if _, err := decodeInbound(1, bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(version 99) = %v; want ErrMalformed", err)
	}
	if _, err := decodeInbound(1, []byte{peerVersion, 42, 0}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(kind 42) = %v; want ErrMalformed", err)
	}
	if _, err := decodeInbound(1, p[:len(p)-3]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(truncated) = %v; want ErrMalformed", err)
	}
}

func TestSnapHeader(t *testing.T) {
	h := appendSnapHeader(nil, 42, 4242, nil)
	sh, err := readSnapHeader(bytes.NewReader(h))
	if err != nil || sh.instance != 42 || sh.index != 4242 || sh.members != nil || sh.len != len(h) {
		t.Fatalf("readSnapHeader(LRS1) = %+v, %v; want 42, 4242, no members", sh, err)
	}
	m := paxos.Bootstrap([]uint64{1, 2, 3}, 16)
	m, _ = m.Apply(5, paxos.MemberChange{Op: paxos.OpAddLearner, ID: 4, Meta: MemberAddrs{Peer: "p4"}.Encode()})
	h2 := appendSnapHeader(nil, 42, 4242, &m)
	sh, err = readSnapHeader(bytes.NewReader(append(h2, "state"...)))
	if err != nil || sh.instance != 42 || sh.index != 4242 || sh.members == nil || sh.len != len(h2) ||
		!bytes.Equal(sh.members.Encode(), m.Encode()) {
		t.Fatalf("readSnapHeader(LRS2) = %+v, %v; want 42, 4242 and the member set", sh, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"garbage", []byte("XXXX12345678")},
		{"LRS2 cut in its member set", h2[:len(h2)-2]},
		{"LRS2 member set too long", append(h2[:snapHeaderLen:snapHeaderLen], 0xff, 0xff, 0xff, 0xff)},
		{"LRS2 member set garbage", append(h2[:snapHeaderLen:snapHeaderLen], 0, 0, 0, 3, 9, 9, 9)},
	} {
		if _, err := readSnapHeader(bytes.NewReader(tc.b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("readSnapHeader(%s) = %v; want ErrMalformed", tc.name, err)
		}
	}
}

// An entry of five fields must say Conf = true.
func TestPeerMessageConfFalseRefused(t *testing.T) {
	m := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2,
		Entries: []paxos.Entry{{Instance: 9, Value: []byte("v"), Conf: true}}}
	p, err := encodeMessage(&m)
	if err != nil {
		t.Fatal(err)
	}
	p[len(p)-1] = 0xc2 // msgpack false in place of the last true
	if _, err := decodeInbound(1, p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(Conf false) = %v; want ErrMalformed", err)
	}
}

// FuzzDecodeInbound feeds arbitrary payloads to the network handler's
// decoder: it must return an error or a message, never panic, and a
// decoded paxos message must encode back to an equal one.
func FuzzDecodeInbound(f *testing.F) {
	m := paxos.Message{Type: paxos.MsgPromise, From: 2, To: 1, Ballot: paxos.Ballot{Round: 1, ID: 2},
		Entries: []paxos.Entry{{Instance: 1, Ballot: paxos.Ballot{Round: 1, ID: 2}, Value: []byte("x")}}}
	p, _ := encodeMessage(&m)
	f.Add(p)
	c, _ := encodePeer(kindSnapChunk, &snapChunk{Instance: 3, Size: 1, Data: []byte{1}})
	f.Add(c)
	a, _ := encodePeer(kindSnapAck, &snapAck{Instance: 3, Next: 1})
	f.Add(a)
	f.Add([]byte{peerVersion, kindPaxos, 0xdc, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		in, err := decodeInbound(2, payload)
		if err != nil || in.kind != kindPaxos {
			return
		}
		again, err := encodeMessage(&in.msg)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := decodeInbound(2, again)
		if err != nil || !reflect.DeepEqual(back.msg, in.msg) {
			t.Fatalf("round trip changed the message: %+v -> %+v (%v)", in.msg, back.msg, err)
		}
	})
}

// A peer message whose entry claims a huge value in a small frame is
// rejected before the claimed length is allocated.
func TestPeerMessageForgedValueLength(t *testing.T) {
	value := bytes.Repeat([]byte{'x'}, 70000) // encoded as bin32: 0xc6 + 4-byte length
	m := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.Ballot{Round: 1, ID: 1},
		Entries: []paxos.Entry{{Instance: 1, Ballot: paxos.Ballot{Round: 1, ID: 1}, Value: value}}}
	p, err := encodeMessage(&m)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(p, []byte{0xc6, 0, 1, 0x11, 0x70}) // 70000 = 0x00011170
	if at < 0 {
		t.Fatal("bin32 header not found in the encoded message")
	}
	forged := append([]byte{}, p[:at]...)
	forged = append(forged, 0xc6, 0x7f, 0xff, 0xff, 0xff, 'x', 'x', 0xc2)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = decodeInbound(1, forged)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(forged length) = %v; want ErrMalformed", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("decoding a forged length allocated %d bytes; want < 1 MiB", grew)
	}
}

func TestSnapChunkRoundTripAndForgedLength(t *testing.T) {
	want := snapChunk{Instance: 7, Offset: 1 << 20, Size: 3 << 20, CRC: 0xdeadbeef, Data: []byte("chunk")}
	p, err := encodePeer(kindSnapChunk, &want)
	if err != nil {
		t.Fatal(err)
	}
	in, err := decodeInbound(1, p)
	if err != nil || in.chunk == nil || !reflect.DeepEqual(*in.chunk, want) {
		t.Fatalf("decodeInbound(chunk) = %+v, %v; want %+v", in.chunk, err, want)
	}
	// The fuzzer's find: a bin32 header claiming ~3 GiB in a 16-byte payload.
	forged := []byte("\x01\x02\x950000\xc6\xc6Ɩ\x96\x96\x960")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = decodeInbound(1, forged)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("decodeInbound(forged chunk) = %v; want ErrMalformed", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("decoding a forged chunk allocated %d bytes; want < 1 MiB", grew)
	}
}
