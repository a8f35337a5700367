package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/latchd/latch/client"
)

// maxStdin bounds what `put PATH -` reads (the cell's own limit, 256 KiB by
// default, is far below).
const maxStdin = 16 << 20

// join returns the path of child name under dir.
func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// parent returns the path of p's parent ("/" for a top-level node).
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// base returns the last name of p ("/" for the root).
func base(p string) string {
	if p == "/" {
		return "/"
	}
	return p[strings.LastIndexByte(p, '/')+1:]
}

// EntryJSON is one node of ls in -o json output.
type EntryJSON struct {
	Name string    `json:"name"`
	Path string    `json:"path"`
	Stat StatJSON  `json:"stat"`
	Lock *LockJSON `json:"lock,omitempty"`
}

// lockMap returns the locks at or under path by path.
func lockMap(ctx context.Context, c *client.Client, path string, opts []client.Option) (map[string]client.LockInfo, error) {
	locks, err := c.Locks(ctx, path, opts...)
	if err != nil {
		return nil, err
	}
	m := make(map[string]client.LockInfo, len(locks))
	for _, l := range locks {
		m[l.Path] = l
	}
	return m, nil
}

func lsCommand(g *globals) *cobra.Command {
	var long, recursive bool
	cmd := &cobra.Command{
		Use:   "ls [-l] [-R] [PATH]",
		Short: "list a node's children (PATH defaults to /)",
		Long: `ls lists the children of PATH (default /), one name per line in byte order.
-l adds each node's kind (node or eph), size, content and lock generations,
number of children, age of the last change, and lock state. -R lists the whole
subtree below PATH as full paths.`,
		Args: rangeArgs(0, 1, "at most one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := optPath(args)
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				var entries []client.Entry // Name: full path
				if recursive {
					err := c.Walk(ctx, path, func(e client.Entry) error {
						if e.Name != path {
							entries = append(entries, e)
						}
						return nil
					}, g.readOpts()...)
					if err != nil {
						return err
					}
				} else {
					es, err := c.ListEntries(ctx, path, g.readOpts()...)
					if err != nil {
						return err
					}
					for _, e := range es {
						entries = append(entries, client.Entry{Name: join(path, e.Name), Stat: e.Stat})
					}
				}
				var locks map[string]client.LockInfo
				if long || g.json() {
					var err error
					if locks, err = lockMap(ctx, c, path, g.readOpts()); err != nil {
						return err
					}
				}
				return g.printEntries(entries, locks, long, recursive)
			})
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "long format: kind, size, generations, children, age, lock")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list the whole subtree as full paths")
	return cmd
}

func (g *globals) printEntries(entries []client.Entry, locks map[string]client.LockInfo, long, fullPaths bool) error {
	if g.json() {
		out := make([]EntryJSON, 0, len(entries))
		for _, e := range entries {
			ej := EntryJSON{Name: base(e.Name), Path: e.Name, Stat: statJSON(e.Name, e.Stat)}
			if l, ok := locks[e.Name]; ok {
				lj := lockJSON(l)
				ej.Lock = &lj
			}
			out = append(out, ej)
		}
		return g.printJSON(out)
	}
	name := func(e client.Entry) string {
		if fullPaths {
			return e.Name
		}
		return base(e.Name)
	}
	if !long {
		for _, e := range entries {
			fmt.Fprintln(g.env.Stdout, name(e))
		}
		return nil
	}
	now := time.Now()
	t := newTable(g.env.Stdout, "KIND", "SIZE", "GEN", "LOCKGEN", "CHILDREN", "AGE", "NAME", "LOCK")
	for _, e := range entries {
		kind := "node"
		if e.Stat.Ephemeral() {
			kind = "eph"
		}
		t.row(kind, size(e.Stat.Size), fmt.Sprint(e.Stat.ContentGen), fmt.Sprint(e.Stat.LockGen),
			fmt.Sprint(e.Stat.Children), age(e.Stat.Modified, now), name(e), lockState(locks[e.Name], now))
	}
	return t.flush()
}

// TreeJSON is one node of tree in -o json output.
type TreeJSON struct {
	Name     string      `json:"name"`
	Path     string      `json:"path"`
	Stat     StatJSON    `json:"stat"`
	Lock     *LockJSON   `json:"lock,omitempty"`
	Children []*TreeJSON `json:"children"`
}

func treeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tree [PATH]",
		Short: "draw the subtree at PATH with sizes, generations and lock state",
		Long: `tree draws the subtree at PATH (default /): each node with its size, content
generation, lock generation (when it was ever locked), ephemeral owner, and
lock state (holders, waiters, lock-delay).`,
		Args: rangeArgs(0, 1, "at most one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := optPath(args)
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				root, err := buildTree(ctx, c, path, g.readOpts())
				if err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(root)
				}
				drawTree(g.env.Stdout, root, time.Now())
				return nil
			})
		},
	}
}

