// Package pki is the node's certificate authority for NBD clients.
//
// NBD over TCP is TLS 1.3 with x509 certificates on both sides (Go's
// crypto/tls has no TLS-PSK). This package keeps one small CA per node: it
// issues the NBD server's certificate, for the names and addresses the
// daemon listens on, and one client certificate per authorised client
// (a QEMU host, a backup tool), so a client verifies the server with just
// the CA certificate and the server verifies the client the same way.
//
// The TLS handshake asks for a client certificate without checking it; the
// daemon checks it (VerifyClient) before a client lists or opens anything,
// so a client that lacks one gets an NBD error message saying so.
//
// The CA only says "this node issued this certificate". Who may do what is
// not in the certificate: the catalog keeps one record per client (its
// volumes, read-only or not, and the SHA-256 fingerprint of its
// certificate), and the daemon looks the record up at every handshake. So
// revoking a client is deleting its record: no CRL, effective for the next
// connection. Certificates are long-lived for that reason.
//
// Keys are ECDSA P-256 (QEMU's and libnbd's GnuTLS accept them). Client
// keys are made by the CLI, never by the daemon: the daemon signs a public
// key (IssueClient) and never holds a client's private key.
//
// On disk, in the PKI directory ($DATA/pki, mode 0700), the layout QEMU's
// tls-creds-x509 endpoint=server reads, so qemu-nbd can serve with the
// same certificates (bench/nbd.sh does):
//
//	ca-key.pem       PKCS#8 "PRIVATE KEY" PEM of the CA, mode 0600
//	ca-cert.pem      the self-signed CA "CERTIFICATE" PEM, mode 0644. Written
//	                 after ca-key.pem and never replaced: its presence
//	                 commits the CA (a ca-key.pem without it is the
//	                 leftover of an interrupted creation and is replaced)
//	server-key.pem   PKCS#8 "PRIVATE KEY" PEM of the NBD server, mode 0600
//	server-cert.pem  the NBD server's "CERTIFICATE" PEM signed by the CA,
//	                 mode 0644; both re-issued at every start (IssueServer)
//	                 for the addresses of that start
//
// Every file is written to a temp name, fsynced, renamed, then the
// directory is fsynced. Losing the directory makes every client
// certificate useless (a new CA is created at the next start): restore it
// from a backup or issue new client certificates.
package pki
