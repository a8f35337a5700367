// Command latch is the command line of the latch lock and naming service:
// browse and edit the namespace, run commands under locks and elections,
// watch for changes, look at the cell, and benchmark it. See docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/latchd/latch/cmd/latch/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills the process at once.
		<-ctx.Done()
		stop()
	}()
	os.Exit(cli.Main(ctx, os.Args[1:], cli.OSEnv()))
}
