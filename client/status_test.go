package client_test

import (
	"testing"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

// TestStatusRebuilding: StatusReply.Rebuilding reaches Status (and the
// answering replica's own Member), and Members asks each member whether
// it rebuilds.
func TestStatusRebuilding(t *testing.T) {
	var members []wire.Member // filled in once both fakes listen
	statusOf := func(id string, rebuilding bool) func(wire.Message) fakeAnswer {
		return func(m wire.Message) fakeAnswer {
			if _, ok := m.(*wire.Status); !ok {
				return fakeAnswer{}
			}
			return answer(&wire.StatusReply{ServerID: id, Leader: members[0].ClientAddr, IsLeader: id == "1",
				Applied: 9, Members: members, Rebuilding: rebuilding})
		}
	}
	leader := startFake(t, "1", statusOf("1", false))
	wiped := startFake(t, "2", statusOf("2", true))
	members = []wire.Member{
		{ID: "1", ClientAddr: leader.addr(), Leader: true},
		{ID: "2", ClientAddr: wiped.addr()},
	}

	st, err := client.StatusOf(bg(t), wiped.addr())
	if err != nil {
		t.Fatalf("StatusOf: %v", err)
	}
	if !st.Rebuilding || len(st.Members) != 2 || st.Members[0].Rebuilding || !st.Members[1].Rebuilding {
		t.Fatalf("StatusOf(the wiped replica) = %+v; want Rebuilding, and its own member only rebuilding", st)
	}
	if st, err := client.StatusOf(bg(t), leader.addr()); err != nil || st.Rebuilding {
		t.Fatalf("StatusOf(the leader) = %+v, %v; want not Rebuilding", st, err)
	}

	c := dialFake(t, fakeConfig(leader.addr()))
	ms, err := c.Members(bg(t))
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if len(ms) != 2 || ms[0].Rebuilding || !ms[1].Rebuilding || !ms[1].Reachable {
		t.Fatalf("Members = %+v; want member 2 (only) rebuilding", ms)
	}
}
