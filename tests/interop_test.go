//go:build integration

package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestInterop drives one daemon with the real NBD clients (issue 2, "Must show" 1).
func TestInterop(t *testing.T) {
	d := startDaemon(t)
	t.Run("QemuIO", func(t *testing.T) { testQemuIO(t, d) })
	t.Run("QemuImgConvertCompare", func(t *testing.T) { testQemuImgConvert(t, d) })
	t.Run("Map", func(t *testing.T) { testMap(t, d) })
	t.Run("NbdinfoCan", func(t *testing.T) { testNbdinfoCan(t, d) })
	t.Run("Nbdcopy", func(t *testing.T) { testNbdcopy(t, d) })
	t.Run("FioVerify", func(t *testing.T) { testFioVerify(t, d) })
}

// qemuIO runs qemu-io commands on a raw NBD URI; every command must succeed.
func qemuIO(t *testing.T, uri string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, uri)
	code, out := runStatus(t, "qemu-io", args...)
	if code != 0 || strings.Contains(out, "failed") || strings.Contains(out, "qemu-io:") {
		t.Fatalf("qemu-io %s: exit %d:\n%s", quoteArgs(args), code, out)
	}
	return out
}

// exportSize asks the export for its size with nbdinfo.
func exportSize(t *testing.T, uri string) int64 {
	t.Helper()
	out := run(t, "nbdinfo", "--size", uri)
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("nbdinfo --size %s: %q: %v", uri, out, err)
	}
	return n
}

func testQemuIO(t *testing.T, d *daemon) {
	d.CreateVolume("qio", "64M")
	size := exportSize(t, d.UnixURI("qio"))
	if got, want := size, int64(64<<20); got != want {
		t.Fatalf("size of a 64M volume: got %d, want %d", got, want)
	}
	last := size - 1
	for i, uri := range d.URIs("qio") {
		a, b, c := 0x10+i, 0x20+i, 0x30+i // distinct per URI so the second pass proves new writes
		qemuIO(t, uri,
			fmt.Sprintf("write -P %#x 0 1M", a),
			fmt.Sprintf("write -P %#x 1048577 4097", b), // unaligned start and length
			fmt.Sprintf("write -P %#x 3M 511", b),       // aligned start, sub-sector length
			fmt.Sprintf("write -P %#x %d 1", c, last),   // the last byte
			fmt.Sprintf("write -P %#x %d 3", c, last-3), // unaligned, ends one byte before the last
			"flush",
			fmt.Sprintf("read -P %#x 0 1M", a),
			"read -P 0 1M 1",
			fmt.Sprintf("read -P %#x 1048577 4097", b),
			"read -P 0 1052674 1",
			fmt.Sprintf("read -P %#x 3M 511", b),
			fmt.Sprintf("read -P %#x %d 3", c, last-3),
			fmt.Sprintf("read -P %#x %d 1", c, last),
			"write -z 2M 1M", "read -P 0 2M 1M",
			"write -z -f 8M 64k", "read -P 0 8M 64k",
			fmt.Sprintf("write -P %#x -f 9M 4k", a), fmt.Sprintf("read -P %#x 9M 4k", a), // FUA
		)
	}
	// What the TCP pass wrote reads back on the unix socket, on a new connection.
	qemuIO(t, d.UnixURI("qio"), "read -P 0x11 0 1M", "read -P 0x21 1048577 4097",
		fmt.Sprintf("read -P 0x31 %d 1", last))
}

func testQemuImgConvert(t *testing.T, d *daemon) {
	dir := t.TempDir()
	src, data := randomFile(t, dir, "src.raw", 64<<20, 1)
	d.CreateVolume("img", "64M")
	uri := d.UnixURI("img")
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, d.TCPURI("img"))

	// A deliberate mismatch: exit 1 and the offset.
	bad := append([]byte(nil), data...)
	const off = 12345678
	bad[off] ^= 0xff
	badPath := filepath.Join(dir, "bad.raw")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runStatus(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", badPath, uri)
	// qemu-img names the 512-byte sector holding the difference.
	if want := fmt.Sprintf("offset %d!", off&^511); code != 1 || !strings.Contains(out, want) {
		t.Errorf("qemu-img compare of a mismatch: exit %d, want 1 and %q:\n%s", code, want, out)
	}

	for i, u := range d.URIs("img") {
		outPath := filepath.Join(dir, fmt.Sprintf("out%d.raw", i))
		run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", u, outPath)
		if i := firstDiff(readFile(t, outPath), data); i >= 0 {
			t.Errorf("qemu-img convert out of %s differs from what went in at offset %d", u, i)
		}
	}
}

// written is what testMap writes: data in these ranges, holes elsewhere.
var mapWritten = []extent{{1 << 20, 1 << 20}, {8 << 20, 64 << 10}, {(64 << 20) - 4096, 4096}}

