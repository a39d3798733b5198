package engine

import (
	"context"
	"errors"

	"github.com/extrasphere/extrasphere/internal/access"
	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// NBD client errors: internal/access's (the API maps them).
var (
	ErrClientNotFound = access.ErrNotFound
	ErrClientExists   = access.ErrExists
	ErrNoClientCA     = access.ErrNoCA
)

// AddClient issues a certificate for a new NBD client and records what it
// may open (internal/access); every volume named must exist.
func (e *Engine) AddClient(ctx context.Context, req apischema.ClientRequest) (apischema.ClientCredentials, error) {
	cr, err := e.access.Add(ctx, req, func(ctx context.Context, v string) error {
		_, err := e.GetVolume(ctx, v)
		return err
	})
	if errors.Is(err, access.ErrInvalidArgument) {
		err = errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	return cr, err
}

// Clients lists the NBD clients, sorted by name.
func (e *Engine) Clients(ctx context.Context) ([]apischema.ClientInfo, error) {
	return e.access.List(ctx)
}

// RemoveClient revokes an NBD client: its certificate opens nothing from
// the next handshake on (see access.Access.Remove).
func (e *Engine) RemoveClient(ctx context.Context, name string) error {
	return e.access.Remove(ctx, name)
}

// AuthorizeNBD is the NBD server's Door.Authorize (access.Access.Authorize).
func (e *Engine) AuthorizeNBD(ctx context.Context) error { return e.access.Authorize(ctx) }
