package replica

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"

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
//
// Member changes (docs/membership.md) add three fields, which a build that
// predates them ignores: Founders, the bootstrap voter set the core starts
// from when no snapshot carries a member set (absent: the ids of Members,
// which a cell that never changed its members has always had); Join, the
// data dir was first used by a replica joining a running cell (it has no
// bootstrap set: its member set comes from a snapshot); and Changed, Members
// is the replicated member set as last applied here, not a configuration,
// so a configuration that lists other members is only a list of seeds.
// Rebuilt: the data dir was first used by a replica rebuilding lost state
// (Config.RebuildEmpty on an empty data dir). Its configuration may name
// the members it was given as seeds rather than the founders (a replica
// that joined and then lost its disk is restarted without Join), so, like
// a joiner, it has no bootstrap set and learns the member set from a
// peer's snapshot; it is not a joiner otherwise (it does not dial back,
// network.go).
//
// Cell is the cell's identity, 16 hex digits, which the peer transport
// compares in every handshake (transport.Config.Cell). The founding
// replica with the lowest id draws it at random (newCellID) when it first
// starts; it never changes after. Every other replica (the other founders,
// a replica that joins or rebuilds from an empty disk, one whose record
// predates the field) has none at first: it takes the one its first peer
// presents and records it (learnCell). Since the lower id dials, the
// lowest founder brings it to every other founder on first contact. (It
// is not derived from the configuration: replicas may reach each other by
// different addresses, through NAT or proxies, so their configurations
// need not agree.)
type cellRecord struct {
	Version  int          `json:"version"`            // 1
	Cell     string       `json:"cell,omitempty"`     // %016x
	Members  []cellMember `json:"members"`            // by ascending id
	Founders []uint64     `json:"founders,omitempty"` // ascending
	Join     bool         `json:"join,omitempty"`
	Rebuilt  bool         `json:"rebuilt,omitempty"`
	Changed  bool         `json:"changed,omitempty"`
}

// newCellID draws a new cell's id: 64 random bits, never 0 (0 means not
// known).
func newCellID() string {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return fmt.Sprintf("%016x", id)
		}
	}
}

// drawsCellID reports whether a replica of cfg with an empty data dir
// draws the cell id: it founds a new cell (it neither joins a running one
// nor rebuilds its lost state) and has the lowest founding id.
func drawsCellID(cfg Config) bool {
	return !cfg.Join && !cfg.RebuildEmpty && cfg.ID == slices.Min(slices.Collect(maps.Keys(cfg.Members)))
}

