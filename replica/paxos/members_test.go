package paxos

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// bound3 is a cell of voters 1, 2, 3 with α 10 and a bound learner 4.
func bound3(t *testing.T) Members {
	t.Helper()
	m := Bootstrap([]uint64{3, 1, 2}, 10)
	m = mustApply(t, m, 1, MemberChange{Op: OpAddLearner, ID: 4, Meta: []byte("addr4")})
	return mustApply(t, m, 2, MemberChange{Op: OpBind, ID: 4, Nonce: 77})
}

func mustApply(t *testing.T, m Members, i uint64, c MemberChange) Members {
	t.Helper()
	n, err := m.Apply(i, c)
	if err != nil {
		t.Fatalf("Apply(%d, %+v) = %v", i, c, err)
	}
	return n
}

func TestMembersApplyRefusesInvalidChanges(t *testing.T) {
	m := bound3(t)
	promoted := mustApply(t, m, 5, MemberChange{Op: OpPromote, ID: 4})
	removed := mustApply(t, m, 5, MemberChange{Op: OpRemoveLearner, ID: 4})
	two := mustApply(t, Bootstrap([]uint64{1, 2}, 10).Through(0), 1, MemberChange{Op: OpRemoveVoter, ID: 2}).Through(11)
	cases := []struct {
		name string
		m    Members
		c    MemberChange
		want string
	}{
		{"unknown op", m, MemberChange{Op: 9, ID: 5}, "unknown op"},
		{"id 0", m, MemberChange{Op: OpAddLearner}, "id 0"},
		{"stale epoch", m, MemberChange{Op: OpAddLearner, ID: 5, Epoch: 1}, "made against epoch 1, the set is at 2"},
		{"add a member", m, MemberChange{Op: OpAddLearner, ID: 2}, "already a member"},
		{"add a retired id", removed, MemberChange{Op: OpAddLearner, ID: 4}, "retired"},
		{"bind a voter", m, MemberChange{Op: OpBind, ID: 1, Nonce: 5}, "not a learner"},
		{"bind twice", m, MemberChange{Op: OpBind, ID: 4, Nonce: 5}, "already bound"},
		{"bind nonce 0", mustApply(t, m, 3, MemberChange{Op: OpAddLearner, ID: 6}), MemberChange{Op: OpBind, ID: 6}, "nonce 0"},
		{"promote unbound", mustApply(t, m, 3, MemberChange{Op: OpAddLearner, ID: 6}), MemberChange{Op: OpPromote, ID: 6}, "not bound yet"},
		{"promote a voter", m, MemberChange{Op: OpPromote, ID: 1}, "not a learner"},
		{"second voter change", promoted, MemberChange{Op: OpRemoveVoter, ID: 1}, "a voter change is pending"},
		{"second promote", promoted, MemberChange{Op: OpPromote, ID: 4}, "a voter change is pending"},
		{"remove a learner as voter", m, MemberChange{Op: OpRemoveVoter, ID: 4}, "not a voter"},
		{"remove the last voter", two, MemberChange{Op: OpRemoveVoter, ID: 1}, "the last voter"},
		{"remove a voter as learner", m, MemberChange{Op: OpRemoveLearner, ID: 1}, "not a learner"},
		{"remove a learner being promoted", promoted, MemberChange{Op: OpRemoveLearner, ID: 4}, "not a learner"},
		{"meta of a stranger", m, MemberChange{Op: OpSetMeta, ID: 9}, "not a member"},
		{"meta too large", m, MemberChange{Op: OpSetMeta, ID: 1, Meta: make([]byte, maxMetaBytes+1)}, "meta of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.m.Encode()
			got, err := c.m.Apply(7, c.c)
			if !errors.Is(err, ErrInvalidChange) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply(%+v) = %v; want ErrInvalidChange with %q", c.c, err, c.want)
			}
			if !bytes.Equal(got.Encode(), c.m.Through(7).Encode()) || !bytes.Equal(c.m.Encode(), before) {
				t.Fatalf("an invalid change changed the set: %+v", got)
			}
		})
	}
}

func TestPendingVoterChangeTakesEffectAlphaLater(t *testing.T) {
	m := mustApply(t, bound3(t), 5, MemberChange{Op: OpPromote, ID: 4})
	for _, c := range []struct {
		i    uint64
		want []uint64
	}{{5, []uint64{1, 2, 3}}, {14, []uint64{1, 2, 3}}, {15, []uint64{1, 2, 3, 4}}, {40, []uint64{1, 2, 3, 4}}} {
		if got := m.Config(c.i); !slices.Equal(got, c.want) {
			t.Errorf("Config(%d) = %v; want %v", c.i, got, c.want)
		}
	}
	if got := m.Through(14); got.Pending == nil || !slices.Equal(got.Voters(), []uint64{1, 2, 3}) {
		t.Errorf("Through(14) = %+v; want the promotion still pending", got)
	}
	after := m.Through(15)
	if after.Pending != nil || !slices.Equal(after.Voters(), []uint64{1, 2, 3, 4}) {
		t.Errorf("Through(15) = %+v; want voters 1-4, nothing pending", after)
	}
	r := mustApply(t, after, 20, MemberChange{Op: OpRemoveVoter, ID: 2}).Through(30)
	if !slices.Equal(r.Voters(), []uint64{1, 3, 4}) || !r.IsRetired(2) {
		t.Errorf("after removing 2: %+v; want voters 1 3 4, 2 retired", r)
	}
	if _, err := r.Apply(31, MemberChange{Op: OpAddLearner, ID: 2}); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("re-adding retired 2: %v; want ErrInvalidChange", err)
	}
}

