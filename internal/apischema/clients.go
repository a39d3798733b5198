package apischema

// NBD clients (/v1/clients).

import "time"

// Attach kinds: the kind parameter of GET /v1/volumes/{name}/attach.
const (
	AttachQEMU    = "qemu"
	AttachLibvirt = "libvirt"
)

// DefaultTLSDir is where the TLS attach snippets (GET
// /v1/volumes/{name}/attach?tcp=1) look for a client's certificates when
// no directory is given: libvirt's default nbd_tls_x509_cert_dir
// (qemu.conf), which holds ca-cert.pem, client-cert.pem and
// client-key.pem.
const DefaultTLSDir = "/etc/pki/qemu"

// ClientRequest asks for a new NBD client: a certificate for PublicKey
// (PEM "PUBLIC KEY", made by the CLI) that may open Volumes.
type ClientRequest struct {
	Name      string   `json:"name"`
	Volumes   []string `json:"volumes"`
	ReadOnly  bool     `json:"read_only,omitempty"`
	PublicKey string   `json:"public_key"`
}

// ClientInfo describes an NBD client.
type ClientInfo struct {
	Name        string    `json:"name"`
	Volumes     []string  `json:"volumes"`
	ReadOnly    bool      `json:"read_only"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
	Added       time.Time `json:"added"`
}

// ClientCredentials is a new client and the certificates it needs: its
// own and the CA's (which also verifies the server).
type ClientCredentials struct {
	Client  ClientInfo `json:"client"`
	CertPEM string     `json:"cert_pem"`
	CAPEM   string     `json:"ca_pem"`
}
