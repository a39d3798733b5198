package engine

import (
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/node"
	"github.com/extrasphere/extrasphere/internal/pki"

	"log/slog"
	"path/filepath"
)

// Config configures an Engine.
type Config struct {
	// DataDir holds catalog.db and datastores/default. Created if absent.
	DataDir string

	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger

	// NBDSocket is the unix socket path the NBD server listens on. The
	// engine uses it in export URIs, attach snippets, and as the target
	// of qemu-img for non-raw import and export. Default DataDir/nbd.sock.
	NBDSocket string

	// NBDAddr is the TCP host:port the NBD server listens on, "" when TCP
	// is disabled.
	NBDAddr string

	// NBDInsecure: the NBD TCP listener also takes plain connections
	// (serve --nbd-insecure, loopback only); otherwise it requires TLS.
	NBDInsecure bool

	// ClientCA issues NBD client certificates (clients.go); nil: `client
	// add` fails with ErrNoClientCA.
	ClientCA *pki.CA

	// QemuImg is the qemu-img program; default "qemu-img" from PATH.
	QemuImg string

	// Failpoints, when set, stop the process at named steps of
	// migrations and consolidations (crash tests). Nil in production.
	Failpoints *failpoint.Set

	// Node is this daemon's identity and trust store (nil: the node API
	// answers that the daemon has none).
	Node *node.Service
}

// DefaultDatastore is the name of the datastore every data dir has.
const DefaultDatastore = "default"

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NBDSocket == "" {
		c.NBDSocket = filepath.Join(c.DataDir, "nbd.sock")
	}
	if c.QemuImg == "" {
		c.QemuImg = "qemu-img"
	}
	return c
}

func (c Config) catalogPath() string { return filepath.Join(c.DataDir, "catalog.db") }

func (c Config) defaultDatastorePath() string {
	return filepath.Join(c.DataDir, "datastores", DefaultDatastore)
}
