// Package node is a daemon's identity and its trust in other daemons.
//
// A node has an ECDSA P-256 key and a self-signed certificate (CN and DNS
// SAN = the node name, valid 10 years). It is known to other nodes by the
// SHA-256 fingerprint of that certificate ("SHA256:" + lowercase hex of the
// DER hash); there is no certificate authority. Two nodes pair once: the
// operator of node B runs `extrasphere node show` and gives its pairing
// code, "<fingerprint-hex>-<secret>", to node A, which dials B with mutual
// TLS, checks that B's certificate has the fingerprint of the code (so a
// man in the middle is refused), and proves it knows the secret. B then
// trusts A's certificate and A trusts B's: pairing is mutual.
//
// After pairing, every request of the peer API (HTTPS, see Handler) is
// authorised by the client certificate's fingerprint; the same
// certificates secure node-to-node NBD (ServerTLS, ClientTLS).
//
// On disk, in the node directory ($DATA/node, mode 0700):
//
//	key.pem      PKCS#8 "PRIVATE KEY" PEM, mode 0600
//	pair.secret  obsolete (the long-lived pairing secret of older builds):
//	             no longer read or written; it may be deleted
//	cert.pem     the self-signed "CERTIFICATE" PEM, mode 0644. Written last
//	             and never replaced: its presence commits the identity (a
//	             key.pem without cert.pem is the leftover of an interrupted
//	             init and is overwritten by the next init)
//	peers.json   {"version": 1, "peers": [{"name", "fingerprint", "addr",
//	             "cert_pem", "added"}]}, mode 0600, replaced atomically
//	             (temp, fsync, rename, fsync directory). Each peer's
//	             fingerprint must be the SHA-256 of its cert_pem (Validate).
//
// Pairing codes are single-use and expire: NewPairingCode makes one (a
// fresh 128-bit secret) that pairs once, within CodeTTL. They live only in
// the daemon's memory (at most maxPendingCodes at a time), so a restart
// voids them all. A wrong, used or expired secret is refused, and refuses
// every attempt for pairRetryDelay after it (guessing is bounded).
package node
