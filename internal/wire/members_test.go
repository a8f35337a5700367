package wire

import (
	"errors"
	"testing"
)

func TestMemberMessagesRoundTrip(t *testing.T) {
	msgs := []Message{
		&MemberList{Header: Header{Request: 3}, Stale: true},
		&MemberSet{Alpha: 256, Epoch: 7, Applied: 900, Leader: 2,
			Members: []MemberEntry{
				{ID: 1, Voter: true, Bound: true, Peer: "10.0.0.1:7201", Client: "10.0.0.1:7101", HTTP: "10.0.0.1:7301"},
				{ID: 4, Bound: true, Peer: "10.0.0.4:7201", Client: "10.0.0.4:7101"},
			},
			Retired: []uint64{3}, Pending: &MemberPending{At: 880, Voters: []uint64{1, 2, 4}}},
		&MemberChange{Header: Header{Request: 9}, Op: MemberAdd, ID: 4, Peer: "h:1", Client: "h:2", HTTP: "h:3", Epoch: 6},
		&MemberChange{Header: Header{Request: 10}, Op: MemberRemove, ID: 1},
		&MemberChanged{Members: MemberSet{Alpha: 256, Epoch: 8, Members: []MemberEntry{{ID: 1, Voter: true}}}, Instance: 901, Effective: 1157},
	}
	for _, m := range msgs {
		roundTrip(t, m)
	}
}

func TestMemberMessagesBadInput(t *testing.T) {
	good, err := Marshal(&MemberChange{Header: Header{Request: 1}, Op: MemberPromote, ID: 4})
	if err != nil {
		t.Fatal(err)
	}
	body := good[FrameOverhead:]
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"unknown version", frameOf(Version+1, TypeMemberChange, body), ErrVersion},
		{"version 0", frameOf(0, TypeMemberList, body), ErrVersion},
		{"garbage", frameOf(Version, TypeMemberChange, []byte("\xc1garbage")), ErrMalformed},
		{"not a map", frameOf(Version, TypeMemberSet, []byte{0x93, 1, 2, 3}), ErrMalformed},
		{"id is a string", frameOf(Version, TypeMemberChange, []byte{0x81, 0xa2, 'i', 'd', 0xa1, 'x'}), ErrMalformed},
		{"members claim 4G elements", frameOf(Version, TypeMemberSet, []byte{0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrTruncated},
		{"trailing", append(append([]byte(nil), good...), 0), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := Unmarshal(tt.frame, 0); !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal = %#v, %v; want %v", m, err, tt.want)
			}
		})
	}
	// An unknown op decodes (the server refuses it with BadRequest), and
	// names itself.
	m, err := Unmarshal(frameOf(Version, TypeMemberChange, []byte{0x82, 0xa2, 'o', 'p', 9, 0xa2, 'i', 'd', 4}), 0)
	if err != nil {
		t.Fatalf("Unmarshal of op 9: %v", err)
	}
	if op := m.(*MemberChange).Op; op.Valid() || op.String() != "MemberOp(9)" {
		t.Errorf("op 9: Valid %v, String %q", op.Valid(), op.String())
	}
}

func TestMemberOpNumbers(t *testing.T) {
	// The numbers are protocol.
	want := map[MemberOp]string{1: "add", 2: "promote", 3: "remove", 4: "update"}
	for op, name := range want {
		if !op.Valid() || op.String() != name {
			t.Errorf("MemberOp(%d) = %q, valid %v; want %q", op, op.String(), op.Valid(), name)
		}
	}
	if MemberOp(0).Valid() || MemberOp(5).Valid() {
		t.Errorf("ops 0 and 5 are valid")
	}
	if ChangePending != 17 || NotCaughtUp != 18 || !ChangePending.Known() || NotCaughtUp.String() != "NotCaughtUp" {
		t.Errorf("member codes changed")
	}
}

func TestMemberSetRole(t *testing.T) {
	s := MemberSet{
		Members: []MemberEntry{{ID: 1, Voter: true}, {ID: 2, Voter: true}, {ID: 3}, {ID: 4}},
		Pending: &MemberPending{At: 10, Voters: []uint64{1, 3}}, // 3 promoted, 2 removed, one change at a time in real sets
	}
	for id, want := range map[uint64]string{1: "voter", 2: "pending-", 3: "pending+", 4: "learner", 5: ""} {
		if got := s.Role(id); got != want {
			t.Errorf("Role(%d) = %q; want %q", id, got, want)
		}
	}
	s.Pending = nil
	if got := s.Role(2); got != "voter" {
		t.Errorf("Role(2) without a pending change = %q; want voter", got)
	}
}

func TestCheckAddr(t *testing.T) {
	for addr, want := range map[string]string{"127.0.0.1:7101": "127.0.0.1:7101", "[::1]:01": "[::1]:1", "host:65535": "host:65535"} {
		if got, err := CheckAddr(addr); err != nil || got != want {
			t.Errorf("CheckAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"", "host", ":1", "host:0", "host:65536", "host:x", "a:b:c"} {
		if got, err := CheckAddr(addr); err == nil {
			t.Errorf("CheckAddr(%q) = %q; want an error", addr, got)
		}
	}
}
