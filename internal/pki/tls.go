package pki

import (
	"crypto/tls"
)

// ServerConfig is the TLS configuration of the NBD server: TLS 1.3,
// serving cert, and verifying a client certificate against the CA when the
// client sends one. A client without a certificate completes the
// handshake, so the NBD layer can tell it in an NBD error message what it
// lacks; the daemon's authorisation then refuses it (a verified chain is
// what authorises, see VerifiedClient). A certificate of another CA fails
// the handshake.
func (ca *CA) ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.pool,
	}
}

// VerifiedClient returns the fingerprint and common name of the client
// certificate of cs if the handshake verified it against a CA
// (ServerConfig); ok is false for a connection without a verified client
// certificate.
func VerifiedClient(cs *tls.ConnectionState) (fingerprint, name string, ok bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", "", false
	}
	leaf := cs.PeerCertificates[0]
	return Fingerprint(leaf.Raw), leaf.Subject.CommonName, true
}
