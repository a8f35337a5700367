package client

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/latchd/latch/internal/wire"
)

// checkPath applies the path rules that do not depend on the cell's limits
// (docs/client.md): "/" or "/"-separated names that are non-empty, not "."
// or "..", valid UTF-8 without NUL. Limits (length, depth) are the cell's to
// check.
func checkPath(op, p string) error {
	bad := func(why string) error { return fmt.Errorf("%s: %w: %q %s", op, ErrBadPath, p, why) }
	switch {
	case p == "":
		return fmt.Errorf("%s: %w: empty path", op, ErrBadPath)
	case p[0] != '/':
		return bad("does not start with /")
	case p == "/":
		return nil
	case p[len(p)-1] == '/':
		return bad("ends with /")
	case strings.IndexByte(p, 0) >= 0:
		return bad("contains NUL")
	case !utf8.ValidString(p):
		return bad("is not valid UTF-8")
	}
	for name := range strings.SplitSeq(p[1:], "/") {
		switch name {
		case "":
			return bad("has an empty name")
		case ".", "..":
			return bad("has the name " + name)
		}
	}
	return nil
}

// readHeader returns the header of a read: stale reads are outside the
// session (any replica may answer them), others belong to it.
func (c *Client) readHeader(stale bool) wire.Header {
	h := c.header()
	if stale {
		h.Session = 0
	}
	return h
}

// doReply is do with the reply type checked.
func doReply[R wire.Message](c *Client, ctx context.Context, op string, req wire.Message) (R, error) {
	var zero R
	m, err := c.do(ctx, op, req, callOpts{})
	if err != nil {
		return zero, err
	}
	r, ok := m.(R)
	if !ok {
		return zero, fmt.Errorf("%s: %w: answered with %s", op, ErrProtocol, m.Type())
	}
	return r, nil
}

// Get reads a node's content and metadata atomically. Options: Stale.
func (c *Client) Get(ctx context.Context, path string, opts ...Option) (Node, error) {
	o, err := c.prepare("Get", path, optStale, opts)
	if err != nil {
		return Node{}, err
	}
	r, err := doReply[*wire.GetReply](c, ctx, "Get", &wire.Get{Header: c.readHeader(o.stale), Path: path, Stale: o.stale})
	if err != nil {
		return Node{}, err
	}
	return Node{Path: path, Data: r.Content, Stat: statFromWire(r.Stat)}, nil
}

// Stat reads a node's metadata. Options: Stale.
func (c *Client) Stat(ctx context.Context, path string, opts ...Option) (Stat, error) {
	o, err := c.prepare("Stat", path, optStale, opts)
	if err != nil {
		return Stat{}, err
	}
	r, err := doReply[*wire.StatReply](c, ctx, "Stat", &wire.StatPath{Header: c.readHeader(o.stale), Path: path, Stale: o.stale})
	if err != nil {
		return Stat{}, err
	}
	return statFromWire(r.Stat), nil
}

// Put writes a node's whole content, creating the node if it does not exist
// (its parent must exist unless CreateParents). It returns the node's new
// metadata. Options: IfGeneration (compare-and-swap on the content
// generation), Ephemeral (if created), CreateParents.
func (c *Client) Put(ctx context.Context, path string, data []byte, opts ...Option) (Stat, error) {
	o, err := c.prepare("Put", path, optIfGen|optEphemeral|optParents, opts)
	if err != nil {
		return Stat{}, err
	}
	req := &wire.Put{Header: c.header(), Path: path, Content: data, IfGen: o.ifGen, Ephemeral: o.ephemeral, Parents: o.parents}
	r, err := doReply[*wire.PutReply](c, ctx, "Put", req)
	if err != nil {
		return Stat{}, err
	}
	return statFromWire(r.Stat), nil
}

// Create creates a node with data and fails with ErrExists if it exists. It
// returns the node's path (which differs from path with Sequential) and
// metadata. Options: Ephemeral, CreateParents, Sequential.
func (c *Client) Create(ctx context.Context, path string, data []byte, opts ...Option) (string, Stat, error) {
	o, err := c.prepare("Create", path, optEphemeral|optParents|optSequential, opts)
	if err != nil {
		return "", Stat{}, err
	}
	req := &wire.Put{Header: c.header(), Path: path, Content: data, Create: true,
		Ephemeral: o.ephemeral, Parents: o.parents, Sequential: o.sequential}
	r, err := doReply[*wire.PutReply](c, ctx, "Create", req)
	if err != nil {
		return "", Stat{}, err
	}
	return r.Path, statFromWire(r.Stat), nil
}

// Delete removes a node. It fails with ErrNotEmpty if the node has children,
// unless Recursive. Deleting a node releases its lock and fails its waiters.
// Options: IfGeneration, Recursive.
func (c *Client) Delete(ctx context.Context, path string, opts ...Option) error {
	o, err := c.prepare("Delete", path, optIfGen|optRecursive, opts)
	if err != nil {
		return err
	}
	_, err = doReply[*wire.Ack](c, ctx, "Delete", &wire.Delete{Header: c.header(), Path: path, IfGen: o.ifGen, Recursive: o.recursive})
	return err
}

