package nbd

import (
	"strings"
	"testing"
)

// These tests drive the server with the real clients users run.

func TestQemuIOPatterns(t *testing.T) {
	s := startServer(t)
	for _, uri := range []string{s.uri("disk"), "nbd://" + s.tcp + "/disk"} {
		out := run(t, "qemu-io", "-f", "raw",
			"-c", "write -P 0xab 0 1M",
			"-c", "write -P 0xcd 1048577 4097", // unaligned
			"-c", "write -P 0xef 67108863 1", // the last byte
			"-c", "read -P 0xab 0 1M",
			"-c", "read -P 0xcd 1048577 4097",
			"-c", "read -P 0xef 67108863 1",
			"-c", "write -z 2M 1M", "-c", "read -P 0 2M 1M",
			"-c", "write -P 0x11 4M 1M", "-c", "discard 4M 1M",
			"-c", "write -z -f 8M 64k", "-c", "read -P 0 8M 64k",
			"-c", "flush", uri)
		if strings.Contains(out, "failed") {
			t.Fatalf("qemu-io on %s:\n%s", uri, out)
		}
	}
}

func TestNbdinfoCan(t *testing.T) {
	s := startServer(t)
	for _, c := range []string{"flush", "fua", "trim", "zero", "fast-zero", "multi-conn", "structured-reply", "cache", "df"} {
		if code, out := runStatus(t, "nbdinfo", "--can", c, s.uri("disk")); code != 0 {
			t.Errorf("nbdinfo --can %s: exit %d %s", c, code, out)
		}
	}
	if code, _ := runStatus(t, "nbdinfo", "--is", "read-only", s.uri("ro")); code != 0 {
		t.Errorf("ro export is not read-only")
	}
	if code, _ := runStatus(t, "nbdinfo", "--is", "read-only", s.uri("disk")); code != 2 {
		t.Errorf("disk export is read-only")
	}
	out := run(t, "nbdinfo", "--list", "nbd+unix://?socket="+s.sock)
	for _, want := range []string{"export=\"disk\"", "export=\"ro\"", "test disk"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo --list lacks %s:\n%s", want, out)
		}
	}
}

// nbdinfo --map and qemu-img map see exactly the data written.
func TestMapMatchesData(t *testing.T) {
	s := startServer(t)
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 1 1M 1M", "-c", "write -P 2 10M 128k", s.uri("disk"))
	out := run(t, "nbdinfo", "--map", s.uri("disk"))
	want := []string{
		"0     1048576    3  hole,zero",
		"1048576     1048576    0  data",
		"2097152     8388608    3  hole,zero",
		"10485760      131072    0  data",
	}
	norm := strings.Join(strings.Fields(out), " ")
	for _, w := range want {
		if !strings.Contains(norm, strings.Join(strings.Fields(w), " ")) {
			t.Errorf("nbdinfo --map lacks %q:\n%s", w, out)
		}
	}
	js := run(t, "qemu-img", "map", "--output=json", "-f", "raw", s.uri("disk"))
	if !strings.Contains(js, `"start": 1048576, "length": 1048576, "depth": 0, "present": true, "zero": false, "data": true`) {
		t.Errorf("qemu-img map:\n%s", js)
	}
}

// nbdcopy with four connections round-trips random data byte for byte.
func TestNbdcopyRoundTrip(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	src, back := dir+"/src.raw", dir+"/back.raw"
	run(t, "sh", "-c", "head -c 67108864 /dev/urandom > "+src)
	run(t, "nbdcopy", "-C", "4", "--requests=64", src, s.uri("disk"))
	run(t, "nbdcopy", "-C", "4", s.uri("disk"), back)
	run(t, "cmp", src, back)
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, s.uri("disk"))
}

// fio's verify over unix and TCP at queue depth 32.
func TestFioVerify(t *testing.T) {
	s := startServer(t)
	for _, uri := range []string{s.uri("disk"), "nbd://" + s.tcp + "/disk"} {
		run(t, "fio", "--name=v", "--ioengine=nbd", "--uri="+uri, "--rw=randwrite", "--bs=4k",
			"--iodepth=32", "--size=32m", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0",
			"--output-format=terse")
	}
}
