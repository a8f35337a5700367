package paxos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// DefaultAlpha is the α of a cell created without Config.Alpha: a member
// set chosen at instance s governs instances s+α on (docs/membership.md).
const DefaultAlpha = 256

// Errors of the member set.
var (
	// ErrInvalidChange wraps every reason Members.Apply refuses a change
	// (the change is chosen but changes nothing) and every malformed
	// encoded change.
	ErrInvalidChange = errors.New("paxos: invalid member change")
	// ErrInvalidMembers wraps every malformed encoded member set.
	ErrInvalidMembers = errors.New("paxos: invalid member set")
)

// Member is one member of a cell: a voter, or a learner (an acceptor whose
// promises and acknowledgements are never counted).
type Member struct {
	ID    uint64
	Voter bool
	Nonce uint64 // the rebuild nonce it joined with (Bind); 0: not bound yet
	Meta  []byte // the driver's (addresses); opaque to the core
}

// Pending is a voter change chosen and not yet in effect.
type Pending struct {
	At     uint64   // the instance where it was chosen
	Voters []uint64 // the voter set from At+Alpha on, sorted
}

// Members is the replicated member set of a cell as of some applied
// instance: every replica computes the same one from the same chosen log
// (Apply, Through). See docs/membership.md.
type Members struct {
	Alpha   uint64   // α; fixed when the cell is created
	Epoch   uint64   // valid changes applied so far
	Members []Member // sorted by ID: voters and learners
	Retired []uint64 // sorted: ids removed; never valid again
	Pending *Pending // a voter change chosen, not yet in effect
}

// Bootstrap returns the member set of a cell created with the voters peers
// and α alpha (0: DefaultAlpha).
func Bootstrap(peers []uint64, alpha uint64) Members {
	if alpha == 0 {
		alpha = DefaultAlpha
	}
	m := Members{Alpha: alpha}
	for _, p := range peers {
		m.Members = append(m.Members, Member{ID: p, Voter: true})
	}
	slices.SortFunc(m.Members, func(a, b Member) int { return cmpID(a.ID, b.ID) })
	return m
}

