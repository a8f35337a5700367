package daemon

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/cmd/latchd/internal/config"
	"github.com/latchd/latch/lockserver"
	"github.com/latchd/latch/namespace"
	"github.com/latchd/latch/replica"
)

// restoreFlags are the flags of `latchd restore`.
type restoreFlags struct {
	from   string
	config string
}

func restoreCommand(stdout io.Writer) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore --from FILE [--config FILE] DATADIR...",
		Short: "make empty data dirs the replicas of a new cell that starts from a backup",
		Long: `restore makes each DATADIR (a replica's dataDir, which must hold no state)
a replica of a new cell that starts from the backup FILE, taken from a
running cell with GET /backup on its admin HTTP address. Restore every
replica of the new cell from the same file, then start them as usual,
without --new-cell (their data dirs hold state).

The new cell holds the backup's nodes; every session of the old cell is
expired (its ephemeral nodes deleted, its locks released) and every number
the namespace hands out moves up, so nothing of the old cell's clients is
mistaken for the new one's. The namespace limits are those of --config
(default: latchd's defaults); use the new cell's configuration file.

restore refuses a data dir that holds Paxos state: restoring into a replica
of a running cell would make it forget its votes. See docs/operations.md,
"Backup and restore".`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: restore: name at least one DATADIR", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if f.from == "" {
				return fmt.Errorf("%w: restore: --from FILE is required", errUsage)
			}
			c := config.Default()
			if f.config != "" {
				file, err := config.Load(f.config)
				if err != nil {
					return err
				}
				if c, err = file.Resolve(); err != nil {
					return err
				}
			}
			return restoreDirs(f.from, dirs, namespaceConfig(c), stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "the backup file (from GET /backup)")
	fl.StringVarP(&f.config, "config", "c", "", "the new cell's configuration file, for its namespace limits (default: latchd's defaults)")
	return cmd
}

// namespaceConfig returns the namespace limits a replica configured with
// c runs with.
func namespaceConfig(c config.Config) namespace.Config {
	sc := lockserver.DefaultConfig()
	config.Tune(&sc, c)
	return sc.Namespace
}

// restoreDirs restores the backup file into each of dirs
// (lockserver.Restore), printing a line for each. It first checks that
// none of them holds state, so that it writes all of them or none.
func restoreDirs(file string, dirs []string, ns namespace.Config, out io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	seen := make(map[string]bool, len(dirs))
	for _, dir := range dirs {
		clean := filepath.Clean(dir)
		if seen[clean] {
			return fmt.Errorf("restore: %s is named twice", dir)
		}
		seen[clean] = true
		has, err := lockserver.HasState(dir)
		if err != nil {
			return fmt.Errorf("restore: %s: %w", dir, err)
		}
		if has {
			return fmt.Errorf("restore: %s: %w: restore only into the empty data dir of a replica of a new cell, never into one of a running cell", dir, replica.ErrHasState)
		}
	}
	rs, err := lockserver.ReadRestore(bytes.NewReader(b), ns)
	if err != nil {
		return fmt.Errorf("restore %s: %w", file, err)
	}
	for _, dir := range dirs {
		if err := rs.WriteTo(dir); err != nil {
			return fmt.Errorf("restore %s into %s: %w", file, dir, err)
		}
		meta := rs.Meta
		fmt.Fprintf(out, "restored %s: instance %d, index %d, %d bytes\n", dir, meta.Instance, meta.Index, meta.Size)
	}
	return nil
}
