package pki

import (
	"os"

	"github.com/extrasphere/extrasphere/internal/fsx"
)

// File names in the PKI directory (see the package doc). They are part of
// the on-disk format and what QEMU's tls-creds-x509 reads: must not change.
const (
	CAKeyFile      = "ca-key.pem"
	CACertFile     = "ca-cert.pem"
	ServerKeyFile  = "server-key.pem"
	ServerCertFile = "server-cert.pem"
	// ClientCertFile and ClientKeyFile are the names of a client's files
	// in the directory `extrasphere client add --out DIR` writes, next to
	// CACertFile: the layout of QEMU's tls-creds-x509 endpoint=client and
	// of libnbd's tls-certificates=DIR.
	ClientCertFile = "client-cert.pem"
	ClientKeyFile  = "client-key.pem"
)

// dirMode is the PKI directory's mode: it holds private keys.
const dirMode = 0o700

// WriteFile writes data to path atomically with mode (fsx.WriteFileAtomic):
// the CLI writes a client's files with it too.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return fsx.WriteFileAtomic(path, data, mode)
}
