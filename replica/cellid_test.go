package replica

import (
	"context"
	"errors"
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
	if err := os.WriteFile(filepath.Join(cfg.DataDir, CellFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newOn(cfg, NewMemNetwork()); !errors.Is(err, ErrOtherCell) || !strings.Contains(err.Error(), "delete the file") {
		t.Fatalf("New with a garbled cell record = %v; want ErrOtherCell saying to delete it", err)
	}
}
