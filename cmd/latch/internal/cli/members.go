package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/internal/wire"
)

// MembersJSON is members' -o json output: the replicated member set, each
// member asked directly for its position.
type MembersJSON struct {
	Epoch   uint64        `json:"epoch"`
	Alpha   uint64        `json:"alpha"`
	Applied uint64        `json:"applied,omitempty"` // the instance the set is as of
	Leader  string        `json:"leader,omitempty"`  // the leader's id
	Pending *PendingJSON  `json:"pending,omitempty"`
	Retired []uint64      `json:"retired,omitempty"`
	Members []ReplicaJSON `json:"members"`
}

// PendingJSON is a voter change chosen at "at" that takes effect at
// "effective", with "voters" from then on.
type PendingJSON struct {
	At        uint64   `json:"at"`
	Effective uint64   `json:"effective"`
	Voters    []uint64 `json:"voters"`
}

// SetMemberJSON is one member in a member change's output.
type SetMemberJSON struct {
	ID     uint64 `json:"id"`
	Role   string `json:"role"`
	Joined bool   `json:"joined"`
	Peer   string `json:"peer"`
	Client string `json:"client"`
	HTTP   string `json:"http,omitempty"`
}

// MemberChangeJSON is the -o json output of members add, promote, remove
// and update: the change, where it was chosen and takes effect, and the
// set right after it.
type MemberChangeJSON struct {
	Op        string          `json:"op"`
	ID        uint64          `json:"id"`
	Instance  uint64          `json:"instance"`
	Effective uint64          `json:"effective"`
	Epoch     uint64          `json:"epoch"`
	Alpha     uint64          `json:"alpha"`
	Pending   *PendingJSON    `json:"pending,omitempty"`
	Retired   []uint64        `json:"retired,omitempty"`
	Members   []SetMemberJSON `json:"members"`
}

func pendingJSON(p *client.PendingChange) *PendingJSON {
	if p == nil {
		return nil
	}
	return &PendingJSON{At: p.At, Effective: p.Effective, Voters: p.Voters}
}

// memberSet finds the cell's member set for `members`: from the leader
// (asked where the first endpoint that answers says it is), else, with no
// leader, from any endpoint's own (stale) set, so that the command works
// without a quorum. ok is false (and err nil) from a cell that predates
// member changes; members then lists the Status members.
func (g *globals) memberSet(cmd *cobra.Command, eps []string) (set client.MemberSet, st client.Status, ok bool, err error) {
	var lastErr error
	found := false
	for _, ep := range eps {
		ctx, cancel := g.call(cmd)
		st, err = client.StatusOfTLS(ctx, ep, g.tls)
		cancel()
		if err == nil {
			found = true
			break
		}
		lastErr = err
	}
	if !found {
		return set, st, false, fmt.Errorf("no endpoint of %s answered: %w", strings.Join(eps, ","), lastErr)
	}
	ask := func(addr string, stale bool) (client.MemberSet, error) {
		ctx, cancel := g.call(cmd)
		defer cancel()
		return client.MemberSetOf(ctx, addr, g.tls, stale)
	}
	if st.Leader != "" {
		if set, err = ask(st.Leader, false); err == nil {
			return set, st, true, nil
		}
	}
	others := slices.DeleteFunc(slices.Clone(eps), func(ep string) bool { return ep == st.Addr })
	for _, addr := range append([]string{st.Addr}, others...) {
		set, err = ask(addr, true)
		switch {
		case err == nil:
			return set, st, true, nil
		case errors.Is(err, client.ErrBadRequest):
			return set, st, false, nil // a server without member changes
		}
	}
	return set, st, false, nil
}

func membersCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "list the cell's members with their roles, log position and lag (works without a quorum); change them",
		Long: `members lists the cell's replicated member set: each member's id, client and
peer addresses, ROLE in the set (voter; learner: receives the log, does not
vote; pending+: a learner being promoted; pending-: a voter being removed),
STATE (leader, follower, rebuilding), and how far it has applied the log, as
it answers when asked directly. The epoch counts the changes made; α is how
many instances after it is chosen a voter change takes effect. No session is
opened, and without a leader the set of any replica that answers is shown,
so it works while the cell has no quorum. Exit code 6 if no endpoint
answered.

The subcommands change the set, one change at a time (docs/operations.md,
"Changing the members"): add, promote, remove, update.`,
		Args: exactArgs(0, "no arguments, or a subcommand: add, promote, remove, update"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := g.endpointList()
			if err != nil {
				return err
			}
			set, st, ok, err := g.memberSet(cmd, eps)
			if err != nil {
				return err
			}
			doc := MembersJSON{}
			var addrs []string
			if ok {
				doc = MembersJSON{Epoch: set.Epoch, Alpha: set.Alpha, Applied: set.Applied, Pending: pendingJSON(set.Pending), Retired: set.Retired}
				if set.Leader != 0 {
					doc.Leader = strconv.FormatUint(set.Leader, 10)
				}
				for _, m := range set.Members {
					addrs = append(addrs, m.Addrs.Client)
				}
			} else {
				for _, m := range st.Members {
					addrs = append(addrs, m.ClientAddr)
				}
			}
			reps, _ := g.probe(cmd.Context(), addrs)
			for i := range reps {
				r := &reps[i]
				if ok {
					m := set.Members[i]
					r.Peer, r.HTTP, r.Role = m.Addrs.Peer, m.Addrs.HTTP, string(m.Role)
					if r.ID == "" {
						r.ID = strconv.FormatUint(m.ID, 10)
					}
					if !r.Reachable {
						r.Leader = m.ID == set.Leader
					}
					continue
				}
				m := st.Members[i]
				r.Peer = m.PeerAddr
				if r.ID == "" {
					r.ID = m.ID
				}
				if !r.Reachable {
					r.Leader = m.Leader
				}
			}
			doc.Members = reps
			if g.json() {
				return g.printJSON(doc)
			}
			t := newTable(g.env.Stdout, "ID", "CLIENT", "PEER", "ROLE", "STATE", "APPLIED", "LAG", "STATUS")
			for _, r := range reps {
				status, state, applied, lag := "ok", role(r), fmt.Sprint(r.Applied), fmt.Sprint(r.Lag)
				if !r.Reachable {
					status, applied, lag = "unreachable: "+r.Error, "-", "-"
					if !r.Leader { // the member list names the leader; of the others, nothing is known
						state = "-"
					}
				}
				t.row(r.ID, r.Endpoint, r.Peer, dash(r.Role), state, applied, lag, status)
			}
			if err := t.flush(); err != nil {
				return err
			}
			if ok {
				g.printSetSummary(set)
			}
			return nil
		},
	}
	cmd.AddCommand(memberAddCommand(g), memberPromoteCommand(g), memberRemoveCommand(g), memberUpdateCommand(g))
	return cmd
}

