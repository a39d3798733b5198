package access

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/pki"
)

// Errors. Each one returned wraps one of them (errors.Is) with a message
// complete on its own that says what to do.
var (
	// ErrNotFound: no NBD client of that name.
	ErrNotFound = errors.New("NBD client not found")
	// ErrExists: an NBD client of that name exists.
	ErrExists = errors.New("NBD client already exists")
	// ErrNoCA: the daemon runs without an NBD client CA (only in tests
	// that build an engine by hand).
	ErrNoCA = errors.New("no NBD client CA")
	// ErrInvalidArgument: a bad client name, no volume, a bad public key.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Access is the NBD clients of a node: their records in the catalog and
// the node's client CA. Its methods are safe for concurrent use; it holds
// no lock of its own (the catalog serialises its writes).
type Access struct {
	cat *catalog.Catalog
	ca  *pki.CA // nil: no TLS client is served, and Add fails with ErrNoCA
	log *slog.Logger
}

// New returns the NBD clients of cat, issued by ca.
func New(cat *catalog.Catalog, ca *pki.CA, log *slog.Logger) *Access {
	return &Access{cat: cat, ca: ca, log: log}
}

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

func info(c catalog.Client) apischema.ClientInfo {
	return apischema.ClientInfo{Name: c.Name, Volumes: c.Volumes, ReadOnly: c.ReadOnly, Serial: c.Serial,
		Fingerprint: c.Fingerprint, NotAfter: c.NotAfter, Added: c.Added}
}

// Add issues a certificate for a new NBD client and records what it may
// open; exists says whether a volume name is one (its error is returned
// as is).
func (a *Access) Add(ctx context.Context, req apischema.ClientRequest, exists func(ctx context.Context, volume string) error) (apischema.ClientCredentials, error) {
	ca := a.ca
	if ca == nil {
		return apischema.ClientCredentials{}, errkind.Errorf(ErrNoCA, "add NBD client %s: this daemon has no NBD client CA", req.Name)
	}
	if !datastore.ValidName(req.Name) {
		return apischema.ClientCredentials{}, errkind.Errorf(ErrInvalidArgument, "add NBD client %q: a client name is 1-64 letters, digits, '.', '_' or '-'", req.Name)
	}
	if len(req.Volumes) == 0 {
		return apischema.ClientCredentials{}, errkind.Errorf(ErrInvalidArgument, "add NBD client %s: name at least one volume (--volumes a,b)", req.Name)
	}
	vols := slices.Clone(req.Volumes)
	slices.Sort(vols)
	vols = slices.Compact(vols)
	for _, v := range vols {
		if err := exists(ctx, v); err != nil {
			return apischema.ClientCredentials{}, fmt.Errorf("add NBD client %s: %w", req.Name, err)
		}
	}
	is, err := ca.IssueClient(req.Name, []byte(req.PublicKey))
	if errors.Is(err, pki.ErrBadPublicKey) {
		return apischema.ClientCredentials{}, errkind.Errorf(ErrInvalidArgument, "add NBD client %s: %w", req.Name, err)
	}
	if err != nil {
		return apischema.ClientCredentials{}, err
	}
	rec := catalog.Client{Name: req.Name, Volumes: vols, ReadOnly: req.ReadOnly, Serial: is.Serial,
		Fingerprint: is.Fingerprint, NotAfter: is.NotAfter.UTC(), Added: time.Now().UTC()}
	if err := a.cat.AddClient(rec); errors.Is(err, catalog.ErrExists) {
		return apischema.ClientCredentials{}, errkind.Errorf(ErrExists, "NBD client %s already exists: remove it first (extrasphere client rm %s) to issue a new certificate", req.Name, req.Name)
	} else if err != nil {
		return apischema.ClientCredentials{}, err
	}
	a.log.Info("nbd client added", "client", req.Name, "volumes", strings.Join(vols, ","), "read_only", req.ReadOnly, "fingerprint", is.Fingerprint)
	return apischema.ClientCredentials{Client: info(rec), CertPEM: string(is.CertPEM), CAPEM: string(ca.CertPEM())}, nil
}

// List lists the NBD clients, sorted by name.
func (a *Access) List(ctx context.Context) ([]apischema.ClientInfo, error) {
	recs, err := a.cat.Clients()
	if err != nil {
		return nil, err
	}
	out := make([]apischema.ClientInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, info(r))
	}
	return out, nil
}

// Remove revokes an NBD client: its certificate opens nothing from
// the next handshake on. Connections already open keep running until they
// end (the VM's disk is not cut under it); restart the VM's QEMU or the
// daemon to end them.
func (a *Access) Remove(ctx context.Context, name string) error {
	if err := a.cat.DeleteClient(name); errors.Is(err, catalog.ErrNotFound) {
		return errkind.Errorf(ErrNotFound, "NBD client %s not found (extrasphere client list)", name)
	} else if err != nil {
		return err
	}
	a.log.Info("nbd client removed", "client", name)
	return nil
}

// Authorize is the NBD server's Door.Authorize: a connection without
// TLS passes (the server admits plain connections only on the unix socket
// and, with serve --nbd-insecure, on loopback), a node's replica stream
// passes (its certificate is checked per export), and a TLS client passes
// only with a certificate of this node's CA that is still in the catalog.
func (a *Access) Authorize(ctx context.Context) error {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok || cs.NegotiatedProtocol == ReplicaALPN {
		return nil
	}
	_, err := a.client(cs)
	return err
}

// client returns the catalog record of the TLS client cs: its
// certificate must be one this node's client CA issued and still in the
// catalog.
func (a *Access) client(cs *tls.ConnectionState) (catalog.Client, error) {
	ca := a.ca
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
	c, err := a.cat.ClientByFingerprint(fp)
	if errors.Is(err, catalog.ErrNotFound) {
		return catalog.Client{}, fmt.Errorf("the client certificate of %q (%s) was revoked: ask the node's admin for a new one (extrasphere client add)", cn, fp)
	}
	return c, err
}

// Grant is what the client of ctx may do with volume name: whether it is
// read-only, or an error wrapping nbd.ErrNotPermitted if it may not open
// it at all.
func (a *Access) Grant(ctx context.Context, name string) (readOnly bool, err error) {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok {
		return false, nil
	}
	if cs.NegotiatedProtocol == ReplicaALPN {
		return false, fmt.Errorf("export %q: a node's replica stream opens only VOLUME@GENERATION exports: %w", name, nbd.ErrNotPermitted)
	}
	c, err := a.client(cs)
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

// Listable filters names to those the client of ctx may open.
func (a *Access) Listable(ctx context.Context, names []string) []string {
	cs, ok := nbd.PeerTLS(ctx)
	if !ok {
		return names
	}
	if cs.NegotiatedProtocol == ReplicaALPN {
		return nil
	}
	c, err := a.client(cs)
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(c.Volumes, n) })
}
