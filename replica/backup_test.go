package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"
)

// A backup taken from a running cell's leader starts a new cell that holds
// every command acknowledged before it and goes on from there.
func TestBackupRestoresANewCell(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old := newCell(t, cellOpts{})
	acked := old.proposeMany(ctx, 1, "a", 4, 200)
	var buf bytes.Buffer
	meta, err := old.leader(1, 10*time.Second).Backup(ctx, 1, &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if meta.Group != 1 || meta.Instance == 0 || meta.Index < uint64(len(acked)) {
		t.Fatalf("Backup meta %+v; want group 1, a non-zero instance, index >= %d", meta, len(acked))
	}
	got, body, err := ReadBackup(bytes.NewReader(buf.Bytes()))
	if err != nil || got != meta {
		t.Fatalf("ReadBackup = %+v, %v; want %+v", got, err, meta)
	}
	restored := newCell(t, cellOpts{tune: func(cfg *Config) {
		if err := Restore(cfg.DataDir, got, BackupState(body)); err != nil {
			t.Fatalf("Restore(%s): %v", cfg.DataDir, err)
		}
	}})
	restored.waitApplied(1, len(acked), 30*time.Second)
	restored.checkContains(1, acked)
	acked = append(acked, restored.proposeMany(ctx, 1, "b", 4, 50)...)
	restored.waitApplied(1, len(acked), 30*time.Second)
	restored.waitConverged(1, 30*time.Second)
	restored.checkContains(1, acked)
	// A restored data dir holds state now: restoring again is refused.
	restored.closeAll()
	if err := Restore(restored.cfgs[1].DataDir, got, BackupState(body)); !errors.Is(err, ErrHasState) {
		t.Errorf("Restore into a data dir with state = %v; want ErrHasState", err)
	}
}

// ReadBackup refuses every damaged or foreign file with ErrBadBackup.
func TestReadBackupRefusesBadInput(t *testing.T) {
	body := appendSnapHeader(nil, 7, 30, nil)
	body = append(body, "state"...)
	var good bytes.Buffer
	head := append([]byte(backupMagic), backupVersion)
	head = binary.BigEndian.AppendUint32(head, 1)
	head = binary.BigEndian.AppendUint64(head, uint64(len(body)))
	good.Write(head)
	good.Write(body)
	good.Write(binary.BigEndian.AppendUint32(nil, crcOf(head, body)))
	if meta, b, err := ReadBackup(bytes.NewReader(good.Bytes())); err != nil || meta.Instance != 7 || meta.Index != 30 || !bytes.Equal(b, body) {
		t.Fatalf("ReadBackup(good) = %+v, %q, %v", meta, b, err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good.Bytes())) }
	cases := map[string][]byte{
		"empty":        nil,
		"short header": good.Bytes()[:5],
		"bad magic":    mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"bad version":  mutate(func(b []byte) []byte { b[4] = 9; return b }),
		"oversize":     mutate(func(b []byte) []byte { binary.BigEndian.PutUint64(b[9:], MaxBackupBytes+1); return b }),
		"truncated":    good.Bytes()[:good.Len()-6],
		"flipped bit":  mutate(func(b []byte) []byte { b[backupHead+len(body)-1] ^= 1; return b }),
		"no checksum":  good.Bytes()[:good.Len()-4],
		"trailing":     append(bytes.Clone(good.Bytes()), 0),
	}
	for name, in := range cases {
		if _, _, err := ReadBackup(bytes.NewReader(in)); !errors.Is(err, ErrBadBackup) {
			t.Errorf("%s: ReadBackup = %v; want ErrBadBackup", name, err)
		}
	}
}

func crcOf(head, body []byte) uint32 {
	var all []byte
	all = append(append(all, head...), body...)
	return crc32.Checksum(all, castagnoli)
}
