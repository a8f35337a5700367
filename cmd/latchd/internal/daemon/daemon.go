// Package daemon is the command line of latchd, the latch server: one
// replica of a cell from a configuration file (`latchd --config FILE`), a
// whole three-replica cell on loopback for development (`latchd dev`), or
// the data dirs of a new cell restored from a backup (`latchd restore`).
//
// cmd/latchd's main only sets up signals and calls Main. Everything the
// process does, it does here: flags → config.Config → lockserver.Config →
// lockserver.New → Run(ctx), with the admin HTTP server beside it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/cmd/latchd/internal/config"
)

// Exit codes of latchd.
const (
	ExitOK     = 0 // stopped cleanly after a signal
	ExitError  = 1 // the server failed (storage, a port in use, ...)
	ExitConfig = 2 // bad flags or configuration: nothing was started
)

// errUsage marks command-line and configuration errors.
var errUsage = errors.New("usage")

// Main runs latchd with args (without the program name) until ctx ends and
// returns the process's exit code. Errors go to stderr as one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := Command(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "latchd: %s\n", oneLine(err))
	// cobra reports an unknown subcommand as a plain error.
	if errors.Is(err, errUsage) || errors.Is(err, config.ErrConfig) || strings.HasPrefix(err.Error(), "unknown command") {
		return ExitConfig
	}
	return ExitError
}

// oneLine joins a (possibly joined) error's lines with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// logFlags are the logging flags shared by every command.
type logFlags struct {
	verbose int
	format  string
}

// level is the least level logged: warnings and errors unless -v (info:
// state transitions) or -vv (debug).
func (f logFlags) level() slog.Level {
	switch {
	case f.verbose == 1:
		return slog.LevelInfo
	case f.verbose >= 2:
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// logger builds the process's logger on w, logging from level on.
func (f logFlags) logger(w io.Writer, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch f.format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, f.format)
}

// Command returns latchd's root command (with the dev and restore
// subcommands).
func Command(stdout, stderr io.Writer) *cobra.Command {
	var lf logFlags
	var rf runFlags
	root := &cobra.Command{
		Use:   "latchd --config FILE",
		Short: "latchd runs one replica of a latch cell",
		Long: `latchd runs one replica of a latch cell, a Chubby-style lock and naming service.

Run it on each machine of the cell with the same configuration file (only
"myid" differs, or pass --id); see docs/operations.md. For development,
"latchd dev" runs a whole three-replica cell in one process on loopback;
"latchd restore" makes empty data dirs a new cell that starts from a backup.

The very first start of a brand-new cell takes --new-cell on every replica,
and later starts must not: without it, a replica that finds its data dir
empty takes it for a lost disk and rebuilds its state from the others before
it votes again.

A replica that joins a running cell (after "latch members add") starts once
with --join and an empty data dir. A replica that a member change removes
from the cell exits by itself, with status 0.

SIGINT or SIGTERM stops the replica cleanly.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(stderr, lf.level())
			if err != nil {
				return err
			}
			cfg, err := rf.config(cmd)
			if err != nil {
				return err
			}
			return runReplica(cmd.Context(), cfg, log)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %w", errUsage, err) })
	pf := root.PersistentFlags()
	pf.CountVarP(&lf.verbose, "verbose", "v", "log more: -v state transitions, -vv debug")
	pf.StringVar(&lf.format, "log-format", "text", "log format: text or json")
	rf.register(root)
	root.AddCommand(devCommand(stdout, stderr, &lf), restoreCommand(stdout))
	return root
}
