package pki

import "errors"

// Sentinel errors of the package.
var (
	// ErrDamaged: a file of the PKI directory cannot be parsed or does not
	// match its partner (a key that is not the certificate's). The message
	// names the file and says what to do.
	ErrDamaged = errors.New("PKI file damaged")

	// ErrBadPublicKey: IssueClient was given something that is not a PEM
	// "PUBLIC KEY" of a supported type (ECDSA P-256/P-384, Ed25519, RSA
	// of at least 2048 bits).
	ErrBadPublicKey = errors.New("unsupported client public key")

	// ErrNoClientCertificate: a TLS client sent no certificate.
	ErrNoClientCertificate = errors.New("no client certificate")

	// ErrNotOurCertificate: a TLS client's certificate was not issued by
	// this CA (or is expired, or not for client authentication).
	ErrNotOurCertificate = errors.New("client certificate not issued by this node's NBD client CA")
)
