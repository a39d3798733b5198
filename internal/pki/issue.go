package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// leafValidity is how long a server or client certificate is valid.
// Clients are revoked through the catalog at once, so expiry adds no
// safety, and a certificate that expires under a running VM would cut its
// disk off: ten years, like the CA.
const leafValidity = 10 * 365 * 24 * time.Hour

// minRSABits is the smallest RSA client key IssueClient signs.
const minRSABits = 2048

// leafKeyUsage is what QEMU's GnuTLS checks insist on for a non-CA
// certificate whose key usage extension is critical (Go marks it so):
// digital signature and key encipherment, although an ECDSA key only ever
// signs.
const leafKeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment

// Issued is a client certificate the CA signed.
type Issued struct {
	CertPEM     []byte    // the client's certificate, PEM
	Serial      string    // its serial number, lowercase hex
	Fingerprint string    // "SHA256:" + hex of its DER (the catalog's key to it)
	NotAfter    time.Time // its expiry
}

// IssueClient signs a client certificate for the PEM "PUBLIC KEY" pubPEM,
// CN = name, usable for TLS client authentication only.
func (ca *CA) IssueClient(name string, pubPEM []byte) (Issued, error) {
	pub, err := parsePublicKey(pubPEM)
	if err != nil {
		return Issued{}, fmt.Errorf("issue certificate for client %s: %w", name, err)
	}
	tmpl, err := leafTemplate(name, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return Issued{}, fmt.Errorf("issue certificate for client %s: %w", name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return Issued{}, fmt.Errorf("issue certificate for client %s: %w", name, err)
	}
	return Issued{CertPEM: pemCert(der), Serial: tmpl.SerialNumber.Text(16), Fingerprint: Fingerprint(der), NotAfter: tmpl.NotAfter}, nil
}

// IssueServer makes a new key and a server certificate naming names (DNS
// names or IP addresses), writes them to server-key.pem and
// server-cert.pem, and returns them for a tls.Config.
func (ca *CA) IssueServer(names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: generate key: %w", err)
	}
	cn := "extrasphere NBD server"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl, err := leafTemplate(cn, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	if err := WriteFile(filepath.Join(ca.dir, ServerKeyFile), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	if err := WriteFile(filepath.Join(ca.dir, ServerCertFile), pemCert(der), 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue NBD server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func leafTemplate(cn string, use x509.ExtKeyUsage) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"extrasphere"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(leafValidity),
		KeyUsage:              leafKeyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{use},
		BasicConstraintsValid: true,
	}, nil
}

// parsePublicKey reads a PEM "PUBLIC KEY" (PKIX) of a supported type.
func parsePublicKey(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: not a PEM PUBLIC KEY block", ErrBadPublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA curve %s, want P-256 or P-384", ErrBadPublicKey, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want at least %d", ErrBadPublicKey, k.N.BitLen(), minRSABits)
		}
	default:
		return nil, fmt.Errorf("%w: a %T key", ErrBadPublicKey, pub)
	}
	return pub, nil
}

// NewClientKey makes a client's key pair: the private key as PEM PKCS#8
// (client-key.pem) and the public key as PEM PKIX, for IssueClient.
func NewClientKey() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate client key: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode client public key: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ServerNames are the names the NBD server certificate carries for
// listeners on addrs (host:port): each listen host, or for an unspecified
// one (0.0.0.0, ::) the machine's host name and every interface address;
// and always localhost, 127.0.0.1 and ::1, so local clients verify it too.
func ServerNames(addrs []string) []string {
	var out []string
	add := func(n string) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		ip := net.ParseIP(host)
		if host != "" && (ip == nil || !ip.IsUnspecified()) {
			add(host)
			continue
		}
		if h, err := os.Hostname(); err == nil {
			add(h)
		}
		ifas, _ := net.InterfaceAddrs()
		for _, ifa := range ifas {
			if in, ok := ifa.(*net.IPNet); ok && !in.IP.IsLinkLocalUnicast() {
				add(in.IP.String())
			}
		}
	}
	add("localhost")
	add("127.0.0.1")
	add("::1")
	return out
}
