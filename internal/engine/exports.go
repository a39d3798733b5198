package engine

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/nbd"
)

// OpenExport implements nbd.Exports: it hands the volume's stack to one NBD
// connection and counts it until release is called.
func (e *Engine) OpenExport(ctx context.Context, name string) (*nbd.Export, func(), error) {
	if strings.Contains(name, "@") {
		return e.repl.OpenStream(ctx, name)
	}
	// Who the client is (clients.go) is asked before the engine lock: it
	// reads the catalog.
	clientRO, err := e.access.Grant(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.volumes[name]
	switch {
	case e.closed:
		return nil, nil, fmt.Errorf("export %q: %w: %w", name, errkind.ErrClosed, nbd.ErrUnknownExport)
	case !ok:
		return nil, nil, fmt.Errorf("export %q: %w", name, nbd.ErrUnknownExport)
	case v.err != nil || v.dev == nil:
		return nil, nil, fmt.Errorf("export %q: volume unavailable (%v): %w", name, v.err, nbd.ErrUnknownExport)
	case v.op != "":
		return nil, nil, fmt.Errorf("export %q: volume busy (%s in progress): %w", name, v.op, nbd.ErrUnknownExport)
	}
	v.conns++
	var once sync.Once
	release := func() {
		once.Do(func() {
			e.mu.Lock()
			v.conns--
			e.mu.Unlock()
		})
	}
	r := v.repl.ReplicaLocked()
	ex := &nbd.Export{
		Gone:        v.goneLocked(),
		Name:        name,
		Description: fmt.Sprintf("extrasphere volume %s on datastore %s", name, v.ds.name),
		Device:      v.dev,
		// A replica takes writes only from its source's stream.
		// A read-only NBD client gets it read-only (writes fail EPERM).
		ReadOnly: v.files.ReadOnly || (r != nil && r.FailedOver.IsZero()) || clientRO,
	}
	return ex, release, nil
}

// ListExports implements nbd.Exports: the names of the volumes that can be
// served and that the client of ctx may open, sorted.
func (e *Engine) ListExports(ctx context.Context) []string {
	e.mu.Lock()
	out := make([]string, 0, len(e.volumes))
	for n, v := range e.volumes {
		if v.err == nil && v.dev != nil {
			out = append(out, n)
		}
	}
	e.mu.Unlock()
	sort.Strings(out)
	return e.access.Listable(ctx, out)
}

// UnixURI is the nbd+unix URI of an export.
func (e *Engine) UnixURI(name string) string {
	return "nbd+unix:///" + url.PathEscape(name) + "?socket=" + escapeSocket(e.cfg.NBDSocket)
}

// TCPURI is the URI of an export over TCP, "" when TCP is disabled:
// nbds:// (TLS, the default) or, with serve --nbd-insecure, nbd://. An
// unspecified listen address (0.0.0.0, ::) is shown as 127.0.0.1. A TLS
// client adds its certificates (libnbd: ?tls-certificates=DIR).
func (e *Engine) TCPURI(name string) string {
	host, port, ok := e.tcpHostPort()
	if !ok {
		return ""
	}
	scheme := "nbds://"
	if e.cfg.NBDInsecure {
		scheme = "nbd://"
	}
	return scheme + net.JoinHostPort(host, port) + "/" + url.PathEscape(name)
}

// tcpHostPort is the address a TCP client connects to (attach, TCPURI).
func (e *Engine) tcpHostPort() (host, port string, ok bool) {
	if e.cfg.NBDAddr == "" {
		return "", "", false
	}
	host, port, err := net.SplitHostPort(e.cfg.NBDAddr)
	if err != nil {
		return "", "", false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		// Listening on every address: the host's name, which the NBD
		// server certificate names (pki.ServerNames), so a client on
		// another host can use what attach and the URIs say.
		host = "127.0.0.1"
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return host, port, true
}

// exportURIs lists the URIs a volume is served at.
func (e *Engine) exportURIs(name string) []string {
	out := []string{e.UnixURI(name)}
	if u := e.TCPURI(name); u != "" {
		out = append(out, u)
	}
	return out
}

// escapeSocket percent-encodes a socket path for a URI query, keeping '/'
// readable.
func escapeSocket(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		if c == '/' || c == '-' || c == '_' || c == '.' || c == '~' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
