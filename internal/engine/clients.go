package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/pki"
)

// NBD client errors.
var (
	// ErrClientNotFound: no NBD client of that name.
	ErrClientNotFound = errors.New("NBD client not found")
	// ErrClientExists: an NBD client of that name exists.
	ErrClientExists = errors.New("NBD client already exists")
	// ErrNoClientCA: the daemon runs without an NBD client CA (only in
	// tests that build an engine by hand).
	ErrNoClientCA = errors.New("no NBD client CA")
)

// ReplicaALPN is the TLS application protocol a node's replica streams
// offer on the NBD port. The NBD server picks its certificate by it: the
// node certificate (pinned by the source node) for replica streams, the
// certificate the client CA issued for every other client (QEMU and libnbd
// offer no ALPN).
const ReplicaALPN = "extrasphere-replica/1"

// noCertHint tells a TLS client without a certificate what to do.
const noCertHint = "this node serves NBD over TCP only to clients with a certificate it issued: " +
	"on the node run `extrasphere client add NAME --volumes VOLUME --out DIR` and give the client DIR " +
	"(QEMU: -object tls-creds-x509,dir=DIR,endpoint=client; libnbd: nbds://HOST/VOLUME?tls-certificates=DIR)"

func clientInfo(c catalog.Client) apischema.ClientInfo {
	return apischema.ClientInfo{Name: c.Name, Volumes: c.Volumes, ReadOnly: c.ReadOnly, Serial: c.Serial,
		Fingerprint: c.Fingerprint, NotAfter: c.NotAfter, Added: c.Added}
}

// AddClient issues a certificate for a new NBD client and records what it
// may open.
func (e *Engine) AddClient(ctx context.Context, req apischema.ClientRequest) (apischema.ClientCredentials, error) {
	ca := e.cfg.ClientCA
	if ca == nil {
		return apischema.ClientCredentials{}, errorf(ErrNoClientCA, "add NBD client %s: this daemon has no NBD client CA", req.Name)
	}
	if !datastore.ValidName(req.Name) {
		return apischema.ClientCredentials{}, errorf(ErrInvalidArgument, "add NBD client %q: a client name is 1-64 letters, digits, '.', '_' or '-'", req.Name)
	}
	if len(req.Volumes) == 0 {
		return apischema.ClientCredentials{}, errorf(ErrInvalidArgument, "add NBD client %s: name at least one volume (--volumes a,b)", req.Name)
	}
	vols := slices.Clone(req.Volumes)
	slices.Sort(vols)
	vols = slices.Compact(vols)
	for _, v := range vols {
		if _, err := e.GetVolume(ctx, v); err != nil {
			return apischema.ClientCredentials{}, fmt.Errorf("add NBD client %s: %w", req.Name, err)
		}
	}
	is, err := ca.IssueClient(req.Name, []byte(req.PublicKey))
	if errors.Is(err, pki.ErrBadPublicKey) {
		return apischema.ClientCredentials{}, errorf(ErrInvalidArgument, "add NBD client %s: %w", req.Name, err)
	}
	if err != nil {
		return apischema.ClientCredentials{}, err
	}
	rec := catalog.Client{Name: req.Name, Volumes: vols, ReadOnly: req.ReadOnly, Serial: is.Serial,
		Fingerprint: is.Fingerprint, NotAfter: is.NotAfter.UTC(), Added: time.Now().UTC()}
	if err := e.cat.AddClient(rec); errors.Is(err, catalog.ErrExists) {
		return apischema.ClientCredentials{}, errorf(ErrClientExists, "NBD client %s already exists: remove it first (extrasphere client rm %s) to issue a new certificate", req.Name, req.Name)
	} else if err != nil {
		return apischema.ClientCredentials{}, err
	}
	e.log.Info("nbd client added", "client", req.Name, "volumes", strings.Join(vols, ","), "read_only", req.ReadOnly, "fingerprint", is.Fingerprint)
	return apischema.ClientCredentials{Client: clientInfo(rec), CertPEM: string(is.CertPEM), CAPEM: string(ca.CertPEM())}, nil
}

