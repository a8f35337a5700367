package cli

import (
	"context"
	"fmt"

	"github.com/latchd/latch/client"
	"github.com/spf13/cobra"
)

// ACLJSON is acl get's and acl set's -o json output: the node's three ACL
// names ("" for none, which admits everyone) and its ACL generation.
type ACLJSON struct {
	Path   string `json:"path"`
	Read   string `json:"read"`
	Write  string `json:"write"`
	Change string `json:"change"`
	ACLGen uint64 `json:"aclGen"`
}

func aclCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl get|set PATH",
		Short: "read or set a node's ACL names",
		Long: `A node names up to three ACL files, Chubby's way: for reading, for writing
(content, children, delete, locks) and for changing the ACL. The name N
stands for the principals listed in the content of /acl/N, one per line ("*"
for everyone, # for comments); no name admits everyone, and a name whose file
does not exist admits only superusers. Principals are the CNs of TLS client
certificates (see docs/operations.md, TLS and ACLs).

  latch put -p /acl/ops 'alice
  bob'
  latch acl set /app --read ops --write ops --change ops
  latch acl get /app`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("acl needs a subcommand: get or set")
			}
			return usagef("unknown acl subcommand %q: want get or set", args[0])
		},
	}
	cmd.AddCommand(aclGetCommand(g), aclSetCommand(g))
	return cmd
}

func aclGetCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get PATH",
		Short: "print a node's ACL names and ACL generation",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				acl, st, err := c.ACL(ctx, args[0], g.readOpts()...)
				if err != nil {
					return err
				}
				return g.printACL(args[0], acl, st)
			})
		},
	}
}

func aclSetCommand(g *globals) *cobra.Command {
	var read, write, change string
	var gen uint64
	cmd := &cobra.Command{
		Use:   "set PATH [--read NAME] [--write NAME] [--change NAME] [--if-gen N]",
		Short: "replace a node's ACL names",
		Long: `set replaces all three ACL names of PATH: a name left out is cleared (admits
everyone). --if-gen N sets them only if the ACL generation is N (exit code 4
otherwise). Needs the change right on PATH (exit code 7 without it). Prints
the new names.`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []client.Option
			if cmd.Flags().Changed("if-gen") {
				if gen == 0 {
					return usagef("--if-gen must be at least 1 (a node's ACL generation starts at 1)")
				}
				opts = append(opts, client.IfGeneration(gen))
			}
			acl := client.ACL{Read: aclList(read), Write: aclList(write), Admin: aclList(change)}
			if change == "" && (read != "" || write != "") {
				fmt.Fprintf(g.env.Stderr, "latch: warning: %s names no --change ACL: anyone may change its ACL names, and so take every right\n", args[0])
			}
			return g.do(cmd, func(ctx context.Context, c *client.Client) error {
				st, err := c.SetACL(ctx, args[0], acl, opts...)
				if err != nil {
					return err
				}
				return g.printACL(args[0], acl, st)
			})
		},
	}
	cmd.Flags().StringVar(&read, "read", "", "the ACL file naming who may read")
	cmd.Flags().StringVar(&write, "write", "", "the ACL file naming who may write, create children, delete and lock")
	cmd.Flags().StringVar(&change, "change", "", "the ACL file naming who may change the ACL names")
	cmd.Flags().Uint64Var(&gen, "if-gen", 0, "set only if the ACL generation is N")
	return cmd
}

func aclList(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}

func aclName(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

func (g *globals) printACL(path string, acl client.ACL, st client.Stat) error {
	out := ACLJSON{Path: path, Read: aclName(acl.Read), Write: aclName(acl.Write), Change: aclName(acl.Admin), ACLGen: st.ACLGen}
	if g.json() {
		return g.printJSON(out)
	}
	shown := func(n string) string {
		if n == "" {
			return "- (everyone)"
		}
		return n
	}
	t := newTable(g.env.Stdout)
	t.row("path:", path)
	t.row("read:", shown(out.Read))
	t.row("write:", shown(out.Write))
	t.row("change:", shown(out.Change))
	t.row("acl gen:", fmt.Sprint(out.ACLGen))
	return t.flush()
}

// WhoamiJSON is whoami's -o json output.
type WhoamiJSON struct {
	Principal string `json:"principal"`
	Superuser bool   `json:"superuser"`
	Session   uint64 `json:"session"`
}

func whoamiCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "print the principal the cell takes this client for",
		Long: `whoami opens a session and prints the principal the cell took it for: the
CN of the client certificate (--cert), "anonymous" without one, and whether
the cell counts it a superuser (config "superusers"), whom no ACL restricts.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.do(cmd, func(ctx context.Context, c *client.Client) error {
				p, super := c.Principal()
				if g.json() {
					return g.printJSON(WhoamiJSON{Principal: p, Superuser: super, Session: c.SessionID()})
				}
				if p == "" {
					p = "anonymous"
				}
				if super {
					p += " (superuser)"
				}
				_, err := fmt.Fprintln(g.env.Stdout, p)
				return err
			})
		},
	}
}