// voters is "1 voter" or "N voters".
func voters(n int) string {
	if n == 1 {
		return "1 voter"
	}
	return fmt.Sprintf("%d voters", n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printSetSummary prints the lines under a member table: the epoch and α,
// the pending change, the retired ids.
func (g *globals) printSetSummary(s client.MemberSet) {
	fmt.Fprintf(g.env.Stdout, "epoch %d, α %d", s.Epoch, s.Alpha)
	if p := s.Pending; p != nil {
		fmt.Fprintf(g.env.Stdout, "; pending: voters %s from instance %d (chosen at %d)", idList(p.Voters), p.Effective, p.At)
	}
	if len(s.Retired) > 0 {
		fmt.Fprintf(g.env.Stdout, "; retired: %s", idList(s.Retired))
	}
	fmt.Fprintln(g.env.Stdout)
}

func idList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

// memberFlags are the flags every change takes.
type memberFlags struct {
	ifEpoch uint64
	wait    time.Duration
}

func (f *memberFlags) register(cmd *cobra.Command, waitWhat string) {
	cmd.Flags().Uint64Var(&f.ifEpoch, "if-epoch", 0, "change only if the member set is at this epoch (latch members shows it); exit 4 otherwise")
	cmd.Flags().DurationVar(&f.wait, "wait", 0, waitWhat)
}

func (f *memberFlags) opts(cmd *cobra.Command) ([]client.Option, error) {
	if f.wait < 0 {
		return nil, usagef("--wait %v must not be negative", f.wait)
	}
	if !cmd.Flags().Changed("if-epoch") {
		return nil, nil
	}
	if f.ifEpoch == 0 {
		return nil, usagef("--if-epoch must be at least 1 (every change moves the epoch on from 0)")
	}
	return []client.Option{client.IfEpoch(f.ifEpoch)}, nil
}

// parse reads a change's ID [PEER CLIENT [HTTP]] arguments and its flags.
func (f *memberFlags) parse(cmd *cobra.Command, args []string) (id uint64, addrs client.MemberAddrs, opts []client.Option, err error) {
	if id, err = parseID(args[0]); err != nil {
		return 0, addrs, nil, err
	}
	if len(args) > 1 {
		if addrs, err = parseAddrs(args[1:]); err != nil {
			return 0, addrs, nil, err
		}
	}
	opts, err = f.opts(cmd)
	return id, addrs, opts, err
}

// parseID parses a member id argument.
func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("member id %q: want a positive integer", s)
	}
	return id, nil
}

// parseAddrs parses PEER CLIENT [HTTP], each host:port.
func parseAddrs(args []string) (client.MemberAddrs, error) {
	names := []string{"PEER", "CLIENT", "HTTP"}
	for i, a := range args {
		if _, err := wire.CheckAddr(a); err != nil {
			return client.MemberAddrs{}, usagef("%s address %q: %v", names[i], a, err)
		}
	}
	a := client.MemberAddrs{Peer: args[0], Client: args[1]}
	if len(args) > 2 {
		a.HTTP = args[2]
	}
	return a, nil
}

// change runs one member change in a sessionless connection and prints
// its outcome; with wait, it then waits for the change to be in effect.
func (g *globals) change(cmd *cobra.Command, op string, id uint64, wait time.Duration,
	fn func(ctx context.Context, c *client.Client) (client.MemberChange, error)) error {
	return g.connected(cmd, true, func(c *client.Client) error {
		ctx, cancel := g.call(cmd)
		res, err := fn(ctx, c)
		cancel()
		if err != nil {
			return err
		}
		if p := res.Members.Pending; op == "remove" && p != nil && len(p.Voters) <= 2 {
			fmt.Fprintf(g.env.Stderr, "latch: warning: the cell will have %s: it then tolerates no failure; add and promote a member\n", voters(len(p.Voters)))
		}
		if wait > 0 {
			if res.Members, err = g.waitInEffect(cmd, c, res.Members, wait); err != nil {
				g.printChange(op, id, res)
				return err
			}
		}
		return g.printChange(op, id, res)
	})
}

