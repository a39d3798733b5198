package engine

import (
	"context"
	"errors"

	"github.com/extrasphere/extrasphere/internal/attach"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Attach returns the text that attaches a volume's export to a VM (see
// internal/attach): kind apischema.AttachQEMU or apischema.AttachLibvirt,
// over TCP with tcp, with TLS and the client certificates in
// apischema.DefaultTLSDir (see AttachTLS).
func (e *Engine) Attach(ctx context.Context, name, kind string, tcp bool) (string, error) {
	return e.AttachTLS(ctx, name, kind, tcp, "")
}

// AttachTLS is Attach with the directory of the client's certificates for
// TCP (`extrasphere client add --out DIR`; "" is apischema.DefaultTLSDir).
// Unless the daemon takes plain TCP (serve --nbd-insecure), a TCP snippet
// uses TLS.
func (e *Engine) AttachTLS(ctx context.Context, name, kind string, tcp bool, tlsDir string) (string, error) {
	if _, err := e.GetVolume(ctx, name); err != nil {
		return "", err
	}
	host, port, ok := e.tcpHostPort()
	if tcp && !ok {
		return "", errorf(errkind.ErrNoTCP, "attach %s over TCP: the daemon was started without an NBD TCP listener (serve --nbd HOST:PORT)", name)
	}
	s, err := attach.Snippet(kind, attach.Target{Name: name, Socket: e.cfg.NBDSocket, TCP: tcp, Host: host, Port: port,
		TLS: !e.cfg.NBDInsecure, TLSDir: tlsDir})
	if errors.Is(err, attach.ErrKind) {
		err = errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	return s, err
}