// buildTree reads the subtree at path and its locks.
func buildTree(ctx context.Context, c *client.Client, path string, opts []client.Option) (*TreeJSON, error) {
	byPath := map[string]*TreeJSON{}
	var root *TreeJSON
	err := c.Walk(ctx, path, func(e client.Entry) error {
		n := &TreeJSON{Name: base(e.Name), Path: e.Name, Stat: statJSON(e.Name, e.Stat), Children: []*TreeJSON{}}
		byPath[e.Name] = n
		if e.Name == path {
			root = n
			n.Name = e.Name
		} else if p := byPath[parent(e.Name)]; p != nil {
			p.Children = append(p.Children, n)
		}
		return nil
	}, opts...)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmt.Errorf("%s: %w", path, client.ErrNotFound)
	}
	locks, err := lockMap(ctx, c, path, opts)
	if err != nil {
		return nil, err
	}
	for p, l := range locks {
		if n := byPath[p]; n != nil {
			lj := lockJSON(l)
			n.Lock = &lj
		}
	}
	return root, nil
}

// drawTree draws n and its children with box-drawing lines.
func drawTree(w io.Writer, n *TreeJSON, now time.Time) {
	fmt.Fprintf(w, "%s  %s\n", n.Name, treeNote(n, now))
	var walk func(n *TreeJSON, prefix string)
	walk = func(n *TreeJSON, prefix string) {
		for i, ch := range n.Children {
			branch, next := "├── ", "│   "
			if i == len(n.Children)-1 {
				branch, next = "└── ", "    "
			}
			fmt.Fprintf(w, "%s%s%s  %s\n", prefix, branch, ch.Name, treeNote(ch, now))
			walk(ch, prefix+next)
		}
	}
	walk(n, "")
}

// treeNote is a node's bracketed annotation in tree's drawing.
func treeNote(n *TreeJSON, now time.Time) string {
	parts := []string{size(n.Stat.Size), fmt.Sprintf("gen %d", n.Stat.ContentGen)}
	if n.Stat.LockGen > 0 {
		parts = append(parts, fmt.Sprintf("lock gen %d", n.Stat.LockGen))
	}
	if n.Stat.EphemeralOwner != 0 {
		parts = append(parts, fmt.Sprintf("ephemeral of %d", n.Stat.EphemeralOwner))
	}
	if n.Lock != nil {
		var li client.LockInfo
		li.Holders, li.Waiters = n.Lock.Holders, n.Lock.Waiters
		if n.Lock.Mode == "sh" {
			li.Mode = client.Shared
		} else {
			li.Mode = client.Exclusive
		}
		if n.Lock.DelayUntil != nil {
			li.DelayUntil = *n.Lock.DelayUntil
		}
		if s := lockState(li, now); s != "" {
			parts = append(parts, s)
		}
	}
	return "[" + strings.Join(parts, " · ") + "]"
}

// NodeJSON is get's -o json output.
type NodeJSON struct {
	Path string `json:"path"`
	// Data is the content if it is valid UTF-8; DataBase64 otherwise.
	Data       *string  `json:"data,omitempty"`
	DataBase64 string   `json:"dataBase64,omitempty"`
	Stat       StatJSON `json:"stat"`
}

func getCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get PATH",
		Short: "print a node's content",
		Long: `get writes a node's content to stdout as it is (no newline added). With
-o json it prints {"path", "data" (UTF-8 content) or "dataBase64", "stat"}.`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				n, err := c.Get(ctx, args[0], g.readOpts()...)
				if err != nil {
					return err
				}
				if g.json() {
					text, b64 := dataJSON(n.Data)
					return g.printJSON(NodeJSON{Path: args[0], Data: text, DataBase64: b64, Stat: statJSON(args[0], n.Stat)})
				}
				_, err = g.env.Stdout.Write(n.Data)
				return err
			})
		},
	}
}

func statCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stat PATH",
		Short: "print a node's metadata",
		Args:  exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.look(cmd, func(ctx context.Context, c *client.Client) error {
				s, err := c.Stat(ctx, args[0], g.readOpts()...)
				if err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(statJSON(args[0], s))
				}
				printStat(g.env.Stdout, args[0], s)
				return nil
			})
		},
	}
}