// waitInEffect polls the member set until no voter change is pending, for
// at most wait.
func (g *globals) waitInEffect(cmd *cobra.Command, c *client.Client, s client.MemberSet, wait time.Duration) (client.MemberSet, error) {
	deadline := time.Now().Add(wait)
	for s.Pending != nil {
		if time.Now().After(deadline) {
			return s, fmt.Errorf("the change chosen at instance %d was not in effect within --wait %v (it takes effect at instance %d): %w",
				s.Pending.At, wait, s.Pending.Effective, client.ErrChangePending)
		}
		select {
		case <-cmd.Context().Done():
			return s, cmd.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
		ctx, cancel := g.call(cmd)
		n, err := c.MemberSet(ctx)
		cancel()
		if err == nil {
			s = n
		}
	}
	return s, nil
}

// printChange prints a change's outcome: one line, then the set.
func (g *globals) printChange(op string, id uint64, res client.MemberChange) error {
	s := res.Members
	if g.json() {
		doc := MemberChangeJSON{Op: op, ID: id, Instance: res.Instance, Effective: res.Effective, Epoch: s.Epoch,
			Alpha: s.Alpha, Pending: pendingJSON(s.Pending), Retired: s.Retired, Members: []SetMemberJSON{}}
		for _, m := range s.Members {
			doc.Members = append(doc.Members, SetMemberJSON{ID: m.ID, Role: string(m.Role), Joined: m.Joined,
				Peer: m.Addrs.Peer, Client: m.Addrs.Client, HTTP: m.Addrs.HTTP})
		}
		return g.printJSON(doc)
	}
	switch {
	case res.Instance == 0:
		fmt.Fprintf(g.env.Stdout, "%s %d: made (found in the member set after a retry; the instance is not known)\n", op, id)
	case res.Effective != res.Instance:
		fmt.Fprintf(g.env.Stdout, "%s %d: chosen at instance %d, in effect at instance %d\n", op, id, res.Instance, res.Effective)
	default:
		fmt.Fprintf(g.env.Stdout, "%s %d: chosen at instance %d, in effect at once\n", op, id, res.Instance)
	}
	t := newTable(g.env.Stdout, "ID", "ROLE", "JOINED", "CLIENT", "PEER", "HTTP")
	for _, m := range s.Members {
		t.row(strconv.FormatUint(m.ID, 10), string(m.Role), fmt.Sprint(m.Joined), m.Addrs.Client, m.Addrs.Peer, dash(m.Addrs.HTTP))
	}
	if err := t.flush(); err != nil {
		return err
	}
	g.printSetSummary(s)
	return nil
}

func memberAddCommand(g *globals) *cobra.Command {
	var f memberFlags
	cmd := &cobra.Command{
		Use:   "add ID PEER CLIENT [HTTP]",
		Short: "add a member as a learner (with --wait: and promote it once it caught up)",
		Long: `add makes ID a learner of the cell, reached by the other replicas at PEER and
by clients at CLIENT (HTTP: its admin address, optional). A learner receives
the log but does not vote. Start its latchd with --join and an empty data
dir, then promote it; with --wait D, add waits (at most D) for the learner to
join and catch up, promotes it and waits for the promotion to take effect.
Exit 4 if ID is a member already, 7 for a retired id or an address another
member uses, 8 if --wait ran out (the learner stays: promote it later).`,
		Args: rangeArgs(3, 4, "ID PEER CLIENT [HTTP]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, addrs, opts, err := f.parse(cmd, args)
			if err != nil {
				return err
			}
			if f.wait == 0 {
				return g.change(cmd, "add", id, 0, func(ctx context.Context, c *client.Client) (client.MemberChange, error) {
					return c.AddMember(ctx, id, addrs, opts...)
				})
			}
			return g.connected(cmd, true, func(c *client.Client) error {
				ctx, cancel := g.call(cmd)
				res, err := c.AddMember(ctx, id, addrs, opts...)
				cancel()
				if err != nil {
					return err
				}
				if !g.json() {
					fmt.Fprintf(g.env.Stderr, "latch: added %d as a learner at instance %d; waiting up to %v for it to join and catch up\n", id, res.Instance, f.wait)
				}
				deadline := time.Now().Add(f.wait)
				res, err = g.promoteWhenReady(cmd, c, id, deadline)
				if err != nil {
					return err
				}
				if res.Members, err = g.waitInEffect(cmd, c, res.Members, time.Until(deadline)); err != nil {
					g.printChange("promote", id, res)
					return err
				}
				return g.printChange("promote", id, res)
			})
		},
	}
	f.register(cmd, "wait up to this long for the learner to catch up, then promote it and wait for the promotion to take effect")
	return cmd
}

// promoteWhenReady promotes id, retrying while it has not caught up or
// another change is pending, until deadline.
func (g *globals) promoteWhenReady(cmd *cobra.Command, c *client.Client, id uint64, deadline time.Time) (client.MemberChange, error) {
	for {
		ctx, cancel := g.call(cmd)
		res, err := c.PromoteMember(ctx, id)
		cancel()
		retry := errors.Is(err, client.ErrNotCaughtUp) || errors.Is(err, client.ErrChangePending) || errors.Is(err, client.ErrUnavailable)
		if !retry {
			return res, err
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("member %d was added as a learner but could not be promoted within --wait (promote it later with \"latch members promote %d\"): %w", id, id, err)
		}
		select {
		case <-cmd.Context().Done():
			return res, cmd.Context().Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func memberPromoteCommand(g *globals) *cobra.Command {
	return memberIDCommand(g, "promote", "make a learner a voter (α instances after the change is chosen)",
		`promote makes the learner ID a voter. The change takes effect α instances
after it is chosen (pending+ meanwhile); --wait D waits (at most D) until it
has. Exit 3 if ID is not a member, 8 if the learner has not joined or caught
up yet, or another voter change is pending (retry), 4 on --if-epoch.`,
		"wait up to this long for the promotion to take effect", (*client.Client).PromoteMember)
}

func memberRemoveCommand(g *globals) *cobra.Command {
	return memberIDCommand(g, "remove", "remove a member (a voter α instances after the change is chosen); its id is never valid again",
		`remove takes ID out of the cell: a learner at once, a voter α instances after
the change is chosen (pending- meanwhile); --wait D waits (at most D) until
it has. A removed leader hands over first. The removed replica's latchd
exits by itself once the remaining voters know; its data dir is of no
further use, and its id is never valid again. Exit 3 if ID is not a member,
8 if another voter change is pending (retry), 7 for the last voter.`,
		"wait up to this long for the removal to take effect", (*client.Client).RemoveMember)
}

// memberIDCommand is a change that takes an ID alone: promote, remove.
func memberIDCommand(g *globals, op, short, long, waitWhat string,
	call func(*client.Client, context.Context, uint64, ...client.Option) (client.MemberChange, error)) *cobra.Command {
	var f memberFlags
	cmd := &cobra.Command{
		Use:   op + " ID",
		Short: short,
		Long:  long,
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _, opts, err := f.parse(cmd, args)
			if err != nil {
				return err
			}
			return g.change(cmd, op, id, f.wait, func(ctx context.Context, c *client.Client) (client.MemberChange, error) {
				return call(c, ctx, id, opts...)
			})
		},
	}
	f.register(cmd, waitWhat)
	return cmd
}

func memberUpdateCommand(g *globals) *cobra.Command {
	var f memberFlags
	cmd := &cobra.Command{
		Use:   "update ID PEER CLIENT [HTTP]",
		Short: "change a member's addresses",
		Long: `update replaces the addresses of member ID, at once (no vote changes). Move
the replica to its new addresses after the change: the others dial the new
PEER from then on. Exit 3 if ID is not a member, 7 for an address another
member uses.`,
		Args: rangeArgs(3, 4, "ID PEER CLIENT [HTTP]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, addrs, opts, err := f.parse(cmd, args)
			if err != nil {
				return err
			}
			return g.change(cmd, "update", id, 0, func(ctx context.Context, c *client.Client) (client.MemberChange, error) {
				return c.UpdateMember(ctx, id, addrs, opts...)
			})
		},
	}
	cmd.Flags().Uint64Var(&f.ifEpoch, "if-epoch", 0, "change only if the member set is at this epoch (latch members shows it); exit 4 otherwise")
	return cmd
}
