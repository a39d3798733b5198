package fence

import "errors"

var (
	// ErrStale: Open was called with an epoch older than the session the
	// fence already admitted. The connection belongs to an abandoned
	// session of the writer; if the writer itself regressed (its record
	// of epochs was lost), a later epoch succeeds.
	ErrStale = errors.New("stream epoch is older than the session the replica follows")
	// ErrFenced: a request of a session that a newer session (or Seal)
	// fenced. It was not applied; the connection is being closed.
	ErrFenced = errors.New("stream was fenced by a newer session")
	// ErrTimeout: the requests or connections of older sessions did not
	// end before the fence's deadline. Nothing of the new session was
	// admitted; the older sessions stay fenced. Retry.
	ErrTimeout = errors.New("older streams did not end in time")
	// ErrSealed: the fence was sealed (the volume stopped being a replica).
	ErrSealed = errors.New("replica is sealed: it takes no stream")
)
