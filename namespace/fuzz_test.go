package namespace

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// encodeCommands concatenates the msgpack encodings of cmds, stamping each
// with a time, session and request.
func encodeCommands(t testing.TB, cmds ...Command) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	for i := range cmds {
		if err := cmds[i].EncodeMsgpack(enc); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func stamp(c Command, at time.Duration, session, request uint64) Command {
	c.Time, c.Session, c.Request = int64(at), session, request
	return c
}

func fuzzSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{nil, {0x90}, {0xdc, 0xff, 0xff}}
	for _, c := range allConstructors() {
		seeds = append(seeds, encodeCommands(t, c))
	}
	election := []Command{
		stamp(NewOpenSession(time.Second), 1, 0, 0),
		stamp(NewOpenSession(time.Second), 1, 0, 0),
		stamp(NewCreate("/svc/leader", nil, FlagParents), 2, 1, 1),
		stamp(NewAcquire("/svc/leader", ModeExclusive, true, 0), 3, 1, 2),
		stamp(NewAcquire("/svc/leader", ModeExclusive, true, time.Second), 3, 2, 1),
		stamp(NewSetContent("/svc/leader", []byte("me"), 0), 4, 1, 3),
		stamp(NewTxn(TxnCheckSequencer(Sequencer{Path: "/svc/leader", Mode: ModeExclusive, LockGen: 1, Instance: 3}),
			TxnSetContent("/svc/leader", []byte("me"), 0), TxnCreate("/svc/e", nil, FlagEphemeral)), 4, 1, 4),
		stamp(NewTxn(TxnCreate("/svc/x/y", []byte("x"), FlagParents), TxnDelete("/svc/leader", false, 0),
			TxnCheckMissing("/svc/x")), 4, 2, 3),
		stamp(NewCreate("/svc/m-", []byte("x"), FlagSequential|FlagEphemeral), 4, 2, 2),
		stamp(NewExpireSession(1), 5, 0, 0),
		stamp(NewTick(), 5+10*time.Second, 0, 0),
		stamp(NewRelease("/svc/leader", 0), 6, 2, 3),
		stamp(NewDelete("/svc", true, 0), 7, 0, 0),
	}
	seeds = append(seeds, encodeCommands(t, election...))
	return seeds
}

// FuzzApply decodes a stream of commands and applies each: Apply never
// panics, every failure is a well-formed *Error, and the invariants hold
// after every command; the final state survives a snapshot round trip.
//
//	go test -run '^$' -fuzz FuzzApply ./namespace/
func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree := New(propConfig())
		dec := msgpack.NewDecoder(bytes.NewReader(data))
		for i := uint64(1); i <= 300; i++ {
			var c Command
			if err := c.DecodeMsgpack(dec); err != nil {
				if !errors.Is(err, ErrInvalidCommand) {
					t.Fatalf("decode error %v does not wrap ErrInvalidCommand", err)
				}
				break
			}
			r, _ := tree.Apply(i, &c)
			if r.Err != nil {
				var e *Error
				if !errors.As(r.Err, &e) || !e.Code.Valid() || e.Code == CodeOK || !errors.Is(r.Err, e.Code.Err()) {
					t.Fatalf("command %d (%s): malformed error %#v", i, c.Op, r.Err)
				}
			}
			if err := tree.CheckInvariants(); err != nil {
				t.Fatalf("command %d (%+v): %v", i, c, err)
			}
		}
		snap := snapshotBytes(t, tree)
		restored := New(propConfig())
		if err := restored.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, restored), snap) {
			t.Fatalf("snapshot round trip differs")
		}
	})
}

// FuzzDecodeCommand checks that decoding never panics and that whatever
// decodes re-encodes to a command that decodes the same.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v does not wrap ErrInvalidCommand", err)
			}
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded command: %v", err)
		}
		c2, err := DecodeCommand(b)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode = %+v, %v; want %+v", c2, err, c)
		}
	})
}

// FuzzRestore feeds arbitrary bytes to Restore: it never panics, and what it
// accepts is a consistent tree.
func FuzzRestore(f *testing.F) {
	f.Add(snapshotBytes(f, New(propConfig())))
	f.Add(snapshotBytes(f, richState(f).tree))
	f.Fuzz(func(t *testing.T, data []byte) {
		tree := New(propConfig())
		if err := tree.Restore(bytes.NewReader(data)); err != nil {
			return
		}
		if err := tree.CheckInvariants(); err != nil {
			t.Fatalf("accepted snapshot is inconsistent: %v", err)
		}
	})
}
