package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// ServerConfig is the TLS configuration of the NBD server: TLS 1.3,
// serving cert, and asking for a client certificate (naming the CA, so a
// client with several picks ours). The handshake does not verify it: TLS
// 1.3 has the client prove it holds the certificate's key, and the NBD
// layer then asks the daemon (VerifyClient) before it lists or opens
// anything. So a client without a certificate, or with one of another CA,
// completes the handshake and gets an NBD error message saying what it
// lacks, instead of a bare TLS alert.
func (ca *CA) ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		ClientCAs:    ca.pool, // named in the certificate request
	}
}

// VerifyClient verifies the client certificate of cs against the CA, for
// TLS client authentication at now, and returns its fingerprint and common
// name. It fails with an error wrapping ErrNoClientCertificate or
// ErrNotOurCertificate.
func (ca *CA) VerifyClient(cs *tls.ConnectionState, now time.Time) (fingerprint, name string, err error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", "", ErrNoClientCertificate
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return "", "", fmt.Errorf("client certificate %q: %w: %v", leaf.Subject.CommonName, ErrNotOurCertificate, err)
	}
	return Fingerprint(leaf.Raw), leaf.Subject.CommonName, nil
}
