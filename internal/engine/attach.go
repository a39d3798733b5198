package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"regexp"
	"strings"
)

// ReconnectDelay is the seconds QEMU keeps retrying (and holding guest
// I/O) when the daemon goes away, so a daemon restart is not a guest I/O
// error.
const ReconnectDelay = 30

// Attach kinds.
const (
	AttachQEMU    = "qemu"
	AttachLibvirt = "libvirt"
)

// Attach returns the text that attaches a volume's export to a VM: QEMU
// command-line arguments (first line -blockdev + -device, second line a
// commented -drive alternative) or a libvirt <disk> element. With tcp the
// export is reached over TCP instead of the unix socket.
func (e *Engine) Attach(ctx context.Context, name, kind string, tcp bool) (string, error) {
	if _, err := e.GetVolume(ctx, name); err != nil {
		return "", err
	}
	host, port, ok := e.tcpHostPort()
	if tcp && !ok {
		return "", errorf(ErrNoTCP, "attach %s over TCP: the daemon was started without an NBD TCP listener (serve --nbd HOST:PORT)", name)
	}
	sock := e.cfg.NBDSocket
	switch kind {
	case AttachQEMU:
		return qemuArgs(name, sock, host, port, tcp), nil
	case AttachLibvirt:
		return libvirtXML(name, sock, host, port, tcp), nil
	}
	return "", errorf(ErrInvalidArgument, "attach kind %q: use %q or %q", kind, AttachQEMU, AttachLibvirt)
}

func qemuArgs(name, sock, host, port string, tcp bool) string {
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
		ReconnectDelay int     `json:"reconnect-delay"`
	}{"nbd", node, server, name, ReconnectDelay}
	js, _ := json.Marshal(bd) // cannot fail: strings and an int
	var b strings.Builder
	fmt.Fprintf(&b, "-blockdev %s -device virtio-blk-pci,drive=%s\n", shellQuote(string(js)), node)
	drive := fmt.Sprintf("driver=nbd,%s,export=%s,reconnect-delay=%d,if=virtio", driveServer, driveEscape(name), ReconnectDelay)
	fmt.Fprintf(&b, "# or: -drive %s\n", shellQuote(drive))
	return b.String()
}

func libvirtXML(name, sock, host, port string, tcp bool) string {
	hostEl := fmt.Sprintf("<host transport='unix' socket='%s'/>", xmlAttr(sock))
	if tcp {
		hostEl = fmt.Sprintf("<host name='%s' port='%s'/>", xmlAttr(host), xmlAttr(port))
	}
	return fmt.Sprintf(`<disk type='network' device='disk'>
  <driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>
  <source protocol='nbd' name='%s'>
    %s
    <reconnect delay='%d'/>
  </source>
  <target dev='vda' bus='virtio'/>
</disk>
`, xmlAttr(name), hostEl, ReconnectDelay)
}

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
