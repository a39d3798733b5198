package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS returns the TLS configuration of this node's listeners (peer
// API, NBD STARTTLS). It reads the current identity at each handshake, so
// a listener started before `node init` serves once there is one; until
// then every handshake fails with an error wrapping ErrNoIdentity. It asks
// for a client certificate and accepts any or none: requests are
// authorised one by one with PeerFromTLS (pairing needs a certificate
// that is not trusted yet).
func (s *Service) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			id, err := s.Identity()
			if err != nil {
				return nil, fmt.Errorf("node TLS handshake: %w", err)
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{id.Cert},
				ClientAuth:   tls.RequestClientCert,
				// TLS 1.3 has the client prove it holds the key of the
				// certificate it sends; whom it belongs to is decided per
				// request by PeerFromTLS.
				VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return nil },
			}, nil
		},
	}
}

// ClientTLS returns the TLS configuration to dial the node whose
// certificate has fingerprint peerFingerprint: it presents this node's
// certificate and accepts only that server certificate. A different one
// fails the handshake with an error wrapping ErrFingerprintMismatch that
// names both fingerprints.
func (s *Service) ClientTLS(peerFingerprint string) (*tls.Config, error) {
	id, err := s.Identity()
	if err != nil {
		return nil, err
	}
	return clientTLS(id, peerFingerprint), nil
}

func clientTLS(id *Identity, want string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		// Nodes have no CA: the certificate is pinned by VerifyPeerCertificate,
		// which runs although InsecureSkipVerify skips the chain check.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the node presented no certificate")
			}
			if got := Fingerprint(raw[0]); got != want {
				return &MismatchError{Want: want, Got: got}
			}
			return nil
		},
	}
}

// MismatchError is a server certificate that is not the pinned one.
type MismatchError struct {
	Want string // the pinned fingerprint
	Got  string // the presented certificate's
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%v: expected %s, the node presented %s (a man in the middle, or the other node's identity was re-created: check the code or pair again)",
		ErrFingerprintMismatch, e.Want, e.Got)
}

func (e *MismatchError) Unwrap() error { return ErrFingerprintMismatch }

// PeerFromTLS returns the paired peer whose fingerprint is the client
// certificate's of cs; false if there is no certificate or it is not
// paired.
func (s *Service) PeerFromTLS(cs *tls.ConnectionState) (Peer, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Peer{}, false
	}
	return s.peers.Get(Fingerprint(cs.PeerCertificates[0].Raw))
}