func cmpID(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ChangeOp says what a MemberChange does.
type ChangeOp uint8

// The member change operations (docs/membership.md §2).
const (
	OpAddLearner    ChangeOp = iota + 1 // ID, Meta: a new learner, at once
	OpBind                              // ID, Nonce: the learner's first life is Nonce, at once
	OpPromote                           // ID: a bound learner becomes a voter, Alpha instances later
	OpRemoveVoter                       // ID: a voter is dropped and retired, Alpha instances later
	OpRemoveLearner                     // ID: a learner is dropped and retired, at once
	OpSetMeta                           // ID, Meta: new addresses, at once
)

var opNames = [...]string{OpAddLearner: "AddLearner", OpBind: "Bind", OpPromote: "Promote",
	OpRemoveVoter: "RemoveVoter", OpRemoveLearner: "RemoveLearner", OpSetMeta: "SetMeta"}

func (o ChangeOp) String() string {
	if o.valid() {
		return opNames[o]
	}
	return fmt.Sprintf("ChangeOp(%d)", uint8(o))
}

func (o ChangeOp) valid() bool { return o >= OpAddLearner && o <= OpSetMeta }

// VoterChange reports whether o changes the voter set (it then takes effect
// Alpha instances after it is chosen, and only one may be pending).
func (o ChangeOp) VoterChange() bool { return o == OpPromote || o == OpRemoveVoter }

// MemberChange is the value of a log entry with Entry.Conf set.
type MemberChange struct {
	Op    ChangeOp
	ID    uint64
	Nonce uint64 // Bind
	Meta  []byte // AddLearner, SetMeta
	Epoch uint64 // the Members.Epoch it was made against; 0: any
}

const (
	changeVersion  = 1
	membersVersion = 1
	// maxMetaBytes bounds a member's Meta.
	maxMetaBytes = 4096
)

// Encode returns the versioned binary encoding of c (a Conf entry's value).
func (c MemberChange) Encode() []byte {
	b := []byte{changeVersion, byte(c.Op)}
	b = binary.AppendUvarint(b, c.ID)
	b = binary.AppendUvarint(b, c.Nonce)
	b = binary.AppendUvarint(b, c.Epoch)
	b = binary.AppendUvarint(b, uint64(len(c.Meta)))
	return append(b, c.Meta...)
}

// decoder reads uvarints and byte strings, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = errors.New("truncated or overlong number")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	switch {
	case d.err != nil:
		return nil
	case n > maxMetaBytes:
		d.err = fmt.Errorf("meta of %d bytes, at most %d", n, maxMetaBytes)
		return nil
	case n > uint64(len(d.b)):
		d.err = errors.New("truncated bytes")
		return nil
	case n == 0:
		return nil
	}
	v := slices.Clone(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errors.New("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// DecodeMemberChange decodes a Conf entry's value.
func DecodeMemberChange(b []byte) (MemberChange, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != changeVersion {
		return MemberChange{}, fmt.Errorf("%w: version %d, want %d", ErrInvalidChange, v, changeVersion)
	}
	c := MemberChange{Op: ChangeOp(d.byte())}
	c.ID, c.Nonce, c.Epoch = d.uvarint(), d.uvarint(), d.uvarint()
	c.Meta = d.bytes()
	if err := d.done(); err != nil {
		return MemberChange{}, fmt.Errorf("%w: %v", ErrInvalidChange, err)
	}
	if !c.Op.valid() {
		return MemberChange{}, fmt.Errorf("%w: unknown op %d", ErrInvalidChange, uint8(c.Op))
	}
	return c, nil
}

// Encode returns the versioned binary encoding of m (a snapshot carries it).
func (m Members) Encode() []byte {
	b := []byte{membersVersion}
	b = binary.AppendUvarint(b, m.Alpha)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, uint64(len(m.Members)))
	for _, x := range m.Members {
		b = binary.AppendUvarint(b, x.ID)
		v := byte(0)
		if x.Voter {
			v = 1
		}
		b = append(b, v)
		b = binary.AppendUvarint(b, x.Nonce)
		b = binary.AppendUvarint(b, uint64(len(x.Meta)))
		b = append(b, x.Meta...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Retired)))
	for _, id := range m.Retired {
		b = binary.AppendUvarint(b, id)
	}
	if m.Pending == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, m.Pending.At)
	b = binary.AppendUvarint(b, uint64(len(m.Pending.Voters)))
	for _, id := range m.Pending.Voters {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// DecodeMembers decodes and checks an encoded member set.
func DecodeMembers(b []byte) (Members, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != membersVersion {
		return Members{}, fmt.Errorf("%w: version %d, want %d", ErrInvalidMembers, v, membersVersion)
	}
	var m Members
	m.Alpha, m.Epoch = d.uvarint(), d.uvarint()
	count := func() int {
		k := d.uvarint()
		if d.err == nil && k > 1<<16 {
			d.err = fmt.Errorf("count %d too large", k)
		}
		return int(k)
	}
	for range count() {
		if d.err != nil {
			break
		}
		x := Member{ID: d.uvarint()}
		switch v := d.byte(); {
		case d.err != nil:
		case v > 1:
			d.err = fmt.Errorf("voter flag %d", v)
		default:
			x.Voter = v == 1
		}
		x.Nonce = d.uvarint()
		x.Meta = d.bytes()
		m.Members = append(m.Members, x)
	}
	for range count() {
		if d.err != nil {
			break
		}
		m.Retired = append(m.Retired, d.uvarint())
	}
	switch p := d.byte(); {
	case d.err != nil:
	case p == 1:
		m.Pending = &Pending{At: d.uvarint()}
		for range count() {
			if d.err != nil {
				break
			}
			m.Pending.Voters = append(m.Pending.Voters, d.uvarint())
		}
	case p != 0:
		d.err = fmt.Errorf("pending flag %d", p)
	}
	if err := d.done(); err != nil {
		return Members{}, fmt.Errorf("%w: %v", ErrInvalidMembers, err)
	}
	if err := m.Validate(); err != nil {
		return Members{}, err
	}
	return m, nil
}

// Validate checks that m is a member set the core can run with.
func (m Members) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMembers}, args...)...)
	}
	if m.Alpha < 2 {
		return bad("alpha %d, at least 2", m.Alpha)
	}
	if len(m.Members) > MaxPeers {
		return bad("%d members, at most %d", len(m.Members), MaxPeers)
	}
	voters := 0
	for k, x := range m.Members {
		switch {
		case x.ID == 0:
			return bad("member id 0")
		case k > 0 && m.Members[k-1].ID >= x.ID:
			return bad("members not sorted or duplicate at %d", x.ID)
		case m.retired(x.ID):
			return bad("member %d is retired", x.ID)
		case len(x.Meta) > maxMetaBytes:
			return bad("member %d meta of %d bytes", x.ID, len(x.Meta))
		}
		if x.Voter {
			voters++
		}
	}
	if voters == 0 {
		return bad("no voter")
	}
	for k, id := range m.Retired {
		if id == 0 || k > 0 && m.Retired[k-1] >= id {
			return bad("retired ids not sorted, duplicate or 0 at %d", id)
		}
	}
	if p := m.Pending; p != nil {
		if len(p.Voters) == 0 {
			return bad("pending voter set empty")
		}
		for k, id := range p.Voters {
			switch x := m.member(id); {
			case k > 0 && p.Voters[k-1] >= id:
				return bad("pending voters not sorted or duplicate at %d", id)
			case x == nil:
				return bad("pending voter %d not a member", id)
			}
		}
		if d := symDiff(m.Voters(), p.Voters); d != 1 {
			return bad("pending voter set differs by %d voters, want 1", d)
		}
	}
	return nil
}

