// Package attach writes the text that attaches a volume's NBD export to
// a VM: QEMU command-line arguments or a libvirt <disk> element, over the
// unix socket or TCP, with TLS when the daemon requires it. It is pure
// formatting: the engine decides what to attach and where (Snippet's
// Target), and checks that the volume exists.
//
// Every snippet sets QEMU's reconnect-delay (ReconnectDelay), so a daemon
// restart pauses the guest's I/O instead of failing it.
package attach

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// ReconnectDelay is the seconds QEMU keeps retrying (and holding guest
// I/O) when the daemon goes away, so a daemon restart is not a guest I/O
// error.
const ReconnectDelay = 30

// tlsCredsID is the QEMU object id of the TLS credentials in the QEMU
// snippet; one object serves every disk of a VM.
const tlsCredsID = "es-tls"

// ErrKind: an attach kind that is neither apischema.AttachQEMU nor
// apischema.AttachLibvirt.
var ErrKind = errors.New("unknown attach kind")

// Target is where a VM reaches an export.
type Target struct {
	Name   string // the export (the volume's name)
	Socket string // the daemon's NBD unix socket
	TCP    bool   // over TCP (Host, Port) instead of Socket
	Host   string
	Port   string
	TLS    bool   // with TLS (TCP only): the client's certificates are in TLSDir
	TLSDir string // "" is apischema.DefaultTLSDir
}

// Snippet returns the text of kind for t: QEMU arguments (first line
// -blockdev + -device, second line a commented -drive alternative; with
// TLS, first a tls-creds-x509 -object given once per QEMU) or a libvirt
// <disk> element (with TLS, tls='yes' and a comment saying where libvirt
// reads the certificates).
func Snippet(kind string, t Target) (string, error) {
	tlsDir := t.TLSDir
	if tlsDir == "" {
		tlsDir = apischema.DefaultTLSDir
	}
	useTLS := t.TCP && t.TLS
	switch kind {
	case apischema.AttachQEMU:
		if !useTLS {
			return qemuArgs(t.Name, t.Socket, t.Host, t.Port, t.TCP, ""), nil
		}
		obj := "tls-creds-x509,id=" + tlsCredsID + ",dir=" + driveEscape(tlsDir) + ",endpoint=client"
		return fmt.Sprintf("-object %s %s# the -object once per QEMU; %s holds %s, %s, %s (extrasphere client add --out)\n",
			shellQuote(obj), qemuArgs(t.Name, t.Socket, t.Host, t.Port, t.TCP, tlsCredsID), tlsDir, "ca-cert.pem", "client-cert.pem", "client-key.pem"), nil
	case apischema.AttachLibvirt:
		return libvirtXML(t.Name, t.Socket, t.Host, t.Port, t.TCP, useTLS, tlsDir), nil
	}
	return "", fmt.Errorf("%w %q: use %q or %q", ErrKind, kind, apischema.AttachQEMU, apischema.AttachLibvirt)
}

// qemuArgs is the -blockdev/-device line and the -drive alternative; a
// non-empty tlsCreds names the tls-creds-x509 object the disk uses.
func qemuArgs(name, sock, host, port string, tcp bool, tlsCreds string) string {
	node := nodeName(name)
	// Structs keep the key order stable and readable.
	type address struct {
		Type string `json:"type"`
		Path string `json:"path,omitempty"`
		Host string `json:"host,omitempty"`
		Port string `json:"port,omitempty"`
	}
	server := address{Type: "unix", Path: sock}
	driveServer := "server.type=unix,server.path=" + driveEscape(sock)
	if tcp {
		server = address{Type: "inet", Host: host, Port: port}
		driveServer = "server.type=inet,server.host=" + driveEscape(host) + ",server.port=" + port
	}
	bd := struct {
		Driver         string  `json:"driver"`
		NodeName       string  `json:"node-name"`
		Server         address `json:"server"`
		Export         string  `json:"export"`
		TLSCreds       string  `json:"tls-creds,omitempty"`
		ReconnectDelay int     `json:"reconnect-delay"`
	}{"nbd", node, server, name, tlsCreds, ReconnectDelay}
	js, _ := json.Marshal(bd) // cannot fail: strings and an int
	var b strings.Builder
	fmt.Fprintf(&b, "-blockdev %s -device virtio-blk-pci,drive=%s\n", shellQuote(string(js)), node)
	if tlsCreds != "" {
		driveServer += ",tls-creds=" + tlsCreds
	}
	drive := fmt.Sprintf("driver=nbd,%s,export=%s,reconnect-delay=%d,if=virtio", driveServer, driveEscape(name), ReconnectDelay)
	fmt.Fprintf(&b, "# or: -drive %s\n", shellQuote(drive))
	return b.String()
}

// libvirtXML is the <disk> element. With useTLS the source has
// tls='yes': libvirt then gives QEMU the certificates of qemu.conf's
// nbd_tls_x509_cert_dir (default /etc/pki/qemu), which a comment names.
func libvirtXML(name, sock, host, port string, tcp, useTLS bool, tlsDir string) string {
	hostEl := fmt.Sprintf("<host transport='unix' socket='%s'/>", xmlAttr(sock))
	if tcp {
		hostEl = fmt.Sprintf("<host name='%s' port='%s'/>", xmlAttr(host), xmlAttr(port))
	}
	tlsAttr, comment := "", ""
	if useTLS {
		tlsAttr = " tls='yes'"
		comment = fmt.Sprintf("<!-- TLS: libvirt reads ca-cert.pem, client-cert.pem and client-key.pem (extrasphere client add --out) from "+
			"qemu.conf's nbd_tls_x509_cert_dir, default %s; put them in %s (readable by the qemu user) -->\n",
			apischema.DefaultTLSDir, xmlComment(tlsDir))
	}
	return fmt.Sprintf(`%s<disk type='network' device='disk'>
  <driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>
  <source protocol='nbd' name='%s'%s>
    %s
    <reconnect delay='%d'/>
  </source>
  <target dev='vda' bus='virtio'/>
</disk>
`, comment, xmlAttr(name), tlsAttr, hostEl, ReconnectDelay)
}

// xmlComment keeps s from ending an XML comment.
func xmlComment(s string) string { return strings.ReplaceAll(s, "--", "- -") }

// qemuIDRE is QEMU's rule for node names (id_wellformed, < 32 bytes).
var qemuIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,30}$`)

// nodeName is the volume name when QEMU accepts it as a node name, else
// "es-" + a cleaned prefix + a hash of the full name.
func nodeName(name string) string {
	if qemuIDRE.MatchString(name) {
		return name
	}
	p := name
	if len(p) > 18 {
		p = p[:18]
	}
	return fmt.Sprintf("es-%s-%08x", p, crc32.ChecksumIEEE([]byte(name)))
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// driveEscape doubles commas, QEMU's escape inside option strings.
func driveEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// xmlAttr escapes s for a single-quoted XML attribute.
func xmlAttr(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;")
	return r.Replace(s)
}
