package pki

import (
	"fmt"
	"os"
	"path/filepath"

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

// WriteFile writes data to path atomically with mode: temp file in the
// same directory, fsync, rename, fsync of the directory.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	f, err := fsx.CreateTemp(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = fsx.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
