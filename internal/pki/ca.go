package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
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
)

// caValidity is how long the CA certificate is valid. Clients are revoked
// through the catalog, not by expiry, and a CA that expires silently cuts
// every client off: ten years, like the node certificate.
const caValidity = 10 * 365 * 24 * time.Hour

// clockSkew backdates every certificate's NotBefore so a client whose clock
// is a little behind the node's does not refuse a fresh certificate.
const clockSkew = time.Hour

// fingerprintPrefix starts every fingerprint (the node package's format).
const fingerprintPrefix = "SHA256:"

// CA is an open certificate authority. Its methods are safe for concurrent
// use: it never changes once opened.
type CA struct {
	dir     string
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// Fingerprint returns "SHA256:" + the lowercase hex SHA-256 of a DER
// certificate: how the catalog names a client's certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// Open loads the CA in dir, creating dir (mode 0700) and a new CA named
// after node if there is none. node is only a label in the certificate's
// subject, so an admin can tell the CAs of two nodes apart.
func Open(dir, node string) (*CA, error) {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("open NBD client CA: %w", err)
	}
	removeTemps(dir)
	certPath := filepath.Join(dir, CACertFile)
	if _, err := os.Lstat(certPath); errors.Is(err, fs.ErrNotExist) {
		if err := create(dir, node); err != nil {
			return nil, fmt.Errorf("create NBD client CA in %s: %w", dir, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("open NBD client CA: %w", err)
	}
	return load(dir)
}

// create writes a new CA: the key first, then the certificate, which
// commits it.
func create(dir, node string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	cn := "extrasphere NBD client CA"
	if node != "" {
		cn += " of " + node
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"extrasphere"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("sign CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, CACertFile), pemCert(der), 0o644)
}

// load reads the CA of dir.
func load(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	damaged := func(path string, why any) error {
		return fmt.Errorf("load NBD client CA: %s: %w (%v): restore %s from a backup, or move it away and restart "+
			"the daemon to create a new CA (every client then needs `extrasphere client add` again)", path, ErrDamaged, why, dir)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load NBD client CA: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, damaged(certPath, err)
	}
	if !cert.IsCA {
		return nil, damaged(certPath, "not a CA certificate")
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, damaged(keyPath, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, damaged(keyPath, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, damaged(keyPath, "the key does not match "+certPath)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{dir: dir, cert: cert, certPEM: certPEM, key: key, pool: pool}, nil
}

// Dir is the PKI directory.
func (ca *CA) Dir() string { return ca.dir }

// CertPEM is the CA certificate, PEM: the ca-cert.pem every client gets.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// Pool is a pool holding only the CA certificate. It must not be modified.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Fingerprint is the CA certificate's fingerprint.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert.Raw) }

// newSerial is a random 127-bit serial number (RFC 5280: positive, at most
// 20 octets; random so two CAs of one name never collide).
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCert reads exactly one PEM CERTIFICATE block.
func parseCert(b []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("not one PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseKey reads a PEM PKCS#8 ECDSA private key.
func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, want ECDSA", k)
	}
	return ek, nil
}

// removeTemps removes temp files an interrupted write left in dir. A
// failure leaves them: they are never read.
func removeTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	for _, n := range names {
		os.Remove(n)
	}
}
