package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readCellRecord reads the cell record of dataDir.
func readCellRecord(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, CellFile))
	if err != nil {
		t.Fatalf("cell record: %v", err)
	}
	return string(b)
}

// newOn runs New on cfg with fresh state machines and closes the replica.
func newOn(cfg Config, net Network) error {
	sms := map[uint32]StateMachine{}
	for _, g := range cfg.Groups {
		sms[g] = &testSM{}
	}
	r, err := New(cfg, sms, net)
	if err == nil {
		r.Close()
	}
	return err
}

// A data dir records its cell's members the first time a replica uses it;
// a later start with other member ids is refused, naming both, while the
// data dir holds state. The same ids at other addresses are accepted (and
// recorded), and so is a data dir of an older version without a record.
func TestDataDirOfAnotherCellRefused(t *testing.T) {
	c := newCell(t, cellOpts{n: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.propose(ctx, 1, []byte("x")); err != nil {
		t.Fatalf("propose: %v", err)
	}
	c.waitApplied(1, 1, 10*time.Second)
	cfg := c.cfgs[1]
	if rec := readCellRecord(t, cfg.DataDir); !strings.Contains(rec, `"mem-3"`) {
		t.Fatalf("cell record = %s; want the members and their addresses", rec)
	}
	c.stop(1)

	other := cfg
	other.Members = map[uint64]string{1: "mem-1", 2: "mem-2", 4: "mem-4"}
	err := newOn(other, NewMemNetwork())
	if !errors.Is(err, ErrOtherCell) || !strings.Contains(err.Error(), "[1 2 3]") || !strings.Contains(err.Error(), "[1 2 4]") {
		t.Fatalf("New on the data dir of another cell = %v; want ErrOtherCell naming [1 2 3] and [1 2 4]", err)
	}

	moved := cfg
	moved.Members = maps.Clone(cfg.Members)
	moved.Members[3] = "mem-3-moved"
	if err := newOn(moved, NewMemNetwork()); err != nil {
		t.Fatalf("New with a member at a new address = %v; want nil", err)
	}
	if rec := readCellRecord(t, cfg.DataDir); !strings.Contains(rec, `"mem-3-moved"`) {
		t.Errorf("cell record after the address change = %s; want the new address", rec)
	}

	// A data dir from before the record: adopted, and recorded.
	if err := os.Remove(filepath.Join(cfg.DataDir, CellFile)); err != nil {
		t.Fatal(err)
	}
	if err := newOn(cfg, NewMemNetwork()); err != nil {
		t.Fatalf("New on a data dir without a cell record = %v; want nil", err)
	}
	if rec := readCellRecord(t, cfg.DataDir); !strings.Contains(rec, `"mem-3"`) {
		t.Errorf("cell record written for an old data dir = %s; want the configured members", rec)
	}
	if err := newOn(other, NewMemNetwork()); !errors.Is(err, ErrOtherCell) {
		t.Errorf("New on it with other members = %v; want ErrOtherCell", err)
	}

	// The cell runs on.
	c.start(1)
	if _, err := c.propose(ctx, 1, []byte("y")); err != nil {
		t.Fatalf("propose after the restart: %v", err)
	}
}

// A data dir that holds no Paxos state yet (the replica never voted) takes
// the members of whatever configuration starts it next: nothing is at
// stake, and a mistyped first configuration need not be cleaned up by hand.
func TestEmptyDataDirTakesNewMembers(t *testing.T) {
	cfg := testConfig()
	cfg.ID, cfg.Groups, cfg.DataDir = 1, []uint32{1}, t.TempDir()
	cfg.Members = map[uint64]string{1: "mem-1", 2: "mem-2", 3: "mem-3"}
	if err := newOn(cfg, NewMemNetwork()); err != nil {
		t.Fatalf("New on an empty data dir = %v", err)
	}
	cfg.Members = map[uint64]string{1: "mem-1", 5: "mem-5", 6: "mem-6"}
	if err := newOn(cfg, NewMemNetwork()); err != nil {
		t.Fatalf("New with other members on a data dir without state = %v; want nil", err)
	}
	if rec := readCellRecord(t, cfg.DataDir); !strings.Contains(rec, `"mem-6"`) {
		t.Errorf("cell record = %s; want the new members", rec)
	}
}

// A cell record that is not one is refused with the way out named.
func TestBadCellRecordRefused(t *testing.T) {
	cfg := testConfig()
	cfg.ID, cfg.Groups, cfg.DataDir = 1, []uint32{1}, t.TempDir()
	cfg.Members = map[uint64]string{1: "mem-1", 2: "mem-2", 3: "mem-3"}
	for _, bad := range []string{
		"garbage",
		`{"version": 1, "cell": "xyz", "members": [{"id": 1, "peer": "mem-1"}]}`,
		`{"version": 1, "cell": "0000000000000000", "members": [{"id": 1, "peer": "mem-1"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, CellFile), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := newOn(cfg, NewMemNetwork()); !errors.Is(err, ErrOtherCell) || !strings.Contains(err.Error(), "delete the file") {
			t.Fatalf("New with the cell record %s = %v; want ErrOtherCell saying to delete it", bad, err)
		}
	}
}

// recordOf reads and decodes the cell record of dataDir.
func recordOf(t *testing.T, dataDir string) cellRecord {
	t.Helper()
	var rec cellRecord
	if err := json.Unmarshal([]byte(readCellRecord(t, dataDir)), &rec); err != nil {
		t.Fatalf("decode the cell record of %s: %v", dataDir, err)
	}
	return rec
}

// The lowest founding replica draws the cell id, the others learn it from
// it and record it; a replica rebuilt from an empty disk learns it from its
// peers and records it.
func TestTCPCellIDFoundedAndLearned(t *testing.T) {
	c := newCell(t, cellOpts{tcp: true})
	want := recordOf(t, c.cfgs[1].DataDir).Cell
	if len(want) != 16 {
		t.Fatalf("replica 1 (the lowest founder) recorded cell id %q; want 16 hex digits", want)
	}
	for id, cfg := range c.cfgs {
		waitFor(t, 30*time.Second, fmt.Sprintf("replica %d to record cell id %s", id, want), func() bool {
			return recordOf(t, cfg.DataDir).Cell == want
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := c.proposeMany(ctx, 1, "a", 2, 20)
	lead := c.leader(1, 10*time.Second).ID()
	victim := uint64(1)
	if victim == lead {
		victim = 2
	}
	c.stop(victim)
	if err := os.RemoveAll(c.cfgs[victim].DataDir); err != nil {
		t.Fatal(err)
	}
	cfg := c.cfgs[victim]
	cfg.RebuildEmpty = true
	c.cfgs[victim] = cfg
	c.start(victim)
	acked = append(acked, c.proposeMany(ctx, 1, "b", 2, 20)...)
	c.waitApplied(1, len(acked), 30*time.Second)
	waitFor(t, 30*time.Second, "the rebuilt replica to record the cell id", func() bool {
		return recordOf(t, cfg.DataDir).Cell == want
	})
}

// A founding replica configured with the addresses of another cell's
// replicas (which share its ids, as every cell numbered from 1 does) is
// refused by them: it never joins their quorums or learns their log.
func TestTCPAnotherCellsReplicaRefused(t *testing.T) {
	aLogs := &logLines{}
	a := newCell(t, cellOpts{tcp: true, tune: func(cfg *Config) { cfg.Logger = slog.New(aLogs) }})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := a.proposeMany(ctx, 1, "a", 2, 20)
	for id, cfg := range a.cfgs {
		waitFor(t, 30*time.Second, fmt.Sprintf("replica %d to know the cell id", id), func() bool {
			return recordOf(t, cfg.DataDir).Cell != ""
		})
	}

	cfg := testConfig()
	cfg.ID = 1
	cfg.Members = map[uint64]string{1: freeAddrs(t, 1)[0], 2: a.cfgs[2].Members[2], 3: a.cfgs[3].Members[3]}
	cfg.DataDir = t.TempDir()
	cfg.Groups = []uint32{1}
	sm := &testSM{}
	b, err := New(cfg, map[uint32]StateMachine{1: sm}, TCPNetwork{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, 30*time.Second, "the other cell's replicas to refuse it", func() bool {
		return aLogs.hasWith("refused connection", "belongs to another cell")
	})
	acked = append(acked, a.proposeMany(ctx, 1, "b", 2, 20)...)
	a.waitApplied(1, len(acked), 30*time.Second)
	a.checkContains(1, acked)
	if n := sm.count(); n != 0 {
		t.Fatalf("the refused replica applied %d commands of the other cell", n)
	}
}
