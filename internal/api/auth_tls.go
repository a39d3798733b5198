package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/extrasphere/extrasphere/internal/fsx"
)

// The TCP door's TLS files, in the API directory ($DATA/api, mode 0700;
// docs/FORMATS.md). The daemon makes its own small CA once and issues the
// server certificate from it, so the certificate can be re-issued (new
// listen address, renewal) without clients changing what they trust:
// clients trust ca-cert.pem (`--api-ca`). File names are part of the
// on-disk format: must not change.
const (
	CACertFile     = "ca-cert.pem" // the API CA's certificate (not secret), mode 0644
	caKeyFile      = "ca-key.pem"  // its key, mode 0600
	serverCertFile = "cert.pem"    // the server certificate, mode 0644
	serverKeyFile  = "key.pem"     // its key, mode 0600
)

// caValidity is the API CA's lifetime: it is what clients pin, so it
// outlives any sensible deployment of the daemon.
const caValidity = 20 * 365 * 24 * time.Hour

// serverCertValidity is the server certificate's lifetime, and
// serverCertRenewal how long before its end the daemon re-issues it at
// start: a daemon restarted at least once in serverCertValidity -
// serverCertRenewal never serves an expired certificate.
const (
	serverCertValidity = 2 * 365 * 24 * time.Hour
	serverCertRenewal  = 180 * 24 * time.Hour
)

// clockSkew back-dates certificates so a client whose clock is a little
// behind still accepts them.
const clockSkew = time.Hour

// ServerTLS returns the TLS configuration of the TCP door (TLS 1.3 only).
// It loads the API CA from dir, making it on first use, and the server
// certificate, re-issuing it when it is missing, damaged, not from the CA,
// does not name every one of names (IP addresses or DNS names), or ends
// within serverCertRenewal.
func ServerTLS(dir string, names []string) (*tls.Config, error) {
	if len(names) == 0 {
		return nil, errors.New("api TLS: no name for the server certificate")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("api TLS: %w", err)
	}
	ca, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, err
	}
	cert, err := loadServerCert(dir, ca, names)
	if err != nil {
		if cert, err = issueServerCert(dir, ca, caKey, names); err != nil {
			return nil, err
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, nil
}

// loadOrMakeCA loads the CA of dir, or makes one if dir has no ca-cert.pem.
// The key is written first; the certificate commits the CA.
func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile)
	if _, err := os.Lstat(certPath); err == nil {
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("api TLS: %w: restore %s from a backup, or move both CA files away "+
				"(a new CA is made; every remote client then needs the new %s)", err, dir, CACertFile)
		}
		return cert, key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("api TLS: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("api TLS: generate CA key: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "extrasphere API CA " + host, Organization: []string{"extrasphere"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("api TLS: make CA: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, nil, fmt.Errorf("api TLS: make CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// loadServerCert loads the server certificate if it is still good for
// names (see ServerTLS).
func loadServerCert(dir string, ca *x509.Certificate, names []string) (tls.Certificate, error) {
	leaf, key, err := loadPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: time.Now().Add(serverCertRenewal)}); err != nil {
		return tls.Certificate{}, err
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// issueServerCert makes a new server key and certificate naming names,
// signed by the CA, and writes them.
func issueServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api TLS: generate server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0], Organization: []string{"extrasphere"}},
		NotBefore:   now.Add(-clockSkew),
		NotAfter:    now.Add(serverCertValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api TLS: issue server certificate: %w", err)
	}
	if err := writePair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile), der, key); err != nil {
		return tls.Certificate{}, fmt.Errorf("api TLS: issue server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
}

// writePair writes a key (0600) then its certificate (0644), each
// atomically; the certificate, last, commits the pair.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := fsx.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return err
	}
	return fsx.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// loadPair reads a PEM certificate and its matching ECDSA PKCS#8 key.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cp, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(cp)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s is damaged: not a PEM CERTIFICATE", certPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is damaged: %w", certPath, err)
	}
	kp, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(kp)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s is damaged: not a PEM PRIVATE KEY", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is damaged: %w", keyPath, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s is damaged: a %T key, want ECDSA", keyPath, k)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&ek.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return cert, ek, nil
}

// ClientTLS returns the TLS configuration of a client of the TCP door: TLS
// 1.3, trusting only the CA certificates in caPEM.
func ClientTLS(caPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: no PEM certificate in it", ErrNoAPICA)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}, nil
}