// symDiff counts the ids in exactly one of two sorted sets.
func symDiff(a, b []uint64) int {
	d := 0
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			d++
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			d++
		}
	}
	return d
}

// Clone returns a deep copy of m.
func (m Members) Clone() Members {
	c := m
	c.Members = slices.Clone(m.Members)
	for k := range c.Members {
		c.Members[k].Meta = slices.Clone(c.Members[k].Meta)
	}
	c.Retired = slices.Clone(m.Retired)
	if m.Pending != nil {
		p := *m.Pending
		p.Voters = slices.Clone(p.Voters)
		c.Pending = &p
	}
	return c
}

func (m Members) index(id uint64) (int, bool) {
	return slices.BinarySearchFunc(m.Members, id, func(x Member, id uint64) int { return cmpID(x.ID, id) })
}

// member returns the member id, or nil.
func (m Members) member(id uint64) *Member {
	if k, ok := m.index(id); ok {
		return &m.Members[k]
	}
	return nil
}

// Member returns the member id and whether it is one.
func (m Members) Member(id uint64) (Member, bool) {
	if x := m.member(id); x != nil {
		return *x, true
	}
	return Member{}, false
}

func (m Members) retired(id uint64) bool {
	_, ok := slices.BinarySearch(m.Retired, id)
	return ok
}

// IsRetired reports whether id was removed from the cell (it is never valid
// again).
func (m Members) IsRetired(id uint64) bool { return m.retired(id) }

// Voters returns the current voter set, sorted (a new slice).
func (m Members) Voters() []uint64 {
	var v []uint64
	for _, x := range m.Members {
		if x.Voter {
			v = append(v, x.ID)
		}
	}
	return v
}

// Latest returns the voter set after the pending change, if any, else the
// current one.
func (m Members) Latest() []uint64 {
	if m.Pending != nil {
		return slices.Clone(m.Pending.Voters)
	}
	return m.Voters()
}

// Config returns cfg(i), the voter set that governs instance i, for a
// member set m that has applied every instance through i−Alpha (R1): the
// pending set once i ≥ Pending.At+Alpha, else the current voters.
func (m Members) Config(i uint64) []uint64 {
	if m.Pending != nil && i >= m.Pending.At+m.Alpha {
		return slices.Clone(m.Pending.Voters)
	}
	return m.Voters()
}

// Through returns m after applying instance i, a value that is no member
// change: a pending voter change takes effect once i ≥ Pending.At+Alpha (a
// promoted learner becomes a voter, a removed voter is dropped and
// retired). m is not modified.
func (m Members) Through(i uint64) Members {
	p := m.Pending
	if p == nil || i < p.At+m.Alpha {
		return m
	}
	c := m.Clone()
	c.Pending = nil
	kept := c.Members[:0]
	for _, x := range c.Members {
		_, voter := slices.BinarySearch(p.Voters, x.ID)
		switch {
		case voter:
			x.Voter = true
		case x.Voter: // removed
			c.Retired = insertSorted(c.Retired, x.ID)
			continue
		}
		kept = append(kept, x)
	}
	c.Members = kept
	return c
}