// List returns the names of a node's children in byte order. Options:
// Stale, PageSize.
func (c *Client) List(ctx context.Context, path string, opts ...Option) ([]string, error) {
	entries, err := c.ListEntries(ctx, path, opts...)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name
	}
	return names, nil
}

// ListEntries returns a node's children (names and metadata) in byte order
// of their names. Listing needs the read right on the node; a child whose
// own ACL this client may not read comes with a zero Stat (its name is the
// parent's, its metadata its own). Options: Stale, PageSize.
func (c *Client) ListEntries(ctx context.Context, path string, opts ...Option) ([]Entry, error) {
	var out []Entry
	err := c.walkPages(ctx, "List", path, opts, func(after string, o options) wire.Message {
		return &wire.List{Header: c.readHeader(o.stale), Path: path, After: after, Limit: o.pageSize, Stale: o.stale}
	}, func(m wire.Message) ([]wire.Entry, bool, bool) {
		r, ok := m.(*wire.ListReply)
		if !ok {
			return nil, false, false
		}
		return r.Entries, r.More, true
	}, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Walk calls fn for path and every node under it, in byte order of their
// full paths (Entry.Name is the full path), fetching a page at a time. It
// stops at fn's first error and returns it. Options: Stale, PageSize.
func (c *Client) Walk(ctx context.Context, path string, fn func(Entry) error, opts ...Option) error {
	return c.walkPages(ctx, "Walk", path, opts, func(after string, o options) wire.Message {
		return &wire.Walk{Header: c.readHeader(o.stale), Path: path, After: after, Limit: o.pageSize, Stale: o.stale}
	}, func(m wire.Message) ([]wire.Entry, bool, bool) {
		r, ok := m.(*wire.WalkReply)
		if !ok {
			return nil, false, false
		}
		return r.Entries, r.More, true
	}, fn)
}

// walkPages runs a paged listing of entries (List or Walk).
func (c *Client) walkPages(ctx context.Context, op, path string, opts []Option,
	request func(after string, o options) wire.Message,
	decode func(wire.Message) (entries []wire.Entry, more, ok bool),
	fn func(Entry) error) error {
	o, err := c.prepare(op, path, optStale|optPageSize, opts)
	if err != nil {
		return err
	}
	return pages(c, ctx, op, func(after string) wire.Message { return request(after, o) },
		func(m wire.Message) (string, bool, error) {
			entries, more, ok := decode(m)
			if !ok {
				return "", false, fmt.Errorf("%s: %w: answered with %s", op, ErrProtocol, m.Type())
			}
			for _, e := range entriesFromWire(entries) {
				if err := fn(e); err != nil {
					return "", false, err
				}
			}
			if len(entries) == 0 {
				more = false
			}
			var last string
			if len(entries) > 0 {
				last = entries[len(entries)-1].Name
			}
			return last, more, nil
		})
}

// pages requests page after page: request builds the request that resumes
// after cursor K, and page consumes a reply, returning the cursor of its last
// item and whether more follow. A page that does not move the cursor ends
// the listing, so a misbehaving replica cannot make it loop.
func pages[K comparable](c *Client, ctx context.Context, op string, request func(after K) wire.Message, page func(wire.Message) (K, bool, error)) error {
	var after K
	for {
		m, err := c.do(ctx, op, request(after), callOpts{})
		if err != nil {
			return err
		}
		next, more, err := page(m)
		if err != nil {
			return err
		}
		if !more || next == after {
			return nil
		}
		after = next
	}
}

// ACL returns a node's ACL and metadata. Options: Stale.
func (c *Client) ACL(ctx context.Context, path string, opts ...Option) (ACL, Stat, error) {
	o, err := c.prepare("ACL", path, optStale, opts)
	if err != nil {
		return ACL{}, Stat{}, err
	}
	r, err := doReply[*wire.ACLReply](c, ctx, "ACL", &wire.GetACL{Header: c.readHeader(o.stale), Path: path, Stale: o.stale})
	if err != nil {
		return ACL{}, Stat{}, err
	}
	return aclFromWire(r.ACL), statFromWire(r.Stat), nil
}

// SetACL replaces a node's ACL and returns its new metadata. Options:
// IfGeneration (on the ACL generation).
func (c *Client) SetACL(ctx context.Context, path string, acl ACL, opts ...Option) (Stat, error) {
	o, err := c.prepare("SetACL", path, optIfGen, opts)
	if err != nil {
		return Stat{}, err
	}
	r, err := doReply[*wire.StatReply](c, ctx, "SetACL", &wire.SetACL{Header: c.header(), Path: path, ACL: acl.toWire(), IfGen: o.ifGen})
	if err != nil {
		return Stat{}, err
	}
	return statFromWire(r.Stat), nil
}

// prepare parses a call's options and checks its path.
func (c *Client) prepare(op, path string, allowed optKind, opts []Option) (options, error) {
	o, err := parseOptions(op, allowed, opts)
	if err != nil {
		return o, err
	}
	return o, checkPath(op, path)
}
