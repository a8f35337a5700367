// Package wire is latch's client protocol: the messages a client and a
// lockserver exchange, their error codes, and the framing that carries them.
//
// # Transport and stream model
//
// A client holds one TCP connection to a replica, with one yamux session
// on it whose only stream, the call stream, carries every call as frames:
// each frame has a call id, and a reply carries the id of its request.
// Many calls are therefore in flight on one connection, answered in any
// order, and a blocking call (Acquire with Wait, KeepAlive's long poll)
// never stalls the others: the server runs each request on a call
// goroutine, and neither side's reader ever waits on a handler, a caller or
// a write. A sender writes its own frame into the call stream when no write
// is in progress, and frames of concurrent calls are combined into one
// write; under the session, a write coalescer (batchConn) turns yamux's
// writes into few system calls. A caller that gives up sends a CancelCall
// frame, which cancels its handler's context. A side that reads nothing on
// the call stream for a while sends a Ping, answered by a Pong; a peer that
// stays silent is cut off (yamux's own keep-alive is off). [Conn] is the
// client side of this model and [Serve] the server side.
//
// Events (watch notifications, lock events, the fail-over event) are not
// pushed on streams of their own: they ride on KeepAlive replies, in order,
// each with a per-session sequence number that the next KeepAlive
// acknowledges. A lost reply is therefore resent rather than lost, and a
// client drops any sequence number it has already seen.
//
// # Framing
//
// A frame is a 4-byte big-endian length N, then N bytes: a 1-byte protocol
// version, a 2-byte big-endian message [Type], a 4-byte big-endian call id,
// and the message body in msgpack. The length is checked against the
// reader's limit before any buffer is allocated; the body is checked for
// structure (declared lengths that fit in the frame, a bounded number of
// array elements, no extension types) before it is decoded. See [Decoder]
// and [Encoder]. A frame that cannot be decoded closes the connection: with
// every call on one stream, nothing after it could be trusted.
//
// # Versions
//
// [Version] is the version this package speaks (2). A connection starts
// with a [Hello] naming the range of versions the client speaks and a
// [Welcome] naming the one the server chose; every later frame carries that
// version in its header. Hello and Welcome are always framed as version 2,
// so any future client and server can at least agree that they disagree.
//
// # Errors
//
// Any request may be answered by an [*Error] instead of its reply type. An
// Error carries a [Code] from a fixed list, a human message, and, for
// [NotLeader], the leader's client address. Framing and decoding problems are
// reported with this package's sentinel errors ([ErrFrameTooLarge],
// [ErrTruncated], [ErrVersion], [ErrUnknownType], [ErrMalformed]), wrapped
// with detail; test them with errors.Is.
//
// The protocol in full, with the message table, is in docs/protocol.md.
package wire
