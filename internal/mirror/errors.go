package mirror

import "errors"

var (
	// ErrRefused wraps a Dial error that retrying cannot fix (the replica
	// was failed over, the export is gone or too small). The mirror stops
	// in state refused.
	ErrRefused = errors.New("replica refused the mirror")
	// ErrClosed: the mirror was closed.
	ErrClosed = errors.New("mirror closed")
)