func printStat(w io.Writer, path string, s client.Stat) {
	eph := "no"
	if s.Ephemeral() {
		eph = fmt.Sprintf("yes, session %d", s.EphemeralOwner)
	}
	t := newTable(w)
	t.row("path:", path)
	t.row("instance:", fmt.Sprint(s.Instance))
	t.row("content gen:", fmt.Sprint(s.ContentGen))
	t.row("lock gen:", fmt.Sprint(s.LockGen))
	t.row("acl gen:", fmt.Sprint(s.ACLGen))
	t.row("size:", fmt.Sprintf("%d bytes", s.Size))
	t.row("checksum:", fmt.Sprintf("%016x", s.Checksum))
	t.row("created:", fmt.Sprintf("%s (index %d)", s.Created.UTC().Format(time.RFC3339Nano), s.CreatedIndex))
	t.row("modified:", fmt.Sprintf("%s (index %d)", s.Modified.UTC().Format(time.RFC3339Nano), s.ModifiedIndex))
	t.row("ephemeral:", eph)
	t.row("children:", fmt.Sprint(s.Children))
	t.flush()
}

func putCommand(g *globals) *cobra.Command {
	var gen uint64
	var ephemeral, parents bool
	cmd := &cobra.Command{
		Use:   "put PATH VALUE|-",
		Short: "write a node's content (creating the node if needed)",
		Long: `put writes VALUE as the whole content of PATH, creating the node if it does not
exist. "-" reads the content from stdin. --if-gen N writes only if the node's
content generation is N (compare-and-swap; exit code 4 otherwise). -p creates
missing parents. --ephemeral creates the node as part of this command's
session (exit code 4 if PATH exists; nothing is written then): latch then
keeps running, holding the node, until interrupted (Ctrl-C), and the node
is deleted when it exits.

Prints nothing on success, or the node's new metadata with -o json.`,
		Args: exactArgs(2, "PATH and VALUE (or - for stdin)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data := []byte(args[1])
			if args[1] == "-" {
				b, err := io.ReadAll(io.LimitReader(g.env.Stdin, maxStdin+1))
				if err != nil {
					return fmt.Errorf("reading stdin: %w", err)
				}
				if len(b) > maxStdin {
					return fmt.Errorf("stdin: more than %d bytes: %w", maxStdin, client.ErrTooLarge)
				}
				data = b
			}
			opts, err := ifGen(cmd, gen)
			if err != nil {
				return err
			}
			if ephemeral && opts != nil {
				return usagef("put: --if-gen and --ephemeral do not go together: an ephemeral node is a new node")
			}
			if parents {
				opts = append(opts, client.CreateParents())
			}
			return g.do(cmd, func(ctx context.Context, c *client.Client) error {
				var s client.Stat
				var err error
				if ephemeral {
					// The node must be new: this command's session owns
					// no node yet (a Put with Ephemeral refuses an
					// existing one the same way).
					_, s, err = c.Create(ctx, args[0], data, append(opts, client.Ephemeral())...)
				} else {
					s, err = c.Put(ctx, args[0], data, opts...)
				}
				if err != nil {
					return err
				}
				if g.json() {
					if err := g.printJSON(statJSON(args[0], s)); err != nil {
						return err
					}
				}
				if !ephemeral {
					return nil
				}
				fmt.Fprintf(g.env.Stderr, "latch: holding ephemeral node %s (session %d); interrupt to delete it\n", args[0], c.SessionID())
				select {
				case <-cmd.Context().Done():
					return nil
				case <-c.Done():
					return fmt.Errorf("session ended, ephemeral node %s deleted: %w", args[0], ErrLost)
				}
			})
		},
	}
	cmd.Flags().Uint64Var(&gen, "if-gen", 0, "write only if the content generation is N")
	cmd.Flags().BoolVar(&ephemeral, "ephemeral", false, "create an ephemeral node and hold it until interrupted")
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "create missing parent nodes")
	return cmd
}

func rmCommand(g *globals) *cobra.Command {
	var gen uint64
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm [-r] [--if-gen N] PATH",
		Short: "delete a node",
		Long: `rm deletes PATH. A node with children is deleted only with -r (the whole
subtree); otherwise exit code 4. --if-gen N deletes only if the content
generation is N. Deleting a node releases its lock and fails its waiters.
Prints nothing on success.`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := ifGen(cmd, gen)
			if err != nil {
				return err
			}
			if recursive {
				opts = append(opts, client.Recursive())
			}
			return g.do(cmd, func(ctx context.Context, c *client.Client) error {
				if err := c.Delete(ctx, args[0], opts...); err != nil {
					return err
				}
				if g.json() {
					return g.printJSON(map[string]any{"path": args[0], "deleted": true})
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint64Var(&gen, "if-gen", 0, "delete only if the content generation is N")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "delete the whole subtree")
	return cmd
}
