package client

// PauseKeepAlives stops (pause true) or resumes the client's KeepAlives, as
// if no replica could be reached: the session goes to jeopardy when its
// local lease runs out and expires after the grace period. Tests only.
func PauseKeepAlives(c *Client, pause bool) { c.pauseKA.Store(pause) }

// Backoff exposes the backoff schedule to tests.
var Backoff = backoff

// CheckPath exposes the client-side path check to tests.
var CheckPath = checkPath
