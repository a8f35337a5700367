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
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(frameOf(Version, TypeKeepAliveReply, []byte{0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}))
	const maxFrame = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), maxFrame)
		for i := 0; i < 8; i++ {
			m, err := d.Decode()
			if err != nil {
				if !knownError(err) {
					t.Fatalf("Decode: unexpected error type %T: %v", err, err)
				}
				return
			}
			b, err := Marshal(m)
			if err != nil {
				t.Fatalf("Marshal(decoded %#v): %v", m, err)
			}
			m2, err := Unmarshal(b, 0)
			if err != nil {
				t.Fatalf("Unmarshal(Marshal(decoded)): %v", err)
			}
			b2, err := Marshal(m2)
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
