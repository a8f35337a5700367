// Command kvstore is a replicated key-value store built only on package
// replica: every put and delete is chosen by Multi-Paxos and applied on
// every replica; reads are linearizable through the leader's lease. See
// README.md for running a three-replica cell.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/latchd/latch/replica"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kvstore:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kvstore", flag.ContinueOnError)
	id := fs.Uint64("id", 0, "this replica's id")
	peers := fs.String("peers", "", "every replica's peer address: 1=host:port,2=host:port,3=host:port")
	clients := fs.String("clients", "", "every replica's HTTP address, same form as -peers")
	dataDir := fs.String("data", "", "data directory (default ./kvstore-data/<id>)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	members, err := parseAddrs(*peers)
	if err != nil {
		return fmt.Errorf("-peers: %w", err)
	}
	httpAddrs, err := parseAddrs(*clients)
	if err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if httpAddrs[*id] == "" {
		return fmt.Errorf("-clients has no address for replica %d", *id)
	}
	if *dataDir == "" {
		*dataDir = fmt.Sprintf("kvstore-data/%d", *id)
	}
	cfg := replica.DefaultConfig()
	cfg.ID = *id
	cfg.Members = members
	cfg.DataDir = *dataDir
	cfg.Groups = []uint32{group}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, httpAddrs, nil)
}

// serve runs one replica and its HTTP API until ctx ends. ready, if not nil,
// receives the HTTP listener's address once it listens.
func serve(ctx context.Context, cfg replica.Config, httpAddrs map[uint64]string, ready chan<- string) error {
	store := NewStore()
	r, err := replica.New(cfg, map[uint32]replica.StateMachine{group: store}, nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", httpAddrs[cfg.ID])
	if err != nil {
		r.Close()
		return err
	}
	srv := &http.Server{
		Handler:           (&server{r: r, store: store, clients: httpAddrs}).routes(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	if ready != nil {
		ready <- ln.Addr().String()
	}
	runErr := r.Run(ctx)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	if err := <-httpErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, err)
	}
	return runErr
}

// parseAddrs parses "1=host:port,2=host:port".
func parseAddrs(s string) (map[uint64]string, error) {
	out := make(map[uint64]string)
	if s == "" {
		return nil, errors.New("empty")
	}
	for part := range strings.SplitSeq(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || addr == "" {
			return nil, fmt.Errorf("%q is not id=host:port", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%q: bad replica id", part)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("replica %d listed twice", id)
		}
		out[id] = addr
	}
	return out, nil
}
