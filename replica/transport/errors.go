package transport

import "errors"

// Errors returned by this package. Errors are wrapped with details; test for
// them with errors.Is.
var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("transport: invalid config")
	// ErrClosed is returned by Send after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrUnknownPeer reports a replica id that is not in Config.Peers: a Send
	// to it, or a hello from it.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrQueueFull is returned by Send when the (peer, group) queue is full;
	// the message was dropped and counted.
	ErrQueueFull = errors.New("transport: send queue full")
	// ErrTooManyGroups is returned by Send when the peer already has
	// Config.MaxGroups groups; it also closes a connection whose peer opens
	// more streams than that.
	ErrTooManyGroups = errors.New("transport: too many groups")
	// ErrFrameTooLarge reports a payload that does not fit in Config.MaxFrame
	// (from Send), or a frame whose length prefix exceeds the limit (from the
	// wire; the connection is closed).
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrVersion reports a frame whose protocol version this replica does not
	// speak.
	ErrVersion = errors.New("transport: protocol version mismatch")
	// ErrMalformed reports a frame whose body does not decode.
	ErrMalformed = errors.New("transport: malformed frame")
	// ErrHandshake reports a hello this replica refuses (wrong destination,
	// wrong dial direction, different cell), or a handshake that failed.
	ErrHandshake = errors.New("transport: handshake failed")
	// ErrRejected reports that the peer refused this replica's hello; the
	// peer's reason follows in the message.
	ErrRejected = errors.New("transport: handshake rejected by peer")
	// ErrRetired reports a hello from a replica id that was removed from
	// the cell (RemovePeer forgot it), on the listener; and, on the
	// dialer, a peer's answer that this replica was (Config.OnRetired).
	ErrRetired = errors.New("transport: replica removed from the cell")
)
