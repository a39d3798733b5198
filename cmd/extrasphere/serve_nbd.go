package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/extrasphere/extrasphere/internal/access"
	"github.com/extrasphere/extrasphere/internal/engine"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/node"
	"github.com/extrasphere/extrasphere/internal/pki"
)

// errInsecureNotLoopback: serve --nbd-insecure with a TCP address that is
// not loopback.
var errInsecureNotLoopback = errors.New("--nbd-insecure is allowed only on a loopback address")

// nbdTLSHint is what a client refused for lack of TLS is told, and what
// the daemon logs for the admin.
const nbdTLSHint = "connect with TLS and a client certificate of this node: on the node run " +
	"`extrasphere client add NAME --volumes VOLUME --out DIR`, then QEMU: -object tls-creds-x509,id=tls0,dir=DIR,endpoint=client " +
	"and tls-creds=tls0 (`extrasphere attach VOLUME --tcp --qemu` prints it); libnbd tools: nbds://HOST:PORT/VOLUME?tls-certificates=DIR. " +
	"Local VMs can use the unix socket instead"

// pkiDir is the NBD client CA's directory in the data dir.
func pkiDir(data string) string { return filepath.Join(data, "pki") }

// checkNBDInsecure refuses --nbd-insecure unless the NBD TCP address is a
// loopback one: plain NBD carries disk contents in clear text to anyone
// who can reach the port.
func checkNBDInsecure(addr string, insecure bool) error {
	if !insecure || addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return &usageError{cmd: "extrasphere serve", err: fmt.Errorf("--nbd %q: %v", addr, err)}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return &usageError{cmd: "extrasphere serve", err: fmt.Errorf("%w: --nbd %s is reachable from other hosts; "+
			"listen on 127.0.0.1 (or ::1) with --nbd-insecure, or drop --nbd-insecure and give clients certificates (extrasphere client add)",
			errInsecureNotLoopback, addr)}
	}
	return nil
}

// openClientCA opens (or creates) the NBD client CA and issues the NBD
// server certificate for the TCP address.
func openClientCA(data, nbdAddr string, ns *node.Service) (*pki.CA, tls.Certificate, error) {
	label := ""
	if id, err := ns.Identity(); err == nil {
		label = id.Name
	} else if h, err := os.Hostname(); err == nil {
		label = h
	}
	ca, err := pki.Open(pkiDir(data), label)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	var addrs []string
	if nbdAddr != "" {
		addrs = append(addrs, nbdAddr)
	}
	cert, err := ca.IssueServer(pki.ServerNames(addrs))
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return ca, cert, nil
}

// nbdServerTLS is the NBD server's TLS configuration. A node's replica
// stream offers access.ReplicaALPN and gets the node's own TLS (its
// certificate is pinned by the source; the engine checks the source's
// certificate per export); every other client gets the certificate the
// client CA issued and is verified against that CA.
func nbdServerTLS(ca *pki.CA, cert tls.Certificate, ns *node.Service) *tls.Config {
	clients := ca.ServerConfig(cert)
	nodes := ns.ServerTLS()
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if !slices.Contains(h.SupportedProtos, access.ReplicaALPN) {
				return clients, nil
			}
			cfg, err := nodes.GetConfigForClient(h)
			if err != nil {
				return nil, err
			}
			cfg = cfg.Clone()
			cfg.NextProtos = []string{access.ReplicaALPN}
			return cfg, nil
		},
	}
}

// nbdDoor requires TLS on TCP connections unless insecure; the unix socket
// is guarded by its mode and group.
func nbdDoor(eng *engine.Engine, insecure bool) nbd.Door {
	return nbd.Door{
		TLSRequired: func(nc net.Conn) bool { return !insecure && nc.LocalAddr().Network() != "unix" },
		TLSHint:     nbdTLSHint,
		Authorize:   eng.AuthorizeNBD,
	}
}

// chownGroup gives a unix socket to group (a name or a numeric id), so its
// members can connect (mode 0660). "" leaves it.
func chownGroup(path, group string) error {
	if group == "" {
		return nil
	}
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, lerr := user.LookupGroup(group)
		if lerr != nil {
			return fmt.Errorf("--socket-group %s: %w", group, lerr)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("--socket-group %s: gid %q: %w", group, g.Gid, err)
		}
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("give %s to group %s: %w", path, group, err)
	}
	return nil
}
