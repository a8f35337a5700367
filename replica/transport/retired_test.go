package transport

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A replica whose id a member removed (RemovePeer) is told so when it
// next greets that member, whichever way it greets: dialing a higher id,
// dialing back a lower one (Config.DialBackAfter), or probing a lower one
// (Config.ProbeAfter; the member forgot it and no longer dials it).
// OnRetired fires once, naming the member.
func TestRemovedReplicaIsToldItWasRemoved(t *testing.T) {
	for _, tc := range []struct {
		name            string
		removed, member uint64
		tweak           func(*Config) // the removed replica's config
	}{
		{"it dials", 1, 2, nil},
		{"it dials back", 2, 1, func(c *Config) { c.DialBackAfter = 50 * time.Millisecond }},
		{"it probes", 2, 1, func(c *Config) { c.ProbeAfter = 50 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			by := make(chan uint64, 4)
			// Start the higher id first, so the lower knows its address.
			start := func(id uint64, peers map[uint64]string) *node {
				cfg := testConfig(id, peers)
				cfg.AcceptUnknown, cfg.Cell = true, 0xc
				if id == tc.removed {
					cfg.OnRetired = func(p uint64) { calls.Add(1); by <- p }
					if tc.tweak != nil {
						tc.tweak(&cfg)
					}
				}
				return startNode(t, cfg)
			}
			high := start(max(tc.removed, tc.member), map[uint64]string{})
			low := start(min(tc.removed, tc.member), map[uint64]string{high.id: high.Addr().String()})
			high.SetPeer(low.id, low.Addr().String()) // for a dial-back or a probe
			member, removed := high, low
			if tc.member == low.id {
				member, removed = low, high
			}
			deliverEventually(t, low, high, 1, "before the removal")

			member.RemovePeer(removed.id)
			select {
			case got := <-by:
				if got != member.id {
					t.Fatalf("OnRetired(%d); want %d", got, member.id)
				}
			case <-time.After(patience):
				t.Fatalf("OnRetired never called\nremoved replica's log:\n%s\nmember's log:\n%s", removed.log, member.log)
			}
			waitLogged(t, member, "was removed from the cell")
			if n := calls.Load(); n != 1 {
				t.Fatalf("OnRetired called %d times; want once", n)
			}
		})
	}
}

// greetRaw sends h to the transport at addr and returns its answer, and
// whether it then closed the connection without a session (a probe's
// answer, or a refusal).
func greetRaw(t *testing.T, addr string, h hello) (helloAck, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(patience))
	if err := writeMsg(conn, h); err != nil {
		t.Fatal(err)
	}
	var ack helloAck
	if err := readMsg(conn, &ack); err != nil {
		t.Fatalf("reading the answer to %+v: %v", h, err)
	}
	_, err = conn.Read(make([]byte, 1))
	return ack, errors.Is(err, io.EOF)
}

// Only a hello that reached the replica it meant to, in the cell the
// member knows, is told it was removed: a replica of another cell, one
// that does not know its cell id, or one that reached this member by a
// wrong address is refused as before, and learns nothing. A probe from a
// replica that was not removed is answered, and makes no connection.
func TestRemovalToldOnlyWithinTheCell(t *testing.T) {
	cfg := testConfig(2, map[uint64]string{1: "", 3: unusedAddr(t)})
	cfg.AcceptUnknown, cfg.Cell = true, 0xc
	member := startNode(t, cfg)
	member.RemovePeer(1)
	cfg0 := cfg
	cfg0.Cell = 0 // a member that does not know its cell id (yet)
	member0 := startNode(t, cfg0)
	member0.RemovePeer(1)

	for _, tc := range []struct {
		name        string
		to          *node
		h           hello
		retired     bool
		err         string // in the answer; "" accepted
		closedAfter bool   // the member closed the connection after answering
	}{
		{"removed, its cell", member, hello{From: 1, To: 2, CellID: 0xc}, true, "was removed from the cell", true},
		{"removed, probing", member, hello{From: 1, To: 2, CellID: 0xc, Probe: true}, true, "was removed from the cell", true},
		{"removed, another cell", member, hello{From: 1, To: 2, CellID: 0xd}, false, "belongs to another cell", true},
		{"removed, another cell, probing", member, hello{From: 1, To: 2, CellID: 0xd, Probe: true}, false, "belongs to another cell", true},
		{"removed, no cell id", member, hello{From: 1, To: 2}, false, "not a peer", true},
		{"removed, meant another replica", member, hello{From: 1, To: 3, CellID: 0xc}, false, "not a peer", true},
		{"removed, the member knows no cell id", member0, hello{From: 1, To: 2, CellID: 0xc}, false, "not a peer", true},
		{"a member probing", member, hello{From: 3, To: 2, CellID: 0xc, Probe: true}, false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ack, closed := greetRaw(t, tc.to.Addr().String(), tc.h)
			if ack.Retired != tc.retired {
				t.Errorf("answer %+v: Retired = %v; want %v", ack, ack.Retired, tc.retired)
			}
			if tc.err == "" && ack.Err != "" || !strings.Contains(ack.Err, tc.err) {
				t.Errorf("answer %+v: Err = %q; want it to contain %q", ack, ack.Err, tc.err)
			}
			if closed != tc.closedAfter {
				t.Errorf("connection closed after the answer = %v; want %v", closed, tc.closedAfter)
			}
		})
	}
	if st, ok := member.Stats().Peers[3]; ok && st.Connects > 0 {
		t.Errorf("a probe made a connection: %+v", st)
	}
}

// The dialer trusts an answer that it was removed only from the replica
// it meant to reach, presenting the cell id it knows: not from whatever
// answers at a peer's address for another replica, nor from another cell.
func TestRemovalClaimNotTrustedFromAnother(t *testing.T) {
	for _, tc := range []struct {
		name string
		ack  helloAck
	}{
		{"another replica", helloAck{From: 9, Err: "removed", CellID: 0xc, Retired: true}},
		{"another cell", helloAck{From: 2, Err: "removed", CellID: 0xd, Retired: true}},
		{"no cell id", helloAck{From: 2, Err: "removed", Retired: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var answered atomic.Int32
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					var h hello
					if readMsg(conn, &h) == nil {
						writeMsg(conn, tc.ack)
					}
					conn.Close()
					answered.Add(1)
				}
			}()
			var calls atomic.Int32
			cfg := testConfig(1, map[uint64]string{2: ln.Addr().String()})
			cfg.AcceptUnknown, cfg.Cell = true, 0xc
			cfg.OnRetired = func(uint64) { calls.Add(1) }
			startNode(t, cfg)
			// The dial loop reads each answer before it dials again.
			waitFor(t, "three dials answered", func() bool { return answered.Load() >= 3 })
			if n := calls.Load(); n != 0 {
				t.Fatalf("OnRetired called %d times; want never", n)
			}
		})
	}
}
