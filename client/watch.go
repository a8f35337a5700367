package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/latchd/latch/internal/wire"
)

// Watch registers interest in path (with Recursive, in its whole subtree) and
// returns a channel of events, in the order the cell applied them. The watch
// lasts until ctx ends or the session is over; then the channel is closed.
// Options: Recursive.
//
// Watches live on the leader. After a fail-over the client registers every
// watch again with the new leader and then delivers EventFailover: events in
// between may have been missed, so re-read what you depend on. If the new
// leader refuses the watch (the session's principal may no longer read the
// path: ErrPermission; a limit), the EventFailover carries that error in
// Err and is the channel's last event: the channel closes after it. A reader that
// falls behind by more than Config.WatchBuffer events gets EventMissed in
// place of them. The client never blocks on a slow reader.
//
// A watch may be set on a path that does not exist yet (to see it created).
func (c *Client) Watch(ctx context.Context, path string, opts ...Option) (<-chan Event, error) {
	o, err := parseOptions("Watch", optRecursive, opts)
	if err != nil {
		return nil, err
	}
	if err := checkPath("Watch", path); err != nil {
		return nil, err
	}
	w := &watcher{
		c:         c,
		path:      path,
		recursive: o.recursive,
		limit:     c.cfg.WatchBuffer,
		wake:      make(chan struct{}, 1),
		out:       make(chan Event),
		done:      make(chan struct{}),
	}
	// Register, again if a fail-over started meanwhile (the registration
	// may have gone to the old leader, and the rewatch round skipped this
	// watcher because it had no id yet).
	for {
		epoch := c.watchEpoch()
		id, err := c.registerWatch(ctx, path, o.recursive)
		if err != nil {
			return nil, err
		}
		w.setID(id, epoch)
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return nil, fmt.Errorf("Watch: %w", err)
		}
		if c.epoch == epoch {
			c.watchers[w] = struct{}{}
			c.wg.Add(1)
			c.mu.Unlock()
			break
		}
		c.mu.Unlock()
	}
	go w.pump(ctx)
	return w.out, nil
}

// registerWatch asks the leader for a watch and returns its id.
func (c *Client) registerWatch(ctx context.Context, path string, recursive bool) (uint64, error) {
	reply, err := c.do(ctx, "Watch", &wire.Watch{Header: c.header(), Path: path, Recursive: recursive}, callOpts{})
	if err != nil {
		return 0, err
	}
	r, ok := reply.(*wire.WatchReply)
	if !ok {
		return 0, fmt.Errorf("Watch: %w: answered with %s", ErrProtocol, reply.Type())
	}
	return r.Watch, nil
}

// watchEpoch returns the number of rewatch rounds started.
func (c *Client) watchEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// watcher is one Watch: its registration and the queue between the
// keepalive loop (which pushes) and the reader (which its pump goroutine
// feeds).
type watcher struct {
	c         *Client
	path      string
	recursive bool
	limit     int

	mu    sync.Mutex
	id    uint64 // the cell's id for the current registration
	epoch uint64 // the rewatch epoch the registration was made in
	queue []Event
	final *Event // the last event, delivered after queue; then the channel closes

	wake     chan struct{} // capacity 1: the queue is not empty
	out      chan Event
	done     chan struct{} // closed by stop
	stopOnce sync.Once
}

func (w *watcher) setID(id, epoch uint64) {
	w.mu.Lock()
	w.id, w.epoch = id, epoch
	w.mu.Unlock()
}

// covers reports whether the watch matches an event about path: the same
// rule the cell routes by (an exact watch on path, or a recursive one on path
// or an ancestor).
func (w *watcher) covers(path string) bool {
	if path == w.path {
		return true
	}
	if !w.recursive {
		return false
	}
	return w.path == "/" || strings.HasPrefix(path, w.path+"/")
}

