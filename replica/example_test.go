package replica_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/latchd/latch/replica"
)

// counter is a StateMachine that adds each command (a uvarint) to a sum.
type counter struct {
	mu  sync.Mutex
	sum uint64
}

var _ replica.StateMachine = (*counter)(nil)

func (c *counter) Apply(_ uint64, cmd []byte) []byte {
	n, _ := binary.Uvarint(cmd)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += n
	return binary.AppendUvarint(nil, c.sum)
}

func (c *counter) Snapshot(w io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := w.Write(binary.AppendUvarint(nil, c.sum))
	return err
}

func (c *counter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n, _ := binary.Uvarint(b)
	c.mu.Lock()
	c.sum = n
	c.mu.Unlock()
	return nil
}

func (c *counter) Sum() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sum
}

// A one-replica cell on the in-memory network: propose commands, then read
// the state after a read barrier. A real cell lists three or five Members
// and passes nil (TCP) as the network.
func Example() {
	dir, _ := os.MkdirTemp("", "replica-example")
	defer os.RemoveAll(dir)

	cfg := replica.DefaultConfig()
	cfg.ID = 1
	cfg.Members = map[uint64]string{1: "127.0.0.1:7001"}
	cfg.DataDir = dir
	cfg.Groups = []uint32{1}
	cfg.LeaseDuration, cfg.ElectionTimeout = 200*time.Millisecond, 300*time.Millisecond

	sum := &counter{}
	r, err := replica.New(cfg, map[uint32]replica.StateMachine{1: sum}, replica.NewMemNetwork())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []uint64{40, 2} {
		for {
			res, err := r.Propose(ctx, 1, binary.AppendUvarint(nil, n))
			var nl *replica.NotLeaderError
			if errors.As(err, &nl) { // still electing itself
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			total, _ := binary.Uvarint(res)
			fmt.Println("sum after proposing", n, "is", total)
			break
		}
	}
	if err := r.ReadBarrier(ctx, 1); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("linearizable read:", sum.Sum())
	// Output:
	// sum after proposing 40 is 40
	// sum after proposing 2 is 42
	// linearizable read: 42
}
