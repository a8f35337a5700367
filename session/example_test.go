package session_test

import (
	"context"
	"fmt"
	"time"

	"github.com/latchd/latch/session"
)

// stepClock is a clock that moves only when told.
type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }

// The lifecycle as the lockserver drives it: open, watch, route and deliver
// an event, collect it with KeepAlive, then let the lease run out.
func Example() {
	clock := &stepClock{t: time.Unix(0, 0)}
	cfg := session.DefaultConfig()
	cfg.Clock = clock
	m, err := session.New[string](cfg)
	if err != nil {
		panic(err)
	}
	defer m.Close()

	m.Open(42, 0)             // after the OpenSession command applied
	m.Watch(42, "/svc", true) // watch id 1

	// The apply goroutine: route an event and deliver it.
	for _, t := range m.Route("/svc/api/node1") {
		m.Deliver(t.Session, fmt.Sprintf("created /svc/api/node1 (watch %v)", t.Watches))
	}

	// The client's KeepAlive returns at once with the queued event.
	r, _ := m.KeepAlive(context.Background(), 42, 0)
	for _, it := range r.Items {
		fmt.Println(it.Seq, it.Kind, it.Event, "ttl", r.TTL)
	}

	// No more KeepAlives: 12 s later Tick reports the session, once; the
	// lockserver proposes an expire command and, once applied, Removes it.
	clock.t = clock.t.Add(12 * time.Second)
	fmt.Println("expired:", m.Tick(), m.Tick())
	m.Remove(42)
	// Output:
	// 1 event created /svc/api/node1 (watch [1]) ttl 12s
	// expired: [42] []
}
