package nbd

import (
	"context"
	"errors"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ErrUnknownExport is returned by Exports.OpenExport for a name it does not
// serve; the client gets NBD_REP_ERR_UNKNOWN.
var ErrUnknownExport = errors.New("unknown export")

// ErrNotPermitted is returned by Exports.OpenExport when the client may not
// open that export (it was not granted to its certificate); the client
// gets NBD_REP_ERR_POLICY and the error's text.
var ErrNotPermitted = errors.New("export not permitted to this client")

// Export is one named device as the server serves it.
type Export struct {
	Name        string
	Description string
	Device      blockdev.Device
	// ReadOnly forces NBD_FLAG_READ_ONLY even when the device is writable.
	ReadOnly bool
	// Gone, when closed, makes the server drop every connection of the
	// export at once (a forced removal). nil means never.
	Gone <-chan struct{}
}

// Exports resolves export names for the server. The engine implements it.
type Exports interface {
	// OpenExport returns the export called name and a release function the
	// server calls exactly once when the connection that opened it ends.
	// An unknown name fails with an error wrapping ErrUnknownExport, one
	// the client (PeerTLS(ctx)) may not open with ErrNotPermitted.
	OpenExport(ctx context.Context, name string) (*Export, func(), error)

	// ListExports returns the names for NBD_OPT_LIST, in a stable order:
	// only those the client (PeerTLS(ctx)) may open.
	ListExports(ctx context.Context) []string
}