// push queues ev without blocking; on overflow the queue becomes a single
// EventMissed.
func (w *watcher) push(ev Event) {
	w.mu.Lock()
	if len(w.queue) >= w.limit {
		w.queue = append(w.queue[:0], Event{Type: EventMissed})
	} else {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// end makes ev the watch's last event, delivered after what is queued.
// The caller has taken w out of the client's watchers, so nothing is
// queued after it.
func (w *watcher) end(ev Event) {
	w.mu.Lock()
	w.final = &ev
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pop returns the oldest queued event, and whether it is the last one.
func (w *watcher) pop() (ev Event, last, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		if w.final != nil {
			ev, w.final = *w.final, nil
			return ev, true, true
		}
		return Event{}, false, false
	}
	ev = w.queue[0]
	w.queue[0] = Event{}
	w.queue = w.queue[1:]
	if len(w.queue) == 0 {
		w.queue = nil
	}
	return ev, false, true
}

// stop ends the watch from the client's side (the session is over).
func (w *watcher) stop() { w.stopOnce.Do(func() { close(w.done) }) }

// pump moves queued events to the reader until ctx ends, the watch is
// stopped or its last event is delivered, then closes the reader's channel
// and, if the session lives, removes the watch at the cell.
func (w *watcher) pump(ctx context.Context) {
	defer w.c.wg.Done()
	defer close(w.out)
deliver:
	for {
		if ev, last, ok := w.pop(); ok {
			select {
			case w.out <- ev:
				if last {
					break deliver
				}
				continue
			case <-ctx.Done():
			case <-w.done:
				return
			}
		} else {
			select {
			case <-w.wake:
				continue
			case <-ctx.Done():
			case <-w.done:
				return
			}
		}
		break // ctx ended
	}
	c := w.c
	c.mu.Lock()
	_, live := c.watchers[w]
	delete(c.watchers, w)
	current := c.epoch
	c.mu.Unlock()
	w.mu.Lock()
	id, epoch := w.id, w.epoch
	w.mu.Unlock()
	// Only a registration made since the last fail-over is known to the
	// current leader; an older id might name another watch there.
	if live && epoch == current {
		uctx, cancel := context.WithTimeout(context.Background(), c.cfg.AttemptTimeout)
		_, err := c.do(uctx, "Unwatch", &wire.Unwatch{Header: c.header(), Watch: id}, callOpts{})
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.log.Debug("client: Unwatch failed; the watch ends with the session", "path", w.path, "err", err)
		}
	}
}

// route hands a node or lock event to every registered watcher that covers
// its path, once each.
func (c *Client) route(ev Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		if w.covers(ev.Path) {
			w.push(ev)
		}
	}
}

// broadcast hands ev to every watcher.
func (c *Client) broadcast(ev Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		w.push(ev)
	}
}

// rewatchLoop registers every watch again after each fail-over and then
// tells its reader (EventFailover). It exits when the session is over.
func (c *Client) rewatchLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.life.Done():
			return
		case <-c.rewatch:
		}
		c.mu.Lock()
		c.epoch++
		epoch := c.epoch
		ws := make([]*watcher, 0, len(c.watchers))
		for w := range c.watchers {
			ws = append(ws, w)
		}
		c.mu.Unlock()
		for _, w := range ws {
			id, err := c.registerWatch(c.life, w.path, w.recursive)
			if err != nil {
				if c.life.Err() != nil {
					return
				}
				// do retried until the cell answered: this is a refusal
				// (no longer allowed to read the path, a limit). The watch
				// ends: its reader gets the refusal with the failover.
				c.log.Warn("client: the cell refused a watch again after fail-over; it ends", "path", w.path, "err", err)
				c.mu.Lock()
				delete(c.watchers, w)
				c.mu.Unlock()
				w.end(Event{Type: EventFailover, Err: fmt.Errorf("Watch %s: registering again with the new leader: %w", w.path, err)})
				continue
			}
			w.setID(id, epoch)
			w.push(Event{Type: EventFailover})
		}
	}
}
