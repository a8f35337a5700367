// Package transport carries opaque messages between the replicas of a latch
// cell: one TCP connection per pair of replicas, a yamux session on top of it,
// and length-prefixed, versioned msgpack frames inside yamux streams.
//
// The package knows nothing of Paxos. A message is (group, payload): the group
// names one of the independent Paxos groups a process hosts, and the payload
// is bytes the caller encoded. The whole API is
//
//	t, err := transport.New(cfg, handler) // listen, dial peers, deliver to handler
//	err = t.Send(to, group, payload)      // queue; never blocks
//	t.SetPeer(id, addr); t.RemovePeer(id) // the cell's members change
//	t.Stats(); t.Addr(); t.Close()
//
// # Delivery
//
// Send is fire-and-forget. A message is queued on a bounded per-(peer, group)
// queue and written by that queue's own goroutine; when the queue is full the
// message is dropped, counted and ErrQueueFull is returned. Messages queued
// while the peer is unreachable wait in that queue (still bounded) and are
// written once a connection is up. Delivery is at most once, and in order per
// (peer, group) on one connection: a message being written when a connection
// fails is lost, never resent. Multi-Paxos tolerates loss, so the
// transport never retries a message.
//
// # Connections
//
// The replica with the lower id dials the one with the higher id, so each
// pair of replicas has exactly one TCP connection. The dialer greets with a
// hello frame (protocol version, its id, the id it meant to reach, and a hash
// of the cell's replica ids); the listener answers with an acknowledgement or
// a reason for refusing, and only then do both sides start yamux. With
// Config.AcceptUnknown (a cell whose members change) a hello from an id that
// is not a peer yet is taken, and the cell hash is not compared; an id
// RemovePeer forgot is refused for good, and told that it was removed
// from the cell (Config.OnRetired; a removed replica with a higher id than
// every member asks, Config.ProbeAfter). A refused or failed dial is
// retried with exponential backoff and jitter, until Close or that answer. When a connection from a peer arrives while an older one is still
// open, the newer one replaces it (the peer restarted).
//
// # Groups do not block each other
//
// Each (peer, group) has its own yamux stream in each direction and its own
// writer goroutine; each inbound stream has its own reader goroutine, which
// calls the Handler. If a Handler blocks for group A, only A's stream stops
// being read: yamux flow control then stops A's writer on the sending side,
// A's queue fills and A's messages are dropped, while every other group's
// stream keeps flowing on the same connection.
//
// # Bad input
//
// Frame lengths are checked against Config.MaxFrame (or a small fixed limit
// for the hello) before any buffer is allocated. A frame that is oversized,
// has the wrong version, or does not decode closes that connection with a
// logged error and a counted Stats error; the transport keeps serving its
// other peers, and the dialer side reconnects with backoff.
//
// See docs/transport.md for the frame format, the handshake, and the
// goroutines the package owns.
package transport
