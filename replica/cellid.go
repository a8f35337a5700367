package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/latchd/latch/replica/logdb"
)

// ErrOtherCell is returned by New for a data dir that holds the state of a
// cell whose members (by id) are not those of Config.Members: a data dir
// moved from another cell, or a configuration file of another cell.
var ErrOtherCell = errors.New("replica: the data dir belongs to another cell")

// CellFile is the name of the cell record in Config.DataDir: the members
// (ids and peer addresses) of the cell the data dir belongs to, as
// configured when it was first used.
const CellFile = "cell.json"

// cellRecord is the content of CellFile. Only the member ids identify the
// cell; the addresses are kept up to date (they may change, docs/operations.md).
type cellRecord struct {
	Version int          `json:"version"` // 1
	Members []cellMember `json:"members"` // by ascending id
}

type cellMember struct {
	ID   uint64 `json:"id"`
	Peer string `json:"peer"`
}

func newCellRecord(members map[uint64]string) cellRecord {
	rec := cellRecord{Version: 1}
	for _, id := range slices.Sorted(maps.Keys(members)) {
		rec.Members = append(rec.Members, cellMember{ID: id, Peer: members[id]})
	}
	return rec
}

func (rec cellRecord) ids() []uint64 {
	ids := make([]uint64, len(rec.Members))
	for i, m := range rec.Members {
		ids[i] = m.ID
	}
	return ids
}

// checkCell compares the cell record of cfg.DataDir (opened as db) with
// cfg.Members. Without a record (a new data dir, or one of an older
// version) it writes one. With the same member ids it brings the addresses
// up to date. With other ids it refuses (ErrOtherCell) if the data dir
// holds Paxos state for any group, and otherwise (the replica never voted
// here) records the new members.
func checkCell(cfg Config, db *logdb.DB, log *slog.Logger) error {
	path := filepath.Join(cfg.DataDir, CellFile)
	want := newCellRecord(cfg.Members)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return writeCellRecord(path, want)
	}
	if err != nil {
		return fmt.Errorf("replica: read the cell record: %w", err)
	}
	var got cellRecord
	if err := json.Unmarshal(b, &got); err != nil || got.Version != 1 {
		return fmt.Errorf("%w: %s is not a cell record (version 1) (%v); if this data dir is this cell's, delete the file to record the configured members",
			ErrOtherCell, path, err)
	}
	switch {
	case slices.Equal(got.Members, want.Members):
		return nil
	case slices.Equal(got.ids(), want.ids()):
		log.Info("peer addresses changed since the last start; recording them", "was", got.Members, "now", want.Members)
		return writeCellRecord(path, want)
	}
	for _, g := range cfg.Groups {
		st, err := db.Group(g).Load()
		if err != nil {
			return fmt.Errorf("replica: group %d: %w", g, err)
		}
		if !st.IsEmpty() {
			return fmt.Errorf("%w: %s was made by a cell of members %v, and this configuration names members %v "+
				"(check the configuration and the data dir; if the cell's membership really changed, delete %s)",
				ErrOtherCell, cfg.DataDir, got.ids(), want.ids(), path)
		}
	}
	log.Info("the data dir holds no state: recording this configuration's members", "was", got.ids(), "now", want.ids())
	return writeCellRecord(path, want)
}

// writeCellRecord replaces the record at path: through a synced temporary
// file and a rename, so a crash leaves the old record or the new one. (A
// rename lost with the directory's entry only leaves the old record, or
// none, which the next start writes again.)
func writeCellRecord(path string, rec cellRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("replica: encode the cell record: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("replica: write the cell record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replica: write the cell record: %w", err)
	}
	return nil
}