func TestDecodeRefusesMalformedInput(t *testing.T) {
	good := bound3(t).Encode()
	change := MemberChange{Op: OpSetMeta, ID: 3, Meta: []byte("x")}.Encode()
	cases := []struct {
		name string
		b    []byte
		dec  func([]byte) error
		want error
	}{
		{"members empty", nil, decM, ErrInvalidMembers},
		{"members version", append([]byte{9}, good[1:]...), decM, ErrInvalidMembers},
		{"members truncated", good[:len(good)-1], decM, ErrInvalidMembers},
		{"members trailing", append(slices.Clone(good), 0), decM, ErrInvalidMembers},
		{"members alpha 1", Members{Alpha: 1, Members: []Member{{ID: 1, Voter: true}}}.Encode(), decM, ErrInvalidMembers},
		{"members unsorted", Members{Alpha: 5, Members: []Member{{ID: 2, Voter: true}, {ID: 1}}}.Encode(), decM, ErrInvalidMembers},
		{"members no voter", Members{Alpha: 5, Members: []Member{{ID: 2}}}.Encode(), decM, ErrInvalidMembers},
		{"members retired member", Members{Alpha: 5, Members: []Member{{ID: 2, Voter: true}}, Retired: []uint64{2}}.Encode(), decM, ErrInvalidMembers},
		{"members pending two apart", Members{Alpha: 5, Members: []Member{{ID: 1, Voter: true}, {ID: 2}, {ID: 3}},
			Pending: &Pending{At: 1, Voters: []uint64{1, 2, 3}}}.Encode(), decM, ErrInvalidMembers},
		{"change empty", nil, decC, ErrInvalidChange},
		{"change version", append([]byte{2}, change[1:]...), decC, ErrInvalidChange},
		{"change op", MemberChange{Op: 0, ID: 1}.Encode(), decC, ErrInvalidChange},
		{"change truncated", change[:len(change)-1], decC, ErrInvalidChange},
		{"change trailing", append(slices.Clone(change), 1), decC, ErrInvalidChange},
	}
	for _, c := range cases {
		if err := c.dec(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: decode = %v; want %v", c.name, err, c.want)
		}
	}
}

func decM(b []byte) error { _, err := DecodeMembers(b); return err }
func decC(b []byte) error { _, err := DecodeMemberChange(b); return err }

// TestMembersProperties applies random sequences of changes and checks what
// the core relies on: Apply never modifies its input and always returns a
// valid set that round-trips through its encoding; at most one voter change
// is pending; Config(i) is what Through gives once instance i is applied
// (R1); and voter sets in effect at consecutive instances differ by at most
// one voter (R2, the base of Lemmas 1 and 2).
func TestMembersProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		alpha := rapid.Uint64Range(2, 6).Draw(t, "alpha")
		nv := rapid.IntRange(1, 5).Draw(t, "voters")
		var peers []uint64
		for k := range nv {
			peers = append(peers, uint64(k+1))
		}
		m := Bootstrap(peers, alpha)
		prev := m.Config(0)
		for i := uint64(1); i <= 60; i++ {
			before := m.Encode()
			var next Members
			if rapid.Bool().Draw(t, "conf") {
				c := MemberChange{
					Op:    ChangeOp(rapid.IntRange(0, 7).Draw(t, "op")),
					ID:    rapid.Uint64Range(0, 9).Draw(t, "id"),
					Nonce: rapid.Uint64Range(0, 2).Draw(t, "nonce"),
					Meta:  []byte(rapid.StringN(0, 3, -1).Draw(t, "meta")),
				}
				if rapid.Bool().Draw(t, "epoch") {
					c.Epoch = rapid.Uint64Range(0, m.Epoch+1).Draw(t, "epochv")
				}
				dc, err := DecodeMemberChange(c.Encode())
				if err == nil && (dc.Op != c.Op || dc.ID != c.ID || !bytes.Equal(dc.Meta, c.Meta) || dc.Epoch != c.Epoch) {
					t.Fatalf("change round trip: %+v -> %+v", c, dc)
				}
				next, err = m.ApplyEntry(Entry{Instance: i, Conf: true, Value: c.Encode()})
				if err != nil && !errors.Is(err, ErrInvalidChange) {
					t.Fatalf("Apply error %v does not wrap ErrInvalidChange", err)
				}
			} else {
				next = m.Through(i)
			}
			if !bytes.Equal(m.Encode(), before) {
				t.Fatalf("Apply modified its input")
			}
			if want := m.Config(i); !slices.Equal(next.Config(i), want) {
				t.Fatalf("instance %d: Config before applying it %v, after %v", i, want, next.Config(i))
			}
			for j := i + 1; j <= i+alpha; j++ {
				if got, want := next.Config(j), next.Through(j).Voters(); !slices.Equal(got, want) {
					t.Fatalf("Config(%d) = %v, Through(%d).Voters() = %v", j, got, j, want)
				}
			}
			if err := next.Validate(); err != nil {
				t.Fatalf("instance %d: %v", i, err)
			}
			dec, err := DecodeMembers(next.Encode())
			if err != nil || !bytes.Equal(dec.Encode(), next.Encode()) {
				t.Fatalf("round trip: %v", err)
			}
			cur := next.Config(i)
			if d := symDiff(prev, cur); d > 1 {
				t.Fatalf("instance %d: voters %v after %v", i, cur, prev)
			}
			prev, m = cur, next
		}
	})
}
