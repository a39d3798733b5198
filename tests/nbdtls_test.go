//go:build integration

package tests

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/pki"
)

// tlsClient runs `client add` and returns the directory it wrote.
func (d *daemon) tlsClient(t *testing.T, name, vols string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	d.CLI(append([]string{"client", "add", name, "--volumes", vols, "--out", dir}, extra...)...)
	return dir
}

// qemuTLSObject is the QEMU --object of a client certificate directory.
func qemuTLSObject(dir string) string {
	return "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=client"
}

// qemuIOTLS runs qemu-io over TLS with the certificates in certDir and fails the test unless it
// succeeds and reports no failure.
func (d *daemon) qemuIOTLS(t *testing.T, certDir, vol string, extra ...string) string {
	t.Helper()
	args := append([]string{"--object", qemuTLSObject(certDir), "--image-opts"}, extra...)
	args = append(args, d.qemuTLSOpts(vol))
	code, out := runStatus(t, "qemu-io", args...)
	if code != 0 || strings.Contains(out, "failed") || strings.Contains(out, "qemu-io:") {
		t.Fatalf("qemu-io %s: exit %d:\n%s", quoteArgs(args), code, out)
	}
	return out
}

// qemuTLSOpts is the --image-opts of an export over TLS.
func (d *daemon) qemuTLSOpts(vol string) string {
	return fmt.Sprintf("driver=nbd,server.type=inet,server.host=%s,server.port=%d,export=%s,tls-creds=tls0", d.host, d.port, vol)
}

