package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, must
// reject oversized frames, and whatever it accepts must encode again to a
// frame that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, typ := range allTypes() {
		b, err := Marshal(filled(typ))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 3, 1, 0, 1})
	f.Add(AppendRawFrame(nil, Version, 999, 7, []byte{0x80}))
	f.Add(AppendRawFrame(nil, Version, TypeCancelCall, 1<<31, []byte{0x80}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(frameOf(Version, TypeKeepAliveReply, []byte{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}))
	const maxFrame = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), maxFrame)
		for i := 0; i < 8; i++ {
			call, m, err := d.DecodeCall()
			if errors.Is(err, ErrUnknownType) {
				continue // the frame was read whole: the stream goes on
			}
			if err != nil {
				if !knownError(err) {
					t.Fatalf("Decode: unexpected error type %T: %v", err, err)
				}
				return
			}
			b, err := MarshalCall(call, m)
			if err != nil {
				t.Fatalf("Marshal(decoded %#v): %v", m, err)
			}
			call2, m2, err := NewDecoder(bytes.NewReader(b), 0).DecodeCall()
			if err != nil || call2 != call {
				t.Fatalf("DecodeCall(MarshalCall(decoded)) = call %d, %v; want call %d", call2, err, call)
			}
			b2, err := MarshalCall(call2, m2)
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding is not stable: %v", err)
			}
		}
	})
}

func knownError(err error) bool {
	return err == io.EOF || errors.Is(err, ErrTruncated) || errors.Is(err, ErrFrameTooLarge) ||
		errors.Is(err, ErrVersion) || errors.Is(err, ErrUnknownType) || errors.Is(err, ErrMalformed)
}
