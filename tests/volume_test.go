//go:build integration

package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestVolumeImportExport round-trips raw and qcow2 images through `volume import` / `volume export`.
func TestVolumeImportExport(t *testing.T) {
	d := startDaemon(t)
	dir := t.TempDir()
	src, data := randomFile(t, dir, "src.raw", 32<<20, 3)
	qcow := filepath.Join(dir, "src.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, qcow)

	for _, c := range []struct{ name, file, format string }{
		{"fromraw", src, "raw"},
		{"fromqcow2", qcow, "qcow2"},
	} {
		t.Run(c.format, func(t *testing.T) {
			d.CLI("volume", "import", c.name, c.file, "--format", c.format)
			if got, want := exportSize(t, d.UnixURI(c.name)), int64(len(data)); got != want {
				t.Errorf("imported volume size: got %d, want %d", got, want)
			}
			run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, d.UnixURI(c.name))

			outRaw := filepath.Join(dir, c.name+".out.raw")
			d.CLI("volume", "export", c.name, outRaw, "--format", "raw")
			if i := firstDiff(readFile(t, outRaw), data); i >= 0 {
				t.Errorf("raw export of %s differs from the source at offset %d", c.name, i)
			}
			outQcow := filepath.Join(dir, c.name+".out.qcow2")
			d.CLI("volume", "export", c.name, outQcow, "--format", "qcow2")
			info := run(t, "qemu-img", "info", outQcow)
			if !strings.Contains(info, "file format: qcow2") {
				t.Errorf("qcow2 export is not qcow2:\n%s", info)
			}
			run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src, outQcow)
		})
	}
}

// TestReadOnlyVolume: a read-only export reads, and a write gets EPERM from the server.
func TestReadOnlyVolume(t *testing.T) {
	d := startDaemon(t)
	d.CreateVolume("ro", "16M", "--read-only")
	d.CreateVolume("flip", "16M")
	qemuIO(t, d.UnixURI("flip"), "write -P 0x77 1M 64k", "flush")
	d.CLI("volume", "set", "flip", "--read-only=true")

	for _, c := range []struct {
		vol     string
		pattern byte
	}{{"ro", 0}, {"flip", 0x77}} {
		for _, uri := range d.URIs(c.vol) {
			if code, out := runStatus(t, "nbdinfo", "--is", "read-only", uri); code != 0 {
				t.Errorf("nbdinfo --is read-only %s: exit %d, want 0 %s", uri, code, out)
			}
			// The client honours the read-only flag, so the write never leaves it ...
			code, out := runStatus(t, "qemu-io", "-f", "raw", "-c", "write -P 1 1M 4k", uri)
			if code == 0 {
				t.Errorf("qemu-io write to read-only %s succeeded:\n%s", uri, out)
			}
			// ... and with strict mode off, libnbd sends it and the server answers EPERM.
			code, out = runStatus(t, "nbdsh", "-u", uri,
				"-c", "h.set_strict_mode(0)", "-c", `h.pwrite(b"\x01" * 4096, 1048576)`)
			if code == 0 || !strings.Contains(out, "Operation not permitted") {
				t.Errorf("write to read-only %s: exit %d, want EPERM (Operation not permitted):\n%s", uri, code, out)
			}
			qemuIOReadOnly(t, uri, fmt.Sprintf("read -P %#x 1M 64k", c.pattern), "read -P 0 0 1M")
		}
	}

	d.CLI("volume", "set", "flip", "--read-only=false")
	qemuIO(t, d.UnixURI("flip"), "write -P 0x78 1M 4k", "read -P 0x78 1M 4k", "read -P 0x77 1052672 60k")
}

// qemuIOReadOnly runs qemu-io -r (read-only open); every command must succeed.
func qemuIOReadOnly(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-r", "-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, uri)
	code, out := runStatus(t, "qemu-io", args...)
	if code != 0 || strings.Contains(out, "failed") || strings.Contains(out, "qemu-io:") {
		t.Fatalf("qemu-io %s: exit %d:\n%s", quoteArgs(args), code, out)
	}
}