func insertSorted(s []uint64, id uint64) []uint64 {
	k, ok := slices.BinarySearch(s, id)
	if ok {
		return s
	}
	return slices.Insert(s, k, id)
}

// Apply returns the member set after applying the change c chosen at
// instance i (Through(i) first). An invalid change is chosen but changes
// nothing: Apply then returns Through(i) and an error wrapping
// ErrInvalidChange that says why. m is not modified.
func (m Members) Apply(i uint64, c MemberChange) (Members, error) {
	m = m.Through(i)
	bad := func(format string, args ...any) (Members, error) {
		return m, fmt.Errorf("%w: %v %d: "+format, append([]any{ErrInvalidChange, c.Op, c.ID}, args...)...)
	}
	x := m.member(c.ID)
	switch {
	case !c.Op.valid():
		return bad("unknown op")
	case c.ID == 0:
		return bad("id 0")
	case c.Epoch != 0 && c.Epoch != m.Epoch:
		return bad("made against epoch %d, the set is at %d", c.Epoch, m.Epoch)
	case len(c.Meta) > maxMetaBytes:
		return bad("meta of %d bytes, at most %d", len(c.Meta), maxMetaBytes)
	}
	pendingVoter := m.Pending != nil && slices.Contains(m.Pending.Voters, c.ID)
	switch c.Op {
	case OpAddLearner:
		switch {
		case x != nil:
			return bad("already a member")
		case m.retired(c.ID):
			return bad("retired")
		case len(m.Members) >= MaxPeers:
			return bad("%d members already", len(m.Members))
		}
	case OpBind:
		switch {
		case x == nil || x.Voter || pendingVoter:
			return bad("not a learner")
		case x.Nonce != 0:
			return bad("already bound")
		case c.Nonce == 0:
			return bad("nonce 0")
		}
	case OpPromote:
		switch {
		case x == nil || x.Voter:
			return bad("not a learner")
		case x.Nonce == 0:
			return bad("learner not bound yet")
		case m.Pending != nil:
			return bad("a voter change is pending (chosen at %d)", m.Pending.At)
		}
	case OpRemoveVoter:
		switch {
		case x == nil || !x.Voter:
			return bad("not a voter")
		case len(m.Voters()) < 2:
			return bad("the last voter")
		case m.Pending != nil:
			return bad("a voter change is pending (chosen at %d)", m.Pending.At)
		}
	case OpRemoveLearner:
		if x == nil || x.Voter || pendingVoter {
			return bad("not a learner")
		}
	case OpSetMeta:
		if x == nil {
			return bad("not a member")
		}
	}
	n := m.Clone()
	n.Epoch++
	switch c.Op {
	case OpAddLearner:
		k, _ := n.index(c.ID)
		n.Members = slices.Insert(n.Members, k, Member{ID: c.ID, Meta: slices.Clone(c.Meta)})
	case OpBind:
		n.member(c.ID).Nonce = c.Nonce
	case OpPromote:
		n.Pending = &Pending{At: i, Voters: insertSorted(m.Voters(), c.ID)}
	case OpRemoveVoter:
		n.Pending = &Pending{At: i, Voters: slices.DeleteFunc(m.Voters(), func(id uint64) bool { return id == c.ID })}
	case OpRemoveLearner:
		k, _ := n.index(c.ID)
		n.Members = slices.Delete(n.Members, k, k+1)
		n.Retired = insertSorted(n.Retired, c.ID)
	case OpSetMeta:
		n.member(c.ID).Meta = slices.Clone(c.Meta)
	}
	return n, nil
}

// ApplyEntry applies the chosen entry e: Through for a value or no-op,
// Apply for a Conf entry (a malformed or invalid change changes nothing;
// the error says why).
func (m Members) ApplyEntry(e Entry) (Members, error) {
	if !e.Conf {
		return m.Through(e.Instance), nil
	}
	c, err := DecodeMemberChange(e.Value)
	if err != nil {
		return m.Through(e.Instance), err
	}
	return m.Apply(e.Instance, c)
}