// cellID returns the recorded cell id, 0 if there is none.
func (rec cellRecord) cellID() uint64 {
	id, err := strconv.ParseUint(rec.Cell, 16, 64)
	if err != nil {
		return 0
	}
	return id
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

// founders returns the bootstrap voter set (see cellRecord).
func (rec cellRecord) founders() []uint64 {
	if rec.Founders != nil {
		return rec.Founders
	}
	return rec.ids()
}

// addrs returns the recorded peer addresses by id.
func (rec cellRecord) addrs() map[uint64]string {
	m := make(map[uint64]string, len(rec.Members))
	for _, x := range rec.Members {
		m[x.ID] = x.Peer
	}
	return m
}

func (rec cellRecord) ids() []uint64 {
	ids := make([]uint64, len(rec.Members))
	for i, m := range rec.Members {
		ids[i] = m.ID
	}
	return ids
}

// checkCell compares the cell record of cfg.DataDir (opened as db) with
// cfg.Members and returns the record in force. Without a record (a new data
// dir, or one of an older version) it writes one. With the same member ids
// it brings the addresses up to date. With other ids it refuses
// (ErrOtherCell) if the data dir holds Paxos state for any group, unless
// its members changed since the cell was created or it joined a running
// cell (then the configuration is only a list of seeds and the replicated
// member set wins; New logs the difference), and otherwise (the replica
// never voted here) records the new members. A data dir without Paxos
// state takes Config.Join from the configuration.
func checkCell(cfg Config, db *logdb.DB, log *slog.Logger) (cellRecord, error) {
	path := filepath.Join(cfg.DataDir, CellFile)
	want := newCellRecord(cfg.Members)
	if cfg.Join {
		want.Join = true
	} else {
		want.Founders = want.ids()
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if empty, err := noState(cfg, db); err != nil {
			return cellRecord{}, err
		} else if !empty {
			want.Join, want.Founders = false, nil // an older data dir: its founders are its members
		} else {
			want = firstRecord(cfg, want)
		}
		return want, writeCellRecord(path, want)
	}
	if err != nil {
		return cellRecord{}, fmt.Errorf("replica: read the cell record: %w", err)
	}
	var got cellRecord
	if err := json.Unmarshal(b, &got); err != nil || got.Version != 1 {
		return cellRecord{}, fmt.Errorf("%w: %s is not a cell record (version 1) (%v); if this data dir is this cell's, delete the file to record the configured members",
			ErrOtherCell, path, err)
	}
	if got.Cell != "" && (len(got.Cell) != 16 || got.cellID() == 0) {
		return cellRecord{}, fmt.Errorf("%w: %s: cell id %q is not 16 hex digits (not 0); if this data dir is this cell's, delete the file to record the configured members",
			ErrOtherCell, path, got.Cell)
	}
	sameIDs := slices.Equal(got.ids(), want.ids())
	if sameIDs && got.Join == want.Join {
		if !slices.Equal(got.Members, want.Members) && !got.Changed {
			log.Info("peer addresses changed since the last start; recording them", "was", got.Members, "now", want.Members)
			got.Members = want.Members
			return got, writeCellRecord(path, got)
		}
		return got, nil
	}
	empty, err := noState(cfg, db)
	if err != nil {
		return cellRecord{}, err
	}
	switch {
	case empty:
		want = firstRecord(cfg, want)
		log.Info("the data dir holds no state: recording this configuration's members", "was", got.ids(), "now", want.ids(),
			"join", want.Join, "rebuilt", want.Rebuilt)
		return want, writeCellRecord(path, want)
	case got.Changed || got.Join || got.Rebuilt:
		return got, nil // the replicated member set wins (New warns)
	case sameIDs:
		return got, nil // Join given again to a replica that joined long ago
	}
	return cellRecord{}, fmt.Errorf("%w: %s was made by a cell of members %v, and this configuration names members %v "+
		"(check the configuration and the data dir; if the cell's membership really changed, delete %s)",
		ErrOtherCell, cfg.DataDir, got.ids(), want.ids(), path)
}

// firstRecord completes the record want of cfg for a data dir that holds
// no state: the lowest founder of a new cell draws the cell id, and a
// replica that rebuilds lost state records that it does not know the
// founders (Rebuilt).
func firstRecord(cfg Config, want cellRecord) cellRecord {
	switch {
	case drawsCellID(cfg):
		want.Cell = newCellID()
	case cfg.RebuildEmpty && !cfg.Join:
		want.Rebuilt, want.Founders = true, nil
	}
	return want
}

// learnCell records the cell id the transport learned from a peer
// (transport.Config.OnCell) where the record had none.
func (r *Replica) learnCell(id uint64) {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	if r.cell.Cell != "" {
		return
	}
	rec := r.cell
	rec.Cell = fmt.Sprintf("%016x", id)
	if err := writeCellRecord(r.cellPath(), rec); err != nil {
		r.log.Warn("cannot record the cell id in the cell record", "err", err)
		return
	}
	r.cell = rec
	r.log.Info("cell id learned from a peer and recorded", "cell", rec.Cell)
}

// noState reports whether no group of cfg holds Paxos state in db.
func noState(cfg Config, db *logdb.DB) (bool, error) {
	for _, g := range cfg.Groups {
		st, err := db.Group(g).Load()
		if err != nil {
			return false, fmt.Errorf("replica: group %d: %w", g, err)
		}
		if !st.IsEmpty() {
			return false, nil
		}
	}
	return true, nil
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
