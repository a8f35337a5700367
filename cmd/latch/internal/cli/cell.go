package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
	"github.com/latchd/latch/cmd/internal/cellstat"
)

// ReplicaJSON is one replica in members' and status' -o json output.
type ReplicaJSON struct {
	Endpoint  string `json:"endpoint"` // the client address asked
	ID        string `json:"id,omitempty"`
	Peer      string `json:"peer,omitempty"`
	Leader    bool   `json:"leader"`
	Reachable bool   `json:"reachable"`
	Applied   uint64 `json:"applied"`
	Lag       uint64 `json:"lag"`
	// Rebuilding: the replica lost its state and is learning it again; it
	// does not vote until the leader fenced it.
	Rebuilding bool   `json:"rebuilding,omitempty"`
	Error      string `json:"error,omitempty"`
	// Role (members only) is the member's place in the replicated member
	// set: voter, learner, pending+ (being promoted) or pending- (being
	// removed); empty from a cell that predates member changes.
	Role string `json:"role,omitempty"`
	HTTP string `json:"http,omitempty"` // members only: the admin HTTP address
}

// CellJSON is status' -o json output.
type CellJSON struct {
	Leader   string        `json:"leader,omitempty"` // the leader's client address
	Replicas []ReplicaJSON `json:"replicas"`
}

// probe asks each address for its status at once (no session, no retries)
// and fills in Reachable, ID, Leader, Applied, Rebuilding and Lag.
func (g *globals) probe(ctx context.Context, addrs []string) ([]ReplicaJSON, []client.Status) {
	out := make([]ReplicaJSON, len(addrs))
	sts := make([]client.Status, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
			defer cancel()
			out[i].Endpoint = a
			st, err := client.StatusOfTLS(pctx, a, g.tls)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			sts[i] = st
			out[i].Reachable, out[i].ID, out[i].Leader, out[i].Applied = true, st.Server, st.IsLeader, st.Applied
			out[i].Rebuilding = st.Rebuilding
		})
	}
	wg.Wait()
	lags := cellstat.Lags(len(out), func(i int) cellstat.Replica {
		return cellstat.Replica{Applied: out[i].Applied, Reachable: out[i].Reachable, Leader: out[i].Leader}
	})
	for i, lag := range lags {
		out[i].Lag = lag
	}
	return out, sts
}

// role is r's ROLE column in status and members: leader, rebuilding (lost
// its state, not voting yet) or follower.
func role(r ReplicaJSON) string {
	switch {
	case r.Leader:
		return "leader"
	case r.Rebuilding:
		return "rebuilding"
	}
	return "follower"
}

func statusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "ask each endpoint how it sees the cell (works without a quorum)",
		Long: `status asks every endpoint directly (no session, so it works while the cell
has no leader) for its id, whether it leads, and how far it has applied the
log, and prints each one's lag behind the leader. A replica that lost its
state and is learning it again (not voting until the leader fences it) shows
the role rebuilding. It exits 0 when a leader is known, and 6 when no
endpoint answered or none knows a leader.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			eps, err := g.endpointList()
			if err != nil {
				return err
			}
			reps, sts := g.probe(cmd.Context(), eps)
			doc := CellJSON{Replicas: reps}
			answered := 0
			for i, r := range reps {
				if r.Reachable {
					answered++
					if doc.Leader == "" {
						doc.Leader = sts[i].Leader
					}
				}
			}
			if g.json() {
				if err := g.printJSON(doc); err != nil {
					return err
				}
			} else {
				t := newTable(g.env.Stdout, "ENDPOINT", "ID", "ROLE", "APPLIED", "LAG", "STATUS")
				for _, r := range reps {
					if !r.Reachable {
						t.row(r.Endpoint, "-", "-", "-", "-", "unreachable: "+r.Error)
						continue
					}
					t.row(r.Endpoint, r.ID, role(r), fmt.Sprint(r.Applied), fmt.Sprint(r.Lag), "ok")
				}
				t.flush()
				leader := doc.Leader
				if leader == "" {
					leader = "unknown"
				}
				fmt.Fprintf(g.env.Stdout, "leader: %s; %d of %d endpoints answered\n", leader, answered, len(reps))
			}
			switch {
			case answered == 0:
				return fmt.Errorf("no endpoint of %s answered: %w", strings.Join(eps, ","), client.ErrUnavailable)
			case doc.Leader == "":
				return fmt.Errorf("no replica knows a leader: %w", client.ErrUnavailable)
			}
			return nil
		},
	}
}
