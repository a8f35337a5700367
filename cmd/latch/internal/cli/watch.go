package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
)

// EventJSON is one watch event in -o json output (one object per line).
type EventJSON struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	Path       string    `json:"path,omitempty"`
	Child      string    `json:"child,omitempty"`
	Index      uint64    `json:"index,omitempty"`
	Instance   uint64    `json:"instance,omitempty"`
	ContentGen uint64    `json:"contentGen,omitempty"`
	LockGen    uint64    `json:"lockGen,omitempty"`
	Mode       string    `json:"mode,omitempty"`
	Session    uint64    `json:"session,omitempty"`
	// Rescan: events may have been missed (fail-over, overflow); re-read.
	Rescan bool `json:"rescan,omitempty"`
}

func eventJSON(e client.Event, now time.Time) EventJSON {
	out := EventJSON{
		Time: now.UTC(), Type: e.Type.String(), Path: e.Path, Child: e.Child, Index: e.Index,
		Instance: e.Instance, ContentGen: e.ContentGen, LockGen: e.LockGen, Session: e.Session, Rescan: e.Rescan(),
	}
	if e.Mode != 0 {
		out.Mode = e.Mode.String()
	}
	return out
}

// eventLine renders an event for humans.
func eventLine(e client.Event, now time.Time) string {
	var b strings.Builder
	b.WriteString(now.Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(e.String())
	if e.ContentGen != 0 {
		fmt.Fprintf(&b, " gen=%d", e.ContentGen)
	}
	if e.LockGen != 0 {
		fmt.Fprintf(&b, " lockgen=%d", e.LockGen)
	}
	if e.Mode != 0 && (e.Type == client.EventLockAcquired || e.Type == client.EventLockConflict) {
		fmt.Fprintf(&b, " mode=%s", e.Mode)
	}
	if e.Session != 0 {
		fmt.Fprintf(&b, " session=%d", e.Session)
	}
	if e.Rescan() {
		b.WriteString(" (events may have been missed: re-read)")
	}
	return b.String()
}

func watchCommand(g *globals) *cobra.Command {
	var recursive bool
	var count int
	cmd := &cobra.Command{
		Use:   "watch [-R] PATH",
		Short: "print changes to PATH (or its subtree) until interrupted",
		Long: `watch prints one line per event on PATH (with -R, on its whole subtree) until
interrupted: node created or deleted, content changed, child added or removed,
lock acquired, released or conflicting. PATH need not exist yet. After a
fail-over of the cell, or when events were dropped, a "failover" or "missed"
event says that events may have been missed. -o json prints one JSON object
per line. --count N exits after N events.

A line "latch: watching PATH" on stderr says the watch is registered.`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usagef("--count %d must not be negative", count)
			}
			var opts []client.Option
			if recursive {
				opts = append(opts, client.Recursive())
			}
			return g.withClient(cmd, func(c *client.Client) error {
				ctx, cancel := context.WithCancel(cmd.Context())
				defer cancel()
				ch, err := c.Watch(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.env.Stderr, "latch: watching %s\n", args[0])
				return follow(ctx, ch, count, func() error {
					return fmt.Errorf("watch on %s ended with the session (%v): %w", args[0], c.Err(), ErrLost)
				}, func(ev client.Event) error {
					var err error
					if g.json() {
						err = g.printJSON(eventJSON(ev, time.Now()))
					} else {
						_, err = fmt.Fprintln(g.env.Stdout, eventLine(ev, time.Now()))
					}
					if err == nil && ev.Err != nil {
						// The new leader refused the watch: it has ended.
						err = fmt.Errorf("watch on %s ended: %w", args[0], ev.Err)
					}
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "watch the whole subtree")
	cmd.Flags().IntVar(&count, "count", 0, "exit after N events (0: until interrupted)")
	return cmd
}

// follow hands each item from ch to show, count items at most (0: no
// limit), until ctx ends (nil). If ch is closed first, it returns ended's
// error: the session is over.
func follow[T any](ctx context.Context, ch <-chan T, count int, ended func() error, show func(T) error) error {
	for n := 0; count == 0 || n < count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case item, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return ended()
			}
			if err := show(item); err != nil {
				return err
			}
		}
	}
	return nil
}
