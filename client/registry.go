package client

import (
	"context"
	"errors"
	"fmt"
)

// Registration is one instance of a service registered by Register: an
// ephemeral node under the service's path whose content is the instance's
// address. It vanishes when the session ends.
type Registration struct {
	c    *Client
	path string
	addr string
}

// Instance is one live instance of a service, as Resolve finds it.
type Instance struct {
	Path    string // the instance's node
	Addr    string // the address it registered
	Session uint64 // the session that owns it
}

// instancePrefix is the name of instance nodes before their sequence number.
const instancePrefix = "instance-"

// Register announces addr as a live instance of the service at path
// service: it creates an ephemeral, sequentially named node
// service/instance-N holding addr (and the service's node and parents if
// missing). The registration lasts until Deregister or the end of c's
// session.
func Register(ctx context.Context, c *Client, service, addr string) (*Registration, error) {
	if err := checkPath("Register", service); err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, fmt.Errorf("Register: %w: empty address", ErrInvalid)
	}
	prefix := service + "/" + instancePrefix
	if service == "/" {
		prefix = "/" + instancePrefix
	}
	p, _, err := c.Create(ctx, prefix, []byte(addr), Ephemeral(), Sequential(), CreateParents())
	if err != nil {
		return nil, fmt.Errorf("Register: %w", err)
	}
	return &Registration{c: c, path: p, addr: addr}, nil
}

// Path returns the instance's node.
func (r *Registration) Path() string { return r.path }

// Addr returns the registered address.
func (r *Registration) Addr() string { return r.addr }

// Lost returns a channel that is closed when the registration ends with the
// session (expired or closed).
func (r *Registration) Lost() <-chan struct{} { return r.c.Done() }

// Deregister removes the instance. Removing one that is already gone (its
// session ended) is not an error.
func (r *Registration) Deregister(ctx context.Context) error {
	err := r.c.Delete(ctx, r.path)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrSessionExpired) {
		return nil
	}
	return err
}

// Resolve returns the live instances of the service at path service, in
// registration order. Options: Stale.
func Resolve(ctx context.Context, c *Client, service string, opts ...Option) ([]Instance, error) {
	if _, err := parseOptions("Resolve", optStale, opts); err != nil {
		return nil, err
	}
	entries, err := c.ListEntries(ctx, service, opts...)
	if err != nil {
		return nil, fmt.Errorf("Resolve: %w", err)
	}
	prefix := service + "/"
	if service == "/" {
		prefix = "/"
	}
	var out []Instance
	for _, e := range entries {
		if !e.Stat.Ephemeral() {
			continue
		}
		n, err := c.Get(ctx, prefix+e.Name, opts...)
		if errors.Is(err, ErrNotFound) {
			continue // deregistered meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("Resolve: %w", err)
		}
		out = append(out, Instance{Path: n.Path, Addr: string(n.Data), Session: n.Stat.EphemeralOwner})
	}
	return out, nil
}
