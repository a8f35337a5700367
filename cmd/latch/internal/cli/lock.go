package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
)

// ExitInterrupted is the exit code when latch is interrupted while waiting
// (as a shell reports SIGINT).
const ExitInterrupted = 130

// splitDash splits `PATH -- CMD ARGS...` into PATH's arguments and the
// command; the command is nil without "--".
func splitDash(cmd *cobra.Command, args []string, nBefore int, what string) (before, argv []string, err error) {
	dash := cmd.ArgsLenAtDash()
	switch {
	case dash == -1 && len(args) == nBefore:
		return args, nil, nil
	case dash == nBefore && len(args) > nBefore:
		return args[:nBefore], args[nBefore:], nil
	case dash == nBefore:
		return nil, nil, usagef("%s: no command after --", cmd.Name())
	}
	return nil, nil, usagef("%s: want %s", cmd.Name(), what)
}

func lockCommand(g *globals) *cobra.Command {
	var shared, try bool
	var timeout, killAfter, lockDelay time.Duration
	cmd := &cobra.Command{
		Use:   "lock [--shared] [--timeout D] PATH [-- CMD [ARGS...]]",
		Short: "take a lock, run a command while holding it, release it",
		Long: `lock takes the lock on PATH (exclusive, or shared with --shared), waiting in
FIFO order behind earlier requests, then runs CMD with the lock's sequencer in
$LATCH_SEQUENCER, and releases the lock when CMD ends. latch exits with CMD's
status (128+N if a signal N ended it).

If the lock is lost while CMD runs (the session expired or the cell no longer
counts it as the holder), CMD gets SIGTERM (then SIGKILL after --kill-after)
and latch exits with code 5. If latch itself gets SIGINT or SIGTERM, it passes
SIGTERM on to CMD, waits for it, and releases the lock.

Without "-- CMD", lock prints the sequencer and holds the lock until
interrupted. --timeout bounds the wait (exit code 5 when it passes); --try
fails at once if the lock cannot be granted now.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			before, argv, err := splitDash(cmd, args, 1, "PATH [-- CMD [ARGS...]]")
			if err != nil {
				return err
			}
			path := before[0]
			if timeout < 0 || lockDelay < 0 || killAfter <= 0 {
				return usagef("lock: --timeout and --lock-delay must not be negative, --kill-after must be positive")
			}
			var opts []client.Option
			if lockDelay > 0 {
				opts = append(opts, client.LockDelay(lockDelay))
			}
			return g.withClient(cmd, func(c *client.Client) error {
				l, err := acquire(cmd.Context(), c, path, shared, try, timeout, opts)
				if err != nil {
					return err
				}
				seq := l.Sequencer()
				if argv == nil {
					return g.hold(cmd, l, c.SessionID())
				}
				code, runErr := g.runUnder(cmd.Context(), argv, seq.String(), l.Lost(), killAfter, "lock on "+path)
				if runErr != nil {
					return runErr
				}
				ctx, cancel := g.call(cmd)
				defer cancel()
				if err := l.Unlock(context.WithoutCancel(ctx)); err != nil {
					if goneAtRelease(err) {
						return fmt.Errorf("lock on %s was lost before %s ended (its status: %d): %w", path, argv[0], code, ErrLost)
					}
					return fmt.Errorf("releasing %s after %s ended (its status: %d): %w", path, argv[0], code, err)
				}
				if code != 0 {
					return &exitError{code: code}
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&shared, "shared", false, "take the lock in shared (reader) mode")
	fl.BoolVar(&try, "try", false, "fail at once (exit code 5) if the lock cannot be granted now")
	fl.DurationVar(&timeout, "timeout", 0, "give up waiting for the lock after D (0: wait until interrupted)")
	fl.DurationVar(&killAfter, "kill-after", 10*time.Second, "after sending CMD SIGTERM, SIGKILL it if it has not ended within D")
	fl.DurationVar(&lockDelay, "lock-delay", 0, "lock-delay if this session ends while holding the lock (0: the cell's default)")
	return cmd
}

// acquire takes the lock on path in the requested way.
func acquire(ctx context.Context, c *client.Client, path string, shared, try bool, timeout time.Duration, opts []client.Option) (*client.Lock, error) {
	lctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var l *client.Lock
	var err error
	switch {
	case shared && try:
		l, err = c.TryRLock(lctx, path, opts...)
	case try:
		l, err = c.TryLock(lctx, path, opts...)
	case shared:
		l, err = c.RLock(lctx, path, opts...)
	default:
		l, err = c.Lock(lctx, path, opts...)
	}
	switch {
	case err == nil:
		return l, nil
	case ctx.Err() != nil:
		return nil, &exitError{code: ExitInterrupted, err: fmt.Errorf("interrupted while waiting for %s", path)}
	case timeout > 0 && errors.Is(err, context.DeadlineExceeded):
		return nil, &exitError{code: ExitLocked, err: fmt.Errorf("%s: not granted within %v: %w", path, timeout, client.ErrLocked)}
	}
	return nil, fmt.Errorf("%s: %w", path, err)
}

// goneAtRelease reports whether a release (Unlock, Resign) failed because
// the grant was already gone: not the holder any more, or the node (and so
// its lock) was deleted. latch reports that as a lost lock (exit 5).
func goneAtRelease(err error) bool {
	return errors.Is(err, client.ErrNotHolder) || errors.Is(err, client.ErrNotFound)
}

// GrantJSON is what lock (without a command) prints with -o json.
type GrantJSON struct {
	Path      string `json:"path"`
	Mode      string `json:"mode"`
	LockGen   uint64 `json:"lockGen"`
	Sequencer string `json:"sequencer"`
	Session   uint64 `json:"session"`
}

// hold prints the grant and keeps the lock until interrupted.
func (g *globals) hold(cmd *cobra.Command, l *client.Lock, session uint64) error {
	seq := l.Sequencer()
	if g.json() {
		if err := g.printJSON(GrantJSON{Path: seq.Path, Mode: seq.Mode.String(), LockGen: seq.LockGen, Sequencer: seq.String(), Session: session}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(g.env.Stdout, seq.String())
	}
	fmt.Fprintf(g.env.Stderr, "latch: holding %s (%s, lock gen %d); interrupt to release it\n", seq.Path, seq.Mode, seq.LockGen)
	select {
	case <-cmd.Context().Done():
		ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), g.commandTimeout)
		defer cancel()
		if err := l.Unlock(ctx); err != nil {
			if goneAtRelease(err) {
				return fmt.Errorf("lock on %s was lost while held (found at release: %v): %w", seq.Path, err, ErrLost)
			}
			return fmt.Errorf("releasing %s: %w", seq.Path, err)
		}
		return nil
	case <-l.Lost():
		return fmt.Errorf("lock on %s lost: %w", seq.Path, ErrLost)
	}
}

// runUnder runs argv with the sequencer in its environment until it ends,
// lost is closed (then it is stopped and an ErrLost error returned), or ctx
// ends (then it is stopped and its status returned). what names the lock or
// election in messages.
func (g *globals) runUnder(ctx context.Context, argv []string, seq string, lost <-chan struct{}, killAfter time.Duration, what string) (int, error) {
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = g.env.Stdin, g.env.Stdout, g.env.Stderr
	c.Env = append(slices.Clone(g.env.Environ), EnvSequencer+"="+seq)
	if err := c.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return 0, &exitError{code: ExitNoCommand, err: fmt.Errorf("%s: %w", argv[0], err)}
		}
		return 0, &exitError{code: ExitCannotRun, err: fmt.Errorf("%s: %w", argv[0], err)}
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	stop := func() error {
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-waited:
			return err
		case <-time.After(killAfter):
			_ = c.Process.Kill()
			return <-waited
		}
	}
	select {
	case err := <-waited:
		return exitStatus(err), nil
	case <-lost:
		stop()
		return 0, &exitError{code: ExitLocked, err: fmt.Errorf("%s lost while %s ran (sent it SIGTERM): %w", what, argv[0], ErrLost)}
	case <-ctx.Done():
		return exitStatus(stop()), nil
	}
}

// exitStatus is a shell's view of how a command ended: its exit code, or
// 128+N if signal N ended it.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return ExitError
}

func locksCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "locks [PATH]",
		Short: "list the locks at or under PATH that are held, waited for, or in lock-delay",
		Args:  rangeArgs(0, 1, "at most one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := optPath(args)
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				locks, err := c.Locks(ctx, path, g.readOpts()...)
				if err != nil {
					return err
				}
				if g.json() {
					out := make([]LockJSON, len(locks))
					for i, l := range locks {
						out[i] = lockJSON(l)
					}
					return g.printJSON(out)
				}
				now := time.Now()
				t := newTable(g.env.Stdout, "PATH", "MODE", "LOCKGEN", "HOLDERS", "WAITERS", "LOCK-DELAY")
				for _, l := range locks {
					mode, holders, delay := "-", "-", "-"
					if len(l.Holders) > 0 {
						mode, holders = l.Mode.String(), holderList(l.Holders)
					}
					if d := delayLeft(l, now); d != "" {
						delay = d
					}
					t.row(l.Path, mode, fmt.Sprint(l.LockGen), holders, fmt.Sprint(l.Waiters), delay)
				}
				return t.flush()
			})
		},
	}
}

// SessionJSON is one session in sessions' -o json output.
type SessionJSON struct {
	ID         uint64    `json:"id"`
	Client     string    `json:"client"`
	TimeoutMs  int64     `json:"timeoutMs"`
	Locks      int       `json:"locks"`
	Ephemerals int       `json:"ephemerals"`
	Watches    int       `json:"watches"`
	Opened     time.Time `json:"opened"`
	Principal  string    `json:"principal"`
	Superuser  bool      `json:"superuser"`
}

// principalLabel shows a session's principal in a table: "-" when
// anonymous, a trailing "*" for a superuser's.
func principalLabel(p string, super bool) string {
	if p == "" {
		p = "-"
	}
	if super {
		p += "*"
	}
	return p
}

func sessionsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sessions",
		Short: "list the cell's open sessions",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				ss, err := c.Sessions(ctx, g.readOpts()...)
				if err != nil {
					return err
				}
				if g.json() {
					out := make([]SessionJSON, len(ss))
					for i, s := range ss {
						out[i] = SessionJSON{ID: s.ID, Client: s.Client, TimeoutMs: s.Timeout.Milliseconds(), Locks: s.Locks,
							Ephemerals: s.Ephemerals, Watches: s.Watches, Opened: s.Opened.UTC(), Principal: s.Principal, Superuser: s.Superuser}
					}
					return g.printJSON(out)
				}
				now := time.Now()
				t := newTable(g.env.Stdout, "ID", "TIMEOUT", "LOCKS", "EPHEMERALS", "WATCHES", "AGE", "PRINCIPAL", "CLIENT")
				for _, s := range ss {
					t.row(fmt.Sprint(s.ID), s.Timeout.String(), fmt.Sprint(s.Locks), fmt.Sprint(s.Ephemerals), fmt.Sprint(s.Watches),
						age(s.Opened, now), principalLabel(s.Principal, s.Superuser), s.Client)
				}
				return t.flush()
			})
		},
	}
}
