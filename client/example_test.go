package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/lockserver"
)

// exampleCell starts a local 3-replica cell for the examples and returns its
// client addresses and a function that stops it. A program would list its
// cell's addresses instead.
func exampleCell() ([]string, func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cell, err := lockserver.StartCell(ctx, lockserver.CellConfig{N: 3, Tune: tune})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := cell.WaitLeader(ctx); err != nil {
		log.Fatal(err)
	}
	return cell.Endpoints(), func() { cell.Close() }
}

// Take a lock, hand its sequencer to a server that checks it, and see the
// sequencer go stale when the lock is released.
func ExampleClient_Lock() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	l, err := c.Lock(ctx, "/ls/app/leader")
	if err != nil {
		log.Fatal(err)
	}
	// The printable sequencer travels with requests to other servers...
	token := l.Sequencer().String()

	// ...which parse it and ask the cell whether it is still current.
	seq, err := client.ParseSequencer(token)
	if err != nil {
		log.Fatal(err)
	}
	ok, err := c.CheckSequencer(ctx, seq)
	fmt.Println("held:", seq.Path, seq.Mode, "valid:", ok, err)

	select {
	case <-l.Lost():
		fmt.Println("lost the lock: stop acting on it")
	default:
	}
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	ok, err = c.CheckSequencer(ctx, seq)
	fmt.Println("after Unlock valid:", ok, err)
	// Output:
	// held: /ls/app/leader ex valid: true <nil>
	// after Unlock valid: false <nil>
}

// Watch a configuration node and re-read it when it changes (or when the
// client says events may have been missed).
func ExampleClient_Watch() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	events, err := c.Watch(ctx, "/config/app")
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		if _, err := c.Put(ctx, "/config/app", []byte(v), client.CreateParents()); err != nil {
			log.Fatal(err)
		}
	}
	for seen := 0; seen < 2; {
		ev := <-events
		n, err := c.Get(ctx, "/config/app") // re-read on every event
		if err != nil {
			log.Fatal(err)
		}
		if ev.Rescan() {
			continue // fail-over or overflow: the re-read above covers it
		}
		fmt.Printf("%s: generation %d, now %q\n", ev.Type, ev.ContentGen, n.Data)
		seen++
	}
	// Output:
	// node-created: generation 1, now "v2"
	// content-changed: generation 2, now "v2"
}

// Elect a leader, publish its address, and read it from another client.
func ExampleElection() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	candidate, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer candidate.Close()
	observer, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer observer.Close()

	e := client.NewElection(candidate, "/ls/app/election")
	if err := e.Campaign(ctx, "10.0.0.5:8080"); err != nil { // blocks until elected
		log.Fatal(err)
	}
	leader, err := client.NewElection(observer, "/ls/app/election").Leader(ctx)
	fmt.Println("leader:", leader.Value, err)

	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = client.NewElection(observer, "/ls/app/election").Leader(ctx)
	fmt.Println("after Resign:", err)
	// Output:
	// leader: 10.0.0.5:8080 <nil>
	// after Resign: Leader: client: no leader elected: the last leader of /ls/app/election is gone
}

// Register service instances and resolve them; an instance vanishes with
// its client's session.
func ExampleRegister() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	var clients []*client.Client
	for _, addr := range []string{"10.0.0.5:8080", "10.0.0.6:8080"} {
		c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		if _, err := client.Register(ctx, c, "/svc/billing", addr); err != nil {
			log.Fatal(err)
		}
		clients = append(clients, c)
	}
	insts, err := client.Resolve(ctx, clients[0], "/svc/billing")
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range insts {
		fmt.Println(in.Addr)
	}

	clients[1].Close() // its ephemeral node goes with its session
	insts, err = client.Resolve(ctx, clients[0], "/svc/billing")
	fmt.Println(len(insts), "left:", insts[0].Addr, err)
	// Output:
	// 10.0.0.5:8080
	// 10.0.0.6:8080
	// 1 left: 10.0.0.5:8080 <nil>
}

// Write a leader's state only while its lock grant is current (a fenced
// write): after the lock passes on, the old holder's write applies nothing,
// however late it arrives.
func ExampleClient_Txn() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	l, err := c.Lock(ctx, "/ls/app/leader")
	if err != nil {
		log.Fatal(err)
	}
	seq := l.Sequencer()
	res, err := c.Txn(ctx,
		client.IfHeld(seq),
		client.OpPut("/ls/app/state", []byte("epoch 1")),
		client.OpCreate("/ls/app/log-", []byte("became leader"), client.Sequential()),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied; state at content generation", res[1].Stat.ContentGen, "log entry", res[2].Path)

	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = c.Txn(ctx, client.IfHeld(seq), client.OpPut("/ls/app/state", []byte("stale")))
	var te *client.TxnError
	fmt.Println("after Unlock: not holder:", errors.Is(err, client.ErrNotHolder), "failed op:", errors.As(err, &te) && te.Op == 0)
	// Output:
	// applied; state at content generation 1 log entry /ls/app/log-0000000000
	// after Unlock: not holder: true failed op: true
}

// Workers of one process, each an independent lock holder with a session
// of its own, over a single connection to the cell.
func ExampleClient_NewSession() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	w1, err := c.NewSession(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer w1.Close()
	w2, err := c.NewSession(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer w2.Close()

	if _, err := w1.Lock(ctx, "/ls/jobs/42"); err != nil {
		log.Fatal(err)
	}
	// w2 is another holder: the lock w1 holds is not its.
	_, err = w2.TryLock(ctx, "/ls/jobs/42")
	fmt.Println("w2:", errors.Is(err, client.ErrLocked))

	// Closing w1 ends its session only: its lock is released, and w2 can
	// take the job.
	w1.Close()
	_, err = w2.TryLock(ctx, "/ls/jobs/42")
	fmt.Println("w2 after w1 closed:", err)
	// Output:
	// w2: true
	// w2 after w1 closed: <nil>
}

// Add a member as a learner, see its promotion refused until its replica
// has joined (it never starts here), and remove it again.
func ExampleClient_AddMember() {
	endpoints, stop := exampleCell()
	defer stop()
	ctx := context.Background()

	// Member changes need no session.
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints, NoSession: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.AddMember(ctx, 4, client.MemberAddrs{Peer: "127.0.0.1:1", Client: "127.0.0.1:2"})
	if err != nil {
		log.Fatal(err)
	}
	m, _ := res.Members.Member(4)
	fmt.Println("added:", m.ID, m.Role, "joined:", m.Joined, "in effect at once:", res.Effective == res.Instance)

	// Its replica would start now with latchd --join; until it has joined,
	// the promotion waits.
	_, err = c.PromoteMember(ctx, 4)
	fmt.Println("promote before it joined:", errors.Is(err, client.ErrNotCaughtUp))

	res, err = c.RemoveMember(ctx, 4, client.IfEpoch(res.Members.Epoch))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retired:", res.Members.Retired, "members:", len(res.Members.Members))
	_, err = c.RemoveMember(ctx, 4)
	fmt.Println("remove again:", errors.Is(err, client.ErrUnknownMember))
	// Output:
	// added: 4 learner joined: false in effect at once: true
	// promote before it joined: true
	// retired: [4] members: 3
	// remove again: true
}