// Clients lists the NBD clients, sorted by name.
func (e *Engine) Clients(ctx context.Context) ([]apischema.ClientInfo, error) {
	recs, err := e.cat.Clients()
	if err != nil {
		return nil, err
	}
	out := make([]apischema.ClientInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, clientInfo(r))
	}
	return out, nil
}

// RemoveClient revokes an NBD client: its certificate opens nothing from
// the next handshake on. Connections already open keep running until they
// end (the VM's disk is not cut under it); restart the VM's QEMU or the
// daemon to end them.
func (e *Engine) RemoveClient(ctx context.Context, name string) error {
	if err := e.cat.DeleteClient(name); errors.Is(err, catalog.ErrNotFound) {
		return errorf(ErrClientNotFound, "NBD client %s not found (extrasphere client list)", name)
	} else if err != nil {
		return err
	}
	e.log.Info("nbd client removed", "client", name)
	return nil
}

// AuthorizeNBD is the NBD server's Door.Authorize: a connection without
// TLS passes (the server admits plain connections only on the unix socket
// and, with serve --nbd-insecure, on loopback), a node's replica stream
// passes (its certificate is checked per export), and a TLS client passes
// only with a certificate of this node's CA that is still in the catalog.
func (e *Engine) AuthorizeNBD(ctx context.Context) error {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok || cs.NegotiatedProtocol == ReplicaALPN {
		return nil
	}
	_, err := e.nbdClient(cs)
	return err
}

// nbdClient returns the catalog record of the TLS client cs: its
// certificate must be one this node's client CA issued and still in the
// catalog.
func (e *Engine) nbdClient(cs *tls.ConnectionState) (catalog.Client, error) {
	ca := e.cfg.ClientCA
	if ca == nil {
		return catalog.Client{}, errors.New("this node has no NBD client CA: it serves no TLS clients")
	}
	fp, cn, err := ca.VerifyClient(cs, time.Now())
	switch {
	case errors.Is(err, pki.ErrNoClientCertificate):
		// A client holding only another CA's certificate sends none: the
		// certificate request names this node's CA.
		return catalog.Client{}, errors.New("no client certificate issued by this node: " + noCertHint)
	case err != nil:
		return catalog.Client{}, fmt.Errorf("%v: this node accepts only the certificates it issued: "+
			"ask the node's admin for one (`extrasphere client add NAME --volumes VOLUME --out DIR` on the node), "+
			"and give the client that DIR's ca-cert.pem, client-cert.pem and client-key.pem together", err)
	}
	c, err := e.cat.ClientByFingerprint(fp)
	if errors.Is(err, catalog.ErrNotFound) {
		return catalog.Client{}, fmt.Errorf("the client certificate of %q (%s) was revoked: ask the node's admin for a new one (extrasphere client add)", cn, fp)
	}
	return c, err
}

// grant is what the client of ctx may do with volume name: whether it is
// read-only, or an error wrapping nbd.ErrNotPermitted if it may not open
// it at all.
func (e *Engine) grant(ctx context.Context, name string) (readOnly bool, err error) {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok {
		return false, nil
	}
	if cs.NegotiatedProtocol == ReplicaALPN {
		return false, fmt.Errorf("export %q: a node's replica stream opens only VOLUME@GENERATION exports: %w", name, nbd.ErrNotPermitted)
	}
	c, err := e.nbdClient(cs)
	if err != nil {
		return false, fmt.Errorf("%v: %w", err, nbd.ErrNotPermitted)
	}
	if !slices.Contains(c.Volumes, name) {
		return false, fmt.Errorf("NBD client %s may not open volume %q (it may open: %s); to change that, on the node run "+
			"`extrasphere client rm %s` and `extrasphere client add %s --volumes ...`: %w",
			c.Name, name, strings.Join(c.Volumes, ", "), c.Name, c.Name, nbd.ErrNotPermitted)
	}
	return c.ReadOnly, nil
}

// listable filters names to those the client of ctx may open.
func (e *Engine) listable(ctx context.Context, names []string) []string {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok {
		return names
	}
	if cs.NegotiatedProtocol == ReplicaALPN {
		return nil
	}
	c, err := e.nbdClient(cs)
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(c.Volumes, n) })
}
