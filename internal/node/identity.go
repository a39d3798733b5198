package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/fsx"
)

// File names in the node directory (see the package doc). They are part of
// the on-disk format: must not change.
const (
	keyFile   = "key.pem"
	certFile  = "cert.pem"
	peersFile = "peers.json"
)

// obsoleteSecretFile held the long-lived pairing secret of older builds.
// It is no longer read: pairing codes are single-use and live in memory
// (pairing.go). Load ignores it; it may be deleted.
const obsoleteSecretFile = "pair.secret"

// certValidity is how long a node certificate is valid. Peers pin the
// certificate itself, so expiry is not checked between nodes; it is set for
// tools that look.
const certValidity = 10 * 365 * 24 * time.Hour

// fingerprintPrefix starts every fingerprint.
const fingerprintPrefix = "SHA256:"

// Identity is a node's name, certificate and key. It never changes once
// loaded.
type Identity struct {
	Name        string          // the certificate's CN
	Fingerprint string          // "SHA256:" + lowercase hex of SHA-256(DER cert)
	Cert        tls.Certificate // certificate and key, Leaf set
}

// Fingerprint returns "SHA256:" + the lowercase hex SHA-256 of a DER
// certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// Init creates a new identity named name in dir (created with mode 0700 if
// absent). It fails with ErrExists if dir already holds one. Each file is
// fsynced, then the directory; cert.pem comes last and commits the
// identity.
func Init(dir, name string) (*Identity, error) { return initIdentity(dir, name, nil) }

func initIdentity(dir, name string, fp *failpoint.Set) (*Identity, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	certPath := filepath.Join(dir, certFile)
	if _, err := os.Lstat(certPath); err == nil {
		return nil, fmt.Errorf("init node identity: %s: %w", certPath, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init node identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init node identity: %w", err)
	}
	removeTemps(dir)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("init node identity: generate key: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("init node identity: encode key: %w", err)
	}
	certDER, err := selfSign(key, name)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})

	// The key may replace the leftover of an interrupted init (no
	// cert.pem, so it was never used); the certificate may not replace
	// anything: two inits racing, only one commits.
	if err := writeFile(filepath.Join(dir, keyFile), keyPEM, 0o600, false); err != nil {
		return nil, fmt.Errorf("init node identity: %w", err)
	}
	fp.Hit("node.init.before-cert")
	if err := writeFile(certPath, certPEM, 0o644, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("init node identity: %s: %w", certPath, ErrExists)
		}
		return nil, fmt.Errorf("init node identity: %w", err)
	}
	fp.Hit("node.init.before-dir-sync")
	if err := fsx.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("init node identity: %w", err)
	}
	return Load(dir)
}

// selfSign makes the node certificate: CN and DNS SAN = name, usable as
// both TLS server and client.
func selfSign(key *ecdsa.PrivateKey, name string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("init node identity: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"extrasphere node"}},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-time.Hour), // clock skew between nodes
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("init node identity: sign certificate: %w", err)
	}
	return der, nil
}

// Load reads the identity in dir: ErrNoIdentity if dir has no cert.pem, an
// error naming the damaged file otherwise.
func Load(dir string) (*Identity, error) {
	certPath, keyPath := filepath.Join(dir, certFile), filepath.Join(dir, keyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load node identity from %s: %w", dir, ErrNoIdentity)
	}
	if err != nil {
		return nil, fmt.Errorf("load node identity: %w", err)
	}
	damaged := func(path string, why any) error {
		return fmt.Errorf("load node identity: %s is damaged (%v): restore the node directory %s from a backup, "+
			"or move it away and run `extrasphere node init` (every peer must then pair again)", path, why, dir)
	}
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, damaged(certPath, "not one PEM CERTIFICATE block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, damaged(certPath, err)
	}
	if err := ValidateName(leaf.Subject.CommonName); err != nil {
		return nil, damaged(certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, damaged(keyPath, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, damaged(keyPath, "not a PEM PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, damaged(keyPath, err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, damaged(keyPath, fmt.Sprintf("a %T key, want ECDSA", key))
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&ek.PublicKey) {
		return nil, damaged(keyPath, "the key does not match "+certPath)
	}
	return &Identity{
		Name:        leaf.Subject.CommonName,
		Fingerprint: Fingerprint(leaf.Raw),
		Cert:        tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: ek, Leaf: leaf},
	}, nil
}

// CertPEM returns the certificate in PEM.
func (id *Identity) CertPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Leaf.Raw}))
}

// writeFile writes data to path atomically (fsx.WriteFileAtomic), or
// with noReplace failing with fs.ErrExist if path exists.
func writeFile(path string, data []byte, mode os.FileMode, noReplace bool) error {
	if noReplace {
		return fsx.WriteFileNoReplace(path, data, mode)
	}
	return fsx.WriteFileAtomic(path, data, mode)
}

// removeTemps removes temp files an interrupted write left in dir. A
// failure leaves them: they are never read.
func removeTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	for _, n := range names {
		os.Remove(n)
	}
}
