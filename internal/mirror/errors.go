package mirror

import "errors"

var (
	// ErrRefused wraps a Dial error that retrying cannot fix (the replica
	// was failed over, the export is gone or too small). The mirror stops
	// in state refused.
	ErrRefused = errors.New("replica refused the mirror")
	// ErrClosed: the mirror was closed. A write it held back (policy
	// block) fails with it: the client gets EIO, and the write's chunks
	// stay in the dirty log, so the replica gets them at the next start.
	ErrClosed = errors.New("mirror closed")
	// ErrStopping: the daemon is stopping (StopWaits) and the write or
	// flush would have to wait for the replica (policy block). It fails
	// (EIO to the client) instead of being acknowledged without the
	// replica; the dirty log keeps what the replica lacks.
	ErrStopping = errors.New("the daemon is stopping and the replica does not have the data (policy block); it is resent at the next start")
)