// TestNBDTLS (issue 9, B): NBD over TCP requires TLS and a client certificate of the node's CA; a
// client lists and opens only its volumes and writes only where allowed. Real clients: nbdinfo and
// nbdcopy (libnbd, nbds:// + tls-certificates=), qemu-io and qemu-img (tls-creds-x509).
func TestNBDTLS(t *testing.T) {
	d := startDaemonOpts(t, daemonOpts{TLS: true})
	for _, v := range []string{"a", "b", "c"} {
		d.CreateVolume(v, "8M")
	}
	rw := d.tlsClient(t, "host2", "a,b")
	ro := d.tlsClient(t, "backup", "a", "--read-only")
	gone := d.tlsClient(t, "gone", "a")
	d.CLI("client", "rm", "gone")

	t.Run("Files", func(t *testing.T) {
		for name, want := range map[string]os.FileMode{"ca-cert.pem": 0o644, "client-cert.pem": 0o644, "client-key.pem": 0o600} {
			fi, err := os.Stat(filepath.Join(rw, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode %o, want %o", name, got, want)
			}
		}
		for name, want := range map[string]os.FileMode{"ca-key.pem": 0o600, "server-key.pem": 0o600} {
			fi, err := os.Stat(filepath.Join(d.dir, "pki", name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("pki/%s mode %o, want %o", name, got, want)
			}
		}
		var list []struct {
			Name     string   `json:"name"`
			Volumes  []string `json:"volumes"`
			ReadOnly bool     `json:"read_only"`
		}
		if err := json.Unmarshal([]byte(d.CLI("client", "list", "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "backup" || !list[0].ReadOnly || list[1].Name != "host2" || len(list[1].Volumes) != 2 {
			t.Errorf("client list = %+v, want backup (read-only) and host2 (a, b)", list)
		}
	})

	t.Run("Nbdinfo", func(t *testing.T) {
		if out := run(t, "nbdinfo", "--size", d.TLSURI("a", rw)); strings.TrimSpace(out) != "8388608" {
			t.Errorf("nbdinfo --size = %q, want 8388608", out)
		}
		out := run(t, "nbdinfo", "--list", "--json", d.TLSURI("", rw))
		if !strings.Contains(out, `"export-name": "a"`) || !strings.Contains(out, `"export-name": "b"`) || strings.Contains(out, `"export-name": "c"`) {
			t.Errorf("nbdinfo --list as host2 must show a and b only:\n%s", out)
		}
	})

	t.Run("QemuIOAndImg", func(t *testing.T) {
		obj := qemuTLSObject(rw)
		d.qemuIOTLS(t, rw, "a", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M", "-c", "flush")
		src, _ := randomFile(t, t.TempDir(), "src.raw", 8<<20, 9)
		run(t, "qemu-img", "convert", "--object", obj, "-n", "-f", "raw", src, "--target-image-opts", d.qemuTLSOpts("b"))
		run(t, "qemu-img", "compare", "--object", obj, "--image-opts", "driver=file,filename="+src, d.qemuTLSOpts("b"))
		// nbdcopy over TLS reads back the same bytes.
		back := filepath.Join(t.TempDir(), "back.raw")
		run(t, "nbdcopy", d.TLSURI("b", rw), back)
		run(t, "cmp", src, back)
	})

	t.Run("ReadOnlyClient", func(t *testing.T) {
		if code, out := runStatus(t, "nbdinfo", "--is", "read-only", d.TLSURI("a", ro)); code != 0 {
			t.Errorf("nbdinfo --is read-only as backup: exit %d, want 0 (read-only):\n%s", code, out)
		}
		d.qemuIOTLS(t, ro, "a", "-r", "-c", "read -P 0xab 0 1M")
		code, out := runStatus(t, "qemu-io", "--object", qemuTLSObject(ro), "--image-opts", "-c", "write -P 0xcd 0 4k", d.qemuTLSOpts("a"))
		if code == 0 {
			t.Fatalf("a read-only client wrote:\n%s", out)
		}
		if !strings.Contains(strings.ToLower(out), "read-only") && !strings.Contains(out, "Permission denied") {
			t.Errorf("qemu-io write as a read-only client: want a read-only or permission error:\n%s", out)
		}
		// With strict mode off libnbd sends the write anyway: the server answers EPERM.
		code, out = runStatus(t, "nbdsh", "-c", "h.set_uri_allow_local_file(True)",
			"-c", fmt.Sprintf("h.connect_uri(%q)", d.TLSURI("a", ro)), "-c", "h.set_strict_mode(0)",
			"-c", `h.pwrite(b"\xcd" * 4096, 0)`)
		if code == 0 || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("a write sent by a read-only client: exit %d, want EPERM (Operation not permitted):\n%s", code, out)
		}
		d.qemuIOTLS(t, rw, "a", "-c", "read -P 0xab 0 1M")
	})

	// Certificates of another CA, with this node's CA certificate to trust the server: one whose CA
	// has another name (a client sends no certificate the server's request does not name), and one
	// whose CA has the same name as ours (so GnuTLS sends it, and the daemon refuses it).
	caPEM := readFile(t, filepath.Join(rw, "ca-cert.pem"))
	block, _ := pem.Decode(caPEM)
	ourCA, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	foreignDir := func(label string) string {
		dir := filepath.Join(t.TempDir(), "foreign")
		otherCA, err := pki.Open(filepath.Join(t.TempDir(), "otherpki"), label)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, pubPEM, err := pki.NewClientKey()
		if err != nil {
			t.Fatal(err)
		}
		is, err := otherCA.IssueClient("host2", pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(dir, 0o700)
		for name, data := range map[string][]byte{"ca-cert.pem": caPEM, "client-cert.pem": is.CertPEM, "client-key.pem": keyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	foreign := foreignDir("intruder")
	twin := foreignDir(strings.TrimPrefix(ourCA.Subject.CommonName, "extrasphere NBD client CA of "))
	// Only the CA: TLS without a client certificate.
	caOnly := filepath.Join(t.TempDir(), "caonly")
	os.MkdirAll(caOnly, 0o700)
	os.WriteFile(filepath.Join(caOnly, "ca-cert.pem"), caPEM, 0o644)

	// libnbd tools print the server's message only in debug output: LIBNBD_DEBUG=1.
	nbdinfo := func(a ...string) []string { return append([]string{"env", "LIBNBD_DEBUG=1", "nbdinfo"}, a...) }
	refusals := []struct {
		name string
		args []string
		want string // in the client's output
	}{
		{"NoTLSNbdinfo", nbdinfo(d.TCPURI("a")), "extrasphere client add"},
		{"NoTLSNbdinfoList", nbdinfo("--list", d.TCPURI("")), "TLS is required"},
		{"NoTLSQemuIO", []string{"qemu-io", "-f", "raw", "-c", "read 0 4k", d.TCPURI("a")}, "TLS is required"},
		{"NoCertificate", nbdinfo(d.TLSURI("a", caOnly)), "no client certificate"},
		{"NoCertificateList", nbdinfo("--list", d.TLSURI("", caOnly)), "no client certificate"},
		{"NoCertificateQemu", []string{"qemu-io", "--object", "tls-creds-x509,id=tls0,dir=" + caOnly + ",endpoint=client,verify-peer=on",
			"--image-opts", "-c", "read 0 4k", d.qemuTLSOpts("a")}, "no client certificate"},
		{"OtherCA", nbdinfo(d.TLSURI("a", foreign)), "no client certificate issued by this node"},
		{"OtherCASameName", nbdinfo(d.TLSURI("a", twin)), "not issued by this node's NBD client CA"},
		// QEMU checks its own certificate against the CA file first and refuses to connect.
		{"OtherCAQemu", []string{"qemu-io", "--object", qemuTLSObject(foreign), "--image-opts", "-c", "read 0 4k", d.qemuTLSOpts("a")}, "failed validation"},
		{"Revoked", nbdinfo(d.TLSURI("a", gone)), "revoked"},
		{"RevokedQemu", []string{"qemu-io", "--object", qemuTLSObject(gone), "--image-opts", "-c", "read 0 4k", d.qemuTLSOpts("a")}, "revoked"},
		{"OtherClientsVolume", nbdinfo(d.TLSURI("c", rw)), `may not open volume "c"`},
		{"OtherClientsVolumeQemu", []string{"qemu-io", "--object", qemuTLSObject(rw), "--image-opts", "-c", "read 0 4k", d.qemuTLSOpts("c")}, `may not open volume "c"`},
		{"ReadOnlyClientsOtherVolume", nbdinfo(d.TLSURI("b", ro)), `may not open volume "b"`},
	}
	first := time.Now()
	for _, tc := range refusals {
		t.Run("Refused"+tc.name, func(t *testing.T) {
			code, out := runStatus(t, tc.args[0], tc.args[1:]...)
			if code == 0 {
				t.Fatalf("%s succeeded, want a refusal:\n%s", quoteArgs(tc.args), out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("%s: output lacks %q:\n%s", quoteArgs(tc.args), tc.want, out)
			}
		})
	}

	// The daemon told the admin what to do, at most once per client address per minute: every
	// refusal above came from 127.0.0.1, so it logged one line per minute begun since the first.
	minutes := int(time.Since(first)/time.Minute) + 1
	log := string(readFile(t, d.logPath))
	if n := strings.Count(log, "nbd client refused"); n < 1 || n > minutes {
		t.Errorf("the daemon logged %d refusals of one client address in %d minute(s) begun, want 1 to %d:\n%s",
			n, minutes, minutes, log)
	}
	if !strings.Contains(log, "extrasphere client add") {
		t.Errorf("the refusal log does not say what to do:\n%s", log)
	}
}

// TestNBDTLSGuest (issue 9, B): a TCG guest boots with its disk over TCP with TLS, configured with
// exactly what `attach --tcp --qemu --tls-dir` prints.
func TestNBDTLSGuest(t *testing.T) {
	kernel, initrd := buildGuest(t)
	d := startDaemonOpts(t, daemonOpts{TLS: true})
	d.CreateVolume("vm", "16M")
	certs := d.tlsClient(t, "qemu", "vm")
	out := d.CLI("attach", "vm", "--tcp", "--qemu", "--tls-dir", certs)
	m := regexp.MustCompile(`^-object '([^']*)' -blockdev '([^']*)' -device`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("attach --tcp --qemu printed no -object/-blockdev line:\n%s", out)
	}
	var bd map[string]any
	if err := json.Unmarshal([]byte(m[2]), &bd); err != nil {
		t.Fatalf("attach -blockdev %s: %v", m[2], err)
	}
	if bd["tls-creds"] == nil {
		t.Fatalf("attach -blockdev has no tls-creds: %s", m[2])
	}
	bd["node-name"] = "disk0" // bootGuest's -device names disk0
	js, _ := json.Marshal(bd)
	if out := bootGuest(t, kernel, initrd, "write", string(js), "-object", m[1]); !strings.Contains(out, "ES-GUEST-WRITE-OK") {
		t.Fatalf("guest did not report ES-GUEST-WRITE-OK:\n%s", out)
	}
	img := filepath.Join(t.TempDir(), "vm.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", d.UnixURI("vm"), img)
	got := readFile(t, img)
	if i := firstDiff(got[guestPatternOff:guestPatternOff+guestPatternLen], guestPattern(t)); i >= 0 {
		t.Errorf("the guest's region differs from tests/guest/pattern.sh at disk offset %d", guestPatternOff+i)
	}
}

// TestNBDInsecureOnlyLoopback (issue 9, B): plain TCP needs --nbd-insecure, and the daemon refuses
// it on an address other hosts can reach.
func TestNBDInsecureOnlyLoopback(t *testing.T) {
	dir := t.TempDir()
	code, out := runStatus(t, esBin, "serve", "--data", dir, "--nbd", "0.0.0.0:0", "--nbd-insecure", "--api", "unix:"+filepath.Join(dir, "api.sock"))
	if code == 0 || !strings.Contains(out, "--nbd-insecure is allowed only on a loopback address") {
		t.Fatalf("serve --nbd 0.0.0.0 --nbd-insecure: exit %d, want a refusal naming the rule:\n%s", code, out)
	}
}
