// Package access decides which NBD clients may list and open which
// volumes over TCP.
//
// A client is a record in the catalog ("nbd_clients": name, volumes,
// read-only, the fingerprint and serial of its certificate) and a
// certificate the node's client CA (internal/pki) issued for a public key
// the CLI made (Add). A TLS connection passes the NBD server's door
// (Authorize) only with a certificate of that CA whose fingerprint is
// still in the catalog; revoking (Remove) deletes the record, so the next
// handshake of that certificate is refused, while connections already
// open run on until they end. Listing shows, and opening grants (Grant),
// only the client's volumes, read-only where the record says so.
//
// Connections without TLS pass: the NBD server admits them only on the
// unix socket (whose mode and group are the local door) and, with serve
// --nbd-insecure, on loopback. A node's replica stream offers ReplicaALPN
// and is checked per export by the engine (a paired node's certificate),
// so Authorize lets it through and Grant refuses it plain volumes.
//
// State lives in the catalog only; Access holds no lock of its own.
// Every refusal says what the admin must do, because the NBD client shows
// it to the person at the other end.
package access
