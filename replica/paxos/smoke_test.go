package paxos

import "testing"

func TestSmokeThreeReplicas(t *testing.T) {
	peers := []uint64{1, 2, 3}
	var nodes []*Node
	for _, id := range peers {
		cfg := DefaultConfig(id, peers)
		n, err := New(cfg, State{})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	var queue []Message
	applied := map[uint64][]Entry{}
	pump := func() {
		for {
			progress := false
			for _, n := range nodes {
				for n.HasReady() {
					rd, err := n.Ready()
					if err != nil {
						t.Fatal(err)
					}
					queue = append(queue, rd.Messages...)
					applied[n.cfg.ID] = append(applied[n.cfg.ID], rd.Chosen...)
					if err := n.Advance(); err != nil {
						t.Fatal(err)
					}
					progress = true
				}
			}
			for len(queue) > 0 {
				m := queue[0]
				queue = queue[1:]
				if err := nodes[m.To-1].Step(m); err != nil {
					t.Fatal(err)
				}
				progress = true
			}
			if !progress {
				return
			}
		}
	}
	nodes[0].Campaign()
	pump()
	if nodes[0].Status().Role != Leader {
		t.Fatalf("status %+v", nodes[0].Status())
	}
	for i := 0; i < 5; i++ {
		if _, err := nodes[0].Propose([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
		pump()
	}
	for range 10 {
		for _, n := range nodes {
			n.Tick()
		}
		pump()
	}
	for _, id := range peers {
		t.Logf("%d: %+v applied=%d", id, nodes[id-1].Status(), len(applied[id]))
		if len(applied[id]) != 6 {
			t.Errorf("replica %d applied %d entries", id, len(applied[id]))
		}
	}
	if !nodes[0].LeaseValid() {
		t.Errorf("no lease")
	}
	if b, ok := nodes[0].ReadBarrier(); !ok || b != 6 {
		t.Errorf("ReadBarrier = %d, %v", b, ok)
	}
}
