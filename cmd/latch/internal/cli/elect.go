package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
)

// ElectionPrefix is where elections named without a leading "/" live.
const ElectionPrefix = "/elections/"

// electionPath returns the election node of name.
func electionPath(name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	return ElectionPrefix + name
}

// LeaderJSON is an election's leader in -o json output.
type LeaderJSON struct {
	Election  string `json:"election"`
	Leader    bool   `json:"leader"` // false: no leader now
	Value     string `json:"value,omitempty"`
	Sequencer string `json:"sequencer,omitempty"`
}

func electCommand(g *globals) *cobra.Command {
	var observe bool
	var count int
	var timeout, killAfter time.Duration
	cmd := &cobra.Command{
		Use:   "elect NAME VALUE [-- CMD [ARGS...]] | elect --observe NAME",
		Short: "campaign in an election (and run a command while leader), or observe it",
		Long: `elect campaigns in the election NAME (the lock node /elections/NAME, or NAME
itself if it starts with "/") and, once elected, publishes VALUE (an address,
say) as the leader's value. Without a command it prints the leader's
sequencer and stays leader until interrupted, then resigns. With "-- CMD" it
runs CMD while leader, with the sequencer in $LATCH_SEQUENCER, resigns when
CMD ends, and exits with CMD's status. If leadership is lost meanwhile, CMD
gets SIGTERM and latch exits with code 5.

elect --observe NAME prints the leader now and at each change ("no leader"
when there is none) until interrupted; --count N exits after N lines.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 || timeout < 0 || killAfter <= 0 {
				return usagef("elect: --count and --timeout must not be negative, --kill-after must be positive")
			}
			if observe {
				if len(args) != 1 || cmd.ArgsLenAtDash() != -1 {
					return usagef("elect --observe: want one NAME")
				}
				return g.observe(cmd, electionPath(args[0]), count)
			}
			before, argv, err := splitDash(cmd, args, 2, "NAME VALUE [-- CMD [ARGS...]]")
			if err != nil {
				return err
			}
			path, value := electionPath(before[0]), before[1]
			return g.withClient(cmd, func(c *client.Client) error {
				e := client.NewElection(c, path)
				ctx := cmd.Context()
				cctx := ctx
				if timeout > 0 {
					var cancel context.CancelFunc
					cctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				if err := e.Campaign(cctx, value); err != nil {
					switch {
					case ctx.Err() != nil:
						return &exitError{code: ExitInterrupted, err: fmt.Errorf("interrupted while campaigning in %s", path)}
					case timeout > 0 && errors.Is(err, context.DeadlineExceeded):
						return &exitError{code: ExitLocked, err: fmt.Errorf("%s: not elected within %v: %w", path, timeout, client.ErrLocked)}
					}
					return fmt.Errorf("campaigning in %s: %w", path, err)
				}
				seq := e.Sequencer()
				resign := func() error {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.commandTimeout)
					defer cancel()
					switch err := e.Resign(rctx); {
					case err == nil:
						return nil
					case goneAtRelease(err):
						return fmt.Errorf("leadership of %s was lost (found when resigning: %v): %w", path, err, ErrLost)
					default:
						return fmt.Errorf("resigning %s: %w", path, err)
					}
				}
				fmt.Fprintf(g.env.Stderr, "latch: elected in %s (lock gen %d)\n", path, seq.LockGen)
				if argv == nil {
					if g.json() {
						if err := g.printJSON(LeaderJSON{Election: path, Leader: true, Value: value, Sequencer: seq.String()}); err != nil {
							return err
						}
					} else {
						fmt.Fprintln(g.env.Stdout, seq.String())
					}
					select {
					case <-ctx.Done():
						return resign()
					case <-e.Lost():
						return fmt.Errorf("leadership of %s lost: %w", path, ErrLost)
					}
				}
				code, err := g.runUnder(ctx, argv, seq.String(), e.Lost(), killAfter, "leadership of "+path)
				if err != nil {
					return err
				}
				select {
				case <-e.Lost():
					return fmt.Errorf("leadership of %s was lost before %s ended (its status: %d): %w", path, argv[0], code, ErrLost)
				default:
				}
				if err := resign(); err != nil {
					return fmt.Errorf("after %s ended (its status: %d): %w", argv[0], code, err)
				}
				if code != 0 {
					return &exitError{code: code}
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&observe, "observe", false, "print the leader and each change instead of campaigning")
	fl.IntVar(&count, "count", 0, "with --observe: exit after N lines (0: until interrupted)")
	fl.DurationVar(&timeout, "timeout", 0, "give up campaigning after D (exit code 5; 0: wait until interrupted)")
	fl.DurationVar(&killAfter, "kill-after", 10*time.Second, "after sending CMD SIGTERM, SIGKILL it if it has not ended within D")
	return cmd
}

// observe prints an election's leader and its changes.
func (g *globals) observe(cmd *cobra.Command, path string, count int) error {
	return g.withClient(cmd, func(c *client.Client) error {
		ctx, cancel := context.WithCancel(cmd.Context())
		defer cancel()
		ch, err := client.NewElection(c, path).Observe(ctx)
		if err != nil {
			return err
		}
		return follow(ctx, ch, count, func() error {
			return fmt.Errorf("observing %s ended with the session (%v): %w", path, c.Err(), ErrLost)
		}, func(li client.LeaderInfo) error {
			lj := LeaderJSON{Election: path, Leader: !li.Sequencer.IsZero(), Value: li.Value}
			if lj.Leader {
				lj.Sequencer = li.Sequencer.String()
			}
			var err error
			switch {
			case g.json():
				err = g.printJSON(lj)
			case lj.Leader:
				_, err = fmt.Fprintf(g.env.Stdout, "leader: %s (%s)\n", lj.Value, lj.Sequencer)
			default:
				_, err = fmt.Fprintln(g.env.Stdout, "no leader")
			}
			return err
		})
	})
}