func testMap(t *testing.T, d *daemon) {
	d.CreateVolume("map", "64M")
	uri := d.UnixURI("map")
	var cmds []string
	for i, e := range mapWritten {
		cmds = append(cmds, fmt.Sprintf("write -P %#x %d %d", 0x41+i, e.Off, e.Len))
	}
	qemuIO(t, uri, append(cmds, "flush")...)

	t.Run("QemuImg", func(t *testing.T) {
		out := run(t, "qemu-img", "map", "--output=json", "-f", "raw", uri)
		var m []struct {
			Start, Length int64
			Data, Zero    bool
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("qemu-img map: %v:\n%s", err, out)
		}
		var data []extent
		var next int64
		for _, e := range m {
			if e.Start != next {
				t.Errorf("qemu-img map: gap before %d:\n%s", e.Start, out)
			}
			next = e.Start + e.Length
			if e.Data {
				data = append(data, extent{e.Start, e.Length})
			} else if !e.Zero {
				t.Errorf("qemu-img map: extent at %d is neither data nor zero:\n%s", e.Start, out)
			}
		}
		if got, want := mergeExtents(data), mapWritten; !equalExtents(got, want) {
			t.Errorf("qemu-img map data extents: got %v, want %v:\n%s", got, want, out)
		}
		if got, want := next, int64(64<<20); got != want {
			t.Errorf("qemu-img map covers %d bytes, want %d", got, want)
		}
	})
	t.Run("Nbdinfo", func(t *testing.T) {
		for _, u := range d.URIs("map") {
			out := run(t, "nbdinfo", "--map", "--json", u)
			var m []struct {
				Offset, Length int64
				Type           uint32
			}
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("nbdinfo --map --json: %v:\n%s", err, out)
			}
			var data []extent
			var next int64
			for _, e := range m {
				if e.Offset != next {
					t.Errorf("nbdinfo --map: gap before %d:\n%s", e.Offset, out)
				}
				next = e.Offset + e.Length
				switch e.Type {
				case 0:
					data = append(data, extent{e.Offset, e.Length})
				case 3: // hole,zero
				default:
					t.Errorf("nbdinfo --map: extent at %d has type %d, want 0 (data) or 3 (hole,zero):\n%s", e.Offset, e.Type, out)
				}
			}
			if got, want := mergeExtents(data), mapWritten; !equalExtents(got, want) {
				t.Errorf("nbdinfo --map %s data extents: got %v, want %v:\n%s", u, got, want, out)
			}
			if got, want := next, int64(64<<20); got != want {
				t.Errorf("nbdinfo --map covers %d bytes, want %d", got, want)
			}
		}
	})
}

func testNbdinfoCan(t *testing.T, d *daemon) {
	d.CreateVolume("can", "16M")
	for _, uri := range d.URIs("can") {
		for _, c := range []string{"flush", "fua", "trim", "zero", "fast-zero", "multi-conn", "structured-reply"} {
			if code, out := runStatus(t, "nbdinfo", "--can", c, uri); code != 0 {
				t.Errorf("nbdinfo --can %s %s: exit %d, want 0 %s", c, uri, code, out)
			}
		}
		if code, out := runStatus(t, "nbdinfo", "--is", "read-only", uri); code != 2 {
			t.Errorf("nbdinfo --is read-only %s: exit %d, want 2 (writable) %s", uri, code, out)
		}
	}
	out := run(t, "nbdinfo", "--list", "nbd+unix://?socket="+d.nbdSock())
	if !strings.Contains(out, `export="can"`) {
		t.Errorf("nbdinfo --list lacks the volume:\n%s", out)
	}
}

func testNbdcopy(t *testing.T, d *daemon) {
	dir := t.TempDir()
	src, data := randomFile(t, dir, "src.raw", 64<<20, 2)
	d.CreateVolume("copy", "64M")
	for i, uri := range d.URIs("copy") {
		back := filepath.Join(dir, fmt.Sprintf("back%d.raw", i))
		run(t, "nbdcopy", "-C", "4", "--requests=64", src, uri)
		run(t, "nbdcopy", "-C", "4", "--requests=64", uri, back)
		run(t, "cmp", src, back)
		if i := firstDiff(readFile(t, back), data); i >= 0 {
			t.Errorf("nbdcopy round trip through %s differs at offset %d", uri, i)
		}
		// The next pass must rewrite every byte: flip the source.
		for j := range data {
			data[j] = ^data[j]
		}
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func testFioVerify(t *testing.T, d *daemon) {
	d.CreateVolume("fio", "128M")
	for _, uri := range d.URIs("fio") {
		fio(t, uri, "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=64m")
	}
}

// fio runs a verifying fio job on an NBD URI; it must exit 0 with no verify error.
func fio(t *testing.T, uri string, job ...string) string {
	t.Helper()
	args := append(fioVerifyArgs("es", uri), job...)
	code, out := runStatus(t, "fio", args...)
	if code != 0 || !strings.Contains(out, "err= 0") {
		t.Fatalf("fio %s: exit %d:\n%s", quoteArgs(args), code, out)
	}
	return out
}

// fioVerifyArgs are the options of every verifying fio job: crc32c in every block, read back and
// checked after the write phase, the first bad block fatal, and no verify state file left behind.
func fioVerifyArgs(name, uri string) []string {
	return []string{"--name=" + name, "--ioengine=nbd", "--uri=" + uri, "--verify=crc32c",
		"--do_verify=1", "--verify_fatal=1", "--exitall_on_error=1", "--verify_state_save=0"}
}
