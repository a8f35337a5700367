// Command latchd is the latch server: one replica of a cell
// (`latchd --config latchd.json`), or a local three-replica cell for
// development (`latchd dev`). See docs/operations.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchd/latch/cmd/latchd/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills the process at once.
		<-ctx.Done()
		stop()
	}()
	os.Exit(daemon.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
